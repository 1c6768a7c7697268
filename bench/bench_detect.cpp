// Detection + measurement of candidates on S_corr (issue #4) against the floor of one pass over
// S_corr (the threshold test every detector pays), on synthetic ZOGY differences: white-noise pairs
// with different Moffat PSFs and ~1,000 point sources per 4k^2 (S/N 3-50, 30% fading), differenced
// by diff::zogy (1024 px tiles).
//   build/bench/bench_detect --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
// With --export DIR [SIZE] it writes the 4k (or SIZE) difference for bench/detect_peers.sh instead:
//   DIR/scorr.fits, DIR/diff.fits (float32), DIR/truth.csv (x, y, flux, true_snr: the S_corr a
//   perfect detection sees, alpha F_S / sqrt(V(S))), DIR/astrid.csv (the candidates) and prints
//   "astrid_detect_s <best of 3>" and the P_D sigma.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "astrid/core/error.hpp"
#include "astrid/detect/detect.hpp"
#include "astrid/diff/zogy.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/sim/render.hpp"

using namespace astrid;

namespace {
struct Truth {
    double x, y, flux;  ///< flux as the difference shows it (negative: fading)
    double trueSnr = 0;
};

struct Pair {
    diff::ZogyResult z;
    std::vector<Truth> truth;
};

double sumP2(const Image<double>& s) {
    double q = 0;
    for (double v : s.pixels()) q += v * v;
    return q;
}

Pair makePair(int size) {
    const double sn = 10, sr = 6, fr = 1.3;
    const sim::MoffatPsf mN{3.4, 3.0, 0.05, 30}, mR{2.6, 3.5, 0.02, 100};
    Image<double> psfN(31, 31, 0.0), psfR(31, 31, 0.0);
    sim::PsfRenderer(mN).add(psfN, 15, 15, 1.0);
    sim::PsfRenderer(mR).add(psfR, 15, 15, 1.0);
    const double noise = std::sqrt(sn * sn / sumP2(psfN) + (sr / fr) * (sr / fr) / sumP2(psfR));
    Pair p;
    sim::Rng rng(4);
    const int n = static_cast<int>(1000.0 * size * size / (4096.0 * 4096.0));
    for (int tries = 0; static_cast<int>(p.truth.size()) < n && tries < 100 * n; ++tries) {
        const double x = rng.uniform(40, size - 41), y = rng.uniform(40, size - 41);
        bool ok = true;
        for (const auto& t : p.truth)
            if (std::hypot(t.x - x, t.y - y) < 20) {
                ok = false;
                break;
            }
        if (!ok) continue;
        const double flux = 3.0 * std::pow(50.0 / 3.0, rng.uniform()) * noise;
        p.truth.push_back({x, y, rng.uniform() < 0.3 ? -flux : flux});
    }
    Image<float> N(size, size, 0.f), R(size, size, 0.f), VN(size, size, 0.f), VR(size, size, 0.f);
    const sim::PsfRenderer rn(mN), rr(mR);
    for (const auto& t : p.truth) {
        if (t.flux > 0)
            rn.add(N, t.x, t.y, t.flux);
        else
            rr.add(R, t.x, t.y, -t.flux * fr);
    }
    for (std::size_t i = 0; i < N.size(); ++i) {
        VN.data()[i] = static_cast<float>(sn * sn + std::max(0.f, N.data()[i]));
        VR.data()[i] = static_cast<float>(sr * sr + std::max(0.f, R.data()[i]));
        N.data()[i] += static_cast<float>(std::sqrt(VN.data()[i]) * rng.normal());
        R.data()[i] += static_cast<float>(std::sqrt(VR.data()[i]) * rng.normal());
    }
    diff::ZogyInput in{&N, &R, &VN, &VR, nullptr, [&](double, double) { return psfN; },
                       [&](double, double) { return psfR; }, fr, sn, sr};
    diff::ZogyConfig cfg;
    cfg.keepScore = false;
    cfg.keepScoreVariance = true;
    p.z = diff::zogy(in, cfg);
    for (auto& t : p.truth)
        t.trueSnr = std::fabs(t.flux) * p.z.fS /
                    std::sqrt(p.z.scoreVariance(static_cast<int>(std::lround(t.x)), static_cast<int>(std::lround(t.y))));
    return p;
}

const Pair& pairOf(int size) {
    static std::map<int, Pair> cache;
    auto it = cache.find(size);
    if (it == cache.end()) it = cache.emplace(size, makePair(size)).first;
    return it->second;
}

void BM_Detect(benchmark::State& state) {
    const Pair& p = pairOf(static_cast<int>(state.range(0)));
    detect::DetectionResult r;
    for (auto _ : state) {
        r = detect::detectCandidates(p.z, {}, {});
        benchmark::DoNotOptimize(r.candidates.data());
    }
    state.counters["candidates"] = static_cast<double>(r.candidates.size());
    state.counters["injected"] = static_cast<double>(p.truth.size());
    state.counters["threshold_ms"] = 1e3 * r.thresholdS;
    state.counters["deblend_ms"] = 1e3 * r.deblendS;
    state.counters["measure_ms"] = 1e3 * r.measureS;
}

// The floor: one pass over S_corr that counts the pixels at or beyond the footprint threshold.
void BM_ScanFloor(benchmark::State& state) {
    const Pair& p = pairOf(static_cast<int>(state.range(0)));
    for (auto _ : state) {
        std::size_t n = 0;
        for (float v : p.z.scorr.pixels()) n += (v >= 3.0f) | (v <= -3.0f);
        benchmark::DoNotOptimize(n);
    }
}

int exportPair(const std::string& dir, int size) {
    const Pair& p = pairOf(size);
    double best = 1e9;
    detect::DetectionResult r;
    for (int i = 0; i < 3; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        r = detect::detectCandidates(p.z, {}, {});
        best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    {
        auto f = fits::FitsFile::create(dir + "/scorr.fits");
        f.writeImage(p.z.scorr);
        f.close();
    }
    {
        auto f = fits::FitsFile::create(dir + "/diff.fits");
        f.writeImage(p.z.diff);
        f.close();
    }
    std::ofstream truth(dir + "/truth.csv");
    truth << "x,y,flux,true_snr\n";
    for (const auto& t : p.truth) truth << t.x << ',' << t.y << ',' << t.flux << ',' << t.trueSnr << '\n';
    std::ofstream cand(dir + "/astrid.csv");
    cand << "x,y,flux,flux_err,significance,flags\n";
    for (const auto& c : r.candidates)
        cand << c.x << ',' << c.y << ',' << c.flux << ',' << c.fluxErr << ',' << c.significance << ',' << c.flags << '\n';
    std::printf("astrid_detect_s %.4f\npsf_sigma_px %.4f\ncandidates %zu\n", best, r.psfSigmaPx, r.candidates.size());
    return 0;
}
}  // namespace

BENCHMARK(BM_Detect)->Arg(1024)->Arg(2048)->Arg(4096)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_ScanFloor)->Arg(4096)->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
    if (argc >= 3 && std::strcmp(argv[1], "--export") == 0) {
        try {
            return exportPair(argv[2], argc >= 4 ? std::atoi(argv[3]) : 4096);
        } catch (const Error& e) {
            std::fprintf(stderr, "bench_detect: %s\n", e.what());
            return 1;
        }
    }
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    benchmark::RunSpecifiedBenchmarks();
    benchmark::Shutdown();
    return 0;
}
