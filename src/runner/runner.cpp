#include "astrid/runner/runner.hpp"

#include <fftw3-mpi.h>
#include <hdf5.h>
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <numeric>
#include <thread>

#include <nlohmann/json.hpp>

#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/core/time.hpp"
#include "astrid/diff/zogy.hpp"
#include "astrid/output/run_file.hpp"
#include "astrid/pipeline/pipeline.hpp"
#include "mpi_check.hpp"

namespace astrid::runner {
namespace {
using Clock = std::chrono::steady_clock;
using pipeline::TargetResult;
using pipeline::TargetStatus;

/// Message tags of the scheduler protocol (docs/architecture.md).
enum class Tag : int {
    Ready = 1,       ///< worker -> 0: int count of targets wanted
    Work = 2,        ///< 0 -> worker: int[] target indices
    NoMoreWork = 3,  ///< 0 -> worker: empty
    Done = 4,        ///< worker -> 0: int[2k] (target index, status) pairs
    Checkpoint = 5,  ///< 0 -> worker: int final flag (1 = last checkpoint, then leave)
};
int tag(Tag t) { return static_cast<int>(t); }

MPI_Comm commOf(const MpiSession& s) { return *static_cast<MPI_Comm*>(s.comm()); }

// ---------------------------------------------------------------------------------------------
// Targets travel to every rank once, as JSON.
std::string encodeTargets(const std::vector<catalog::Target>& targets) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& t : targets) {
        j.push_back({{"id", t.id}, {"name", t.name}, {"ra", t.raDeg}, {"dec", t.decDeg},
                     {"disc", t.discMjd ? nlohmann::json(*t.discMjd) : nlohmann::json(nullptr)},
                     {"max", t.maxMjd ? nlohmann::json(*t.maxMjd) : nlohmann::json(nullptr)},
                     {"type", t.type}, {"host", t.host}, {"line", t.line}, {"fromMax", t.discDateFromMax}});
    }
    return j.dump();
}

std::vector<catalog::Target> decodeTargets(const std::string& text) {
    std::vector<catalog::Target> out;
    for (const auto& e : nlohmann::json::parse(text)) {
        catalog::Target t;
        t.id = e.at("id");
        t.name = e.at("name");
        t.raDeg = e.at("ra");
        t.decDeg = e.at("dec");
        if (!e.at("disc").is_null()) t.discMjd = e.at("disc").get<double>();
        if (!e.at("max").is_null()) t.maxMjd = e.at("max").get<double>();
        t.type = e.at("type");
        t.host = e.at("host");
        t.line = e.at("line");
        t.discDateFromMax = e.at("fromMax");
        out.push_back(std::move(t));
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
/// The compute thread of a rank: runs processTarget() on queued targets. It never calls MPI or
/// HDF5 (neither is thread-safe here); the main thread collects its results.
class ComputeThread {
public:
    ComputeThread(const std::vector<catalog::Target>& targets, const ArchiveFactory& makeArchive,
                  const pipeline::PipelineConfig& config, int rank)
        : targets_(targets), archive_(makeArchive()), config_(config), rank_(rank), thread_([this] { loop(); }) {}
    ~ComputeThread() { shutdown(); }

    void push(const std::vector<int>& indices) {
        {
            std::lock_guard lock(m_);
            queue_.insert(queue_.end(), indices.begin(), indices.end());
        }
        cv_.notify_one();
    }
    /// Targets queued or running.
    std::size_t load() {
        std::lock_guard lock(m_);
        return queue_.size() + (busy_ ? 1 : 0);
    }
    std::vector<std::pair<int, TargetResult>> takeDone() {
        std::lock_guard lock(m_);
        return std::exchange(done_, {});
    }
    void shutdown() {
        {
            std::lock_guard lock(m_);
            stop_ = true;
        }
        cv_.notify_one();
        if (thread_.joinable()) thread_.join();
    }

private:
    void loop() {
        for (;;) {
            int index = -1;
            {
                std::unique_lock lock(m_);
                cv_.wait(lock, [&] { return stop_ || !queue_.empty(); });
                if (stop_) return;
                index = queue_.front();
                queue_.pop_front();
                busy_ = true;
            }
            TargetResult r;
            try {
                r = pipeline::processTarget(targets_[static_cast<std::size_t>(index)], *archive_, config_);
            } catch (const std::exception& e) {  // processTarget reports failures as data; be safe
                r.target = targets_[static_cast<std::size_t>(index)];
                r.status = TargetStatus::Failed;
                r.failStage = pipeline::Stage::Internal;
                r.failReason = e.what();
            }
            r.rank = rank_;
            {
                std::lock_guard lock(m_);
                done_.emplace_back(index, std::move(r));
                busy_ = false;
            }
        }
    }

    const std::vector<catalog::Target>& targets_;
    std::unique_ptr<archive::Archive> archive_;
    pipeline::PipelineConfig config_;
    int rank_;
    std::mutex m_;
    std::condition_variable cv_;
    std::deque<int> queue_;
    std::vector<std::pair<int, TargetResult>> done_;
    bool busy_ = false;
    bool stop_ = false;
    std::thread thread_;  // last: starts after everything it uses exists
};

// ---------------------------------------------------------------------------------------------
const char* ioModeName(H5D_mpio_actual_io_mode_t mode) {
    switch (mode) {
        case H5D_MPIO_NO_COLLECTIVE: return "no_collective";
        case H5D_MPIO_CHUNK_INDEPENDENT: return "chunk_independent";
        case H5D_MPIO_CHUNK_COLLECTIVE: return "chunk_collective";
        case H5D_MPIO_CHUNK_MIXED: return "chunk_mixed";
        case H5D_MPIO_CONTIGUOUS_COLLECTIVE: return "contiguous_collective";
    }
    return "unknown";
}

/// FFTW wisdom (the planner's measurements) shared across ranks with fftw3-mpi: a shape that one
/// rank has measured is planned instantly by the others. Collective; the planner lock is held
/// because a compute thread may be planning meanwhile. gather: rank 0 merges everyone's wisdom;
/// broadcast: every rank imports rank 0's.
void shareFftWisdom(const MpiSession& mpi, bool gather) {
    MPI_Comm comm = commOf(mpi);
    diff::withFftPlannerLocked([&] {
        if (gather) fftwf_mpi_gather_wisdom(comm);
        fftwf_mpi_broadcast_wisdom(comm);
    });
}

/// Everything a rank's main thread needs for the collective writes.
class Writer {
public:
    Writer(const MpiSession& mpi, const RunOptions& options, RunSummary& summary) : mpi_(mpi), summary_(summary) {
        MPI_Comm comm = commOf(mpi);
        output::ParallelHooks hooks;
        hooks.configureFileAccess = [comm](std::int64_t fapl) {
            if (H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) throw H5Error("H5Pset_fapl_mpio failed");
            H5Pset_all_coll_metadata_ops(fapl, true);
            H5Pset_coll_metadata_write(fapl, true);
        };
        hooks.configureTransfer = [](std::int64_t dxpl) {
            if (H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0) throw H5Error("H5Pset_dxpl_mpio failed");
        };
        hooks.afterWrite = [this](std::int64_t dxpl) {
            H5D_mpio_actual_io_mode_t mode = H5D_MPIO_NO_COLLECTIVE;
            H5Pget_mpio_actual_io_mode(dxpl, &mode);
            summary_.ioModes.emplace_back(ioModeName(mode));
        };
        output::RunMetadata meta;
        meta.configText = options.configText;
        meta.commandLine = options.commandLine;
        meta.startUtc = mpi.broadcast(utcNowIso());  // one start time, rank 0's
        meta.nRanks = mpi.size();
        file_ = std::make_unique<output::RunFile>(output::RunFile::create(options.outputPath, meta, hooks));
    }

    /// Collective: appends every rank's buffered results and flushes.
    void checkpoint(std::vector<TargetResult>& results) {
        std::vector<output::TargetRow> targetRows;
        std::vector<output::ObservationRow> obsRows;
        std::vector<output::DifferenceRunRow> diffRows;
        std::vector<output::CandidateRow> candRows;
        std::vector<output::ForcedPhotometryRow> photRows;
        for (const auto& r : results) {
            targetRows.push_back(output::toTargetRow(r));
            auto o = output::toObservationRows(r);
            obsRows.insert(obsRows.end(), o.begin(), o.end());
            auto d = output::toDifferenceRunRows(r);
            diffRows.insert(diffRows.end(), d.begin(), d.end());
            auto c = output::toCandidateRows(r);
            candRows.insert(candRows.end(), c.begin(), c.end());
            auto f = output::toForcedPhotometryRows(r);
            photRows.insert(photRows.end(), f.begin(), f.end());
        }
        auto [tOff, tTot] = offsets(targetRows.size());
        auto [oOff, oTot] = offsets(obsRows.size());
        auto [dOff, dTot] = offsets(diffRows.size());
        file_->appendTargets(targetRows, tOff, tTot);
        file_->appendObservations(obsRows, oOff, oTot);
        file_->appendDifferenceRuns(diffRows, dOff, dTot);
        auto [cOff, cTot] = offsets(candRows.size());
        auto [fOff, fTot] = offsets(photRows.size());
        file_->appendCandidates(candRows, cOff, cTot);
        file_->appendForcedPhotometry(photRows, fOff, fTot);
        file_->flush();
        results.clear();
        ++summary_.checkpoints;
        shareFftWisdom(mpi_, true);
    }

    void writeCatalogIssues(const std::vector<output::CatalogIssueRow>& rows) {
        auto [off, tot] = offsets(rows.size());
        file_->appendCatalogIssues(rows, off, tot);
    }

    void finish(const output::RunEnd& end) { file_->finish(end); }

private:
    /// This rank's offset and the total over all ranks (MPI_Exscan + MPI_Allreduce).
    std::pair<std::uint64_t, std::uint64_t> offsets(std::size_t count) {
        MPI_Comm comm = commOf(mpi_);
        unsigned long long mine = count, offset = 0, total = 0;
        mpiCheck(MPI_Exscan(&mine, &offset, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm), "MPI_Exscan");
        if (mpi_.rank() == 0) offset = 0;  // MPI_Exscan leaves rank 0's result undefined
        mpiCheck(MPI_Allreduce(&mine, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, comm), "MPI_Allreduce");
        return {offset, total};
    }

    const MpiSession& mpi_;
    RunSummary& summary_;
    std::unique_ptr<output::RunFile> file_;
};

void sendInts(MPI_Comm comm, int dest, Tag t, const std::vector<int>& data) {
    mpiCheck(MPI_Send(data.data(), static_cast<int>(data.size()), MPI_INT, dest, tag(t), comm), "MPI_Send");
}

std::vector<int> recvInts(MPI_Comm comm, const MPI_Status& probed) {
    int n = 0;
    MPI_Get_count(&probed, MPI_INT, &n);
    std::vector<int> data(static_cast<std::size_t>(n));
    mpiCheck(MPI_Recv(data.data(), n, MPI_INT, probed.MPI_SOURCE, probed.MPI_TAG, comm, MPI_STATUS_IGNORE),
             "MPI_Recv");
    return data;
}

void idle() { std::this_thread::sleep_for(std::chrono::microseconds(500)); }

// ---------------------------------------------------------------------------------------------
/// Rank 0: the scheduler (and, when it computes, a worker on its compute thread).
void runScheduler(const MpiSession& mpi, const std::vector<catalog::Target>& targets, const ArchiveFactory& makeArchive,
                  const pipeline::PipelineConfig& config, const RunOptions& options, Writer& writer,
                  RunSummary& summary) {
    auto logger = log::get("astrid.runner");
    MPI_Comm comm = commOf(mpi);
    const int nTargets = static_cast<int>(targets.size());
    const bool computes = options.schedulerComputes == SchedulerComputes::Yes ||
                          (options.schedulerComputes == SchedulerComputes::Auto && mpi.size() <= 64) ||
                          mpi.size() == 1;
    std::unique_ptr<ComputeThread> local;
    if (computes) local = std::make_unique<ComputeThread>(targets, makeArchive, config, 0);

    int next = 0, completed = 0, sinceCheckpoint = 0;
    std::vector<TargetResult> held;
    const auto start = Clock::now();
    auto lastCheckpoint = start, lastProgress = start;

    auto count = [&](int status) {
        ++completed;
        ++sinceCheckpoint;
        if (status == static_cast<int>(TargetStatus::Ok)) ++summary.ok;
        else if (status == static_cast<int>(TargetStatus::Failed)) ++summary.failed;
        else ++summary.skipped;
    };
    auto checkpoint = [&](bool final) {
        for (int r = 1; r < mpi.size(); ++r) sendInts(comm, r, Tag::Checkpoint, {final ? 1 : 0});
        writer.checkpoint(held);
        sinceCheckpoint = 0;
        lastCheckpoint = Clock::now();
    };

    for (;;) {
        bool busy = false;
        int flag = 0;
        MPI_Status st;
        while ((MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &flag, &st), flag)) {
            busy = true;
            auto msg = recvInts(comm, st);
            if (st.MPI_TAG == tag(Tag::Ready)) {
                const int want = msg.empty() ? 1 : std::max(1, msg[0]);
                std::vector<int> ids;
                while (static_cast<int>(ids.size()) < want && next < nTargets) ids.push_back(next++);
                sendInts(comm, st.MPI_SOURCE, ids.empty() ? Tag::NoMoreWork : Tag::Work, ids);
            } else if (st.MPI_TAG == tag(Tag::Done)) {
                for (std::size_t i = 0; i + 1 < msg.size(); i += 2) count(msg[i + 1]);
            }
        }
        if (local) {
            while (next < nTargets && local->load() < static_cast<std::size_t>(options.prefetch)) {
                local->push({next++});
                busy = true;
            }
            for (auto& [index, r] : local->takeDone()) {
                count(static_cast<int>(r.status));
                held.push_back(std::move(r));
                busy = true;
            }
        }
        const auto now = Clock::now();
        if (std::chrono::duration<double>(now - lastProgress).count() >= options.progressSeconds) {
            const double elapsed = std::chrono::duration<double>(now - start).count();
            const double rate = completed / std::max(elapsed, 1e-9);
            const double eta = rate > 0 ? (nTargets - completed) / rate : 0.0;
            logger->info("progress: {}/{} targets ({} ok, {} failed), {:.2f} targets/s, ETA {:.0f} s", completed,
                         nTargets, summary.ok, summary.failed, rate, eta);
            lastProgress = now;
        }
        if (completed == nTargets) {
            checkpoint(true);
            break;
        }
        if (sinceCheckpoint >= options.checkpointTargets ||
            (sinceCheckpoint > 0 &&
             std::chrono::duration<double>(now - lastCheckpoint).count() >= options.checkpointSeconds)) {
            logger->debug("checkpoint after {} targets", sinceCheckpoint);
            checkpoint(false);
        }
        if (!busy) idle();
    }
}

/// Ranks > 0: ask for work, run it, report completions, join checkpoints.
void runWorker(const MpiSession& mpi, const std::vector<catalog::Target>& targets, const ArchiveFactory& makeArchive,
               const pipeline::PipelineConfig& config, const RunOptions& options, Writer& writer) {
    MPI_Comm comm = commOf(mpi);
    ComputeThread local(targets, makeArchive, config, mpi.rank());
    std::vector<TargetResult> held;
    bool requestOutstanding = false, noMoreWork = false;
    for (;;) {
        bool busy = false;
        auto done = local.takeDone();
        if (!done.empty()) {
            std::vector<int> report;
            for (auto& [index, r] : done) {
                report.push_back(index);
                report.push_back(static_cast<int>(r.status));
                held.push_back(std::move(r));
            }
            sendInts(comm, 0, Tag::Done, report);
            busy = true;
        }
        const auto load = static_cast<int>(local.load());
        if (!noMoreWork && !requestOutstanding && load < options.prefetch) {
            sendInts(comm, 0, Tag::Ready, {options.prefetch - load});
            requestOutstanding = true;
        }
        int flag = 0;
        MPI_Status st;
        while ((MPI_Iprobe(0, MPI_ANY_TAG, comm, &flag, &st), flag)) {
            busy = true;
            auto msg = recvInts(comm, st);
            if (st.MPI_TAG == tag(Tag::Work)) {
                local.push(msg);
                requestOutstanding = false;
            } else if (st.MPI_TAG == tag(Tag::NoMoreWork)) {
                noMoreWork = true;
                requestOutstanding = false;
            } else if (st.MPI_TAG == tag(Tag::Checkpoint)) {
                writer.checkpoint(held);
                if (!msg.empty() && msg[0] == 1) return;
            }
        }
        if (!busy) idle();
    }
}
}  // namespace

std::vector<output::CatalogIssueRow> catalogIssueRows(const catalog::CatalogReport& report) {
    std::vector<output::CatalogIssueRow> rows;
    for (const auto& r : report.rejected) {
        output::CatalogIssueRow row{};
        row.line = r.line;
        row.targetId = -1;
        row.kind = 0;
        output::setText(row.category, r.category);
        output::setText(row.detail, r.detail);
        rows.push_back(row);
    }
    for (const auto& e : report.excluded) {
        output::CatalogIssueRow row{};
        row.line = e.line;
        row.targetId = e.targetId;
        row.kind = 1;
        output::setText(row.name, e.name);
        output::setText(row.category, e.reason);
        rows.push_back(row);
    }
    return rows;
}

RunSummary runCampaign(const MpiSession& mpi, const CampaignInput& input, const ArchiveFactory& makeArchive,
                       const pipeline::PipelineConfig& config, const RunOptions& options) {
    const auto start = Clock::now();
    RunSummary summary;
    summary.outputPath = options.outputPath;
    const auto targets = decodeTargets(mpi.broadcast(mpi.rank() == 0 ? encodeTargets(input.targets) : std::string()));
    summary.targets = static_cast<std::int64_t>(targets.size());

    // FFTW wisdom: rank 0 reads the job's wisdom file (a stale or foreign one only costs planning
    // time, so it is a warning), then every rank starts from it.
    if (mpi.rank() == 0 && !options.fftWisdomPath.empty()) {
        try {
            if (diff::importFftWisdomFile(options.fftWisdomPath))
                log::get("astrid.runner")->info("FFTW wisdom read from {}", options.fftWisdomPath);
        } catch (const Error& e) {
            log::get("astrid.runner")->warn("{}; planning from scratch", e.what());
        }
    }
    diff::withFftPlannerLocked([] { fftwf_mpi_init(); });
    shareFftWisdom(mpi, false);

    Writer writer(mpi, options, summary);
    writer.writeCatalogIssues(mpi.rank() == 0 ? input.catalogIssues : std::vector<output::CatalogIssueRow>{});
    if (mpi.rank() == 0)
        runScheduler(mpi, targets, makeArchive, config, options, writer, summary);
    else
        runWorker(mpi, targets, makeArchive, config, options, writer);

    // Everyone learns the final counts from rank 0 (they go into the file's end attributes).
    long long counts[3] = {summary.ok, summary.failed, summary.skipped};
    mpiCheck(MPI_Bcast(counts, 3, MPI_LONG_LONG, 0, commOf(mpi)), "MPI_Bcast(counts)");
    summary.ok = counts[0];
    summary.failed = counts[1];
    summary.skipped = counts[2];
    summary.wallS = std::chrono::duration<double>(Clock::now() - start).count();
    double wall = summary.wallS;
    mpiCheck(MPI_Bcast(&wall, 1, MPI_DOUBLE, 0, commOf(mpi)), "MPI_Bcast(wall)");
    output::RunEnd end{mpi.broadcast(utcNowIso()), "complete", summary.ok, summary.failed, summary.skipped, wall};
    writer.finish(end);
    shareFftWisdom(mpi, true);
    if (mpi.rank() == 0 && !options.fftWisdomPath.empty()) {
        try {
            diff::exportFftWisdomFile(options.fftWisdomPath);
        } catch (const Error& e) {
            log::get("astrid.runner")->warn("{} (the run's results are not affected)", e.what());
        }
    }
    // A worker may have asked for work just before the final checkpoint reached it: after the
    // barrier every such request has arrived, and rank 0 drains it so no message is left pending.
    mpi.barrier();
    if (mpi.rank() == 0) {
        int flag = 0;
        MPI_Status st;
        while ((MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, commOf(mpi), &flag, &st), flag)) recvInts(commOf(mpi), st);
    }
    return summary;
}

}  // namespace astrid::runner
