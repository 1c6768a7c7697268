// `astrid stack`: co-add the exposures of one epoch onto the first one's grid and flux scale (a deeper
// reference or science image for `astrid diff`), like `swarp -COMBINE_TYPE CLIPPED` or IRAF imcombine.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <vector>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include "app/commands.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/pipeline/stack.hpp"

namespace astrid::app {
namespace po = boost::program_options;

int cmdStack(int argc, char** argv) {
    const pipeline::StackConfig dflt;
    po::options_description opts("astrid stack --out OUT.fits IN1.fits IN2.fits ... [options]");
    opts.add_options()("out", po::value<std::string>(), "output FITS file (image, VARIANCE, COUNT)")(
        "input", po::value<std::vector<std::string>>(), "input images (FILE, FILE[EXTNAME] or FILE[index]); the first sets grid and flux scale")(
        "clip_sigma", po::value<double>()->default_value(dflt.clipSigma, fmt::format("{:g}", dflt.clipSigma)), "per-pixel clipping threshold (sigma)")(
        "clip_amplitude_fraction",
        po::value<double>()->default_value(dflt.clipAmplitudeFraction, fmt::format("{:g}", dflt.clipAmplitudeFraction)),
        "clipping tolerance as a fraction of the median (PSF differences between exposures)")(
        "clip_min_inputs", po::value<int>()->default_value(dflt.clipMinInputs), "clip only where at least this many inputs contribute")(
        "log_level", po::value<std::string>()->default_value("warn"), "trace | debug | info | warn | error | off")("help,h", "this help");
    po::positional_options_description pos;
    pos.add("input", -1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
    } catch (const po::error& e) {
        throw ConfigError(e.what());
    }
    if (vm.count("help") || !vm.count("out") || !vm.count("input")) {
        (vm.count("help") ? std::cout : std::cerr) << opts << "\n";
        return vm.count("help") ? 0 : 1;
    }
    log::configure({log::parseLevel(vm["log_level"].as<std::string>()), 0, 1, log::Level::Warn});
    pipeline::StackConfig config;
    config.clipSigma = vm["clip_sigma"].as<double>();
    config.clipAmplitudeFraction = vm["clip_amplitude_fraction"].as<double>();
    config.clipMinInputs = vm["clip_min_inputs"].as<int>();
    const pipeline::PrepareConfig prepare;
    const std::string out = vm["out"].as<std::string>();
    const auto specs = vm["input"].as<std::vector<std::string>>();

    pipeline::StackResult stack;
    double stackFwhmPx = std::numeric_limits<double>::quiet_NaN();
    try {
        std::vector<pipeline::PreparedImage> inputs;
        inputs.reserve(specs.size());
        for (const std::string& spec : specs) inputs.push_back(pipeline::prepareImage(fits::readImagePlanes(spec), prepare));
        stack = pipeline::stackImages(inputs, config, prepare);
    } catch (const pipeline::StageError& e) {
        std::cerr << "astrid stack: failed in " << pipeline::stageName(e.stage()) << ": " << e.what() << "\n";
        return 1;
    }
    // The stack's own PSF (a mixture of the inputs'), measured as `astrid diff` will measure it, for
    // the FWHM key and the summary.
    try {
        fits::ImagePlanes planes;
        planes.science.path = out;
        planes.science.header = stack.header;
        planes.science.image = stack.pixels.image;
        for (int y = 0; y < stack.count.height(); ++y)
            for (int x = 0; x < stack.count.width(); ++x)
                if (stack.count(x, y) == 0) planes.science.image(x, y) = std::numeric_limits<float>::quiet_NaN();
        planes.variance = stack.pixels.variance;
        const auto measured = pipeline::prepareImage(std::move(planes), prepare);
        stackFwhmPx = measured.psf->fwhmPx();
        stack.header.set("FWHM", stackFwhmPx, "[px] PSF FWHM of the stack (astrid)");
    } catch (const pipeline::StageError& e) {
        log::get("astrid.app")->warn("{}: no PSF could be measured on the stack ({}); FWHM key removed", out, e.what());
        stack.header.erase("FWHM");
    }
    const auto parent = std::filesystem::path(out).parent_path();
    if (!parent.empty()) std::filesystem::create_directories(parent);
    pipeline::writeStackFits(out, stack);

    std::cout << fmt::format("{:<36} {:>17} {:>18} {:>6} {:>8} {:>7} {:>8}\n", "input", "placement", "scale (stars)",
                             "FWHM", "sky rms", "weight", "clipped");
    for (std::size_t k = 0; k < stack.inputs.size(); ++k) {
        const auto& in = stack.inputs[k];
        const std::string scale = k == 0 ? "1 (first)"
                                  : in.scaleStars > 0 ? fmt::format("{:.4f}+-{:.4f} ({})", in.scale, in.scaleError, in.scaleStars)
                                                      : "1 (not measured)";
        std::cout << fmt::format("{:<36} {:>17} {:>18} {:>6.2f} {:>8.2f} {:>7.3f} {:>8}\n",
                                 std::filesystem::path(in.label).filename().string(),
                                 k == 0 ? "first" : pipeline::placementName(in.placement), scale, in.fwhmPx, in.skyRms,
                                 in.weightShare, in.clippedPixels);
    }
    std::vector<float> sd;
    sd.reserve(stack.pixels.variance.size());
    for (float v : stack.pixels.variance.pixels())
        if (std::isfinite(v) && v > 0.0f) sd.push_back(std::sqrt(v));
    double medianSd = std::numeric_limits<double>::quiet_NaN();
    if (!sd.empty()) {
        std::nth_element(sd.begin(), sd.begin() + static_cast<std::ptrdiff_t>(sd.size() / 2), sd.end());
        medianSd = sd[sd.size() / 2];
    }
    std::cout << fmt::format("astrid stack: {} inputs, FWHM {:.2f} px, median pixel sigma {:.2f} ADU, effective gain {:.3f}, "
                             "{} clipped values, {} uncovered pixels -> {}\n",
                             stack.inputs.size(), stackFwhmPx, medianSd, stack.gain, stack.clippedValues,
                             stack.uncoveredPixels, out);
    return 0;
}

}  // namespace astrid::app
