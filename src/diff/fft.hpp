#pragma once
// Private to diff/: FFTW in single precision behind RAII with a process-wide plan cache. Plans are
// made once per transform shape and reused (execution is thread-safe, planning is not: one mutex).
// Single precision: bench/bench_zogy.cpp shows S_corr agrees with a double-precision run to < 1e-3
// sigma, at half the time and memory.
#include <fftw3.h>

#include <complex>
#include <cstddef>
#include <new>
#include <functional>
#include <string>
#include <utility>

namespace astrid::diff::fft {

using Real = float;
using Complex = std::complex<Real>;
static_assert(sizeof(Complex) == sizeof(fftwf_complex));

/// fftwf_malloc'd storage (SIMD-aligned, so one plan serves every buffer of its shape).
template <class T>
class Buffer {
public:
    Buffer() = default;
    explicit Buffer(std::size_t n) : n_(n), p_(static_cast<T*>(fftwf_malloc(n * sizeof(T)))) {
        if (!p_) throw std::bad_alloc();
    }
    Buffer(Buffer&& o) noexcept : n_(std::exchange(o.n_, 0)), p_(std::exchange(o.p_, nullptr)) {}
    Buffer& operator=(Buffer&& o) noexcept {
        std::swap(n_, o.n_);
        std::swap(p_, o.p_);
        return *this;
    }
    Buffer(const Buffer&) = delete;
    Buffer& operator=(const Buffer&) = delete;
    ~Buffer() {
        if (p_) fftwf_free(p_);
    }
    T* data() noexcept { return p_; }
    const T* data() const noexcept { return p_; }
    std::size_t size() const noexcept { return n_; }
    T& operator[](std::size_t i) noexcept { return p_[i]; }
    const T& operator[](std::size_t i) const noexcept { return p_[i]; }

private:
    std::size_t n_ = 0;
    T* p_ = nullptr;
};

/// Process-wide planner effort (FFTW_MEASURE when true) and wisdom text, behind the plan mutex.
void setEffort(bool measure);
std::string exportWisdom();
bool importWisdom(const std::string& wisdom);
void withPlannerLocked(const std::function<void()>& f);

/// Real <-> half-complex 2-D transforms of one shape (height rows of width columns; the spectrum has
/// height x (width / 2 + 1) values). Unnormalised like FFTW: inverse(forward(x)) = width*height*x.
class Plan2d {
public:
    static const Plan2d& get(int width, int height);
    int width() const noexcept { return w_; }
    int height() const noexcept { return h_; }
    std::size_t realSize() const noexcept { return static_cast<std::size_t>(w_) * static_cast<std::size_t>(h_); }
    std::size_t spectrumSize() const noexcept {
        return static_cast<std::size_t>(h_) * static_cast<std::size_t>(w_ / 2 + 1);
    }
    /// May destroy `in` (planned with FFTW_DESTROY_INPUT: every caller overwrites its input afterwards,
    /// and FFTW then skips a copy of the rows).
    void forward(Buffer<Real>& in, Buffer<Complex>& out) const;
    /// Destroys `in` (FFTW's c2r overwrites its input).
    void inverse(Buffer<Complex>& in, Buffer<Real>& out) const;

    Plan2d(int w, int h);
    ~Plan2d();
    Plan2d(const Plan2d&) = delete;
    Plan2d& operator=(const Plan2d&) = delete;

private:
    int w_, h_;
    fftwf_plan r2c_ = nullptr, c2r_ = nullptr;
};

}  // namespace astrid::diff::fft
