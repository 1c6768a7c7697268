// Rendering for the simulator. Accuracy is the point here: every later test measures the pipeline
// against what these functions put into the pixels, so the PSF integral, the galaxy convolution and
// the flux bookkeeping are done carefully, and fast enough to render a 4k image in about a second.
#include "astrid/sim/render.hpp"

#include <algorithm>
#include <cmath>
#include <complex>
#include <map>
#include <mutex>
#include <numbers>
#include <string>

#include <fftw3.h>

#include "astrid/core/error.hpp"

namespace astrid::sim {
namespace {
constexpr double kPi = std::numbers::pi;
constexpr double kDeg = kPi / 180.0;
// Largest PSF support we tabulate; the table costs (2R + 3)^2 * 256 floats (R = 100: 43 MB).
constexpr int kMaxPsfRadius = 100;
// Largest FFT stamp for a galaxy (px per side).
constexpr int kMaxGalaxyFft = 2048;

std::string num(double v) { return std::to_string(v); }
}  // namespace

// ---------------------------------------------------------------------------------------------
// Random numbers

std::uint64_t splitmix64(std::uint64_t x) noexcept {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

std::uint64_t streamSeed(std::uint64_t seed, std::uint64_t a, std::uint64_t b, std::uint64_t c) noexcept {
    std::uint64_t h = splitmix64(seed);
    h = splitmix64(h ^ splitmix64(a + 0x1000));
    h = splitmix64(h ^ splitmix64(b + 0x2000));
    return splitmix64(h ^ splitmix64(c + 0x3000));
}

int Rng::uniformInt(int lo, int hi) {
    const double span = static_cast<double>(hi) - static_cast<double>(lo) + 1.0;
    const int v = lo + static_cast<int>(std::floor(uniform() * span));
    return std::min(v, hi);
}

double Rng::normal() {
    if (hasSpare_) {
        hasSpare_ = false;
        return spare_;
    }
    double u = 0, v = 0, s = 0;
    do {
        u = 2.0 * uniform() - 1.0;
        v = 2.0 * uniform() - 1.0;
        s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double f = std::sqrt(-2.0 * std::log(s) / s);
    spare_ = v * f;
    hasSpare_ = true;
    return u * f;
}

double Rng::poisson(double mean) {
    if (!(mean > 0.0)) return 0.0;
    if (mean < 50.0) {
        // Inversion by sequential search: O(mean) steps, exact.
        const double u = uniform();
        double p = std::exp(-mean), cdf = p;
        int k = 0;
        while (u > cdf && k < 1000) {
            ++k;
            p *= mean / k;
            cdf += p;
        }
        return k;
    }
    const double z = normal();
    const double k = std::round(mean + std::sqrt(mean) * z + (z * z - 1.0) / 6.0);
    return std::max(0.0, k);
}

// ---------------------------------------------------------------------------------------------
// Moffat PSF

double moffatAlpha(double fwhmPx, double beta) {
    return fwhmPx / (2.0 * std::sqrt(std::pow(2.0, 1.0 / beta) - 1.0));
}

namespace {
// Where the cosine taper of the PSF wings starts, as a fraction of the truncation radius.
constexpr double kTaperStart = 0.85;

// The unnormalised, tapered elliptical Moffat.
struct TaperedMoffat {
    double c = 1, s = 0, ia2 = 1, ib2 = 1, beta = 3, rho2Cut = 1, rho2Taper = 1, rhoCut = 1;

    TaperedMoffat(double alphaMajor, double alphaMinor, double cosPa, double sinPa, double b, double rho)
        : c(cosPa), s(sinPa), ia2(1.0 / (alphaMajor * alphaMajor)), ib2(1.0 / (alphaMinor * alphaMinor)), beta(b),
          rho2Cut(rho * rho), rho2Taper(kTaperStart * kTaperStart * rho * rho), rhoCut(rho) {}

    double operator()(double dx, double dy) const noexcept {
        const double xp = c * dx + s * dy, yp = -s * dx + c * dy;
        const double q = xp * xp * ia2 + yp * yp * ib2;
        if (q >= rho2Cut) return 0.0;
        double v = std::exp(-beta * std::log1p(q));
        if (q > rho2Taper) {
            const double t = (std::sqrt(q) - kTaperStart * rhoCut) / ((1.0 - kTaperStart) * rhoCut);
            v *= 0.5 * (1.0 + std::cos(kPi * t));
        }
        return v;
    }
};
}  // namespace

PsfRenderer::PsfRenderer(const MoffatPsf& psf) : psf_(psf) {
    if (!(psf.fwhmPx > 0.0) || !std::isfinite(psf.fwhmPx))
        throw DataError("Moffat PSF: fwhmPx must be > 0 (got " + num(psf.fwhmPx) + ")");
    if (!(psf.beta > 1.5) || !std::isfinite(psf.beta))
        throw DataError("Moffat PSF: beta must be > 1.5 (got " + num(psf.beta) + ")");
    if (!(psf.ellipticity >= 0.0 && psf.ellipticity <= 0.9))
        throw DataError("Moffat PSF: ellipticity must be in [0, 0.9] (got " + num(psf.ellipticity) + ")");
    if (!(psf.wingFraction > 0.0 && psf.wingFraction < 0.1))
        throw DataError("Moffat PSF: wingFraction must be in (0, 0.1) (got " + num(psf.wingFraction) + ")");
    const double alpha = moffatAlpha(psf.fwhmPx, psf.beta);
    const double axis = std::sqrt(1.0 - psf.ellipticity);
    alphaMajor_ = alpha / axis;
    alphaMinor_ = alpha * axis;
    cosPa_ = std::cos(psf.positionAngleDeg * kDeg);
    sinPa_ = std::sin(psf.positionAngleDeg * kDeg);
    rhoCut_ = std::sqrt(std::pow(psf.wingFraction, -1.0 / (psf.beta - 1.0)) - 1.0);
    const double support = alphaMajor_ * rhoCut_;
    if (!(support <= kMaxPsfRadius))
        throw DataError("Moffat PSF: support radius " + num(support) + " px exceeds " + std::to_string(kMaxPsfRadius) +
                        " px (fwhm " + num(psf.fwhmPx) + ", beta " + num(psf.beta) +
                        "); use a larger wingFraction or beta");
    radius_ = static_cast<int>(std::ceil(support));
    const TaperedMoffat f(alphaMajor_, alphaMinor_, cosPa_, sinPa_, psf.beta, rhoCut_);

    // Fine grid of M x M cells of 1/O px covering [-H, H]^2, H = R + 1.5, sampled at cell centres.
    // The profile is point-symmetric, so the upper half mirrors the lower.
    const int O = oversample_;
    const int M = (2 * radius_ + 3) * O;
    const double H = radius_ + 1.5, h = 1.0 / O;
    std::vector<double> fine(static_cast<std::size_t>(M) * static_cast<std::size_t>(M));
    auto at = [&](int a, int b) -> double& {
        return fine[static_cast<std::size_t>(b) * static_cast<std::size_t>(M) + static_cast<std::size_t>(a)];
    };
    double sum = 0.0;
    for (int b = 0; b < M / 2; ++b) {
        const double v = -H + (b + 0.5) * h;
        for (int a = 0; a < M; ++a) {
            const double val = f(-H + (a + 0.5) * h, v);
            at(a, b) = val;
            at(M - 1 - a, M - 1 - b) = val;
            sum += 2.0 * val;
        }
    }
    // sum * h^2 is the integral of the tapered profile (midpoint rule, error ~ h^2/24 of the Laplacian
    // integral, which vanishes): that is the normalisation of density() too.
    norm_ = 1.0 / (sum * h * h);
    for (double& v : fine) v /= sum;

    // Box sums over O x O cells at every fine offset: a pixel-sized box whose lower-left corner sits
    // at fine offset (a, b). Rows first, then columns, with running sums.
    const int T = M - O + 1;
    tableSize_ = T;
    std::vector<double> rows(static_cast<std::size_t>(T) * static_cast<std::size_t>(M));
    for (int b = 0; b < M; ++b) {
        const double* src = &fine[static_cast<std::size_t>(b) * static_cast<std::size_t>(M)];
        double run = 0.0;
        for (int a = 0; a < O; ++a) run += src[a];
        double* dst = &rows[static_cast<std::size_t>(b) * static_cast<std::size_t>(T)];
        dst[0] = run;
        for (int a = 1; a < T; ++a) {
            run += src[a + O - 1] - src[a - 1];
            dst[a] = run;
        }
    }
    table_.assign(static_cast<std::size_t>(T) * static_cast<std::size_t>(T), 0.0f);
    std::vector<double> run(static_cast<std::size_t>(T), 0.0);
    auto rowPtr = [&](int b) { return &rows[static_cast<std::size_t>(b) * static_cast<std::size_t>(T)]; };
    for (int b = 0; b < O; ++b) {
        const double* r = rowPtr(b);
        for (int a = 0; a < T; ++a) run[static_cast<std::size_t>(a)] += r[a];
    }
    for (int b = 0; b < T; ++b) {
        if (b > 0) {
            const double* add = rowPtr(b + O - 1);
            const double* sub = rowPtr(b - 1);
            for (int a = 0; a < T; ++a) run[static_cast<std::size_t>(a)] += add[a] - sub[a];
        }
        float* dst = &table_[static_cast<std::size_t>(b) * static_cast<std::size_t>(T)];
        for (int a = 0; a < T; ++a) dst[a] = static_cast<float>(run[static_cast<std::size_t>(a)]);
    }
}

double PsfRenderer::density(double dx, double dy) const noexcept {
    const TaperedMoffat f(alphaMajor_, alphaMinor_, cosPa_, sinPa_, psf_.beta, rhoCut_);
    return norm_ * f(dx, dy);
}

Image<double> PsfRenderer::pointKernel() const {
    const int n = 2 * radius_ + 1;
    Image<double> k(n, n, 0.0);
    const TaperedMoffat f(alphaMajor_, alphaMinor_, cosPa_, sinPa_, psf_.beta, rhoCut_);
    double sum = 0.0;
    for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
            const double v = f(x - radius_, y - radius_);
            k(x, y) = v;
            sum += v;
        }
    for (double& v : k.pixels()) v /= sum;
    return k;
}

template <class T>
void PsfRenderer::addImpl(Image<T>& image, double x, double y, double flux) const {
    if (!std::isfinite(x) || !std::isfinite(y) || flux == 0.0) return;
    const int R = radius_, O = oversample_, TS = tableSize_;
    const double fx0 = std::floor(x), fy0 = std::floor(y);
    // Far outside: nothing to draw (also keeps the int conversions below in range).
    if (fx0 + R + 1 < 0 || fy0 + R + 1 < 0 || fx0 - R >= image.width() || fy0 - R >= image.height()) return;
    const int ix = static_cast<int>(fx0), iy = static_cast<int>(fy0);
    // Phase in 1/O steps: the box's lower edge sits at fine offset (d + R + 1) * O - phase * O.
    const double px = (x - fx0) * O, py = (y - fy0) * O;
    int kx = static_cast<int>(px), ky = static_cast<int>(py);
    kx = std::min(kx, O - 1);
    ky = std::min(ky, O - 1);
    const double tx = px - kx, ty = py - ky;
    const double w00 = (1 - tx) * (1 - ty) * flux, w10 = tx * (1 - ty) * flux, w01 = (1 - tx) * ty * flux,
                 w11 = tx * ty * flux;
    const int dx0 = std::max(-R, -ix), dx1 = std::min(R + 1, image.width() - 1 - ix);
    const int dy0 = std::max(-R, -iy), dy1 = std::min(R + 1, image.height() - 1 - iy);
    const float* tab = table_.data();
    for (int dy = dy0; dy <= dy1; ++dy) {
        const int bHi = (dy + R + 1) * O - ky;
        const float* rHi = tab + static_cast<std::ptrdiff_t>(bHi) * TS;
        const float* rLo = rHi - TS;  // bHi - 1 >= 0 always (ky <= O - 1)
        T* out = &image(ix + dx0, iy + dy);
        for (int dx = dx0; dx <= dx1; ++dx) {
            const int aHi = (dx + R + 1) * O - kx;
            const double v = w00 * rHi[aHi] + w10 * rHi[aHi - 1] + w01 * rLo[aHi] + w11 * rLo[aHi - 1];
            *out++ += static_cast<T>(v);
        }
    }
}

void PsfRenderer::add(Image<double>& image, double x, double y, double flux) const { addImpl(image, x, y, flux); }
void PsfRenderer::add(Image<float>& image, double x, double y, double flux) const { addImpl(image, x, y, flux); }

void renderPointSource(Image<float>& image, double x, double y, double flux, const MoffatPsf& psf) {
    PsfRenderer(psf).add(image, x, y, flux);
}

// ---------------------------------------------------------------------------------------------
// FFT: FFTW complex 2-D transforms (unnormalised, like FFTW itself) on small power-of-two stamps.

namespace {
using Cplx = std::complex<double>;
static_assert(sizeof(Cplx) == sizeof(fftw_complex), "std::complex<double> is layout-compatible with fftw_complex");

std::mutex g_fftwPlanMutex;  // FFTW's planner is not thread-safe; execution is

class Fft {
public:
    explicit Fft(int n) : n_(n) {
        std::vector<Cplx> scratch(static_cast<std::size_t>(n) * static_cast<std::size_t>(n));
        auto* buf = reinterpret_cast<fftw_complex*>(scratch.data());
        std::lock_guard lock(g_fftwPlanMutex);
        // FFTW_UNALIGNED: executed later on other std::vector buffers (new-array execute).
        forward_ = fftw_plan_dft_2d(n, n, buf, buf, FFTW_FORWARD, FFTW_ESTIMATE | FFTW_UNALIGNED);
        backward_ = fftw_plan_dft_2d(n, n, buf, buf, FFTW_BACKWARD, FFTW_ESTIMATE | FFTW_UNALIGNED);
        if (!forward_ || !backward_) throw DataError("FFTW could not plan a " + std::to_string(n) + "^2 transform");
    }
    ~Fft() {
        std::lock_guard lock(g_fftwPlanMutex);
        if (forward_) fftw_destroy_plan(forward_);
        if (backward_) fftw_destroy_plan(backward_);
    }
    Fft(const Fft&) = delete;
    Fft& operator=(const Fft&) = delete;
    int size() const { return n_; }

    /// In-place 2-D n x n transform, row-major; the inverse is unnormalised.
    void transform2d(std::vector<Cplx>& data, bool inverse) const {
        auto* p = reinterpret_cast<fftw_complex*>(data.data());
        fftw_execute_dft(inverse ? backward_ : forward_, p, p);
    }

private:
    int n_;
    fftw_plan forward_ = nullptr;
    fftw_plan backward_ = nullptr;
};

int nextPow2(int v) {
    int n = 1;
    while (n < v) n <<= 1;
    return n;
}

// A galaxy's intrinsic, pixel-integrated stamp (2 * half + 1 square) centred on pixel (cx, cy).
struct IntrinsicStamp {
    int cx = 0, cy = 0, half = 0;
    std::vector<double> pix;
};

void validate(const SersicGalaxy& g) {
    const auto& J = g.jacobian;
    const double det = J[0] * J[3] - J[1] * J[2];
    if (!std::isfinite(g.x) || !std::isfinite(g.y) || !std::isfinite(g.flux) || g.flux < 0.0)
        throw DataError("Sersic galaxy: position and flux must be finite, flux >= 0");
    if (!(g.sersicIndex >= 0.5 && g.sersicIndex <= 4.0))
        throw DataError("Sersic galaxy: index must be in [0.5, 4] (got " + num(g.sersicIndex) + ")");
    if (!(g.halfLightRadius > 0.0) || !std::isfinite(g.halfLightRadius))
        throw DataError("Sersic galaxy: halfLightRadius must be > 0");
    if (!(g.axisRatio > 0.0 && g.axisRatio <= 1.0))
        throw DataError("Sersic galaxy: axisRatio must be in (0, 1] (got " + num(g.axisRatio) + ")");
    if (!(std::fabs(det) > 0.0) || !std::isfinite(det)) throw DataError("Sersic galaxy: singular jacobian");
}

IntrinsicStamp intrinsicStamp(const SersicGalaxy& g) {
    const auto& J = g.jacobian;
    // Smallest singular value of J: the frame length of the shortest pixel step, which bounds the
    // pixel extent of a frame-space circle.
    const double a = J[0], b = J[1], c = J[2], d = J[3];
    const double s1 = a * a + b * b + c * c + d * d, det = a * d - b * c;
    const double disc = std::sqrt(std::max(0.0, s1 * s1 - 4.0 * det * det));
    const double sigmaMin = std::sqrt(std::max(1e-300, 0.5 * (s1 - disc)));
    constexpr double kGalTaperStart = 5.0, kCut = 6.0;
    const double re = g.halfLightRadius;
    const double reachPx = kCut * re / sigmaMin;
    const double rePx = re / sigmaMin;
    if (!(reachPx < kMaxGalaxyFft / 2 - 2)) throw DataError("Sersic galaxy: too large to render (" + num(reachPx) + " px)");

    IntrinsicStamp st;
    st.half = static_cast<int>(std::ceil(reachPx)) + 1;
    st.cx = static_cast<int>(std::lround(g.x));
    st.cy = static_cast<int>(std::lround(g.y));
    const double ox = g.x - st.cx, oy = g.y - st.cy;
    const int w = 2 * st.half + 1;
    st.pix.assign(static_cast<std::size_t>(w) * static_cast<std::size_t>(w), 0.0);

    const double n = g.sersicIndex, bn = sersicB(n), invN = 1.0 / n;
    const double sPa = std::sin(g.positionAngleDeg * kDeg), cPa = std::cos(g.positionAngleDeg * kDeg);
    const double invRe = 1.0 / re, invQ = 1.0 / g.axisRatio;
    auto profile = [&](double px, double py) {
        const double t0 = a * px + b * py, t1 = c * px + d * py;  // frame (east, north)
        const double major = t0 * sPa + t1 * cPa, minor = t0 * cPa - t1 * sPa;
        const double mm = major * invRe, nn = minor * invQ * invRe;
        const double rho = std::sqrt(mm * mm + nn * nn);
        if (rho >= kCut) return 0.0;
        double v = std::exp(-bn * std::pow(rho, invN));
        if (rho > kGalTaperStart) v *= 0.5 * (1.0 + std::cos(kPi * (rho - kGalTaperStart) / (kCut - kGalTaperStart)));
        return v;
    };
    double sum = 0.0;
    for (int j = 0; j < w; ++j)
        for (int i = 0; i < w; ++i) {
            const double pxc = (i - st.half) - ox, pyc = (j - st.half) - oy;
            const double dist = std::hypot(pxc, pyc);
            if (dist > reachPx + 1.0) continue;
            // Sub-sampling: the cusp of a Sersic profile needs fine steps near the centre only.
            const int s = dist < 2.5 ? 16 : (dist < std::max(5.0, 1.5 * rePx) ? 6 : 3);
            const double step = 1.0 / s;
            double acc = 0.0;
            for (int v = 0; v < s; ++v) {
                const double py = pyc - 0.5 + (v + 0.5) * step;
                for (int u = 0; u < s; ++u) acc += profile(pxc - 0.5 + (u + 0.5) * step, py);
            }
            acc /= s * s;
            st.pix[static_cast<std::size_t>(j) * static_cast<std::size_t>(w) + static_cast<std::size_t>(i)] = acc;
            sum += acc;
        }
    if (sum > 0.0)
        for (double& v : st.pix) v *= g.flux / sum;
    return st;
}

void addStampCentred(Image<double>& image, const std::vector<Cplx>& data, int n, int cx, int cy, int reach,
                     bool imagPart) {
    const int c = n / 2;
    const int y0 = std::max(cy - reach, 0), y1 = std::min(cy + reach, image.height() - 1);
    const int x0 = std::max(cx - reach, 0), x1 = std::min(cx + reach, image.width() - 1);
    const double scale = 1.0 / (static_cast<double>(n) * static_cast<double>(n));
    for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) {
            const Cplx& z = data[static_cast<std::size_t>(c + y - cy) * static_cast<std::size_t>(n) +
                                 static_cast<std::size_t>(c + x - cx)];
            image(x, y) += (imagPart ? z.imag() : z.real()) * scale;
        }
}
}  // namespace

double sersicB(double n) {
    return 2.0 * n - 1.0 / 3.0 + 4.0 / (405.0 * n) + 46.0 / (25515.0 * n * n) + 131.0 / (1148175.0 * n * n * n) -
           2194697.0 / (30690717750.0 * n * n * n * n);
}

void renderGalaxy(Image<double>& image, const SersicGalaxy& galaxy, const PsfRenderer& psf) {
    renderGalaxies(image, std::vector<SersicGalaxy>{galaxy}, psf);
}

void renderGalaxies(Image<double>& image, const std::vector<SersicGalaxy>& galaxies, const PsfRenderer& psf) {
    for (const SersicGalaxy& g : galaxies) validate(g);
    const int R = psf.radiusPx();
    const Image<double> kernel = psf.pointKernel();

    // Stamps that can touch the image, grouped by FFT size so that two share one complex transform.
    std::map<int, std::vector<IntrinsicStamp>> bySize;
    for (const SersicGalaxy& g : galaxies) {
        if (g.flux == 0.0) continue;
        IntrinsicStamp st = intrinsicStamp(g);
        const int reach = st.half + R;
        if (st.cx + reach < 0 || st.cy + reach < 0 || st.cx - reach >= image.width() ||
            st.cy - reach >= image.height())
            continue;
        // Linear convolution support 2 * reach + 1 must fit without wrapping around.
        const int n = nextPow2(2 * reach + 2);
        bySize[n].push_back(std::move(st));
    }

    for (auto& [n, stamps] : bySize) {
        const Fft fft(n);
        const auto nn = static_cast<std::size_t>(n);
        // The kernel is point-symmetric, so its transform is real: one real spectrum filters the real
        // and the imaginary (second galaxy) parts independently.
        std::vector<Cplx> kf(nn * nn, Cplx(0.0, 0.0));
        for (int y = -R; y <= R; ++y)
            for (int x = -R; x <= R; ++x)
                kf[static_cast<std::size_t>((y + n) % n) * nn + static_cast<std::size_t>((x + n) % n)] =
                    kernel(x + R, y + R);
        fft.transform2d(kf, false);
        std::vector<Cplx> data(nn * nn);
        for (std::size_t p = 0; p < stamps.size(); p += 2) {
            std::fill(data.begin(), data.end(), Cplx(0.0, 0.0));
            const int c = n / 2;
            for (std::size_t q = p; q < std::min(p + 2, stamps.size()); ++q) {
                const IntrinsicStamp& st = stamps[q];
                const int w = 2 * st.half + 1;
                for (int j = 0; j < w; ++j)
                    for (int i = 0; i < w; ++i) {
                        const double v =
                            st.pix[static_cast<std::size_t>(j) * static_cast<std::size_t>(w) + static_cast<std::size_t>(i)];
                        Cplx& z = data[static_cast<std::size_t>(c + j - st.half) * nn +
                                       static_cast<std::size_t>(c + i - st.half)];
                        if (q == p)
                            z.real(v);
                        else
                            z.imag(v);
                    }
            }
            fft.transform2d(data, false);
            for (std::size_t i = 0; i < data.size(); ++i) data[i] *= kf[i].real();
            fft.transform2d(data, true);
            addStampCentred(image, data, n, stamps[p].cx, stamps[p].cy, stamps[p].half + R, false);
            if (p + 1 < stamps.size())
                addStampCentred(image, data, n, stamps[p + 1].cx, stamps[p + 1].cy, stamps[p + 1].half + R, true);
        }
    }
}

}  // namespace astrid::sim
