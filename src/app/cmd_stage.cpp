// astrid stage: download every product of a manifest into the cache (on a login or data-transfer
// node), with a progress bar on a terminal and progress lines in a batch log. Idempotent.
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <iostream>
#include <map>
#include <mutex>
#include <thread>

#include <boost/program_options.hpp>
#include <fmt/format.h>

#include "app/commands.hpp"
#include "app/config.hpp"
#include "astrid/archive/manifest.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"

namespace astrid::app {
namespace po = boost::program_options;
using Clock = std::chrono::steady_clock;

namespace {
std::string megabytes(double bytes) { return fmt::format("{:.1f} MB", bytes / 1e6); }
std::string duration(double s) {
    if (!(s >= 0) || s > 1e7) return "?";
    if (s < 90) return fmt::format("{:.0f} s", s);
    if (s < 5400) return fmt::format("{:.0f} min", s / 60);
    return fmt::format("{:.1f} h", s / 3600);
}
}  // namespace

int cmdStage(int argc, char** argv) {
    po::options_description opts("astrid stage --manifest manifest.json --cache DIR [options]");
    opts.add_options()
        ("manifest", po::value<std::string>(), "manifest written by astrid query")
        ("cache", po::value<std::string>(), "download cache (shared by the ranks of later runs)")
        ("jobs", po::value<int>()->default_value(4), "concurrent downloads")
        ("max-per-host", po::value<int>()->default_value(4), "concurrent downloads per host, across every process using the cache")
        ("http-attempts", po::value<int>()->default_value(6), "attempts per file")
        ("stall-seconds", po::value<double>()->default_value(60), "abandon (and retry) a transfer that stalls this long")
        ("fsync", po::value<bool>()->default_value(true), "fsync each file before it gets its final name (false: faster, not crash-safe)")
        ("progress", po::value<std::string>()->default_value("auto"), "auto (bar on a terminal, lines otherwise) | bar | lines | none")
        ("progress-seconds", po::value<double>()->default_value(30), "interval of the progress lines")
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
    if (!vm.count("manifest")) throw ConfigError("no manifest given", "manifest");
    if (!vm.count("cache")) throw ConfigError("no cache directory given", "cache");
    const int jobs = vm["jobs"].as<int>();
    if (jobs < 1) throw ConfigError("must be >= 1", "jobs");
    std::string progress = vm["progress"].as<std::string>();
    if (progress == "auto") progress = ::isatty(STDERR_FILENO) ? "bar" : "lines";
    if (progress != "bar" && progress != "lines" && progress != "none")
        throw ConfigError("must be auto, bar, lines or none, not '" + progress + "'", "progress");
    log::configure({log::parseLevel(vm["log-level"].as<std::string>(), "log-level"), 0, 1, log::Level::Warn});
    auto logger = log::get("astrid.stage");

    const std::string manifestPath = vm["manifest"].as<std::string>();
    const auto manifest = archive::readManifest(manifestPath);
    archive::ProductCache cache(vm["cache"].as<std::string>());
    archive::HttpConfig hc;
    hc.maxPerHost = vm["max-per-host"].as<int>();
    hc.maxAttempts = vm["http-attempts"].as<int>();
    hc.stallTimeoutS = vm["stall-seconds"].as<double>();
    hc.slotDirectory = cache.slotDirectory().string();
    hc.syncToDisk = vm["fsync"].as<bool>();
    hc.bearerToken = archive::bearerTokenFromEnvironment();
    if (!manifest.mastUrl.empty()) hc.tokenHosts = {archive::urlHost(manifest.mastUrl)};  // never to IRSA

    // Which targets need which product (for the failure report).
    std::map<std::string, std::vector<std::string>> targetsOf;
    for (const auto& t : manifest.targets)
        if (t.status == archive::PlanStatus::Paired)
            for (const auto& o : t.observations)
                for (const auto& p : o.products) targetsOf[cache.pathFor(p.product).string()].push_back(t.target.name);

    const auto all = archive::manifestProducts(manifest);
    std::vector<archive::Product> todo;
    std::int64_t todoBytes = 0;
    for (const auto& p : all)
        if (!cache.contains(p)) {
            todo.push_back(p);
            todoBytes += std::max<std::int64_t>(0, p.size);
        }
    std::cout << "astrid stage: " << all.size() << " products in " << manifestPath << "; " << all.size() - todo.size()
              << " in the cache already, " << todo.size() << " to download (" << megabytes(static_cast<double>(todoBytes))
              << ") into " << cache.root().string() << "\n"
              << std::flush;

    std::atomic<std::size_t> next{0}, filesDone{0};
    std::atomic<std::int64_t> bytesNow{0};
    std::mutex failMutex, doneMutex;
    std::condition_variable doneCv;
    std::vector<std::pair<archive::Product, std::string>> failures;
    std::atomic<int> resumed{0}, meanwhile{0};
    const auto t0 = Clock::now();
    auto worker = [&] {
        archive::HttpClient http(hc);
        for (std::size_t i; (i = next.fetch_add(1)) < todo.size();) {
            try {
                const auto f = cache.fetch(todo[i], http, [&](std::int64_t n) { bytesNow += n; });
                if (f.download.resumed) ++resumed;
                // Another process (a second stage, a rank fetching on demand) finished it while we waited.
                if (f.outcome == archive::ProductCache::Outcome::Cached) ++meanwhile;
            } catch (const Error& e) {
                std::lock_guard lock(failMutex);
                failures.emplace_back(todo[i], e.what());
                logger->error("{}", e.what());
            }
            {
                std::lock_guard lock(doneMutex);
                ++filesDone;
            }
            doneCv.notify_all();
        }
    };
    std::vector<std::thread> threads;
    for (int j = 0; j < std::min<int>(jobs, static_cast<int>(todo.size())); ++j) threads.emplace_back(worker);

    const double every = progress == "bar" ? 0.25 : vm["progress-seconds"].as<double>();
    auto report = [&](bool final) {
        const double el = std::chrono::duration<double>(Clock::now() - t0).count();
        const double b = static_cast<double>(bytesNow.load());
        const double rate = el > 0 ? b / el : 0;
        const double eta = rate > 0 ? (static_cast<double>(todoBytes) - b) / rate : -1;
        const std::size_t n = filesDone.load();
        if (progress == "bar") {
            const double frac = todoBytes > 0 ? std::min(1.0, b / static_cast<double>(todoBytes))
                                              : (todo.empty() ? 1.0 : static_cast<double>(n) / static_cast<double>(todo.size()));
            const int width = 30, full = static_cast<int>(frac * width);
            std::fprintf(stderr, "\r[%s%s] %zu/%zu files  %s/%s  %s/s  ETA %s   ", std::string(static_cast<std::size_t>(full), '#').c_str(),
                         std::string(static_cast<std::size_t>(width - full), '.').c_str(), n, todo.size(), megabytes(b).c_str(),
                         megabytes(static_cast<double>(todoBytes)).c_str(), megabytes(rate).c_str(),
                         final ? "0 s" : duration(eta).c_str());
            if (final) std::fprintf(stderr, "\n");
        } else if (progress == "lines") {
            std::fprintf(stderr, "astrid stage: %zu/%zu files, %s of %s, %s/s, ETA %s\n", n, todo.size(), megabytes(b).c_str(),
                         megabytes(static_cast<double>(todoBytes)).c_str(), megabytes(rate).c_str(), duration(eta).c_str());
        }
        std::fflush(stderr);
    };
    auto lastReport = Clock::now();
    while (filesDone.load() < todo.size()) {
        {
            std::unique_lock lock(doneMutex);
            doneCv.wait_for(lock, std::chrono::milliseconds(50), [&] { return filesDone.load() >= todo.size(); });
        }
        if (std::chrono::duration<double>(Clock::now() - lastReport).count() >= every) {
            report(false);
            lastReport = Clock::now();
        }
    }
    for (auto& t : threads) t.join();
    if (!todo.empty()) report(true);
    const double el = std::chrono::duration<double>(Clock::now() - t0).count();
    std::cout << "astrid stage: " << todo.size() - failures.size() - static_cast<std::size_t>(meanwhile.load())
              << " downloaded ("
              << megabytes(static_cast<double>(bytesNow.load())) << " in " << fmt::format("{:.1f}", el) << " s"
              << (resumed ? fmt::format(", {} resumed", resumed.load()) : std::string()) << "), "
              << all.size() - todo.size() + static_cast<std::size_t>(meanwhile.load()) << " already in the cache"
              << (meanwhile ? fmt::format(" ({} fetched meanwhile by another process)", meanwhile.load()) : std::string())
              << ", " << failures.size() << " failed\n";
    for (const auto& [p, why] : failures) {
        std::string names;
        for (const auto& n : targetsOf[cache.pathFor(p).string()]) names += (names.empty() ? "" : ", ") + n;
        std::cout << "  failed: " << p.filename << " (targets " << names << "): " << why << "\n";
    }
    return failures.empty() ? 0 : 2;
}

}  // namespace astrid::app
