#pragma once
// The MPI campaign: rank 0 schedules targets dynamically; every rank runs processTarget() on a
// compute thread while its main thread talks MPI and joins collective checkpoints that append the
// buffered results to the one parallel-HDF5 output file.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "astrid/archive/archive.hpp"
#include "astrid/catalog/catalog.hpp"
#include "astrid/output/schema.hpp"
#include "astrid/pipeline/config.hpp"
#include "astrid/runner/mpi_session.hpp"

namespace astrid::runner {

/// Whether rank 0 also processes targets (on its compute thread) besides scheduling.
enum class SchedulerComputes { Auto, Yes, No };

/// What to do with an existing output and its journal (docs/running.md, "Resume").
enum class ResumeMode {
    Auto,     ///< resume an interrupted run with the same configuration; start one when none exists
    Require,  ///< as Auto, but it is an error when there is nothing to resume (`--resume`)
    Fresh,    ///< discard an existing output and journal (`--fresh`)
};

/// Exit status of `astrid run` for a run stopped by SIGTERM/SIGUSR1/SIGINT after its final
/// checkpoint: incomplete, resumable (EX_TEMPFAIL of sysexits.h).
inline constexpr int kExitResumable = 75;

struct RunOptions {
    std::string outputPath;
    std::string configText;    ///< resolved job configuration, stored in the file
    std::string commandLine;
    int checkpointTargets = 64;        ///< checkpoint after this many completed targets...
    double checkpointSeconds = 60.0;   ///< ...or this many seconds, whichever first
    SchedulerComputes schedulerComputes = SchedulerComputes::Auto;  ///< Auto: yes up to 64 ranks
    int prefetch = 2;                  ///< targets a rank holds (running + queued)
    double progressSeconds = 5.0;      ///< rank 0 progress line interval
    /// FFTW wisdom file: read by rank 0 at the start (if it exists), shared with every rank, merged
    /// from all ranks at every checkpoint and written back at the end. Empty: shared, not saved.
    std::string fftWisdomPath;
    /// "key = value" lines of the configuration that shapes results; a resume must match them.
    std::string resultConfig;
    ResumeMode resume = ResumeMode::Auto;
    /// A target whose failure is transient (pipeline::TargetResult::transient) is run again up to
    /// this many times, on another rank when there is one, before it is recorded failed.
    int maxRetries = 2;
    /// The /training layout when the campaign cuts labelled triplets (PipelineConfig::training).
    std::optional<training::TripletLayout> trainingLayout;
};

/// What rank 0 knows at the start; other ranks pass an empty one.
struct CampaignInput {
    std::vector<catalog::Target> targets;
    std::vector<output::CatalogIssueRow> catalogIssues;
};

using ArchiveFactory = std::function<std::unique_ptr<archive::Archive>()>;

struct RunSummary {
    std::int64_t targets = 0, ok = 0, failed = 0, skipped = 0;
    std::int64_t resumed = 0;   ///< targets taken from the journal of an earlier attempt
    std::int64_t retries = 0;   ///< extra attempts of targets with transient failures
    bool interrupted = false;   ///< stopped by a signal: incomplete, resumable
    bool alreadyComplete = false;  ///< the output was complete before this run: nothing done
    int checkpoints = 0;
    double wallS = 0.0;
    std::string outputPath;
    /// H5Pget_mpio_actual_io_mode after each table write on this rank ("chunk_collective", ...).
    std::vector<std::string> ioModes;
};

/// Runs the campaign on every rank of `mpi` (collective). Valid on every rank; the counts are
/// complete on rank 0. Per-target failures are data. Throws ConfigError on every rank when the
/// existing output cannot be resumed (another configuration or target list, no journal); throws
/// other errors for run-level failures (the output or journal cannot be written), which main()
/// turns into MPI_Abort. SIGTERM, SIGUSR1 and SIGINT on any rank stop the run gracefully: running
/// targets are abandoned, a final checkpoint is taken and `interrupted` is set.
RunSummary runCampaign(const MpiSession& mpi, const CampaignInput& input, const ArchiveFactory& makeArchive,
                       const pipeline::PipelineConfig& config, const RunOptions& options);

/// Catalog rejections/exclusions as /catalog_issues rows.
std::vector<output::CatalogIssueRow> catalogIssueRows(const catalog::CatalogReport& report);

}  // namespace astrid::runner
