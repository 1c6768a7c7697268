// astrid query: look every catalog target up in MAST (and IRSA for ZTF), pair references with
// science epochs, and write the manifest that `astrid stage` downloads and `astrid run` reads.
#include <iostream>
#include <map>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include "app/commands.hpp"
#include "app/config.hpp"
#include "astrid/archive/irsa.hpp"
#include "astrid/archive/manifest.hpp"
#include "astrid/archive/mast.hpp"
#include "astrid/catalog/catalog.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/core/text.hpp"
#include "astrid/core/time.hpp"

namespace astrid::app {
namespace po = boost::program_options;

namespace {
std::vector<std::string> commaList(const std::string& s) {
    std::vector<std::string> out;
    for (auto t : text::split(s, ','))
        if (!text::trim(t).empty()) out.emplace_back(text::trim(t));
    return out;
}
}  // namespace

int cmdQuery(int argc, char** argv) {
    const archive::QueryConfig d;
    po::options_description opts("astrid query --catalog FILE --out manifest.json [options]");
    opts.add_options()
        ("catalog", po::value<std::string>(), "target catalog (SAI sncat layout or CSV)")
        ("catalog-format", po::value<std::string>()->default_value("auto"), "auto | sai | csv")
        ("min-year", po::value<int>(), "keep targets discovered in this year or later")
        ("limit", po::value<long long>(), "keep the first N targets")
        ("types", po::value<std::string>(), "comma-separated type prefixes to keep")
        ("missions", po::value<std::string>()->default_value(""), "comma-separated obs_collection values (HST,JWST,TESS,PS1,GALEX,SWIFT,...; ZTF is IRSA's); empty: all")
        ("archives", po::value<std::string>()->default_value("auto"), "mast, irsa or mast,irsa; auto: from --missions (IRSA only for ZTF)")
        ("days-before", po::value<double>()->default_value(d.daysBefore), "reference window starts this many days before discovery")
        ("ref-margin-days", po::value<double>()->default_value(d.refMarginDays), "reference window ends this many days before discovery")
        ("days-after", po::value<double>()->default_value(d.daysAfter), "science window ends this many days after discovery")
        ("radius-deg", po::value<double>()->default_value(d.radiusDeg), "search cone radius (degrees)")
        ("min-overlap", po::value<double>()->default_value(d.minOverlap, fmt::format("{}", d.minOverlap)), "minimum fraction of a science footprint the reference covers")
        ("max-reference", po::value<int>()->default_value(d.maxReference), "references per target")
        ("max-science", po::value<int>()->default_value(d.maxScience), "science epochs per target")
        ("require-both", po::value<bool>()->default_value(d.requireBoth), "a target needs a reference and a science epoch")
        ("filter", po::value<std::string>()->default_value(""), "only this filter")
        ("calib-levels", po::value<std::string>()->default_value("2,3"), "accepted calib_level values")
        ("product-types", po::value<std::string>()->default_value("SCIENCE"), "accepted productType values")
        ("max-product-mb", po::value<double>()->default_value(4096), "largest product to download (MB)")
        ("mast-url", po::value<std::string>()->default_value("https://mast.stsci.edu"), "MAST base URL (a mirror, or a test server)")
        ("irsa-url", po::value<std::string>()->default_value("https://irsa.ipac.caltech.edu"), "IRSA base URL")
        ("http-attempts", po::value<int>()->default_value(6), "attempts per request")
        ("http-timeout", po::value<double>()->default_value(300), "seconds per API request")
        ("out", po::value<std::string>(), "the manifest to write (JSON)")
        ("log-level", po::value<std::string>()->default_value("info"), "trace | debug | info | warn | error | off")
        ("help,h", "this help");
    po::variables_map vm;
    try {
        po::store(po::command_line_parser(argc, argv).options(opts).run(), vm);
    } catch (const po::unknown_option& e) {
        throw ConfigError("unknown option", e.get_option_name());
    } catch (const po::error& e) {
        throw ConfigError(e.what());
    }
    if (vm.count("help")) {
        std::cout << opts << "\n";
        return 0;
    }
    if (!vm.count("catalog")) throw ConfigError("no catalog given", "catalog");
    if (!vm.count("out")) throw ConfigError("no manifest file given", "out");
    log::configure({log::parseLevel(vm["log-level"].as<std::string>(), "log-level"), 0, 1, log::Level::Warn});
    auto logger = log::get("astrid.query");

    catalog::CatalogFilter filter;
    if (vm.count("min-year")) filter.minYear = vm["min-year"].as<int>();
    if (vm.count("limit")) filter.limit = static_cast<std::size_t>(vm["limit"].as<long long>());
    if (vm.count("types")) filter.types = commaList(vm["types"].as<std::string>());
    archive::QueryConfig q;
    q.missions = commaList(vm["missions"].as<std::string>());
    q.daysBefore = vm["days-before"].as<double>();
    q.refMarginDays = vm["ref-margin-days"].as<double>();
    q.daysAfter = vm["days-after"].as<double>();
    q.radiusDeg = vm["radius-deg"].as<double>();
    q.minOverlap = vm["min-overlap"].as<double>();
    q.maxReference = vm["max-reference"].as<int>();
    q.maxScience = vm["max-science"].as<int>();
    q.requireBoth = vm["require-both"].as<bool>();
    q.filter = vm["filter"].as<std::string>();
    q.calibLevels.clear();
    for (const auto& s : commaList(vm["calib-levels"].as<std::string>())) {
        try {
            q.calibLevels.push_back(std::stoi(s));
        } catch (const std::exception&) {
            throw ConfigError("'" + s + "' is not an integer", "calib-levels");
        }
    }
    q.productTypes = commaList(vm["product-types"].as<std::string>());
    q.maxProductBytes = static_cast<std::int64_t>(vm["max-product-mb"].as<double>() * 1e6);
    if (!(q.daysBefore > 0)) throw ConfigError("must be > 0", "days-before");
    if (!(q.daysAfter > 0)) throw ConfigError("must be > 0", "days-after");
    if (!(q.radiusDeg > 0)) throw ConfigError("must be > 0", "radius-deg");
    if (q.minOverlap < 0 || q.minOverlap > 1) throw ConfigError("must be in [0, 1]", "min-overlap");
    if (q.maxReference < 1) throw ConfigError("must be >= 1", "max-reference");
    if (q.maxScience < 1) throw ConfigError("must be >= 1", "max-science");

    // Which archives: ZTF lives at IRSA; everything else at MAST.
    bool useMast = false, useIrsa = false;
    std::vector<std::string> mastMissions;
    bool ztf = q.missions.empty();
    for (const auto& m : q.missions) {
        if (text::toUpper(m) == "ZTF") {
            ztf = true;
        } else {
            mastMissions.push_back(m);
            useMast = true;
        }
    }
    const std::string archives = vm["archives"].as<std::string>();
    if (archives == "auto") {
        useMast = useMast || q.missions.empty();
        useIrsa = ztf;
    } else {
        for (const auto& a : commaList(archives)) {
            if (a == "mast") useMast = true;
            else if (a == "irsa") useIrsa = true;
            else throw ConfigError("must be auto or a list of mast, irsa; not '" + a + "'", "archives");
        }
    }

    archive::HttpConfig hc;
    hc.maxAttempts = vm["http-attempts"].as<int>();
    hc.requestTimeoutS = vm["http-timeout"].as<double>();
    hc.bearerToken = archive::bearerTokenFromEnvironment();
    hc.tokenHosts = {archive::urlHost(vm["mast-url"].as<std::string>())};  // MAST's token, never to IRSA
    archive::HttpClient http(hc);
    archive::MastClient mast(http, {vm["mast-url"].as<std::string>()});
    archive::IrsaClient irsa(http, {vm["irsa-url"].as<std::string>()});

    const std::string catalogPath = vm["catalog"].as<std::string>();
    const auto report = catalog::readCatalog(catalogPath, parseCatalogFormat(vm["catalog-format"].as<std::string>()), filter);
    archive::Manifest manifest;
    manifest.createdUtc = utcNowIso();
    for (int i = 0; i < argc; ++i) manifest.command += (i ? " " : "astrid ") + std::string(argv[i]);
    manifest.catalog = catalogPath;
    manifest.mastUrl = useMast ? vm["mast-url"].as<std::string>() : "";
    manifest.irsaUrl = useIrsa ? vm["irsa-url"].as<std::string>() : "";
    manifest.query = q;
    archive::QueryConfig mastQuery = q;
    mastQuery.missions = mastMissions;
    for (std::size_t i = 0; i < report.targets.size(); ++i) {
        const auto& t = report.targets[i];
        archive::TargetPlan plan;
        if (!t.discMjd) {
            plan = archive::pairTarget(t, {}, q);
        } else {
            const double disc = *t.discMjd;
            std::vector<archive::RemoteObservation> found;
            try {
                if (useMast) {
                    auto obs = mast.observations(t.raDeg, t.decDeg, disc - q.daysBefore, disc + q.daysAfter, mastQuery);
                    mast.attachProducts(obs);
                    for (auto& o : obs) found.push_back(std::move(o));
                }
                if (useIrsa)
                    for (auto& o : irsa.ztfImages(t.raDeg, t.decDeg, disc - q.daysBefore, disc + q.daysAfter))
                        found.push_back(std::move(o));
                plan = archive::pairTarget(t, std::move(found), q);
            } catch (const Error& e) {
                // Recorded for this target; the others are still asked (one failing archive call
                // must not cost the campaign), and never replaced by made-up observations.
                plan.target = t;
                plan.status = archive::PlanStatus::Error;
                plan.reason = e.what();
            }
        }
        logger->info("[{}/{}] {}: {}{}{}", i + 1, report.targets.size(), t.name, archive::planStatusName(plan.status),
                     plan.status == archive::PlanStatus::Paired
                         ? fmt::format(" {}/{}/{} ({} observations)", plan.mission, plan.instrument, plan.filter,
                                       plan.observations.size())
                         : std::string(),
                     plan.reason.empty() ? std::string() : ": " + plan.reason);
        manifest.targets.push_back(std::move(plan));
    }
    const std::string out = vm["out"].as<std::string>();
    archive::writeManifest(manifest, out);

    int paired = 0, errors = 0;
    std::map<std::string, int> reasons;
    for (const auto& p : manifest.targets) {
        paired += p.status == archive::PlanStatus::Paired;
        errors += p.status == archive::PlanStatus::Error;
    }
    const auto products = archive::manifestProducts(manifest);
    std::int64_t bytes = 0;
    for (const auto& p : products) bytes += std::max<std::int64_t>(0, p.size);
    std::cout << "astrid query: " << manifest.targets.size() << " targets: " << paired << " paired, "
              << manifest.targets.size() - static_cast<std::size_t>(paired + errors) << " without a usable pair, "
              << errors << " archive errors; " << products.size() << " products, "
              << fmt::format("{:.1f}", static_cast<double>(bytes) / 1e6) << " MB\n"
              << "manifest: " << out << " (reasons per target in it; summary.reasons counts them)\n";
    return errors > 0 ? 2 : 0;
}

}  // namespace astrid::app
