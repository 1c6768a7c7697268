// `astrid import-ztf`: real ZTF alert packets (Avro) -> the /training layout of a run file, labelled
// by ZTF's own real/bogus score, so survey triplets and astrid's own load through the same reader.
#include <chrono>
#include <iostream>
#include <map>
#include <sstream>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include "app/commands.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/core/time.hpp"
#include "astrid/output/run_file.hpp"
#include "astrid/training/ztf_alert.hpp"

namespace astrid::app {
namespace po = boost::program_options;

namespace {
constexpr std::size_t kBatchTriplets = 4096;  // bounded memory: ~200 MB of pixels at most

training::ZtfScore parseScore(const std::string& s) {
    if (s == "auto") return training::ZtfScore::Auto;
    if (s == "drb") return training::ZtfScore::Drb;
    if (s == "rb") return training::ZtfScore::Rb;
    throw ConfigError("--score must be auto, drb or rb, not '" + s + "'", "score");
}
}  // namespace

int cmdImportZtf(int argc, char** argv) {
    const training::ZtfImportConfig dflt;
    po::options_description opts("astrid import-ztf --alerts DIR_OR_FILE... --out FILE.h5 [options]");
    opts.add_options()("alerts", po::value<std::vector<std::string>>()->multitoken(),
                       "ZTF alert packets: .avro files, or directories searched recursively for *.avro")(
        "out", po::value<std::string>(), "output HDF5 file (replaced): /training plus empty campaign tables")(
        "threshold", po::value<double>()->default_value(dflt.threshold, fmt::format("{:g}", dflt.threshold)),
        "label real when the score >= threshold, else bogus")(
        "score", po::value<std::string>()->default_value("auto"),
        "auto (drb, or rb for packets older than schema 3.3) | drb | rb")(
        "split_train", po::value<double>()->default_value(dflt.split.train, fmt::format("{:g}", dflt.split.train)),
        "fraction of objects (objectId) in the train split")(
        "split_validation",
        po::value<double>()->default_value(dflt.split.validation, fmt::format("{:g}", dflt.split.validation)),
        "fraction in the validation split; test takes the rest")(
        "gzip", po::value<int>()->default_value(0), "deflate level 0-9 for /training/triplets and /training/mask")(
        "log_level", po::value<std::string>()->default_value("warn"), "trace | debug | info | warn | error | off")(
        "help,h", "this help");
    po::positional_options_description pos;
    pos.add("alerts", -1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
    } catch (const po::error& e) {
        throw ConfigError(e.what());
    }
    if (vm.count("help") || !vm.count("out") || !vm.count("alerts")) {
        (vm.count("help") ? std::cout : std::cerr) << opts << "\n";
        return vm.count("help") ? 0 : 1;
    }
    log::configure({log::parseLevel(vm["log_level"].as<std::string>()), 0, 1, log::Level::Warn});
    const auto t0 = std::chrono::steady_clock::now();

    training::ZtfImportConfig config;
    config.threshold = vm["threshold"].as<double>();
    config.score = parseScore(vm["score"].as<std::string>());
    config.split.train = vm["split_train"].as<double>();
    config.split.validation = vm["split_validation"].as<double>();
    training::assignSplit("", config.split);  // validates the fractions before any work
    training::TripletLayout layout = training::ztfLayout();
    layout.gzipLevel = vm["gzip"].as<int>();
    layout.split = config.split;
    layout.validate();

    const std::string out = vm["out"].as<std::string>();
    const auto files = training::findAvroFiles(vm["alerts"].as<std::vector<std::string>>());
    if (files.empty()) throw ConfigError("no .avro files found in the --alerts arguments", "alerts");

    std::ostringstream cmdline, cfgText;
    for (int i = 0; i < argc; ++i) cmdline << (i ? " " : "astrid ") << argv[i];
    cfgText << "command = import-ztf\nthreshold = " << config.threshold << "\nscore = " << vm["score"].as<std::string>()
            << "\nsplit_train = " << config.split.train << "\nsplit_validation = " << config.split.validation
            << "\ngzip = " << layout.gzipLevel << "\nfiles = " << files.size() << "\n";
    output::RunMetadata meta;
    meta.configText = cfgText.str();
    meta.commandLine = cmdline.str();
    meta.startUtc = utcNowIso();
    meta.training = layout;
    output::RunFile file = output::RunFile::create(out, meta);

    output::TrainingBatch batch(layout);
    std::size_t packets = 0, written = 0, skipped = 0;
    std::map<std::string, std::size_t> byLabel, bySplit, bySource;
    auto flushBatch = [&] {
        file.appendTraining(batch, 0, batch.size());
        written += batch.size();
        batch.clear();
    };
    for (const std::string& path : files) {
        training::ZtfFileResult r = training::readZtfAlertFile(path);
        packets += r.alerts.size() + r.errors.size();
        for (const std::string& e : r.errors) {
            std::cerr << "astrid import-ztf: skipped: " << e << "\n";
            ++skipped;
        }
        for (const training::ZtfAlert& a : r.alerts) {
            try {
                const training::Triplet t = training::ztfTriplet(a, config);
                batch.add(t);
                ++byLabel[std::string(training::labelName(t.label))];
                ++bySplit[std::string(training::splitName(t.meta.split))];
                ++bySource[std::string(training::labelSourceName(t.meta.labelSource))];
            } catch (const DataError& e) {
                std::cerr << "astrid import-ztf: skipped: " << e.what() << "\n";
                ++skipped;
            }
            if (batch.size() >= kBatchTriplets) flushBatch();
        }
    }
    if (batch.size() > 0) flushBatch();
    const double wallS = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    output::RunEnd end;
    end.endUtc = utcNowIso();
    end.status = "complete";
    end.wallS = wallS;
    file.finish(end);

    auto join = [](const std::map<std::string, std::size_t>& m) {
        std::string s;
        for (const auto& [k, v] : m) s += (s.empty() ? "" : ", ") + fmt::format("{} {}", k, v);
        return s.empty() ? std::string("none") : s;
    };
    std::cout << fmt::format("{}: {} triplets from {} packets in {} files ({} skipped) in {:.2f} s\n", out, written,
                             packets, files.size(), skipped, wallS)
              << "  labels: " << join(byLabel) << "\n  label sources: " << join(bySource)
              << "\n  splits: " << join(bySplit) << "\n";
    if (written == 0) return 1;
    return skipped > 0 ? 2 : 0;
}

}  // namespace astrid::app
