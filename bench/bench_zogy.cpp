// ZOGY core against the FFT floor measured in the same run: the 8 single-precision r2c/c2r
// transforms per tile that the algorithm cannot avoid (N, R, V_n, V_r forward; D, S_N, S_R, V(S)
// inverse) on the same tile grid.
//   build/bench/bench_zogy --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <fftw3.h>

#include <cmath>

#include "astrid/diff/zogy.hpp"
#include "astrid/sim/render.hpp"

using namespace astrid;

namespace {
struct Pair {
    Image<float> n, r, vn, vr;
    Image<double> psfN, psfR;
};

Pair makePair(int size) {
    Pair p{Image<float>(size, size), Image<float>(size, size), Image<float>(size, size, 100.f),
           Image<float>(size, size, 36.f), Image<double>(31, 31, 0.0), Image<double>(31, 31, 0.0)};
    sim::Rng rng(1);
    for (std::size_t i = 0; i < p.n.size(); ++i) {
        p.n.data()[i] = static_cast<float>(10 * rng.normal());
        p.r.data()[i] = static_cast<float>(6 * rng.normal());
    }
    sim::PsfRenderer(sim::MoffatPsf{3.4, 3.0, 0.05, 30}).add(p.psfN, 15, 15, 1.0);
    sim::PsfRenderer(sim::MoffatPsf{2.6, 3.5, 0.02, 100}).add(p.psfR, 15, 15, 1.0);
    return p;
}

void BM_Zogy(benchmark::State& state) {
    const int size = static_cast<int>(state.range(0));
    const Pair p = makePair(size);
    diff::ZogyInput in{&p.n, &p.r, &p.vn, &p.vr, nullptr, [&](double, double) { return p.psfN; },
                       [&](double, double) { return p.psfR; }, 1.3, 0.0, 0.0};
    diff::ZogyConfig cfg;
    cfg.astrometricSigmaXPx = cfg.astrometricSigmaYPx = 0.03;
    int tiles = 0, fw = 0;
    diff::zogy(in, cfg);  // plans are made (and measured) once per shape, outside the timing
    diff::ZogyResult::Timing t;
    for (auto _ : state) {
        auto z = diff::zogy(in, cfg);
        tiles = z.tiles, fw = z.fftWidth;
        t.kernelsS += z.timing.kernelsS, t.loadS += z.timing.loadS, t.transformsS += z.timing.transformsS;
        t.outputS += z.timing.outputS, t.maskS += z.timing.maskS;
        benchmark::DoNotOptimize(z.scorr.data());
    }
    state.counters["tiles"] = tiles;
    state.counters["fft_px"] = fw;
    // Where the time goes (ms per call): kernels, loading tiles, transforms + spectral products,
    // writing the outputs (with the offset median), the edge mask.
    const double n = static_cast<double>(state.iterations()) / 1000.0;
    state.counters["kern_ms"] = t.kernelsS / n;
    state.counters["load_ms"] = t.loadS / n;
    state.counters["fft_ms"] = t.transformsS / n;
    state.counters["out_ms"] = t.outputS / n;
    state.counters["mask_ms"] = t.maskS / n;
}

// The floor: 4 r2c + 4 c2r single-precision transforms of the same tile size, per tile.
void BM_FftFloor(benchmark::State& state) {
    const int size = static_cast<int>(state.range(0));
    const int core = 1024;
    const int per = (size + core - 1) / core;
    const int tile = (size + per - 1) / per;
    const int fw = diff::goodFftSize(tile + 2 * 45);  // the 3 x PSF half-size margin ZOGY uses
    const std::size_t nr = static_cast<std::size_t>(fw) * fw, nc = static_cast<std::size_t>(fw) * (fw / 2 + 1);
    float* r = fftwf_alloc_real(nr);
    fftwf_complex* c = fftwf_alloc_complex(nc);
    fftwf_plan f = fftwf_plan_dft_r2c_2d(fw, fw, r, c, FFTW_MEASURE);
    fftwf_plan b = fftwf_plan_dft_c2r_2d(fw, fw, c, r, FFTW_MEASURE);
    for (std::size_t i = 0; i < nr; ++i) r[i] = static_cast<float>(i % 17);
    for (auto _ : state)
        for (int t = 0; t < per * per; ++t)
            for (int k = 0; k < 4; ++k) {
                fftwf_execute(f);
                fftwf_execute(b);
            }
    state.counters["tiles"] = per * per;
    state.counters["fft_px"] = fw;
    fftwf_destroy_plan(f);
    fftwf_destroy_plan(b);
    fftwf_free(r);
    fftwf_free(c);
}
}  // namespace

BENCHMARK(BM_Zogy)->Arg(1024)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->Iterations(2);
BENCHMARK(BM_FftFloor)->Arg(1024)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond)->Iterations(2);
int main(int argc, char** argv) {
    // Campaign settings: measured plans for both (the floor's plans below use the same effort).
    diff::setFftEffort(diff::FftEffort::Measure);
    benchmark::Initialize(&argc, argv);
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
}
