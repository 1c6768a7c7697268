#pragma once
// The MPI campaign: rank 0 schedules targets dynamically; every rank runs processTarget() on a
// compute thread while its main thread talks MPI and joins collective checkpoints that append the
// buffered results to the one parallel-HDF5 output file.
#include <cstdint>
#include <functional>
#include <memory>
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
};

/// What rank 0 knows at the start; other ranks pass an empty one.
struct CampaignInput {
    std::vector<catalog::Target> targets;
    std::vector<output::CatalogIssueRow> catalogIssues;
};

using ArchiveFactory = std::function<std::unique_ptr<archive::Archive>()>;

struct RunSummary {
    std::int64_t targets = 0, ok = 0, failed = 0, skipped = 0;
    int checkpoints = 0;
    double wallS = 0.0;
    std::string outputPath;
    /// H5Pget_mpio_actual_io_mode after each table write on this rank ("chunk_collective", ...).
    std::vector<std::string> ioModes;
};

/// Runs the campaign on every rank of `mpi` (collective). Valid on every rank; the counts are
/// complete on rank 0. Per-target failures are data; throws only for run-level failures (the
/// output cannot be created or written), which main() turns into MPI_Abort.
RunSummary runCampaign(const MpiSession& mpi, const CampaignInput& input, const ArchiveFactory& makeArchive,
                       const pipeline::PipelineConfig& config, const RunOptions& options);

/// Catalog rejections/exclusions as /catalog_issues rows.
std::vector<output::CatalogIssueRow> catalogIssueRows(const catalog::CatalogReport& report);

}  // namespace astrid::runner
