#include "astrid/runner/runner.hpp"

#include <fftw3-mpi.h>
#include <hdf5.h>
#include <mpi.h>

#include <algorithm>
#include <array>
#include <csignal>
#include <cstdlib>
#include <map>
#include <stop_token>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <numeric>
#include <thread>

#include <nlohmann/json.hpp>

#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/core/time.hpp"
#include "astrid/diff/zogy.hpp"
#include "astrid/output/journal.hpp"
#include "astrid/output/run_file.hpp"
#include "astrid/pipeline/pipeline.hpp"
#include "astrid/report/completeness.hpp"
#include "mpi_check.hpp"

namespace astrid::runner {
namespace {
using Clock = std::chrono::steady_clock;
using pipeline::TargetResult;
using pipeline::TargetStatus;

/// Message tags of the scheduler protocol (docs/architecture.md).
enum class Tag : int {
    Ready = 1,       ///< worker -> 0: int count of targets wanted (rank 0 answers when it has work)
    Work = 2,        ///< 0 -> worker: int[2k] (target index, attempt) pairs
    Stop = 3,        ///< worker -> 0: int signal number; 0 -> worker: empty (abandon, await the final checkpoint)
    Done = 4,        ///< worker -> 0: int[3k] (target index, attempt, code) triples
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
// Graceful stop: SIGTERM (scancel, the end of a time limit), SIGUSR1 (`sbatch --signal=USR1@T`)
// and SIGINT set a flag the main thread polls; nothing else happens in the handler.
volatile std::sig_atomic_t g_stopSignal = 0;
extern "C" void onStopSignal(int signo) { g_stopSignal = signo; }

class StopSignals {
public:
    StopSignals() {
        g_stopSignal = 0;
        struct sigaction sa {};
        sa.sa_handler = onStopSignal;
        sigemptyset(&sa.sa_mask);
        sa.sa_flags = SA_RESTART;
        for (std::size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &sa, &old_[i]);
    }
    ~StopSignals() {
        for (std::size_t i = 0; i < kSignals.size(); ++i) sigaction(kSignals[i], &old_[i], nullptr);
    }
    StopSignals(const StopSignals&) = delete;
    StopSignals& operator=(const StopSignals&) = delete;
    static bool requested() { return g_stopSignal != 0; }
    static int signal() { return g_stopSignal; }

private:
    static constexpr std::array<int, 3> kSignals = {SIGTERM, SIGUSR1, SIGINT};
    std::array<struct sigaction, 3> old_{};
};

/// Fault injection for the kill tests (docs/testing.md): ASTRID_CRASH_AT="point:n[@rank]" makes
/// the process SIGKILL itself the n-th time it passes `point` (target: a result taken from the
/// compute thread; journal: after this rank's record is durable, before the commit; commit: after
/// the commit, before the HDF5 append; hdf5: between two table appends), on every rank or only
/// `rank`. Unset in normal runs: one getenv at the start.
class CrashPoints {
public:
    explicit CrashPoints(int rank) {
        const char* spec = std::getenv("ASTRID_CRASH_AT");
        if (!spec || !*spec) return;
        std::string s(spec);
        if (auto at = s.find('@'); at != std::string::npos) {
            if (std::stoi(s.substr(at + 1)) != rank) return;
            s = s.substr(0, at);
        }
        const auto colon = s.find(':');
        point_ = s.substr(0, colon);
        remaining_ = colon == std::string::npos ? 1 : std::stoi(s.substr(colon + 1));
    }
    void pass(std::string_view point) {
        if (point_.empty() || point != point_) return;
        if (--remaining_ <= 0) ::raise(SIGKILL);
    }

private:
    std::string point_;
    int remaining_ = 0;
};

/// Codes in Done messages besides TargetStatus (0 ok, 1 failed, 2 skipped).
constexpr int kAbandoned = -1;  ///< stopped by a signal; nothing recorded
constexpr int kRetry = -2;      ///< transient failure; rank 0 schedules another attempt

/// A target handed to a rank: its index and which attempt this is (0 = first).
struct Assignment {
    int index = -1;
    int attempt = 0;
};

/// What a compute thread hands back: a result, or an abandoned target.
struct Outcome {
    Assignment job;
    bool abandoned = false;
    TargetResult result;
};

// ---------------------------------------------------------------------------------------------
/// The compute thread of a rank: runs processTarget() on queued targets. It never calls MPI or
/// HDF5 (neither is thread-safe here); the main thread collects its results.
class ComputeThread {
public:
    ComputeThread(const std::vector<catalog::Target>& targets, const ArchiveFactory& makeArchive,
                  const pipeline::PipelineConfig& config, int rank)
        : targets_(targets), archive_(makeArchive()), config_(config), rank_(rank), thread_([this] { loop(); }) {}
    ~ComputeThread() { shutdown(); }

    void push(const std::vector<Assignment>& jobs) {
        {
            std::lock_guard lock(m_);
            for (const auto& j : jobs) {
                if (cancelled_) done_.push_back({j, true, {}});
                else queue_.push_back(j);
            }
        }
        cv_.notify_one();
    }
    /// Abandons the queued targets and asks the running one to stop at its next check; every
    /// target pushed afterwards is abandoned at once.
    void cancel() {
        {
            std::lock_guard lock(m_);
            cancelled_ = true;
            for (const auto& j : queue_) done_.push_back({j, true, {}});
            queue_.clear();
        }
        stop_.request_stop();
    }
    /// Targets queued or running.
    std::size_t load() {
        std::lock_guard lock(m_);
        return queue_.size() + (busy_ ? 1 : 0);
    }
    std::vector<Outcome> takeDone() {
        std::lock_guard lock(m_);
        return std::exchange(done_, {});
    }
    void shutdown() {
        {
            std::lock_guard lock(m_);
            quit_ = true;
        }
        stop_.request_stop();
        cv_.notify_one();
        if (thread_.joinable()) thread_.join();
    }

private:
    void loop() {
        for (;;) {
            Assignment job;
            {
                std::unique_lock lock(m_);
                cv_.wait(lock, [&] { return quit_ || !queue_.empty(); });
                if (quit_) return;
                job = queue_.front();
                queue_.pop_front();
                busy_ = true;
            }
            Outcome out{job, false, {}};
            const auto& target = targets_[static_cast<std::size_t>(job.index)];
            try {
                out.result = pipeline::processTarget(target, *archive_, config_, stop_.get_token());
            } catch (const pipeline::Cancelled&) {
                out.abandoned = true;
            } catch (const std::exception& e) {  // processTarget reports failures as data; be safe
                out.result.target = target;
                out.result.status = TargetStatus::Failed;
                out.result.failStage = pipeline::Stage::Internal;
                out.result.failReason = e.what();
                out.result.transient = true;
            }
            out.result.rank = rank_;
            {
                std::lock_guard lock(m_);
                done_.push_back(std::move(out));
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
    std::deque<Assignment> queue_;
    std::vector<Outcome> done_;
    std::stop_source stop_;
    bool busy_ = false;
    bool cancelled_ = false;
    bool quit_ = false;
    std::thread thread_;  // last: starts after everything it uses exists
};

/// A finished target's code for the Done message, deciding retries: a transient failure with
/// attempts left is not kept (rank 0 schedules it again).
int settle(Outcome& o, int maxRetries, output::RowBatch& held) {
    if (o.abandoned) return kAbandoned;
    if (o.result.status == TargetStatus::Failed && o.result.transient && o.job.attempt < maxRetries) {
        log::get("astrid.runner")->warn("{}: attempt {} failed ({}: {}); retrying", o.result.target.name,
                                        o.job.attempt + 1, pipeline::stageName(o.result.failStage),
                                        o.result.failReason);
        return kRetry;
    }
    held.add(o.job.index, o.result);
    return static_cast<int>(o.result.status);
}

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

/// True on every rank when `failed` is true on any.
bool anyRank(const MpiSession& mpi, bool failed) {
    int mine = failed ? 1 : 0, any = 0;
    mpiCheck(MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, commOf(mpi)), "MPI_Allreduce");
    return any != 0;
}

/// The journal (durable) and the HDF5 file (what users read) of a run, written together at
/// every checkpoint by all ranks. The order makes a SIGKILL at any moment safe: every rank's
/// record is fsync'ed, then rank 0 commits their lengths, then the HDF5 tables are appended and
/// flushed. A resume trusts only the commit and rebuilds the HDF5 file from the journal.
class Writer {
public:
    Writer(const MpiSession& mpi, const RunOptions& options, RunSummary& summary, output::Journal* journal,
           int generation, CrashPoints& crash)
        : mpi_(mpi), summary_(summary), journal_(journal), generation_(generation), crash_(crash) {
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
        std::string problem;
        try {
            log_ = std::make_unique<output::JournalLog>(
                output::Journal::directoryFor(options.outputPath) / output::Journal::logName(generation, mpi.rank()));
        } catch (const Error& e) {
            problem = e.what();
        }
        if (anyRank(mpi, !problem.empty())) throw IoError(failureMessage(problem, "opening the journal"));
    }

    /// Collective: makes every rank's held rows durable in the journal, commits, then appends them
    /// to the HDF5 tables and flushes. `targetsDone` (rank 0) counts finished targets in the journal.
    void checkpoint(output::RowBatch& held, std::int64_t targetsDone) {
        std::string problem;
        std::uint64_t length = 0;
        try {
            length = log_->append(held);
        } catch (const Error& e) {
            problem = e.what();
        }
        if (anyRank(mpi_, !problem.empty())) throw IoError(failureMessage(problem, "writing the journal"));
        crash_.pass("journal");
        std::vector<unsigned long long> lengths(static_cast<std::size_t>(mpi_.size()));
        unsigned long long mine = length;
        mpiCheck(MPI_Gather(&mine, 1, MPI_UNSIGNED_LONG_LONG, lengths.data(), 1, MPI_UNSIGNED_LONG_LONG, 0,
                            commOf(mpi_)),
                 "MPI_Gather");
        if (mpi_.rank() == 0) {
            try {
                std::map<std::string, std::uint64_t> logs;
                for (int r = 0; r < mpi_.size(); ++r)
                    logs[output::Journal::logName(generation_, r)] = lengths[static_cast<std::size_t>(r)];
                journal_->commitCheckpoint(generation_, logs, targetsDone, false);
            } catch (const Error& e) {
                problem = e.what();
            }
        }
        if (anyRank(mpi_, !problem.empty())) throw IoError(failureMessage(problem, "committing the checkpoint"));
        crash_.pass("commit");
        appendRows(held);
        held.clear();
        ++summary_.checkpoints;
        shareFftWisdom(mpi_, true);
    }

    /// Collective: appends rows (no journal), e.g. those a resume recovered from the journal.
    /// An HDF5 failure here (a full disk) may leave the other ranks inside a collective call, so
    /// unwinding (whose destructors close the file collectively) would hang: the run aborts at once.
    /// The journal already holds these rows, so nothing committed is lost.
    void appendRows(const output::RowBatch& rows) {
        try {
            appendTables(rows);
        } catch (const Error& e) {
            abortRun(e.what());
        }
    }

    void appendTables(const output::RowBatch& rows) {
        auto [tOff, tTot] = offsets(rows.targets.size());
        file_->appendTargets(rows.targets, tOff, tTot);
        crash_.pass("hdf5");
        auto [oOff, oTot] = offsets(rows.observations.size());
        file_->appendObservations(rows.observations, oOff, oTot);
        auto [dOff, dTot] = offsets(rows.differenceRuns.size());
        file_->appendDifferenceRuns(rows.differenceRuns, dOff, dTot);
        auto [cOff, cTot] = offsets(rows.candidates.size());
        file_->appendCandidates(rows.candidates, cOff, cTot);
        auto [fOff, fTot] = offsets(rows.forcedPhotometry.size());
        file_->appendForcedPhotometry(rows.forcedPhotometry, fOff, fTot);
        auto [iOff, iTot] = offsets(rows.injections.size());
        file_->appendInjections(rows.injections, iOff, iTot);
        file_->flush();
    }

    void writeCatalogIssues(const std::vector<output::CatalogIssueRow>& rows) {
        auto [off, tot] = offsets(rows.size());
        file_->appendCatalogIssues(rows, off, tot);
    }

    /// Closes the HDF5 file with its end attributes; rank 0 then marks the journal complete (a
    /// run that finished every target) or leaves it resumable.
    void finish(const output::RunEnd& end, std::int64_t targetsDone, bool complete) {
        try {
            file_->finish(end);
        } catch (const Error& e) {
            abortRun(e.what());
        }
        // Completeness from the injected fakes: /completeness and a PNG beside the output, written
        // by rank 0 into the closed file before the journal says complete (a kill in between only
        // means the resume writes them again). Derived data: a failure is a warning.
        if (mpi_.rank() == 0 && complete) {
            const std::string png = std::filesystem::path(file_->path()).replace_extension(".completeness.png").string();
            try {
                const auto s = report::writeCompletenessReport(file_->path(), png);
                if (s.injected > 0)
                    log::get("astrid.runner")
                        ->info("completeness: {} of {} fakes recovered; {:.1f}% at S/N >= 8; 50% at S/N {:.1f}; figure {}",
                               s.recovered, s.injected, 100.0 * s.efficiencyAtSnr8, s.snr50, png);
            } catch (const std::exception& e) {
                log::get("astrid.runner")->warn("completeness report not written: {}", e.what());
            }
        }
        std::string problem;
        if (mpi_.rank() == 0 && complete) {
            try {
                journal_->commitCheckpoint(-1, {}, targetsDone, true);
            } catch (const Error& e) {
                problem = e.what();
            }
        }
        if (anyRank(mpi_, !problem.empty())) throw IoError(failureMessage(problem, "marking the journal complete"));
    }

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

    [[noreturn]] void abortRun(const std::string& what) const {
        // HDF5's error stack does not carry errno: say how much room is left, the usual cause.
        std::error_code ec;
        const auto dir = std::filesystem::absolute(file_->path()).parent_path();
        const auto space = std::filesystem::space(dir, ec);
        std::cerr << "astrid run (rank " << mpi_.rank() << "): fatal: " << what;
        if (!ec) std::cerr << " (" << dir.string() << " has " << space.available / 1024 << " kB free)";
        std::cerr
                  << "\neverything up to the last committed checkpoint is safe in the journal: fix the cause and "
                     "run the same job again to resume\n"
                  << std::flush;
        mpi_.abort(1);
    }

    /// Every rank throws the same error; the failing ranks' own messages name the file.
    std::string failureMessage(const std::string& mine, const char* what) const {
        if (!mine.empty()) log::get("astrid.runner")->error("rank {}: {}", mpi_.rank(), mine);
        return std::string(what) + " failed" + (mine.empty() ? " on another rank" : ": " + mine) +
               "; everything up to the last committed checkpoint is safe: fix the cause and run the same job "
               "again to resume";
    }

    const MpiSession& mpi_;
    RunSummary& summary_;
    output::Journal* journal_;  // rank 0 only
    int generation_;
    CrashPoints& crash_;
    std::unique_ptr<output::RunFile> file_;
    std::unique_ptr<output::JournalLog> log_;
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

std::vector<int> encodeJobs(const std::vector<Assignment>& jobs) {
    std::vector<int> out;
    for (const auto& j : jobs) out.insert(out.end(), {j.index, j.attempt});
    return out;
}

std::vector<Assignment> decodeJobs(const std::vector<int>& msg) {
    std::vector<Assignment> out;
    for (std::size_t i = 0; i + 1 < msg.size(); i += 2) out.push_back({msg[i], msg[i + 1]});
    return out;
}

void idle() { std::this_thread::sleep_for(std::chrono::microseconds(500)); }

// ---------------------------------------------------------------------------------------------
/// Rank 0's bookkeeping of which target goes where: the pending targets in catalog order, the
/// retries (each avoiding the rank it failed on while another rank can take it), and requests it
/// could not serve yet.
class Dispatcher {
public:
    Dispatcher(std::vector<int> pending, int computingRanks)
        : pending_(pending.begin(), pending.end()), computingRanks_(computingRanks) {}

    /// Up to `want` assignments for `rank`.
    std::vector<Assignment> take(int rank, int want) {
        std::vector<Assignment> out;
        while (static_cast<int>(out.size()) < want) {
            auto it = std::find_if(retries_.begin(), retries_.end(),
                                   [&](const Retry& r) { return r.avoidRank != rank || computingRanks_ <= 1; });
            if (it != retries_.end()) {
                out.push_back(it->job);
                retries_.erase(it);
            } else if (!pending_.empty()) {
                out.push_back({pending_.front(), 0});
                pending_.pop_front();
            } else {
                break;
            }
        }
        outstanding_ += static_cast<int>(out.size());
        return out;
    }
    void retry(Assignment job, int failedRank) {
        --outstanding_;
        retries_.push_back({{job.index, job.attempt + 1}, failedRank});
    }
    void settled() { --outstanding_; }
    /// Stops handing out work (a graceful stop): what is not yet assigned stays for a resume.
    void drain() {
        pending_.clear();
        retries_.clear();
    }
    int outstanding() const { return outstanding_; }
    bool exhausted() const { return pending_.empty() && retries_.empty(); }

    std::deque<std::pair<int, int>> parked;  ///< (rank, want) requests waiting for work

private:
    struct Retry {
        Assignment job;
        int avoidRank;
    };
    std::deque<int> pending_;
    std::deque<Retry> retries_;
    int computingRanks_;
    int outstanding_ = 0;
};

/// Rank 0: the scheduler (and, when it computes, a worker on its compute thread).
/// Returns the number of targets finished (this run's and the journal's).
std::int64_t runScheduler(const MpiSession& mpi, const std::vector<catalog::Target>& targets, std::vector<int> pending,
                  std::int64_t alreadyDone, const ArchiveFactory& makeArchive, const pipeline::PipelineConfig& config,
                  const RunOptions& options, Writer& writer, RunSummary& summary, CrashPoints& crash) {
    auto logger = log::get("astrid.runner");
    MPI_Comm comm = commOf(mpi);
    const auto nTargets = static_cast<std::int64_t>(targets.size());
    const bool computes = options.schedulerComputes == SchedulerComputes::Yes ||
                          (options.schedulerComputes == SchedulerComputes::Auto && mpi.size() <= 64) ||
                          mpi.size() == 1;
    std::unique_ptr<ComputeThread> local;
    if (computes) local = std::make_unique<ComputeThread>(targets, makeArchive, config, 0);
    Dispatcher dispatch(std::move(pending), mpi.size() - (computes ? 0 : 1));

    std::int64_t completed = alreadyDone;
    int sinceCheckpoint = 0;
    bool stopping = false;
    output::RowBatch held;
    const auto start = Clock::now();
    auto lastCheckpoint = start, lastProgress = start;

    auto count = [&](int code, int rank, Assignment job) {
        if (code == kAbandoned) {
            dispatch.settled();
            return;
        }
        if (code == kRetry) {
            ++summary.retries;
            dispatch.retry(job, rank);
            return;
        }
        dispatch.settled();
        ++completed;
        ++sinceCheckpoint;
        if (code == static_cast<int>(TargetStatus::Ok)) ++summary.ok;
        else if (code == static_cast<int>(TargetStatus::Failed)) ++summary.failed;
        else ++summary.skipped;
    };
    auto checkpoint = [&](bool final) {
        for (int r = 1; r < mpi.size(); ++r) sendInts(comm, r, Tag::Checkpoint, {final ? 1 : 0});
        writer.checkpoint(held, completed);
        sinceCheckpoint = 0;
        lastCheckpoint = Clock::now();
    };
    auto serveParked = [&] {
        for (std::size_t n = dispatch.parked.size(); n > 0; --n) {
            auto [rank, want] = dispatch.parked.front();
            dispatch.parked.pop_front();
            auto jobs = dispatch.take(rank, want);
            if (jobs.empty()) dispatch.parked.emplace_back(rank, want);
            else sendInts(comm, rank, Tag::Work, encodeJobs(jobs));
        }
    };

    for (;;) {
        bool busy = false;
        int flag = 0;
        MPI_Status st;
        while ((MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &flag, &st), flag)) {
            busy = true;
            auto msg = recvInts(comm, st);
            if (st.MPI_TAG == tag(Tag::Ready)) {
                dispatch.parked.emplace_back(st.MPI_SOURCE, msg.empty() ? 1 : std::max(1, msg[0]));
            } else if (st.MPI_TAG == tag(Tag::Done)) {
                for (std::size_t i = 0; i + 2 < msg.size(); i += 3) count(msg[i + 2], st.MPI_SOURCE, {msg[i], msg[i + 1]});
            } else if (st.MPI_TAG == tag(Tag::Stop) && !StopSignals::requested()) {
                g_stopSignal = msg.empty() ? SIGTERM : msg[0];  // a worker was signalled
            }
        }
        if (!stopping && StopSignals::requested()) {
            stopping = true;
            logger->warn("signal {} received: abandoning running targets, final checkpoint, then exit (resumable)",
                         StopSignals::signal());
            dispatch.drain();
            for (int r = 1; r < mpi.size(); ++r) sendInts(comm, r, Tag::Stop, {});
            if (local) local->cancel();
        }
        if (!stopping) serveParked();
        if (local) {
            while (!stopping && local->load() < static_cast<std::size_t>(options.prefetch)) {
                auto jobs = dispatch.take(0, 1);
                if (jobs.empty()) break;
                local->push(jobs);
                busy = true;
            }
            for (auto& o : local->takeDone()) {
                crash.pass("target");
                count(settle(o, options.maxRetries, held), 0, o.job);
                busy = true;
            }
        }
        const auto now = Clock::now();
        if (std::chrono::duration<double>(now - lastProgress).count() >= options.progressSeconds) {
            const double elapsed = std::chrono::duration<double>(now - start).count();
            const double rate = static_cast<double>(completed - alreadyDone) / std::max(elapsed, 1e-9);
            const double eta = rate > 0 ? static_cast<double>(nTargets - completed) / rate : 0.0;
            logger->info("progress: {}/{} targets ({} ok, {} failed), {:.2f} targets/s, ETA {:.0f} s", completed,
                         nTargets, summary.ok, summary.failed, rate, eta);
            lastProgress = now;
        }
        if (completed == nTargets || (stopping && dispatch.outstanding() == 0) ||
            (dispatch.exhausted() && dispatch.outstanding() == 0)) {
            summary.interrupted = completed < nTargets;
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
    return completed;
}

/// Ranks > 0: ask for work, run it, report completions, join checkpoints.
void runWorker(const MpiSession& mpi, const std::vector<catalog::Target>& targets, const ArchiveFactory& makeArchive,
               const pipeline::PipelineConfig& config, const RunOptions& options, Writer& writer, CrashPoints& crash) {
    MPI_Comm comm = commOf(mpi);
    ComputeThread local(targets, makeArchive, config, mpi.rank());
    output::RowBatch held;
    bool requestOutstanding = false, stopping = false, stopReported = false;
    for (;;) {
        bool busy = false;
        if (StopSignals::requested() && !stopReported) {
            sendInts(comm, 0, Tag::Stop, {StopSignals::signal()});
            stopReported = stopping = true;
            local.cancel();
        }
        auto done = local.takeDone();
        if (!done.empty()) {
            std::vector<int> report;
            for (auto& o : done) {
                crash.pass("target");
                report.insert(report.end(), {o.job.index, o.job.attempt, settle(o, options.maxRetries, held)});
            }
            sendInts(comm, 0, Tag::Done, report);
            busy = true;
        }
        const auto load = static_cast<int>(local.load());
        if (!stopping && !requestOutstanding && load < options.prefetch) {
            sendInts(comm, 0, Tag::Ready, {options.prefetch - load});
            requestOutstanding = true;
        }
        int flag = 0;
        MPI_Status st;
        while ((MPI_Iprobe(0, MPI_ANY_TAG, comm, &flag, &st), flag)) {
            busy = true;
            auto msg = recvInts(comm, st);
            if (st.MPI_TAG == tag(Tag::Work)) {
                local.push(decodeJobs(msg));
                requestOutstanding = false;
            } else if (st.MPI_TAG == tag(Tag::Stop)) {
                stopping = true;
                local.cancel();
            } else if (st.MPI_TAG == tag(Tag::Checkpoint)) {
                writer.checkpoint(held, 0);
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

namespace {
/// Rank 0's reading of an existing output: resume it, report it complete, or refuse.
struct ResumePlan {
    std::string refusal;            ///< non-empty: refuse to run (ConfigError on every rank)
    bool complete = false;          ///< nothing to do
    int generation = 0;             ///< this attempt's log generation
    std::vector<char> done;         ///< per target: already in the journal
    output::RowBatch recovered;     ///< the journal's committed rows
};

ResumePlan planResume(const RunOptions& options, const std::vector<catalog::Target>& targets,
                      std::unique_ptr<output::Journal>& journal) {
    namespace fs = std::filesystem;
    auto logger = log::get("astrid.runner");
    ResumePlan plan;
    plan.done.assign(targets.size(), 0);
    const fs::path dir = output::Journal::directoryFor(options.outputPath);
    output::JournalManifest manifest;
    manifest.resultConfig = options.resultConfig;
    manifest.targetsFingerprint = output::fingerprint(encodeTargets(targets));
    manifest.nTargets = static_cast<std::int64_t>(targets.size());

    const bool haveJournal = options.resume != ResumeMode::Fresh && output::Journal::exists(dir);
    if (!haveJournal) {
        if (options.resume == ResumeMode::Require) {
            plan.refusal = "--resume: there is nothing to resume: no journal " + dir.string() + " beside the output";
            return plan;
        }
        if (options.resume == ResumeMode::Auto && fs::exists(options.outputPath)) {
            plan.refusal = "the output " + options.outputPath +
                           " exists but has no journal, so it cannot be resumed; use --fresh to replace it or "
                           "choose another output";
            return plan;
        }
        journal = std::make_unique<output::Journal>(output::Journal::create(dir, manifest));
        return plan;
    }
    journal = std::make_unique<output::Journal>(output::Journal::open(dir));
    const auto& old = journal->manifest();
    if (old.schemaVersion != output::kSchemaVersion) {
        plan.refusal = "the output " + options.outputPath + " was written with schema version " +
                       std::to_string(old.schemaVersion) + " (this astrid writes " +
                       std::to_string(output::kSchemaVersion) + "): write a new output or use --fresh";
        return plan;
    }
    if (auto diffs = output::configDifferences(old.resultConfig, manifest.resultConfig); !diffs.empty()) {
        plan.refusal = "the output " + options.outputPath +
                       " was started with another configuration, and mixing them in one file is refused: ";
        for (std::size_t i = 0; i < diffs.size(); ++i) plan.refusal += (i ? "; " : "") + diffs[i];
        plan.refusal += ". Write the changed run to a new output (a reprocessing campaign), or use --fresh";
        return plan;
    }
    if (old.targetsFingerprint != manifest.targetsFingerprint) {
        plan.refusal = "the output " + options.outputPath + " was started with another target list (" +
                       std::to_string(old.nTargets) + " targets, now " + std::to_string(manifest.nTargets) +
                       "; has the catalog changed?): write a new output or use --fresh";
        return plan;
    }
    plan.complete = journal->commit().complete && fs::exists(options.outputPath);
    if (plan.complete) return plan;
    plan.recovered = journal->readCommitted();
    for (auto index : plan.recovered.targetIndices) {
        if (index < 0 || static_cast<std::size_t>(index) >= targets.size())
            throw IoError((dir / "commit.json").string() + ": a committed record names target " +
                          std::to_string(index) + " of " + std::to_string(targets.size()));
        plan.done[static_cast<std::size_t>(index)] = 1;
    }
    plan.generation = journal->commit().generation + 1;
    logger->info("resuming {}: {} of {} targets already done (journal {}, {} checkpoint(s))", options.outputPath,
                 plan.recovered.targetIndices.size(), targets.size(), dir.string(), journal->commit().sequence);
    return plan;
}

void countStatuses(const std::vector<output::TargetRow>& rows, RunSummary& summary) {
    for (const auto& row : rows) {
        if (row.status == static_cast<std::int8_t>(TargetStatus::Ok)) ++summary.ok;
        else if (row.status == static_cast<std::int8_t>(TargetStatus::Failed)) ++summary.failed;
        else ++summary.skipped;
    }
}
}  // namespace

RunSummary runCampaign(const MpiSession& mpi, const CampaignInput& input, const ArchiveFactory& makeArchive,
                       const pipeline::PipelineConfig& config, const RunOptions& options) {
    const auto start = Clock::now();
    RunSummary summary;
    summary.outputPath = options.outputPath;
    const auto targets = decodeTargets(mpi.broadcast(mpi.rank() == 0 ? encodeTargets(input.targets) : std::string()));
    summary.targets = static_cast<std::int64_t>(targets.size());
    MPI_Comm comm = commOf(mpi);

    // Rank 0 decides between a new run, a resume and a refusal; every rank learns the decision.
    std::unique_ptr<output::Journal> journal;
    ResumePlan plan;
    std::string problem;
    if (mpi.rank() == 0) {
        try {
            plan = planResume(options, targets, journal);
        } catch (const Error& e) {
            problem = e.what();
        }
    }
    if (!(problem = mpi.broadcast(problem)).empty()) throw IoError(problem);  // consistent on every rank
    if (const auto refusal = mpi.broadcast(plan.refusal); !refusal.empty()) throw ConfigError(refusal, "output");
    int header[2] = {plan.complete ? 1 : 0, plan.generation};
    mpiCheck(MPI_Bcast(header, 2, MPI_INT, 0, comm), "MPI_Bcast(plan)");
    if (header[0]) {
        summary.alreadyComplete = true;
        if (mpi.rank() == 0) {
            // The counts of a complete output come from its journal rows.
            countStatuses(journal->readCommitted().targets, summary);
            log::get("astrid.runner")->info("{} is complete already: nothing to do", options.outputPath);
        }
        return summary;
    }
    const int generation = header[1];

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

    StopSignals signals;
    CrashPoints crash(mpi.rank());
    Writer writer(mpi, options, summary, journal.get(), generation, crash);
    writer.writeCatalogIssues(mpi.rank() == 0 ? input.catalogIssues : std::vector<output::CatalogIssueRow>{});
    // A resume rebuilds the HDF5 file from the journal before new work starts.
    writer.appendRows(plan.recovered);
    std::int64_t targetsDone = 0;
    if (mpi.rank() == 0) {
        summary.resumed = static_cast<std::int64_t>(plan.recovered.targetIndices.size());
        countStatuses(plan.recovered.targets, summary);
        plan.recovered.clear();
        std::vector<int> pending;
        for (std::size_t i = 0; i < targets.size(); ++i)
            if (!plan.done[i]) pending.push_back(static_cast<int>(i));
        targetsDone = runScheduler(mpi, targets, std::move(pending), summary.resumed, makeArchive, config, options,
                                   writer, summary, crash);
    } else {
        runWorker(mpi, targets, makeArchive, config, options, writer, crash);
    }

    // Everyone learns the final counts from rank 0 (they go into the file's end attributes).
    long long counts[6] = {summary.ok, summary.failed, summary.skipped, summary.resumed, summary.retries,
                           summary.interrupted ? 1 : 0};
    mpiCheck(MPI_Bcast(counts, 6, MPI_LONG_LONG, 0, comm), "MPI_Bcast(counts)");
    summary.ok = counts[0];
    summary.failed = counts[1];
    summary.skipped = counts[2];
    summary.resumed = counts[3];
    summary.retries = counts[4];
    summary.interrupted = counts[5] != 0;
    summary.wallS = std::chrono::duration<double>(Clock::now() - start).count();
    double wall = summary.wallS;
    mpiCheck(MPI_Bcast(&wall, 1, MPI_DOUBLE, 0, comm), "MPI_Bcast(wall)");
    output::RunEnd end{mpi.broadcast(utcNowIso()), summary.interrupted ? "incomplete" : "complete",
                       summary.ok, summary.failed, summary.skipped, wall};
    writer.finish(end, targetsDone, !summary.interrupted);
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
        while ((MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &flag, &st), flag)) recvInts(comm, st);
    }
    return summary;
}

}  // namespace astrid::runner
