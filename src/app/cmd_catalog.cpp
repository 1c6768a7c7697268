#include <fstream>
#include <iostream>

#include <boost/program_options.hpp>

#include "app/commands.hpp"
#include "app/config.hpp"
#include "astrid/catalog/catalog.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"

namespace astrid::app {
namespace po = boost::program_options;

int cmdCatalog(int argc, char** argv) {
    po::options_description opts("astrid catalog FILE [options]");
    opts.add_options()("file", po::value<std::string>(), "catalog file (SAI sncat layout or CSV)")(
        "format", po::value<std::string>()->default_value("auto"), "auto | sai | csv")(
        "min-year", po::value<int>(), "keep targets discovered in this year or later")(
        "limit", po::value<long long>(), "keep the first N targets")(
        "types", po::value<std::string>(), "comma-separated type prefixes to keep")(
        "out", po::value<std::string>(), "write the kept targets as CSV (id,name,ra_deg,dec_deg,disc_mjd,type)")(
        "show-rejected", po::value<int>()->default_value(10), "print up to N rejected rows")("help,h", "this help");
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
    catalog::CatalogFilter filter;
    if (vm.count("min-year")) filter.minYear = vm["min-year"].as<int>();
    if (vm.count("limit")) filter.limit = static_cast<std::size_t>(vm["limit"].as<long long>());
    if (vm.count("types")) {
        const std::string types = vm["types"].as<std::string>();  // split() returns views into it
        for (auto t : text::split(types, ','))
            if (!text::trim(t).empty()) filter.types.emplace_back(text::trim(t));
    }
    const auto report = catalog::readCatalog(vm["file"].as<std::string>(),
                                             parseCatalogFormat(vm["format"].as<std::string>()), filter);
    std::cout << report.file << " (" << catalog::formatName(report.format) << "): " << report.dataRows
              << " data rows, " << report.targets.size() << " targets kept, " << report.rejected.size()
              << " rejected, " << report.excluded.size() << " excluded by filters\n";
    if (!report.rejected.empty()) {
        std::cout << "rejected, by reason:\n";
        for (const auto& [reason, n] : report.rejectionCounts()) std::cout << "  " << n << "  " << reason << "\n";
        const int show = vm["show-rejected"].as<int>();
        for (int i = 0; i < show && i < static_cast<int>(report.rejected.size()); ++i) {
            const auto& r = report.rejected[static_cast<std::size_t>(i)];
            std::cout << "  line " << r.line << ": " << r.category << ": " << r.detail << "\n";
        }
    }
    if (!report.excluded.empty()) {
        std::cout << "excluded, by reason:\n";
        for (const auto& [reason, n] : report.exclusionCounts()) std::cout << "  " << n << "  " << reason << "\n";
    }
    if (vm.count("out")) {
        const std::string out = vm["out"].as<std::string>();
        std::ofstream f(out);
        if (!f) throw IoError("cannot write '" + out + "'");
        catalog::writeTargetsCsv(f, report.targets);
        std::cout << "wrote " << report.targets.size() << " targets to " << out << "\n";
    }
    return 0;
}

}  // namespace astrid::app
