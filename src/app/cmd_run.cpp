#include <unistd.h>

#include <filesystem>
#include <iostream>
#include <sstream>

#include "app/archive_select.hpp"
#include "app/commands.hpp"
#include "app/config.hpp"
#include "astrid/archive/archive.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/diff/zogy.hpp"
#include "astrid/runner/runner.hpp"

namespace astrid::app {

int cmdRun(int argc, char** argv) {
    runner::MpiSession mpi(argc, argv);
    const bool root = mpi.rank() == 0;
    JobConfig cfg;
    bool dump = false, help = false;
    try {
        cfg = parseJobConfig(argc, argv, &dump, &help);
    } catch (const Error& e) {
        if (root) std::cerr << "astrid run: error: " << e.what() << "\n";
        return 1;
    }
    if (help) return 0;
    if (dump) {
        if (root) std::cout << cfg.run.configText;
        return 0;
    }
    log::configure({log::parseLevel(cfg.logLevel), mpi.rank(), mpi.size(), log::Level::Warn});
    diff::setFftEffort(cfg.fftEffort == "measure" ? diff::FftEffort::Measure : diff::FftEffort::Estimate);
    std::ostringstream cmdline;
    cmdline << "astrid";
    for (int i = 0; i < argc; ++i) cmdline << " " << argv[i];
    cfg.run.commandLine = cmdline.str();

    // Rank 0 reads the catalog and checks the archive; every rank learns whether that worked.
    runner::CampaignInput input;
    std::string problem;
    if (root) {
        try {
            const auto report = catalog::readCatalog(cfg.catalog, parseCatalogFormat(cfg.catalogFormat), cfg.filter);
            input.targets = cfg.slice ? catalog::sliceTargets(report.targets, *cfg.slice) : report.targets;
            input.catalogIssues = runner::catalogIssueRows(report);
            const auto check = makeArchive(cfg);
            // Fail before any work when the output cannot be written (not after hours of it).
            const auto dir = std::filesystem::absolute(cfg.output).parent_path();
            if (!std::filesystem::is_directory(dir) || ::access(dir.c_str(), W_OK) != 0)
                throw ConfigError("the directory of the output file '" + cfg.output +
                                      "' does not exist or is not writable",
                                  "output");
            log::get("astrid.run")->info("{}: {} targets ({} rejected, {} excluded); archive {}; {} rank(s); output {}",
                                         cfg.catalog, report.targets.size(), report.rejected.size(),
                                         report.excluded.size(), check->describe(), mpi.size(), cfg.output);
            if (cfg.slice)
                log::get("astrid.run")->info("slice {}/{}: {} of the {} targets", cfg.slice->index, cfg.slice->count,
                                             input.targets.size(), report.targets.size());
        } catch (const Error& e) {
            problem = e.what();
        }
    }
    problem = mpi.broadcast(problem);
    if (!problem.empty()) {
        if (root) std::cerr << "astrid run: error: " << problem << "\n";
        return 1;
    }

    runner::RunSummary s;
    try {
        s = runner::runCampaign(mpi, input, [&cfg] { return makeArchive(cfg); }, cfg.pipeline, cfg.run);
    } catch (const ConfigError& e) {
        // Every rank refuses together (the output cannot be resumed with this job): nothing to unwind.
        if (root) std::cerr << "astrid run: error: " << e.what() << "\n";
        return 1;
    } catch (const Error& e) {
        // Ranks may be inside a collective call we cannot unwind: end them all.
        std::cerr << "astrid run (rank " << mpi.rank() << "): fatal: " << e.what() << "\n";
        mpi.abort(1);
    }
    if (root) {
        if (s.alreadyComplete)
            std::cout << "astrid run: " << s.outputPath << " is complete already (" << s.ok << " ok, " << s.failed
                      << " failed, " << s.skipped << " skipped): nothing to do; --fresh starts it again\n";
        else
            std::cout << "astrid run: " << s.targets << " targets: " << s.ok << " ok, " << s.failed << " failed, "
                      << s.skipped << " skipped"
                      << (s.resumed ? " (" + std::to_string(s.resumed) + " from the earlier attempt)" : std::string())
                      << (s.retries ? ", " + std::to_string(s.retries) + " retries" : std::string()) << " in "
                      << s.wallS << " s on " << mpi.size() << " rank(s)\n";
        if (s.interrupted)
            std::cout << "astrid run: interrupted by a signal after a final checkpoint: "
                      << (s.targets - s.ok - s.failed - s.skipped)
                      << " targets left; run the same job again to resume (exit status "
                      << runner::kExitResumable << ")\n";
        std::cout << "output: " << s.outputPath << "\n"
                  << "summary: astrid inspect " << s.outputPath << (s.failed ? " --failures" : "") << "\n";
    }
    if (s.interrupted) return runner::kExitResumable;
    return s.failed > 0 ? 2 : 0;
}

}  // namespace astrid::app
