#pragma once
// Writer of the one HDF5 file per run. Serial by default; parallel when the runner passes hooks
// that put MPI-IO on the property lists (output/ itself never calls MPI). In parallel mode every
// method is collective: all ranks call it, in the same order, with the same `total`.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>

#include "astrid/output/schema.hpp"

namespace astrid::output {

/// Hooks the runner uses to make the file parallel. hid_t values travel as int64_t.
struct ParallelHooks {
    std::function<void(std::int64_t fapl)> configureFileAccess;  ///< e.g. H5Pset_fapl_mpio
    std::function<void(std::int64_t dxpl)> configureTransfer;    ///< e.g. H5Pset_dxpl_mpio(COLLECTIVE)
    std::function<void(std::int64_t dxpl)> afterWrite;           ///< e.g. H5Pget_mpio_actual_io_mode
};

/// Root attributes written when the file is created (identical on every rank).
struct RunMetadata {
    std::string configText;   ///< the resolved job configuration, as --dump-config prints it
    std::string commandLine;
    std::string startUtc;
    int nRanks = 1;
    /// When set, the file gets the /training group (triplets, mask, labels, meta) in this layout.
    std::optional<training::TripletLayout> training;
};

/// Root attributes written when the run ends.
struct RunEnd {
    std::string endUtc;
    std::string status;  ///< "complete" or "incomplete"
    std::int64_t targetsOk = 0, targetsFailed = 0, targetsSkipped = 0;
    double wallS = 0.0;
};

class RunFile {
public:
    /// Creates (truncating) `path` with every table empty and the start attributes.
    /// Throws H5Error naming the path when it cannot be created (missing or read-only directory).
    static RunFile create(const std::string& path, const RunMetadata& meta, const ParallelHooks& hooks = {});

    RunFile(RunFile&&) noexcept;
    RunFile& operator=(RunFile&&) noexcept;
    ~RunFile();  ///< closes without throwing

    /// Appends `rows` at [current size + offset, + rows.size()); the table grows by `total` rows.
    /// Serial use: offset = 0, total = rows.size().
    void appendTargets(std::span<const TargetRow> rows, std::uint64_t offset, std::uint64_t total);
    void appendObservations(std::span<const ObservationRow> rows, std::uint64_t offset, std::uint64_t total);
    void appendCatalogIssues(std::span<const CatalogIssueRow> rows, std::uint64_t offset, std::uint64_t total);
    void appendDifferenceRuns(std::span<const DifferenceRunRow> rows, std::uint64_t offset, std::uint64_t total);
    void appendCandidates(std::span<const CandidateRow> rows, std::uint64_t offset, std::uint64_t total);
    void appendForcedPhotometry(std::span<const ForcedPhotometryRow> rows, std::uint64_t offset, std::uint64_t total);
    void appendInjections(std::span<const InjectionRow> rows, std::uint64_t offset, std::uint64_t total);
    /// Appends `batch` to the four /training datasets at [current N + offset, + batch.size()); each
    /// grows by `total` triplets. Same collective contract as the tables (a rank with nothing passes
    /// an empty batch). Throws H5Error when the file has no /training (RunMetadata::training unset)
    /// and DataError when the batch's triplet or plane size is not the file's layout.
    void appendTraining(const TrainingBatch& batch, std::uint64_t offset, std::uint64_t total);
    /// Whether the file has /training, and its layout.
    const std::optional<training::TripletLayout>& trainingLayout() const noexcept;

    /// Writes (replacing) a string attribute on the root, e.g. `merged_from`. Collective in parallel mode.
    void setRootAttribute(const std::string& name, const std::string& value);
    /// Makes everything written so far durable on disk (H5Fflush).
    void flush();
    /// Writes the end attributes and closes; throws H5Error when the close fails.
    void finish(const RunEnd& end);
    const std::string& path() const noexcept;

private:
    struct Impl;
    explicit RunFile(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace astrid::output
