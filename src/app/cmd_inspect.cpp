#include <algorithm>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>

#include <boost/program_options.hpp>

#include "app/commands.hpp"
#include "astrid/core/error.hpp"
#include "astrid/output/reader.hpp"

namespace astrid::app {
namespace po = boost::program_options;

int cmdInspect(int argc, char** argv) {
    po::options_description opts("astrid inspect OUT.h5 [options]");
    opts.add_options()("file", po::value<std::string>(), "run file")("failures", "list every failed target")(
        "csv", po::value<std::string>(), "export this table as CSV")(
        "out", po::value<std::string>(), "write the CSV here instead of stdout")("config", "print the stored job configuration")(
        "help,h", "this help");
    po::positional_options_description pos;
    pos.add("file", 1);
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(opts).positional(pos).run(), vm);
    } catch (const po::error& e) {
        throw ConfigError(e.what());
    }
    if (vm.count("help") || !vm.count("file")) {
        (vm.count("help") ? std::cout : std::cerr) << opts << "\n";
        return vm.count("help") ? 0 : 1;
    }
    const std::string path = vm["file"].as<std::string>();
    output::RunReader reader(path);
    if (vm.count("csv")) {
        const std::string table = vm["csv"].as<std::string>();
        if (vm.count("out")) {
            std::ofstream f(vm["out"].as<std::string>());
            if (!f) throw IoError("cannot write '" + vm["out"].as<std::string>() + "'");
            reader.writeCsv(table, f);
        } else {
            reader.writeCsv(table, std::cout);
        }
        return 0;
    }
    if (vm.count("config")) {
        std::cout << reader.stringAttribute("config").value_or("") << "\n";
        return 0;
    }
    auto attr = [&](const char* n) { return reader.stringAttribute(n).value_or("?"); };
    std::cout << path << "\n"
              << "  astrid " << attr("astrid_version") << " (git " << attr("git_sha") << "), schema "
              << reader.numberAttribute("schema_version").value_or(0) << "\n"
              << "  run: " << attr("status") << ", " << attr("start_utc") << " -> " << attr("end_utc") << ", "
              << reader.numberAttribute("n_ranks").value_or(0) << " rank(s), "
              << reader.numberAttribute("wall_s").value_or(0) << " s\n"
              << "  command: " << attr("command_line") << "\n";

    const auto targets = reader.targets();
    std::map<std::string, int> failedByStage;
    int ok = 0, failed = 0, skipped = 0;
    std::vector<double> walls;
    for (const auto& t : targets) {
        walls.push_back(t.wallS);
        if (t.status == 0) ++ok;
        else if (t.status == 1) ++failed, ++failedByStage[output::getText(t.failStage)];
        else ++skipped;
    }
    std::cout << "  targets: " << targets.size() << " (" << ok << " ok, " << failed << " failed, " << skipped
              << " skipped)\n";
    for (const auto& [stage, n] : failedByStage) std::cout << "    failed in " << stage << ": " << n << "\n";
    if (!walls.empty()) {
        std::sort(walls.begin(), walls.end());
        double sum = 0;
        for (double w : walls) sum += w;
        std::cout << std::fixed << std::setprecision(3) << "  per-target wall time: median " << walls[walls.size() / 2]
                  << " s, max " << walls.back() << " s, sum " << sum << " s\n"
                  << std::defaultfloat;
    }
    const auto issues = reader.catalogIssues();
    if (!issues.empty()) {
        std::map<std::string, int> byReason;
        int rejected = 0;
        for (const auto& i : issues) {
            rejected += i.kind == 0;
            ++byReason[std::string(i.kind == 0 ? "rejected: " : "excluded: ") + output::getText(i.category)];
        }
        std::cout << "  catalog rows not processed: " << issues.size() << " (" << rejected << " rejected, "
                  << issues.size() - static_cast<std::size_t>(rejected) << " excluded)\n";
        for (const auto& [reason, n] : byReason) std::cout << "    " << n << "  " << reason << "\n";
    }
    std::cout << "  tables:\n";
    for (const auto& t : reader.tables()) std::cout << "    /" << t << ": " << reader.rowCount(t) << " rows\n";
    if (const auto training = reader.trainingInfo()) {
        const auto& l = training->layout;
        std::size_t byLabel[3] = {0, 0, 0};
        const auto meta = reader.trainingMeta();
        std::size_t bySplit[3] = {0, 0, 0};
        for (const auto& m : meta)
            if (m.split >= 0 && m.split < 3) ++bySplit[m.split];
        for (const std::int8_t v : reader.trainingLabels())
            if (v >= 0 && v < 3) ++byLabel[v];
        std::cout << "    /training: " << training->count << " triplets " << l.planesAttribute() << " " << l.width << "x"
                  << l.height << " (" << l.orientation << "); real " << byLabel[1] << ", bogus " << byLabel[0]
                  << ", blank sky " << byLabel[2] << "; train " << bySplit[0] << ", validation " << bySplit[1]
                  << ", test " << bySplit[2] << "\n";
    }
    if (vm.count("failures")) {
        std::cout << "failed targets:\n";
        for (const auto& t : targets)
            if (t.status == 1)
                std::cout << "  " << output::getText(t.name) << " [" << output::getText(t.failStage)
                          << "]: " << output::getText(t.failReason) << "\n";
    } else if (failed) {
        std::cout << "  (--failures lists them with reasons)\n";
    }
    return 0;
}

}  // namespace astrid::app
