// FITS read throughput and WCS transform rate: astrid's wrappers against the plain C library
// calls doing the same work, in the same process, so the ratio is the wrapper's cost.
//   build/bench/bench_io --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <fitsio.h>
#include <wcs.h>
#include <wcshdr.h>

#include <filesystem>
#include <memory>
#include <random>
#include <vector>

#include "astrid/fits/fits_file.hpp"
#include "astrid/wcs/sky_wcs.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
std::string imagePath(int size, int bitpix) {
    const fs::path p = fs::temp_directory_path() / ("astrid_bench_" + std::to_string(size) + "_" +
                                                    std::to_string(bitpix < 0 ? -bitpix : bitpix) + ".fits");
    if (!fs::exists(p)) {
        Image<float> img(size, size);
        std::mt19937 rng(1);
        std::normal_distribution<float> n(1000.0f, 30.0f);
        for (float& v : img.pixels()) v = n(rng);
        auto f = fits::FitsFile::create(p.string());
        f.writeImage(img, {}, bitpix == 16 ? fits::PixelType::Int16 : fits::PixelType::Float32);
    }
    return p.string();
}

void BM_FitsRead_Astrid(benchmark::State& state) {
    const int size = static_cast<int>(state.range(0));
    const std::string path = imagePath(size, static_cast<int>(state.range(1)));
    for (auto _ : state) {
        auto hdu = fits::readImage(path);
        benchmark::DoNotOptimize(hdu.image.data());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size) * size * 4);
}

// The plain C program: malloc a buffer, open, read, close (what fits::readImage does).
void BM_FitsRead_Cfitsio(benchmark::State& state) {
    const int size = static_cast<int>(state.range(0));
    const std::string path = imagePath(size, static_cast<int>(state.range(1)));
    for (auto _ : state) {
        std::unique_ptr<float[]> buf(new float[static_cast<std::size_t>(size) * size]);
        fitsfile* f = nullptr;
        int status = 0, anynul = 0;
        float nullval = NAN;
        fits_open_file(&f, path.c_str(), READONLY, &status);
        fits_read_img(f, TFLOAT, 1, static_cast<LONGLONG>(size) * size, &nullval, buf.get(), &anynul, &status);
        fits_close_file(f, &status);
        if (status) state.SkipWithError("cfitsio failed");
        benchmark::DoNotOptimize(buf.get());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size) * size * 4);
}

// The floor: the same read into a buffer reused across iterations (no page faults).
void BM_FitsRead_CfitsioReusedBuffer(benchmark::State& state) {
    const int size = static_cast<int>(state.range(0));
    const std::string path = imagePath(size, static_cast<int>(state.range(1)));
    std::vector<float> buf(static_cast<std::size_t>(size) * size);
    for (auto _ : state) {
        fitsfile* f = nullptr;
        int status = 0, anynul = 0;
        float nullval = NAN;
        fits_open_file(&f, path.c_str(), READONLY, &status);
        fits_read_img(f, TFLOAT, 1, static_cast<LONGLONG>(buf.size()), &nullval, buf.data(), &anynul, &status);
        fits_close_file(f, &status);
        if (status) state.SkipWithError("cfitsio failed");
        benchmark::DoNotOptimize(buf.data());
    }
    state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(size) * size * 4);
}

/// The DECam TPV header when the real data are there, else a rotated TAN.
fits::Header benchHeader() {
    const std::string decam = std::string(ASTRID_SHARED_DATA_DIR) +
                              "/images/decam_i_318.108-66.016/input_data/DEC-OBS18a.mini.fits";
    if (fs::exists(decam)) return fits::readImage(decam).header;
    const double s = 0.26 / 3600.0;
    return wcs::SkyWcs::tan({318.1, -66.0}, {128, 128}, {-s, 1e-6, 1e-6, s}).toHeader();
}

std::vector<double> grid(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> u(0.0, 255.0);
    std::vector<double> v(n);
    for (double& x : v) x = u(rng);
    return v;
}

void BM_WcsPixelToSky_Astrid(benchmark::State& state) {
    const auto w = wcs::SkyWcs::fromHeader(benchHeader());
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    const auto x = grid(n, 1), y = grid(n, 2);
    std::vector<double> ra(n), dec(n);
    for (auto _ : state) {
        w.pixelToSky(x, y, ra, dec);
        benchmark::DoNotOptimize(ra.data());
    }
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}

void BM_WcsPixelToSky_Wcslib(benchmark::State& state) {
    const std::string cards = benchHeader().toCardString();
    int nreject = 0, nwcs = 0;
    wcsprm* w = nullptr;
    wcspih(const_cast<char*>(cards.c_str()), static_cast<int>(cards.size() / 80), WCSHDR_all, 0, &nreject, &nwcs, &w);
    wcsset(w);
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    const auto x = grid(n, 1), y = grid(n, 2);
    std::vector<double> pix(2 * n), img(2 * n), world(2 * n), phi(n), theta(n);
    std::vector<int> stat(n);
    for (std::size_t i = 0; i < n; ++i) pix[2 * i] = x[i] + 1.0, pix[2 * i + 1] = y[i] + 1.0;
    for (auto _ : state) {
        wcsp2s(w, static_cast<int>(n), 2, pix.data(), img.data(), phi.data(), theta.data(), world.data(), stat.data());
        benchmark::DoNotOptimize(world.data());
    }
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
    wcsvfree(&nwcs, &w);
}

void BM_WcsSkyToPixel_Astrid(benchmark::State& state) {
    const auto w = wcs::SkyWcs::fromHeader(benchHeader());
    const std::size_t n = static_cast<std::size_t>(state.range(0));
    const auto x = grid(n, 1), y = grid(n, 2);
    std::vector<double> ra(n), dec(n), bx(n), by(n);
    w.pixelToSky(x, y, ra, dec);
    for (auto _ : state) {
        w.skyToPixel(ra, dec, bx, by);
        benchmark::DoNotOptimize(bx.data());
    }
    state.SetItemsProcessed(state.iterations() * static_cast<int64_t>(n));
}

void BM_WcsPixelToSky_AstridSinglePoint(benchmark::State& state) {
    const auto w = wcs::SkyWcs::fromHeader(benchHeader());
    double x = 10.0;
    for (auto _ : state) {
        auto s = w.pixelToSky(x, 20.0);
        benchmark::DoNotOptimize(s);
        x = x < 250 ? x + 1 : 0;
    }
    state.SetItemsProcessed(state.iterations());
}
}  // namespace

BENCHMARK(BM_FitsRead_Astrid)->Args({1024, -32})->Args({4096, -32})->Args({4096, 16})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FitsRead_Cfitsio)->Args({1024, -32})->Args({4096, -32})->Args({4096, 16})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_FitsRead_CfitsioReusedBuffer)->Args({1024, -32})->Args({4096, -32})->Args({4096, 16})->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WcsPixelToSky_Astrid)->Arg(100000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WcsPixelToSky_Wcslib)->Arg(100000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WcsSkyToPixel_Astrid)->Arg(100000)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_WcsPixelToSky_AstridSinglePoint);
BENCHMARK_MAIN();
