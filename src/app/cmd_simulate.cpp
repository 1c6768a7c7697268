#include <iostream>

#include <boost/program_options.hpp>

#include "app/commands.hpp"
#include "astrid/core/error.hpp"
#include "astrid/sim/simulate.hpp"

namespace astrid::app {
namespace po = boost::program_options;

int cmdSimulate(int argc, char** argv) {
    const sim::SimConfig d;
    po::options_description opts("astrid simulate --out DIR [options]");
    opts.add_options()("out", po::value<std::string>(), "output directory (created)")(
        "targets", po::value<int>()->default_value(d.targets), "number of targets")(
        "epochs", po::value<int>()->default_value(d.epochs), "science epochs per target (plus one reference)")(
        "size", po::value<int>()->default_value(d.sizePx), "image size in pixels (square)")(
        "seed", po::value<unsigned long long>()->default_value(d.seed), "random seed (deterministic output)")(
        "pixel-scale", po::value<double>()->default_value(d.pixelScaleArcsec), "arcsec per pixel")(
        "filter", po::value<std::string>()->default_value(d.filter), "filter band name")(
        "distortion", po::value<std::string>()->default_value("none"), "none | sip | tpv")(
        "no-galaxies", "no extended galaxies (transients on blank sky)")(
        "noiseless", "render the expectation: no Poisson or read noise (for measuring method errors)")(
        "no-defects", "no bad columns or cosmic rays")(
        "transient-mag-min", po::value<double>()->default_value(d.transientPeakMagMin), "brightest transient peak magnitude")(
        "transient-mag-max", po::value<double>()->default_value(d.transientPeakMagMax), "faintest transient peak magnitude")(
        "reference-depth", po::value<int>()->default_value(d.referenceDepth),
        "the reference is the mean of this many exposures (a stacked template: sqrt(K) less noise)")(
        "help,h", "this help");
    po::variables_map vm;
    try {
        po::store(po::parse_command_line(argc, argv, opts), vm);
    } catch (const po::error& e) {
        throw ConfigError(e.what());
    }
    if (vm.count("help") || !vm.count("out")) {
        (vm.count("help") ? std::cout : std::cerr) << opts << "\n";
        return vm.count("help") ? 0 : 1;
    }
    sim::SimConfig c;
    c.outDir = vm["out"].as<std::string>();
    c.targets = vm["targets"].as<int>();
    c.epochs = vm["epochs"].as<int>();
    c.sizePx = vm["size"].as<int>();
    c.seed = vm["seed"].as<unsigned long long>();
    c.pixelScaleArcsec = vm["pixel-scale"].as<double>();
    c.filter = vm["filter"].as<std::string>();
    c.galaxies = !vm.count("no-galaxies");
    c.noise = !vm.count("noiseless");
    c.defects = !vm.count("no-defects");
    c.transientPeakMagMin = vm["transient-mag-min"].as<double>();
    c.transientPeakMagMax = vm["transient-mag-max"].as<double>();
    c.referenceDepth = vm["reference-depth"].as<int>();
    c.distortion = sim::parseDistortion(vm["distortion"].as<std::string>());
    if (c.targets < 1) throw ConfigError("must be >= 1", "targets");
    if (c.epochs < 1) throw ConfigError("must be >= 1", "epochs");
    if (c.sizePx < 128) throw ConfigError("must be >= 128", "size");

    const auto s = sim::simulateCampaign(c);
    std::cout << "simulated " << s.targets.size() << " targets x " << (c.epochs + 1) << " epochs of " << c.sizePx
              << "x" << c.sizePx << " px into " << c.outDir << "\n"
              << "  catalog:  " << s.catalogPath << "\n"
              << "  archive:  " << s.archiveDir << "\n"
              << "  truth:    " << s.truthPath << " (" << s.truthRows << " rows), " << s.epochTruthPath << "\n"
              << "  job file: " << s.jobPath << "\n"
              << "run it:  mpirun -n 2 astrid run --config " << s.jobPath << "\n";
    return 0;
}

}  // namespace astrid::app
