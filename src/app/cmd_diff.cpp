// `astrid diff`: the per-epoch stages on one pair, outside any campaign (what users try first, like
// `hotpants -inim -tmplim -outim`).
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>

#include <boost/program_options.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "app/commands.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/pipeline/difference.hpp"

namespace astrid::app {
namespace po = boost::program_options;

int cmdDiff(int argc, char** argv) {
    const pipeline::DifferenceConfig dflt;
    po::options_description opts("astrid diff --reference REF.fits --science SCI.fits --out DIR [options]");
    opts.add_options()("reference", po::value<std::string>(), "reference image (FILE, FILE[EXTNAME] or FILE[index])")(
        "science", po::value<std::string>(), "science image")("out", po::value<std::string>(), "output directory (created)")(
        "zogy_tile_px", po::value<int>()->default_value(dflt.zogy.tilePx), "ZOGY tile size (px); <= 0: whole image")(
        "detection_threshold", po::value<double>()->default_value(dflt.detectionThreshold), "S_corr threshold recorded with the run")(
        "fft_effort", po::value<std::string>()->default_value("estimate"), "FFTW planning: estimate | measure")(
        "fft_wisdom", po::value<std::string>()->default_value(""), "FFTW wisdom file, read first and updated after (empty: none)")(
        "log_level", po::value<std::string>()->default_value("warn"), "trace | debug | info | warn | error | off")("help,h", "this help");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, opts), vm);
    } catch (const po::error& e) {
        throw ConfigError(e.what());
    }
    if (vm.count("help") || !vm.count("reference") || !vm.count("science") || !vm.count("out")) {
        (vm.count("help") ? std::cout : std::cerr) << opts << "\n";
        return vm.count("help") ? 0 : 1;
    }
    log::configure({log::parseLevel(vm["log_level"].as<std::string>()), 0, 1, log::Level::Warn});
    const std::string effort = vm["fft_effort"].as<std::string>();
    if (effort != "estimate" && effort != "measure") throw ConfigError("must be estimate or measure", "fft_effort");
    diff::setFftEffort(effort == "measure" ? diff::FftEffort::Measure : diff::FftEffort::Estimate);
    const std::string wisdom = vm["fft_wisdom"].as<std::string>();
    if (!wisdom.empty()) diff::importFftWisdomFile(wisdom);
    pipeline::PrepareConfig prepare;
    pipeline::DifferenceConfig config;
    config.zogy.tilePx = vm["zogy_tile_px"].as<int>();
    config.detectionThreshold = vm["detection_threshold"].as<double>();
    const std::string out = vm["out"].as<std::string>();
    std::filesystem::create_directories(out);

    pipeline::DifferenceRun run;
    double offset = 0.0;   // ZOGY's differential background (tile nearest the centre)
    long interpolated = 0; // defect pixels interpolated over in both images
    try {
        auto reference = std::make_unique<pipeline::PreparedImage>(
            pipeline::prepareImage(fits::readImagePlanes(vm["reference"].as<std::string>()), prepare));
        const auto science = pipeline::prepareImage(fits::readImagePlanes(vm["science"].as<std::string>()), prepare);
        run.backgroundS = science.backgroundS + reference->backgroundS;
        run.psfS = science.psfS + reference->psfS;
        interpolated = science.interpolatedPixels + reference->interpolatedPixels;
        // One pair: the reference's planes are not needed once it is registered (the peak memory of
        // a 4k pair is during ZOGY).
        const auto tStart = std::chrono::steady_clock::now();
        auto images = pipeline::registerReference(science, *reference, config, prepare, run);
        reference.reset();
        pipeline::subtractRegistered(science, images, config, run);
        offset = images.zogy.offset;
        run.wallS = std::chrono::duration<double>(std::chrono::steady_clock::now() - tStart).count();
        const std::string prefix = (std::filesystem::path(out) / "").string();
        pipeline::writeDifferenceFits(prefix, science, images, run);
        run.diffPath = prefix + "diff.fits";
        run.scorrPath = prefix + "scorr.fits";
    } catch (const pipeline::StageError& e) {
        std::cerr << "astrid diff: failed in " << pipeline::stageName(e.stage()) << ": " << e.what() << "\n";
        return 1;
    }
    nlohmann::json j = {{"reference", vm["reference"].as<std::string>()},
                        {"science", vm["science"].as<std::string>()},
                        {"algorithm", run.algorithm},
                        {"parameters", run.parameters},
                        {"fwhm_sci_px", run.fwhmSciencePx},
                        {"fwhm_ref_px", run.fwhmReferencePx},
                        {"psf_stars_sci", run.psfStarsScience},
                        {"psf_stars_ref", run.psfStarsReference},
                        {"flux_ratio", run.fluxRatio},
                        {"flux_ratio_err", run.fluxRatioErr},
                        {"flux_ratio_stars", run.fluxRatioStars},
                        {"astrometric_rms_px", run.astrometricRmsPx},
                        {"matched_stars", run.matchedStars},
                        {"noise_level_adu", run.noiseLevel},
                        {"sigma_sci_adu", run.sigmaScience},
                        {"sigma_ref_adu", run.sigmaReference},
                        {"f_d", run.fD},
                        {"f_s", run.fS},
                        {"differential_background_adu", offset},
                        {"interpolated_pixels", interpolated},
                        {"scorr_std", run.scorrStd},
                        {"quality", run.quality},
                        {"diff", run.diffPath},
                        {"scorr", run.scorrPath},
                        {"seconds", {{"background", run.backgroundS}, {"psf", run.psfS},
                                     {"registration", run.registrationS}, {"zogy", run.zogyS}, {"difference", run.wallS}}}};
    std::ofstream(std::filesystem::path(out) / "summary.json") << j.dump(2) << "\n";
    if (!wisdom.empty()) diff::exportFftWisdomFile(wisdom);
    std::cout << fmt::format(
        "astrid diff: FWHM sci {:.2f} px ref {:.2f} px, flux ratio {:.4f} +- {:.4f} ({} stars), astrometric rms {:.3f} px "
        "({} matched), noise {:.2f} ADU, S_corr std {:.3f}, quality {}, {:.2f} s (zogy {:.2f} s) -> {}\n",
        run.fwhmSciencePx, run.fwhmReferencePx, run.fluxRatio, run.fluxRatioErr, run.fluxRatioStars, run.astrometricRmsPx,
        run.matchedStars, run.noiseLevel, run.scorrStd, run.quality,
        run.wallS + run.backgroundS + run.psfS, run.zogyS, out);
    return 0;
}

}  // namespace astrid::app
