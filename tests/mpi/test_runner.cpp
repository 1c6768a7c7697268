// The MPI campaign at 1, 2 and 4 ranks (ctest runs this binary through mpiexec): every target
// lands exactly once in the one HDF5 file, failures are rows with reasons, and the table writes
// were collective (H5Pget_mpio_actual_io_mode on every rank).
#include <fftw3.h>
#include <gtest/gtest.h>
#include <mpi.h>

#include <cmath>
#include <filesystem>
#include <set>

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

runner::RunSummary run(const fs::path& root, const std::vector<catalog::Target>& targets, runner::RunOptions opt) {
    runner::CampaignInput input;
    if (rank() == 0) input.targets = targets;
    const std::string archive = (root / "archive").string();
    opt.outputPath = (root / "run.h5").string();
    opt.configText = "test";
    opt.progressSeconds = 1e9;
    pipeline::PipelineConfig config;
    config.differenceOutput.enabled = false;  // flat 32 px images: this test is about the runner
    return runner::runCampaign(*g_mpi, input, [archive] { return std::make_unique<archive::LocalArchive>(archive); },
                               config, opt);
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
