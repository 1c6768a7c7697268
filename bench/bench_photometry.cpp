// Photometry at 10,000 positions on one 4096^2 image (issue #4): aperture sums at 3 radii with and
// without the annulus background, and forced PSF fits with one fixed stamp (Lanczos-shifted per
// position, as for the ZOGY difference image's P_D), with and without the background term.
//   build/bench/bench_photometry --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// Image: sky noise sigma 10 over zero plus 20,000 Moffat stars (FWHM 3.5 px), variance 100, no mask
// bits; positions uniform over the image at least 25 px from the edges (seed fixed).
#include <benchmark/benchmark.h>

#include <vector>

#include "astrid/photometry/photometry.hpp"
#include "astrid/sim/render.hpp"

using namespace astrid;

namespace {
constexpr int kSize = 4096, kPositions = 10000;

struct Scene {
    MaskedImage image;
    std::vector<photometry::PixelPosition> positions;
    Image<double> stamp;  // centred, unit sum, 25^2
};

const Scene& scene() {
    static const Scene s = [] {
        Scene sc;
        sc.image = MaskedImage(kSize, kSize);
        sim::Rng rng(7);
        for (float& v : sc.image.image.pixels()) v = static_cast<float>(10.0 * rng.normal());
        std::fill(sc.image.variance.pixels().begin(), sc.image.variance.pixels().end(), 100.0f);
        sim::MoffatPsf m;
        m.fwhmPx = 3.5;
        m.beta = 3.5;
        const sim::PsfRenderer psf(m);
        for (int k = 0; k < 20000; ++k)
            psf.add(sc.image.image, rng.uniform(0, kSize - 1), rng.uniform(0, kSize - 1), 50.0 * (1.0 + 100.0 * rng.uniform()));
        for (int k = 0; k < kPositions; ++k)
            sc.positions.push_back({rng.uniform(25, kSize - 26), rng.uniform(25, kSize - 26)});
        sc.stamp = Image<double>(25, 25, 0.0);
        psf.add(sc.stamp, 12.0, 12.0, 1.0);
        return sc;
    }();
    return s;
}

void BM_Aperture(benchmark::State& state) {
    const Scene& s = scene();
    photometry::ApertureConfig cfg;
    cfg.radiiPx = {3.0, 5.0, 8.0};
    cfg.background = state.range(0) ? photometry::LocalBackground::Median : photometry::LocalBackground::None;
    cfg.annulusInnerPx = 12.0;
    cfg.annulusOuterPx = 20.0;
    for (auto _ : state) {
        auto r = photometry::aperturePhotometry(s.image, s.positions, cfg);
        benchmark::DoNotOptimize(r.data());
    }
    state.counters["positions/s"] = benchmark::Counter(static_cast<double>(kPositions) * state.iterations(),
                                                       benchmark::Counter::kIsRate);
}

void BM_ForcedPsfFixedStamp(benchmark::State& state) {
    const Scene& s = scene();
    photometry::ForcedPsfConfig cfg;
    cfg.background = state.range(0) ? photometry::FitBackground::Constant : photometry::FitBackground::None;
    for (auto _ : state) {
        auto r = photometry::forcedPsfPhotometry(s.image, s.positions, s.stamp, cfg);
        benchmark::DoNotOptimize(r.data());
    }
    state.counters["positions/s"] = benchmark::Counter(static_cast<double>(kPositions) * state.iterations(),
                                                       benchmark::Counter::kIsRate);
}
}  // namespace

// Arg: 0 = no annulus / no background term, 1 = with it.
BENCHMARK(BM_Aperture)->ArgName("annulus")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ForcedPsfFixedStamp)->ArgName("background")->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK_MAIN();
