#include <iostream>
#include <sstream>

#include <boost/program_options.hpp>

#include "app/commands.hpp"
#include "app/config.hpp"
#include "astrid/core/error.hpp"
#include "astrid/output/merge.hpp"

namespace astrid::app {
namespace po = boost::program_options;

int cmdMerge(int argc, char** argv) {
    po::options_description opts("astrid merge --out MERGED.h5 SLICE.h5 ... [options]");
    opts.add_options()("out,o", po::value<std::string>(), "the merged run file")(
        "slices", po::value<std::vector<std::string>>(), "slice outputs (any order)")(
        "allow-missing", "merge even when some of the N slices are not given")(
        "overwrite", "replace an existing output file")("help,h", "this help");
    po::positional_options_description pos;
    pos.add("slices", -1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
    } catch (const po::unknown_option& e) {
        throw ConfigError("unknown option", e.get_option_name());
    } catch (const po::error& e) {
        throw ConfigError(e.what());
    }
    if (vm.count("help")) {
        std::cout << opts << "\n"
                  << "Slices must be complete runs of one job with `slice = i/N`, differing only in `slice`,\n"
                  << "`output` and keys that do not change results (" ;
        const auto& keys = operationalKeys();
        for (std::size_t i = 1; i < keys.size(); ++i) std::cout << (i > 1 ? ", " : "") << keys[i];
        std::cout << ").\n";
        return 0;
    }
    if (!vm.count("out")) throw ConfigError("no output file given (--out MERGED.h5)", "out");
    if (!vm.count("slices")) throw ConfigError("no slice files given", "slices");
    output::MergeOptions o;
    o.ignoredKeys = operationalKeys();
    o.allowMissing = vm.count("allow-missing") > 0;
    o.overwrite = vm.count("overwrite") > 0;
    std::ostringstream cmdline;
    cmdline << "astrid";
    for (int i = 0; i < argc; ++i) cmdline << " " << argv[i];
    o.commandLine = cmdline.str();
    const std::string out = vm["out"].as<std::string>();
    const auto s = output::mergeSlices(vm["slices"].as<std::vector<std::string>>(), out, o);
    std::cout << "astrid merge: " << s.merged.size() << " of " << s.sliceCount << " slices: "
              << (s.targetsOk + s.targetsFailed + s.targetsSkipped) << " targets (" << s.targetsOk << " ok, "
              << s.targetsFailed << " failed, " << s.targetsSkipped << " skipped), " << s.observations
              << " observations, " << s.differenceRuns << " difference runs, " << s.candidates << " candidates, "
              << s.forcedPhotometry << " forced-photometry rows, " << s.injections << " injections, " << s.triplets << " triplets\n";
    if (!s.missing.empty()) {
        std::cout << "astrid merge: warning: " << s.missing.size() << " slice(s) missing:";
        for (auto i : s.missing) std::cout << " " << i;
        std::cout << "\n";
    }
    std::cout << "output: " << out << "\n";
    return 0;
}

}  // namespace astrid::app
