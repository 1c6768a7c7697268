// Scheduler throughput (issue #6): targets dispatched per second with trivial targets, through the
// real runner (dynamic scheduling, compute threads, collective checkpoints into the journal and
// the parallel HDF5 file). A trivial target is one whose archive lists nothing: processTarget
// returns at once with a failure row, so the figure is the runner's own cost per target.
//
//   mpirun -n N build/bench/bench_scheduler [--targets T] [--checkpoint K] [--computes yes|no]
//                                           [--dir DIR] [--cost-ms C]
// Rank 0 prints one JSON line. --cost-ms gives each target a sleep of C ms (a stand-in for real
// work that uses no CPU), to show how many ranks one scheduler keeps busy. bench/scheduler.sh runs
// the series that docs/performance.md and docs/scaling.md quote.
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "astrid/core/log.hpp"
#include "astrid/runner/runner.hpp"

using namespace astrid;

namespace {
class EmptyArchive final : public archive::Archive {
public:
    explicit EmptyArchive(int costMs) : costMs_(costMs) {}
    std::vector<archive::Observation> listObservations(const catalog::Target&) override {
        if (costMs_ > 0) std::this_thread::sleep_for(std::chrono::milliseconds(costMs_));
        return {};
    }
    std::string fetch(const archive::Observation& o) override { return o.fitsPath; }
    std::string describe() const override { return "empty"; }

private:
    int costMs_;
};
}  // namespace

int main(int argc, char** argv) {
    runner::MpiSession mpi(argc, argv);
    int nTargets = 20000, checkpoint = 1000, costMs = 0;
    std::string computes = "no", dir = std::filesystem::temp_directory_path().string();
    for (int i = 1; i + 1 < argc; i += 2) {
        const std::string k = argv[i], v = argv[i + 1];
        if (k == "--targets") nTargets = std::stoi(v);
        else if (k == "--checkpoint") checkpoint = std::stoi(v);
        else if (k == "--computes") computes = v;
        else if (k == "--dir") dir = v;
        else if (k == "--cost-ms") costMs = std::stoi(v);
    }
    // Every trivial target is a failure row; logging 20000 warnings would be the benchmark.
    log::configure({log::Level::Error, mpi.rank(), mpi.size(), log::Level::Error});
    runner::CampaignInput input;
    if (mpi.rank() == 0)
        for (int i = 0; i < nTargets; ++i) {
            catalog::Target t;
            t.id = i;
            t.name = "t" + std::to_string(i);
            t.raDeg = 0.01 * (i % 36000);
            t.decDeg = -30.0;
            t.discMjd = 59000.0;
            input.targets.push_back(t);
        }
    runner::RunOptions opt;
    opt.outputPath = dir + "/bench_scheduler_" + std::to_string(mpi.size()) + ".h5";
    opt.configText = opt.resultConfig = "bench = scheduler\n";
    opt.resume = runner::ResumeMode::Fresh;
    opt.checkpointTargets = checkpoint;
    opt.checkpointSeconds = 1e9;
    opt.progressSeconds = 1e9;
    opt.schedulerComputes = computes == "yes" ? runner::SchedulerComputes::Yes : runner::SchedulerComputes::No;
    const auto t0 = std::chrono::steady_clock::now();
    const auto s = runner::runCampaign(mpi, input, [costMs] { return std::make_unique<EmptyArchive>(costMs); },
                                       pipeline::PipelineConfig{}, opt);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (mpi.rank() == 0) {
        const int workers = mpi.size() - (computes == "yes" ? 0 : 1);
        std::printf("{\"ranks\": %d, \"workers\": %d, \"targets\": %d, \"cost_ms\": %d, \"checkpoint_targets\": %d, "
                    "\"checkpoints\": %d, \"wall_s\": %.3f, \"targets_per_s\": %.1f, \"ideal_targets_per_s\": %.1f}\n",
                    mpi.size(), workers, nTargets, costMs, checkpoint, s.checkpoints, wall, nTargets / wall,
                    costMs > 0 ? workers * 1000.0 / costMs : 0.0);
        std::filesystem::remove(opt.outputPath);
        std::filesystem::remove_all(opt.outputPath + ".journal");
    }
    return 0;
}
