// /training written by several ranks at once, the way the campaign's checkpoints write the tables:
// offsets by MPI_Exscan, the total by MPI_Allreduce, one collective append per dataset, ranks with
// nothing joining with empty selections; with and without gzip (filtered parallel writes need
// collective I/O). Every triplet must land exactly once, and every write must be collective.
#include <gtest/gtest.h>
#include <hdf5.h>
#include <mpi.h>

#include <filesystem>
#include <set>

#include "astrid/output/reader.hpp"
#include "astrid/output/run_file.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
int g_rank = 0, g_size = 1;

training::Triplet makeTriplet(const training::TripletLayout& l, int rank, int i) {
    training::Triplet t;
    t.pixels.resize(l.tripletPixels());
    for (std::size_t k = 0; k < t.pixels.size(); ++k) t.pixels[k] = static_cast<float>(rank * 100000 + i * 1000) + static_cast<float>(k % 997);
    t.mask.assign(l.planePixels(), static_cast<std::uint8_t>(rank));
    t.label = i % 2 ? training::Label::Real : training::Label::Bogus;
    t.meta.targetId = rank * 1000 + i;
    t.meta.targetName = "r" + std::to_string(rank) + "t" + std::to_string(i);
    t.meta.split = training::assignSplit(t.meta.targetName);
    return t;
}

void runCase(int gzip) {
    const fs::path path = fs::temp_directory_path() / ("astrid_training_mpi_" + std::to_string(g_size) + "_" + std::to_string(gzip) + ".h5");
    training::TripletLayout layout;
    layout.gzipLevel = gzip;
    output::RunMetadata meta;
    meta.nRanks = g_size;
    meta.training = layout;
    output::ParallelHooks hooks;
    int nonCollective = 0;
    hooks.configureFileAccess = [](std::int64_t fapl) { H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL); };
    hooks.configureTransfer = [](std::int64_t dxpl) { H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE); };
    hooks.afterWrite = [&](std::int64_t dxpl) {
        H5D_mpio_actual_io_mode_t mode = H5D_MPIO_NO_COLLECTIVE;
        H5Pget_mpio_actual_io_mode(dxpl, &mode);
        if (mode == H5D_MPIO_NO_COLLECTIVE) ++nonCollective;
    };
    int expected = 0;
    {
        auto file = output::RunFile::create(path.string(), meta, hooks);
        // Two checkpoints: in the first rank r has r + 1 triplets; in the second only odd ranks have any.
        for (int round = 0; round < 2; ++round) {
            const int n = round == 0 ? g_rank + 1 : (g_rank % 2 ? 2 : 0);
            output::TrainingBatch batch(layout);
            for (int i = 0; i < n; ++i) batch.add(makeTriplet(layout, g_rank, round * 10 + i));
            unsigned long long count = static_cast<unsigned long long>(n), offset = 0, total = 0;
            MPI_Exscan(&count, &offset, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
            if (g_rank == 0) offset = 0;  // MPI_Exscan leaves rank 0's result undefined
            MPI_Allreduce(&count, &total, 1, MPI_UNSIGNED_LONG_LONG, MPI_SUM, MPI_COMM_WORLD);
            file.appendTraining(batch, offset, total);
            file.flush();
            expected += static_cast<int>(total);
        }
        file.finish({});
    }
    int worst = 0;
    MPI_Allreduce(&nonCollective, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    EXPECT_EQ(worst, 0) << "a /training write was not collective";
    if (g_rank == 0) {
        output::RunReader r(path.string());
        const auto info = r.trainingInfo();
        ASSERT_TRUE(info);
        ASSERT_EQ(info->count, static_cast<std::uint64_t>(expected));
        const auto all = r.readTraining(0, info->count);
        std::set<std::int64_t> seen;
        for (std::size_t j = 0; j < all.size(); ++j) {
            const auto& m = all.meta[j];
            const int rank = static_cast<int>(m.targetId / 1000), i = static_cast<int>(m.targetId % 1000);
            EXPECT_TRUE(seen.insert(m.targetId).second) << "triplet " << m.targetId << " written twice";
            const auto t = makeTriplet(layout, rank, i);
            EXPECT_TRUE(std::equal(t.pixels.begin(), t.pixels.end(), all.triplets.begin() + j * layout.tripletPixels()))
                << "pixels of " << m.targetId << " do not belong to its meta row";
            EXPECT_EQ(all.mask[j * layout.planePixels()], rank);
            EXPECT_EQ(all.labels[j], static_cast<std::int8_t>(t.label));
            EXPECT_EQ(output::getText(m.targetName), t.meta.targetName);
        }
        fs::remove(path);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}
}  // namespace

TEST(TrainingMpi, TripletsFromEveryRankLandExactlyOnceCollectively) { runCase(0); }
TEST(TrainingMpi, GzipTripletsUnderCollectiveWrites) { runCase(4); }

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (g_rank != 0) {
        auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
        delete listeners.Release(listeners.default_result_printer());
    }
    int result = RUN_ALL_TESTS();
    int worst = 0;
    MPI_Allreduce(&result, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    MPI_Finalize();
    return worst;
}
