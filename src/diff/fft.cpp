#include "fft.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "astrid/core/error.hpp"

namespace astrid::diff::fft {
namespace {
std::mutex g_planMutex;
}

Plan2d::Plan2d(int w, int h) : w_(w), h_(h) {
    Buffer<Real> r(realSize());
    Buffer<Complex> c(spectrumSize());
    // FFTW_ESTIMATE: no timing runs at plan time. Shared MEASURE wisdom is a later optimisation.
    r2c_ = fftwf_plan_dft_r2c_2d(h, w, r.data(), reinterpret_cast<fftwf_complex*>(c.data()), FFTW_ESTIMATE);
    c2r_ = fftwf_plan_dft_c2r_2d(h, w, reinterpret_cast<fftwf_complex*>(c.data()), r.data(), FFTW_ESTIMATE);
    if (!r2c_ || !c2r_)
        throw DataError("FFTW cannot plan a " + std::to_string(w) + " x " + std::to_string(h) + " transform");
}

Plan2d::~Plan2d() {
    if (r2c_) fftwf_destroy_plan(r2c_);
    if (c2r_) fftwf_destroy_plan(c2r_);
}

const Plan2d& Plan2d::get(int width, int height) {
    static std::map<std::pair<int, int>, std::unique_ptr<Plan2d>> cache;  // lives until exit
    std::lock_guard lock(g_planMutex);
    auto& slot = cache[{width, height}];
    if (!slot) slot = std::make_unique<Plan2d>(width, height);
    return *slot;
}

void Plan2d::forward(Buffer<Real>& in, Buffer<Complex>& out) const {
    fftwf_execute_dft_r2c(r2c_, in.data(), reinterpret_cast<fftwf_complex*>(out.data()));
}

void Plan2d::inverse(Buffer<Complex>& in, Buffer<Real>& out) const {
    fftwf_execute_dft_c2r(c2r_, reinterpret_cast<fftwf_complex*>(in.data()), out.data());
}

}  // namespace astrid::diff::fft
