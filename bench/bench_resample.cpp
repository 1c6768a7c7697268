// Lanczos3 resampling of a reference onto a science grid (registration::resample): one
// 4096^2 float image with its variance and mask, a 0.3 degree rotation plus a sub-pixel shift.
// Clean: no mask bit. Cosmic rays: 2,000 3x3 CosmicRay blocks with +inf variance, as
// pipeline::prepareImage leaves a real reference (they send pixels near them down the per-tap path).
//   build/bench/bench_resample --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <limits>

#include "astrid/registration/resample.hpp"
#include "astrid/sim/render.hpp"

using namespace astrid;

namespace {
MaskedImage makeReference(int size, int cosmicRays) {
    MaskedImage m;
    m.image = Image<float>(size, size);
    m.variance = Image<float>(size, size, 100.0f);
    m.mask = Image<std::uint16_t>(size, size, 0);
    sim::Rng rng(3);
    for (float& v : m.image.pixels()) v = static_cast<float>(10.0 * rng.normal());
    for (int k = 0; k < cosmicRays; ++k) {
        const int x = 1 + static_cast<int>(rng.uniform() * (size - 3)), y = 1 + static_cast<int>(rng.uniform() * (size - 3));
        m.image(x, y) = 20000.0f;
        for (int j = -1; j <= 1; ++j)
            for (int i = -1; i <= 1; ++i) {
                m.mask(x + i, y + j) = bits(MaskBit::CosmicRay);
                m.variance(x + i, y + j) = std::numeric_limits<float>::infinity();
            }
    }
    return m;
}

void BM_Resample(benchmark::State& state) {
    const int size = static_cast<int>(state.range(0));
    const MaskedImage ref = makeReference(size, static_cast<int>(state.range(1)));
    const auto map = registration::PixelMap::fromTransform(
        registration::PolyTransform::similarity(1.0, 0.3, 12.37, -7.81));
    registration::ResampleConfig cfg;
    cfg.variance = registration::VarianceResampling::NoisePower;
    MaskedImage out;
    out.image = Image<float>(size, size);
    out.variance = Image<float>(size, size);
    out.mask = Image<std::uint16_t>(size, size);
    for (auto _ : state) {
        registration::resampleInto(ref, map, out, cfg);
        benchmark::DoNotOptimize(out.image.data());
    }
    state.counters["Mpix/s"] = benchmark::Counter(static_cast<double>(size) * size * state.iterations() / 1e6,
                                                  benchmark::Counter::kIsRate);
}
}  // namespace

BENCHMARK(BM_Resample)->Args({4096, 0})->Args({4096, 2000})->Unit(benchmark::kMillisecond)->Iterations(3);
BENCHMARK_MAIN();
