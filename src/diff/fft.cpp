#include "fft.hpp"

#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "astrid/core/error.hpp"

namespace astrid::diff::fft {
namespace {
std::mutex g_planMutex;
unsigned g_effort = FFTW_ESTIMATE;
}

void setEffort(bool measure) {
    std::lock_guard lock(g_planMutex);
    g_effort = measure ? FFTW_MEASURE : FFTW_ESTIMATE;
}

std::string exportWisdom() {
    std::lock_guard lock(g_planMutex);
    char* text = fftwf_export_wisdom_to_string();
    std::string out = text ? text : "";
    std::free(text);
    return out;
}

bool importWisdom(const std::string& wisdom) {
    std::lock_guard lock(g_planMutex);
    return fftwf_import_wisdom_from_string(wisdom.c_str()) != 0;
}

void withPlannerLocked(const std::function<void()>& f) {
    std::lock_guard lock(g_planMutex);
    f();
}

Plan2d::Plan2d(int w, int h) : w_(w), h_(h) {
    Buffer<Real> r(realSize());
    Buffer<Complex> c(spectrumSize());
    // Called with g_planMutex held (from get()).
    r2c_ = fftwf_plan_dft_r2c_2d(h, w, r.data(), reinterpret_cast<fftwf_complex*>(c.data()), g_effort | FFTW_DESTROY_INPUT);
    c2r_ = fftwf_plan_dft_c2r_2d(h, w, reinterpret_cast<fftwf_complex*>(c.data()), r.data(), g_effort);
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
