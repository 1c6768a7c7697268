// The MPI campaign at 1, 2 and 4 ranks (ctest runs this binary through mpiexec): every target
// lands exactly once in the one HDF5 file, failures are rows with reasons, and the table writes
// were collective (H5Pget_mpio_actual_io_mode on every rank).
#include <fftw3.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <set>

#include "astrid/core/error.hpp"
#include "astrid/diff/zogy.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/output/reader.hpp"
#include "astrid/runner/runner.hpp"
#include "astrid/wcs/sky_wcs.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
runner::MpiSession* g_mpi = nullptr;
constexpr double kDisc = 59000.0;

int rank() { return g_mpi->rank(); }

/// Rank 0 writes a tiny archive: `n` targets, each one reference and two science epochs; targets
/// whose index is in `truncated` get a truncated science file.
fs::path makeArchive(const std::string& name, int n, const std::set<int>& truncated, std::vector<catalog::Target>& targets) {
    const fs::path root = fs::temp_directory_path() / ("astrid_mpi_" + name + "_" + std::to_string(g_mpi->size()));
    if (rank() == 0) {
        fs::remove_all(root);
        fs::create_directories(root / "archive");
    }
    for (int i = 0; i < n; ++i) {
        catalog::Target t;
        t.id = 100 + i;
        t.name = "2021t" + std::to_string(i);
        t.raDeg = 10.0 + i;
        t.decDeg = -20.0 + 0.5 * i;
        t.discMjd = kDisc;
        targets.push_back(t);
        if (rank() != 0) continue;
        fs::create_directories(root / "archive" / t.name);
        const double s = 1.0 / 3600.0;
        const auto w = wcs::SkyWcs::tan({t.raDeg, t.decDeg}, {15.5, 15.5}, {-s, 0, 0, s});
        for (int e = 0; e < 3; ++e) {
            fits::Header h = w.toHeader();
            h.set("MJD-OBS", e == 0 ? kDisc - 100 : kDisc + 10 * e);
            h.set("EXPTIME", 30.0);
            h.set("AIRMASS", 1.1);
            h.set("SEEING", 1.0);
            h.set("FILTER", "r");
            const fs::path p = root / "archive" / t.name / (t.name + "_e" + std::to_string(e) + ".fits");
            {
                auto f = fits::FitsFile::create(p.string());
                f.writeImage(Image<float>(32, 32, static_cast<float>(i)), h);
            }
            if (e == 2 && truncated.count(i)) fs::resize_file(p, 2880 + 10);
        }
    }
    g_mpi->barrier();
    return root;
}

struct Gathered {
    std::vector<std::string> modes;  // every rank's io modes (rank 0 only)
};

Gathered gatherModes(const runner::RunSummary& s) {
    std::string mine;
    for (const auto& m : s.ioModes) mine += m + ",";
    int len = static_cast<int>(mine.size());
    std::vector<int> lens(static_cast<std::size_t>(g_mpi->size()));
    MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, 0, MPI_COMM_WORLD);
    std::vector<int> displs(lens.size(), 0);
    int total = 0;
    for (std::size_t i = 0; i < lens.size(); ++i) displs[i] = total, total += lens[i];
    std::string all(static_cast<std::size_t>(rank() == 0 ? total : 0), '\0');
    MPI_Gatherv(mine.data(), len, MPI_CHAR, all.data(), lens.data(), displs.data(), MPI_CHAR, 0, MPI_COMM_WORLD);
    Gathered g;
    std::size_t start = 0;
    for (std::size_t i = 0; i < all.size(); ++i)
        if (all[i] == ',') g.modes.push_back(all.substr(start, i - start)), start = i + 1;
    return g;
}

runner::RunSummary run(const fs::path& root, const std::vector<catalog::Target>& targets, runner::RunOptions opt,
                       runner::ArchiveFactory factory = {}) {
    runner::CampaignInput input;
    if (rank() == 0) input.targets = targets;
    const std::string archive = (root / "archive").string();
    opt.outputPath = (root / "run.h5").string();
    opt.configText = "test";
    if (opt.resultConfig.empty()) opt.resultConfig = "difference = false\n";
    opt.progressSeconds = 1e9;
    pipeline::PipelineConfig config;
    config.differenceOutput.enabled = false;  // flat 32 px images: this test is about the runner
    if (!factory) factory = [archive] { return std::make_unique<archive::LocalArchive>(archive); };
    return runner::runCampaign(*g_mpi, input, factory, config, opt);
}

/// A local archive with faults: listing fails (an unreachable archive: transient) on `failRank`,
/// and the `stopAfter`-th listing on rank 0 raises SIGUSR1 as `sbatch --signal` or scancel would.
class FaultyArchive final : public archive::Archive {
public:
    FaultyArchive(std::string root, int failRank, int stopAfter)
        : local_(std::move(root)), failRank_(failRank), stopAfter_(stopAfter) {}
    std::vector<archive::Observation> listObservations(const catalog::Target& t) override {
        if (rank() == failRank_) throw IoError("archive unreachable from rank " + std::to_string(rank()) + " (test)");
        if (rank() == 0 && ++listed_ == stopAfter_) std::raise(SIGUSR1);
        return local_.listObservations(t);
    }
    std::string fetch(const archive::Observation& o) override { return local_.fetch(o); }
    std::string describe() const override { return "faulty:" + local_.describe(); }

private:
    archive::LocalArchive local_;
    int failRank_, stopAfter_;
    int listed_ = 0;
};

std::set<std::int64_t> targetIds(const fs::path& file) {
    std::set<std::int64_t> ids;
    output::RunReader rd(file.string());
    for (const auto& r : rd.targets()) EXPECT_TRUE(ids.insert(r.targetId).second) << "duplicate row " << r.targetId;
    return ids;
}
}  // namespace

TEST(Runner, EveryTargetExactlyOnceWithCollectiveWrites) {
    std::vector<catalog::Target> targets;
    const fs::path root = makeArchive("once", 23, {4, 17}, targets);
    runner::RunOptions opt;
    opt.checkpointTargets = 5;  // several checkpoints, with ranks holding different numbers of rows
    const auto s = run(root, targets, opt);
    const auto modes = gatherModes(s);
    EXPECT_GE(s.checkpoints, 3);
    if (rank() != 0) return;
    EXPECT_EQ(s.targets, 23);
    EXPECT_EQ(s.ok, 21);
    EXPECT_EQ(s.failed, 2);
    output::RunReader rd(opt.outputPath.empty() ? (root / "run.h5").string() : opt.outputPath);
    const auto rows = rd.targets();
    ASSERT_EQ(rows.size(), 23u);
    std::set<std::int64_t> ids;
    std::set<int> ranks;
    for (const auto& r : rows) {
        ids.insert(r.targetId);
        ranks.insert(r.rank);
        if (r.targetId == 104 || r.targetId == 117) {
            EXPECT_EQ(r.status, 1);
            EXPECT_EQ(output::getText(r.failStage), "load");
            EXPECT_NE(output::getText(r.failReason).find("_e2.fits"), std::string::npos);
        } else {
            EXPECT_EQ(r.status, 0) << output::getText(r.failReason);
            EXPECT_EQ(r.nEpochs, 2);
        }
    }
    EXPECT_EQ(ids.size(), 23u);
    EXPECT_EQ(*ids.begin(), 100);
    EXPECT_EQ(*ids.rbegin(), 122);
    EXPECT_EQ(rd.observations().size(), 23u * 3u);
    EXPECT_EQ(*rd.numberAttribute("n_ranks"), g_mpi->size());
    EXPECT_EQ(*rd.stringAttribute("status"), "complete");
    // Collective I/O really happened: every table write on every rank reports a collective mode.
    ASSERT_FALSE(modes.modes.empty());
    for (const auto& m : modes.modes) EXPECT_TRUE(m == "chunk_collective" || m == "contiguous_collective") << m;
    if (g_mpi->size() > 1) {
        EXPECT_GT(ranks.size(), 1u) << "work should spread over ranks";
    }
}

TEST(Runner, SchedulerOnlyRankZeroGivesTheSameRows) {
    std::vector<catalog::Target> targets;
    const fs::path root = makeArchive("nocompute", 9, {}, targets);
    runner::RunOptions opt;
    opt.schedulerComputes = g_mpi->size() > 1 ? runner::SchedulerComputes::No : runner::SchedulerComputes::Yes;
    const auto s = run(root, targets, opt);
    if (rank() != 0) return;
    output::RunReader rd((root / "run.h5").string());
    const auto rows = rd.targets();
    ASSERT_EQ(rows.size(), 9u);
    for (const auto& r : rows)
        if (g_mpi->size() > 1) {
            EXPECT_NE(r.rank, 0);
        }
    EXPECT_EQ(s.ok, 9);
}

TEST(Runner, EmptyCampaignStillWritesAValidFile) {
    std::vector<catalog::Target> targets;
    const fs::path root = makeArchive("empty", 0, {}, targets);
    const auto s = run(root, targets, {});
    if (rank() != 0) return;
    EXPECT_EQ(s.targets, 0);
    output::RunReader rd((root / "run.h5").string());
    EXPECT_EQ(rd.rowCount("targets"), 0u);
    EXPECT_EQ(*rd.stringAttribute("status"), "complete");
}

// A transient failure is retried on another rank: every listing on rank 0 fails, so with more
// than one rank every target ends ok on ranks > 0; alone, rank 0 records them failed after the
// retries, with the stage and the reason.
TEST(Runner, TransientFailuresAreRetriedOnAnotherRank) {
    std::vector<catalog::Target> targets;
    const fs::path root = makeArchive("retry", 7, {}, targets);
    const std::string archive = (root / "archive").string();
    runner::RunOptions opt;
    opt.maxRetries = 2;
    opt.schedulerComputes = runner::SchedulerComputes::Yes;
    const auto s = run(root, targets, opt, [archive] { return std::make_unique<FaultyArchive>(archive, 0, -1); });
    if (rank() != 0) return;
    output::RunReader rd((root / "run.h5").string());
    const auto rows = rd.targets();
    ASSERT_EQ(rows.size(), 7u);
    if (g_mpi->size() == 1) {
        EXPECT_EQ(s.failed, 7);
        EXPECT_EQ(s.retries, 14);  // two more attempts each
        for (const auto& r : rows) {
            EXPECT_EQ(output::getText(r.failStage), "archive");
            EXPECT_NE(output::getText(r.failReason).find("unreachable"), std::string::npos);
        }
    } else {
        EXPECT_EQ(s.ok, 7);
        EXPECT_GT(s.retries, 0) << "rank 0 computes, so some targets started there";
        for (const auto& r : rows) EXPECT_NE(r.rank, 0) << "a retry went back to the failing rank";
    }
}

// SIGUSR1 on rank 0 mid-run stops every rank after a final checkpoint (interrupted, resumable); the
// same job then resumes into the same file and ends with every target exactly once. A changed
// configuration is refused on every rank; a complete output is left alone.
TEST(Runner, SignalStopsGracefullyAndTheSameJobResumes) {
    std::vector<catalog::Target> targets;
    const fs::path root = makeArchive("resume", 17, {3}, targets);
    const std::string archive = (root / "archive").string();
    runner::RunOptions opt;
    opt.checkpointTargets = 3;
    opt.schedulerComputes = runner::SchedulerComputes::Yes;
    const auto first = run(root, targets, opt, [archive] { return std::make_unique<FaultyArchive>(archive, -1, 4); });
    EXPECT_TRUE(first.interrupted);
    std::int64_t doneFirst = 0;
    if (rank() == 0) {
        doneFirst = first.ok + first.failed;
        EXPECT_LT(doneFirst, 17);
        output::RunReader rd((root / "run.h5").string());
        EXPECT_EQ(*rd.stringAttribute("status"), "incomplete");
        EXPECT_EQ(rd.rowCount("targets"), static_cast<std::uint64_t>(doneFirst));
    }
    runner::RunOptions changed = opt;
    changed.resultConfig = "difference = true\n";
    EXPECT_THROW(run(root, targets, changed), ConfigError);

    const auto second = run(root, targets, opt);
    EXPECT_FALSE(second.interrupted);
    if (rank() == 0) {
        EXPECT_EQ(second.resumed, doneFirst);
        EXPECT_EQ(second.ok, 16);
        EXPECT_EQ(second.failed, 1);
        const auto ids = targetIds(root / "run.h5");
        EXPECT_EQ(ids.size(), 17u);
        output::RunReader rd((root / "run.h5").string());
        EXPECT_EQ(*rd.stringAttribute("status"), "complete");
        EXPECT_EQ(rd.observations().size(), 17u * 3u);
    }
    const auto third = run(root, targets, opt);
    EXPECT_TRUE(third.alreadyComplete);
    runner::RunOptions require = opt;
    require.resume = runner::ResumeMode::Fresh;
    const auto fresh = run(root, targets, require);
    if (rank() == 0) {
        EXPECT_EQ(fresh.resumed, 0);
        EXPECT_EQ(fresh.ok, 16);
    }
}

namespace {
/// Whether FFTW can plan a w x h r2c transform from wisdom alone (no measuring).
bool planFromWisdom(int w, int h, unsigned flags) {
    bool ok = false;
    diff::withFftPlannerLocked([&] {
        float* in = fftwf_alloc_real(static_cast<std::size_t>(w) * static_cast<std::size_t>(h));
        fftwf_complex* out = fftwf_alloc_complex(static_cast<std::size_t>(h) * static_cast<std::size_t>(w / 2 + 1));
        fftwf_plan p = fftwf_plan_dft_r2c_2d(h, w, in, out, flags);
        ok = p != nullptr;
        if (p) fftwf_destroy_plan(p);
        fftwf_free(in);
        fftwf_free(out);
    });
    return ok;
}
}  // namespace

// Each rank measures a shape of its own; after the run every rank can plan every rank's shape from
// wisdom alone (shared with fftw3-mpi), and the wisdom file holds them all for the next run.
TEST(Runner, FftWisdomIsSharedAcrossRanksAndSaved) {
    std::vector<catalog::Target> targets;
    const fs::path root = makeArchive("wisdom", 3, {}, targets);
    auto shapeOf = [](int r) { return std::pair{48 + 16 * r, 40}; };
    const auto [mw, mh] = shapeOf(rank());
    ASSERT_TRUE(planFromWisdom(mw, mh, FFTW_MEASURE));
    runner::RunOptions opt;
    opt.fftWisdomPath = (root / "astrid.fftw-wisdom").string();
    run(root, targets, opt);
    for (int r = 0; r < g_mpi->size(); ++r) {
        const auto [w, h] = shapeOf(r);
        EXPECT_TRUE(planFromWisdom(w, h, FFTW_MEASURE | FFTW_WISDOM_ONLY)) << "rank " << rank() << " lacks rank " << r << "'s shape";
    }
    if (rank() == 0) {
        ASSERT_TRUE(fs::exists(opt.fftWisdomPath));
        diff::withFftPlannerLocked([] { fftwf_forget_wisdom(); });
        EXPECT_FALSE(planFromWisdom(shapeOf(0).first, shapeOf(0).second, FFTW_MEASURE | FFTW_WISDOM_ONLY));
        ASSERT_TRUE(diff::importFftWisdomFile(opt.fftWisdomPath));
        for (int r = 0; r < g_mpi->size(); ++r) {
            const auto [w, h] = shapeOf(r);
            EXPECT_TRUE(planFromWisdom(w, h, FFTW_MEASURE | FFTW_WISDOM_ONLY)) << "the file lacks rank " << r << "'s shape";
        }
    }
    g_mpi->barrier();
}

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    runner::MpiSession mpi(argc, argv);
    g_mpi = &mpi;
    // Only rank 0 prints results; every rank runs every test (the calls are collective).
    if (mpi.rank() != 0) {
        auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
        delete listeners.Release(listeners.default_result_printer());
    }
    int result = RUN_ALL_TESTS();
    int worst = 0;
    MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return worst;
}
