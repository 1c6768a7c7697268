// ZOGY (Zackay, Ofek & Gal-Yam 2016). Equation numbers refer to that paper.
#include "astrid/diff/zogy.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <numbers>
#include <sstream>
#include <vector>

#include <unistd.h>

#include "astrid/core/error.hpp"
#include "astrid/core/stats.hpp"
#include "fft.hpp"

namespace astrid::diff {
namespace {
using Clock = std::chrono::steady_clock;
double seconds(Clock::time_point a, Clock::time_point b) { return std::chrono::duration<double>(b - a).count(); }
using fft::Buffer;
using fft::Complex;
using fft::Plan2d;
using fft::Real;

/// Places a centred PSF stamp with its centre pixel at the origin (wrapped), as FFT convolution wants.
void embedPsf(const Image<double>& stamp, Buffer<Real>& out, int w, int h) {
    std::fill(out.data(), out.data() + out.size(), 0.0);
    const int hx = stamp.width() / 2, hy = stamp.height() / 2;
    for (int j = 0; j < stamp.height(); ++j)
        for (int i = 0; i < stamp.width(); ++i) {
            const int x = ((i - hx) % w + w) % w, y = ((j - hy) % h + h) % h;
            out[static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x)] += static_cast<Real>(stamp(i, j));
        }
}

void checkStamp(const Image<double>& s, const char* which) {
    if (s.width() % 2 == 0 || s.height() % 2 == 0 || s.empty())
        throw DataError(std::string(which) + " PSF stamp must have odd, non-zero sides");
    double sum = 0.0;
    for (double v : s.pixels()) sum += v;
    if (!(sum > 0.0) || !std::isfinite(sum)) throw DataError(std::string(which) + " PSF stamp has no positive finite sum");
}
}  // namespace

void setFftEffort(FftEffort effort) { fft::setEffort(effort == FftEffort::Measure); }
std::string exportFftWisdom() { return fft::exportWisdom(); }
bool importFftWisdom(const std::string& wisdom) { return fft::importWisdom(wisdom); }
void withFftPlannerLocked(const std::function<void()>& f) { fft::withPlannerLocked(f); }

bool importFftWisdomFile(const std::string& path) {
    std::error_code ec;
    if (!std::filesystem::exists(path, ec)) return false;
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    if (!in.good() && !in.eof()) throw IoError("cannot read the FFTW wisdom file " + path);
    if (!fft::importWisdom(text.str()))
        throw IoError("FFTW rejects the wisdom file " + path + " (made by another FFTW version? delete it to re-plan)");
    return true;
}

void exportFftWisdomFile(const std::string& path) {
    const std::string text = fft::exportWisdom();
    const std::string tmp = path + ".tmp" + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        out << text;
        out.close();
        if (!out) throw IoError("cannot write the FFTW wisdom file " + tmp);
    }
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) {
        std::filesystem::remove(tmp, ec);
        throw IoError("cannot rename " + tmp + " to " + path);
    }
}

int goodFftSize(int minimum) {
    // Multiples of 16 whose other factors are 3 and 5: the sizes FFTW's codelets do fastest
    // (measured: 1152^2 r2c+c2r 14 ms against 17.6 ms for 1120^2, FFTW_ESTIMATE).
    for (int n = std::max(minimum, 16);; ++n) {
        if (n % 16 != 0) continue;
        int m = n;
        for (int p : {2, 3, 5})
            while (m % p == 0) m /= p;
        if (m == 1) return n;
    }
}

namespace {
/// Everything that depends only on the PSFs, the noise levels and the transform shape: computed
/// once and reused by every tile with the same PSF stamps (the common case of a constant PSF).
struct Kernels {
    Image<double> psfN, psfR;
    double sn = 0, sr = 0;
    int fw = 0, fh = 0;
    Buffer<Complex> dN, dR;    // D^ = dN N^ - dR R^            (eq 13)
    Buffer<Complex> kN, kR;    // S_N^ = kN N^, S_R^ = kR R^      (eqs 28-29)
    Buffer<Complex> kN2, kR2;  // spectra of k_n^2 and k_r^2     (eqs 26-27)
    double sumKn2 = 0, sumKr2 = 0;
    Buffer<Complex> dN2, dR2;  // spectra of d_n^2 and d_r^2 (the variance of D), when asked for
    double sumDn2 = 0, sumDr2 = 0;
    bool hasDiffVariance = false;
    double fD = 0, fS = 0;
    double dcGain = 0;  // S / D at zero frequency (raw units): a constant c in D is c dcGain in S
    Image<double> psfD;

    bool matches(const Image<double>& n, const Image<double>& r, double sN, double sR, int w, int h,
                 bool wantDiffVariance) const {
        auto same = [](const Image<double>& a, const Image<double>& b) {
            return a.width() == b.width() && a.height() == b.height() &&
                   std::equal(a.pixels().begin(), a.pixels().end(), b.pixels().begin());
        };
        return fw == w && fh == h && sn == sN && sr == sR && same(psfN, n) && same(psfR, r) &&
               (hasDiffVariance || !wantDiffVariance);
    }
};

void buildKernels(Kernels& k, const Image<double>& psfN, const Image<double>& psfR, double sn, double sr, double Fr,
                  int fw, int fh, double psfFloor, bool diffVariance) {
    const Plan2d& plan = Plan2d::get(fw, fh);
    const std::size_t nr = plan.realSize(), nc = plan.spectrumSize();
    const double norm = 1.0 / static_cast<double>(nr);
    k.psfN = psfN, k.psfR = psfR, k.sn = sn, k.sr = sr, k.fw = fw, k.fh = fh;
    Buffer<Real> pn(nr), pr(nr);
    embedPsf(psfN, pn, fw, fh);
    embedPsf(psfR, pr, fw, fh);
    Buffer<Complex> Pn(nc), Pr(nc);
    plan.forward(pn, Pn);
    plan.forward(pr, Pr);
    const std::complex<double> pn0(Pn[0]), pr0(Pr[0]);  // normalise to unit sum exactly
    const double sn2 = sn * sn, sr2 = sr * sr;
    k.fD = Fr / std::sqrt(sn2 * Fr * Fr + sr2);  // eq 15
    const double floorD2 = psfFloor * (sn2 * Fr * Fr + sr2);
    k.dN = Buffer<Complex>(nc), k.dR = Buffer<Complex>(nc), k.kN = Buffer<Complex>(nc), k.kR = Buffer<Complex>(nc);
    Buffer<Complex> PD(nc), tmp(nc);
    const int wc = fw / 2 + 1;
    double fS = 0.0;
    for (int j = 0; j < fh; ++j)
        for (int i = 0; i < wc; ++i) {
            const std::size_t q = static_cast<std::size_t>(j) * static_cast<std::size_t>(wc) + static_cast<std::size_t>(i);
            const std::complex<double> p_n = std::complex<double>(Pn[q]) / pn0, p_r = std::complex<double>(Pr[q]) / pr0;
            const double an = std::norm(p_n), ar = std::norm(p_r);
            const double d2 = sn2 * Fr * Fr * ar + sr2 * an + floorD2;  // eq 12, squared
            const double sq = std::sqrt(d2);
            k.dN[q] = Complex(Fr * p_r / sq);
            k.dR[q] = Complex(p_n / sq);
            k.kN[q] = Complex(Fr * Fr * ar * std::conj(p_n) / d2);
            k.kR[q] = Complex(Fr * an * std::conj(p_r) / d2);
            PD[q] = Complex(Fr * p_n * p_r / (k.fD * sq));  // eq 14
            if (q == 0) k.dcGain = std::real(std::complex<double>(k.kN[q]) / std::complex<double>(k.dN[q]));
            // F_S (eq 42) over the full spectrum: interior half-spectrum columns count twice.
            const double weight = (i == 0 || (fw % 2 == 0 && i == fw / 2)) ? 1.0 : 2.0;
            fS += weight * Fr * Fr * an * ar / d2;
        }
    k.fS = fS * norm;
    // k_n^2 and k_r^2 in real space, then their spectra.
    auto squaredSpectrum = [&](const Buffer<Complex>& K, Buffer<Complex>& out, double& sum) {
        std::copy(K.data(), K.data() + nc, tmp.data());
        Buffer<Real> kr(nr);
        plan.inverse(tmp, kr);
        sum = 0.0;
        for (std::size_t q = 0; q < nr; ++q) {
            const double v = kr[q] * norm;
            kr[q] = static_cast<Real>(v * v);
            sum += v * v;
        }
        out = Buffer<Complex>(nc);
        plan.forward(kr, out);
    };
    squaredSpectrum(k.kN, k.kN2, k.sumKn2);
    squaredSpectrum(k.kR, k.kR2, k.sumKr2);
    // var(D) = V_n (x) d_n^2 + V_r (x) d_r^2 for independent pixel noise, as V(S) is for S.
    k.hasDiffVariance = diffVariance;
    if (diffVariance) {
        squaredSpectrum(k.dN, k.dN2, k.sumDn2);
        squaredSpectrum(k.dR, k.dR2, k.sumDr2);
    }
    Buffer<Real> pd(nr);
    plan.inverse(PD, pd);
    const int half = std::max({psfN.width(), psfN.height(), psfR.width(), psfR.height()}) / 2;
    k.psfD = Image<double>(2 * half + 1, 2 * half + 1, 0.0);
    for (int j = -half; j <= half; ++j)
        for (int i = -half; i <= half; ++i) {
            const int x = (i + fw) % fw, y = (j + fh) % fh;
            k.psfD(i + half, j + half) = pd[static_cast<std::size_t>(y) * static_cast<std::size_t>(fw) + static_cast<std::size_t>(x)] * norm;
        }
}

/// Median of sqrt(variance) over (a regular subsample of at most ~1M of) the good pixels.
double imageSigma(const Image<float>& var, const Image<std::uint16_t>* mask, std::uint16_t bad) {
    const std::size_t n = var.size();
    const std::size_t stride = std::max<std::size_t>(1, n / (1u << 20));
    std::vector<float> v;
    v.reserve(n / stride + 1);
    for (std::size_t i = 0; i < n; i += stride) {
        const float s = var.data()[i];
        if ((!mask || (mask->data()[i] & bad) == 0) && std::isfinite(s) && s > 0.0f) v.push_back(s);
    }
    if (v.empty()) return 0.0;
    auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    return std::sqrt(static_cast<double>(*mid));
}
}  // namespace

ZogyResult zogy(const ZogyInput& in, const ZogyConfig& cfg) {
    if (in.mask && in.science && (in.mask->width() != in.science->width() || in.mask->height() != in.science->height()))
        throw DataError("zogy: science, reference, variance and mask images differ in size");
    ZogyInput rest = in;
    rest.mask = nullptr;
    return zogy(rest, cfg, in.mask ? *in.mask : Image<std::uint16_t>());
}

ZogyResult zogy(const ZogyInput& in, const ZogyConfig& cfg, Image<std::uint16_t> combinedMask) {
    if (in.mask) throw DataError("zogy: pass the mask either in the input or as the adopted mask, not both");
    if (!in.science || !in.reference || !in.scienceVariance || !in.referenceVariance)
        throw DataError("zogy: science, reference and both variance images are required");
    const int W = in.science->width(), H = in.science->height();
    auto sameSize = [&](int w, int h) { return w == W && h == H; };
    if (!sameSize(in.reference->width(), in.reference->height()) ||
        !sameSize(in.scienceVariance->width(), in.scienceVariance->height()) ||
        !sameSize(in.referenceVariance->width(), in.referenceVariance->height()) ||
        (!combinedMask.empty() && !sameSize(combinedMask.width(), combinedMask.height())))
        throw DataError("zogy: science, reference, variance and mask images differ in size");
    if (!in.sciencePsf || !in.referencePsf) throw DataError("zogy: both PSF providers are required");
    if (!(in.fluxRatio > 0.0) || !std::isfinite(in.fluxRatio))
        throw DataError("zogy: flux ratio must be finite and > 0 (got " + std::to_string(in.fluxRatio) + ")");
    const std::uint16_t bad = cfg.badMask;
    ZogyResult out;
    // The combined mask becomes the result's mask: read during the tiles, Edge added at the end.
    const bool haveMask = !combinedMask.empty();
    out.mask = haveMask ? std::move(combinedMask) : Image<std::uint16_t>(W, H, 0);
    const Image<std::uint16_t>* inMask = haveMask ? &out.mask : nullptr;
    const double Fr = in.fluxRatio;  // F_n = 1
    const double sn = in.sigmaScience > 0 ? in.sigmaScience : imageSigma(*in.scienceVariance, inMask, bad);
    const double sr = in.sigmaReference > 0 ? in.sigmaReference : imageSigma(*in.referenceVariance, inMask, bad);
    if (!(sn > 0.0) || !(sr > 0.0)) throw DataError("zogy: no usable pixels to estimate the background noise");
    const float vnBackground = static_cast<float>(sn * sn), vrBackground = static_cast<float>(sr * sr);

    const float nan = std::numeric_limits<float>::quiet_NaN();
    // Every pixel is written by exactly one tile (NaN where excluded): no fill pass.
    out.diff = Image<float>(W, H, Uninitialized{});
    if (cfg.keepScore) out.score = Image<float>(W, H, Uninitialized{});
    out.scorr = Image<float>(W, H, Uninitialized{});
    if (cfg.keepScoreVariance) out.scoreVariance = Image<float>(W, H, Uninitialized{});
    if (cfg.keepDiffVariance) out.diffVariance = Image<float>(W, H, Uninitialized{});
    out.sigmaScience = sn;
    out.sigmaReference = sr;

    const int core = cfg.tilePx > 0 ? cfg.tilePx : std::max(W, H);
    const int nx = (W + core - 1) / core, ny = (H + core - 1) / core;
    const int tw = (W + nx - 1) / nx, th = (H + ny - 1) / ny;  // equal tiles: no slivers at the edges
    const double sx2 = cfg.astrometricSigmaXPx * cfg.astrometricSigmaXPx;
    const double sy2 = cfg.astrometricSigmaYPx * cfg.astrometricSigmaYPx;
    const bool astrometric = sx2 > 0.0 || sy2 > 0.0;

    Kernels k;
    // Four real and four half-spectrum buffers per tile, each reused: the inputs N, R, V_n, V_r are
    // dead after their forward transforms and receive D, S_N, S_R and V(S); Vr is the work spectrum
    // of D once V(S) is done (and the only extra one without source noise).
    Buffer<Real> n, r, vn, vr;
    Buffer<Complex> Nh, Rh, Vh, Vr;
    Buffer<Real> VD;     // var(D), with keepDiffVariance and source noise
    Buffer<Complex> VDh;
    double bestCentre = std::numeric_limits<double>::infinity();
    std::vector<double> offsetSample;
    for (int ty = 0; ty < ny; ++ty)
        for (int tx = 0; tx < nx; ++tx) {
            const Box tile{tx * tw, ty * th, std::min(W, (tx + 1) * tw), std::min(H, (ty + 1) * th)};
            const double px = 0.5 * (tile.x0 + tile.x1 - 1), py = 0.5 * (tile.y0 + tile.y1 - 1);
            auto t0 = Clock::now();
            const Image<double> psfN = in.sciencePsf(px, py);
            const Image<double> psfR = in.referencePsf(px, py);
            checkStamp(psfN, "science");
            checkStamp(psfR, "reference");
            const int half = std::max({psfN.width(), psfN.height(), psfR.width(), psfR.height()}) / 2;
            // An overlap narrower than the PSF's half-size cannot hold the PSF: the tile's transform is
            // then smaller than the stamp, which embedPsf wraps onto itself (test_bad_pairs: FWHM 15 px,
            // tile 64, overlap 8, a 129 px stamp in an 80 px transform: against the whole image at once,
            // S_corr off by up to 19 and D by 0.20 sigma RMS). Such an overlap gets the default, 3 x the
            // half-size: D's kernel reaches further than the PSF, and at exactly the half-size D was
            // still off by 0.10 sigma RMS, 1.6 at worst (S_corr 0.03); at 3 x, 0.004 sigma RMS, 0.05 at
            // worst on unflagged pixels (S_corr 3e-4).
            const int margin = cfg.overlapPx >= half ? cfg.overlapPx : 3 * half;
            const Box region{tile.x0 - margin, tile.y0 - margin, tile.x1 + margin, tile.y1 + margin};
            const int fw = goodFftSize(region.width()), fh = goodFftSize(region.height());
            const Plan2d& plan = Plan2d::get(fw, fh);
            const std::size_t nr = plan.realSize(), nc = plan.spectrumSize();
            const Real norm = static_cast<Real>(1.0 / static_cast<double>(nr));
            if (!k.matches(psfN, psfR, sn, sr, fw, fh, cfg.keepDiffVariance))
                buildKernels(k, psfN, psfR, sn, sr, Fr, fw, fh, cfg.psfFloor, cfg.keepDiffVariance);
            auto t1 = Clock::now();
            out.timing.kernelsS += seconds(t0, t1);
            if (n.size() != nr) {
                n = Buffer<Real>(nr), r = Buffer<Real>(nr), vn = Buffer<Real>(nr), Nh = Buffer<Complex>(nc),
                Rh = Buffer<Complex>(nc), Vr = Buffer<Complex>(nc);
                if (cfg.sourceNoise) vr = Buffer<Real>(nr), Vh = Buffer<Complex>(nc);
                if (cfg.sourceNoise && cfg.keepDiffVariance) VD = Buffer<Real>(nr), VDh = Buffer<Complex>(nc);
            }
            Buffer<Real>& D = n;
            Buffer<Real>& SN = r;
            Buffer<Real>& SR = vn;
            Buffer<Real>& V = vr;

            // Load the tile (region.x0/y0 at FFT index 0). Bad or missing pixels become the background
            // (0) with background variance: nothing bright is left to ring.
            const int xa = std::max(region.x0, 0), xb = std::min({region.x1, W, region.x0 + fw});
            for (int j = 0; j < fh; ++j) {
                const int y = region.y0 + j;
                const std::size_t row = static_cast<std::size_t>(j) * static_cast<std::size_t>(fw);
                Real* nr0 = n.data() + row;
                Real* rr0 = r.data() + row;
                Real* vn0 = cfg.sourceNoise ? vn.data() + row : nullptr;
                Real* vr0 = cfg.sourceNoise ? vr.data() + row : nullptr;
                std::fill(nr0, nr0 + fw, Real{0});
                std::fill(rr0, rr0 + fw, Real{0});
                if (vn0) {
                    std::fill(vn0, vn0 + fw, vnBackground);
                    std::fill(vr0, vr0 + fw, vrBackground);
                }
                if (y < 0 || y >= H || y >= region.y1 || xa >= xb) continue;
                const std::size_t off = static_cast<std::size_t>(y) * static_cast<std::size_t>(W);
                const float* a = in.science->data() + off;
                const float* b = in.reference->data() + off;
                const float* va = in.scienceVariance->data() + off;
                const float* vb = in.referenceVariance->data() + off;
                const std::uint16_t* m = inMask ? inMask->data() + off : nullptr;
                for (int x = xa; x < xb; ++x) {
                    const float a0 = a[x], b0 = b[x], va0 = va[x], vb0 = vb[x];
                    // Finite values and finite positive variances (a - a is NaN for inf and NaN).
                    const bool good = (!m || (m[x] & bad) == 0) && a0 - a0 == 0.0f && b0 - b0 == 0.0f &&
                                      va0 - va0 == 0.0f && vb0 - vb0 == 0.0f && va0 > 0.0f && vb0 > 0.0f;
                    if (!good) continue;
                    const int i = x - region.x0;
                    nr0[i] = a0;
                    rr0[i] = b0;
                    if (vn0) vn0[i] = va0, vr0[i] = vb0;
                }
            }
            t0 = Clock::now();
            out.timing.loadS += seconds(t1, t0);
            plan.forward(n, Nh);
            plan.forward(r, Rh);
            // V(S) = V_n (x) k_n^2 + V_r (x) k_r^2 (eqs 26-27), one inverse transform for both.
            if (cfg.sourceNoise) {
                plan.forward(vn, Vh);
                plan.forward(vr, Vr);
                if (cfg.keepDiffVariance) {
                    for (std::size_t q = 0; q < nc; ++q) VDh[q] = Vh[q] * k.dN2[q] + Vr[q] * k.dR2[q];
                    plan.inverse(VDh, VD);
                }
                for (std::size_t q = 0; q < nc; ++q) Vh[q] = Vh[q] * k.kN2[q] + Vr[q] * k.kR2[q];
                plan.inverse(Vh, V);
            }
            Buffer<Complex>& work = Vr;
            for (std::size_t q = 0; q < nc; ++q) work[q] = k.dN[q] * Nh[q] - k.dR[q] * Rh[q];
            plan.inverse(work, D);
            for (std::size_t q = 0; q < nc; ++q) Nh[q] *= k.kN[q];
            plan.inverse(Nh, SN);
            for (std::size_t q = 0; q < nc; ++q) Rh[q] *= k.kR[q];
            plan.inverse(Rh, SR);
            const double constantV = sn * sn * k.sumKn2 + sr * sr * k.sumKr2;
            const double constantVD = sn * sn * k.sumDn2 + sr * sr * k.sumDr2;
            t1 = Clock::now();
            out.timing.transformsS += seconds(t0, t1);

            const std::size_t fwq = static_cast<std::size_t>(fw);
            // The differential background: the median of raw D over the tile's good pixels, or a regular
            // subsample of about 2^16 of them (every k-th pixel of every k-th row): its noise is then
            // ~0.005 sigma of D, and it costs < 1 ms per 1024^2 tile.
            float dOffset = 0.0f;
            if (cfg.removeOffset) {
                offsetSample.clear();
                const int step = std::max(1, static_cast<int>(std::sqrt(static_cast<double>(tile.x1 - tile.x0) *
                                                                        (tile.y1 - tile.y0) / 65536.0)));
                for (int y = tile.y0; y < tile.y1; y += step) {
                    const Real* d0 = D.data() + static_cast<std::size_t>(y - region.y0) * fwq;
                    const std::size_t off = static_cast<std::size_t>(y) * static_cast<std::size_t>(W);
                    const float* a = in.science->data() + off;
                    const float* b = in.reference->data() + off;
                    const std::uint16_t* m = inMask ? inMask->data() + off : nullptr;
                    for (int x = tile.x0; x < tile.x1; x += step)
                        if (!(m && (m[x] & bad)) && std::isfinite(a[x]) && std::isfinite(b[x]))
                            offsetSample.push_back(d0[x - region.x0]);
                }
                if (offsetSample.size() >= 100) dOffset = static_cast<float>(medianInPlace(offsetSample));
            }
            const float sOffset = static_cast<float>(dOffset * k.dcGain);

            // Row by row in float (S_corr needs ~1e-6 relative, not double), branch-free in the
            // loop body so that it vectorises; excluded pixels are set to NaN afterwards.
            const float fnorm = norm, dScale = static_cast<float>(1.0 / k.fD);
            const float cV = static_cast<float>(constantV), fsx2 = static_cast<float>(sx2), fsy2 = static_cast<float>(sy2);
            const float halfNorm = 0.5f * fnorm;
            for (int y = tile.y0; y < tile.y1; ++y) {
                const std::size_t q0 = static_cast<std::size_t>(y - region.y0) * fwq + static_cast<std::size_t>(tile.x0 - region.x0);
                const Real* sn0 = SN.data() + q0;
                const Real* sr0 = SR.data() + q0;
                const Real* d0 = D.data() + q0;
                const Real* v0 = cfg.sourceNoise ? V.data() + q0 : nullptr;
                const std::size_t off = static_cast<std::size_t>(y) * static_cast<std::size_t>(W) + static_cast<std::size_t>(tile.x0);
                float* oD = out.diff.data() + off;
                float* oC = out.scorr.data() + off;
                float* oS = cfg.keepScore ? out.score.data() + off : nullptr;
                float* oV = cfg.keepScoreVariance ? out.scoreVariance.data() + off : nullptr;
                float* oVD = cfg.keepDiffVariance ? out.diffVariance.data() + off : nullptr;
                const int count = tile.x1 - tile.x0;
                if (oVD) {
                    // var(D / F_D) = var(D) / F_D^2 (1 / F_D^2 on pure background).
                    const float vdScale = static_cast<float>(1.0 / (k.fD * k.fD));
                    if (cfg.sourceNoise) {
                        const Real* vd0 = VD.data() + q0;
                        for (int i = 0; i < count; ++i) oVD[i] = vd0[i] * fnorm * vdScale;
                    } else {
                        std::fill(oVD, oVD + count, static_cast<float>(constantVD) * vdScale);
                    }
                }
                for (int i = 0; i < count; ++i) {
                    const float s = (sn0[i] - sr0[i] - sOffset) * fnorm;  // eq 17
                    float v = v0 ? v0[i] * fnorm : cV;
                    if (astrometric) {
                        // Astrometric noise (eqs 30-31) with central differences of S_N and S_R.
                        const float dxN = (sn0[i + 1] - sn0[i - 1]) * halfNorm, dyN = (sn0[i + fwq] - sn0[i - fwq]) * halfNorm;
                        const float dxR = (sr0[i + 1] - sr0[i - 1]) * halfNorm, dyR = (sr0[i + fwq] - sr0[i - fwq]) * halfNorm;
                        v += fsx2 * (dxN * dxN + dxR * dxR) + fsy2 * (dyN * dyN + dyR * dyR);
                    }
                    oD[i] = (d0[i] - dOffset) * fnorm * dScale;
                    oC[i] = v > 0.0f ? s / std::sqrt(v) : 0.0f;
                    if (oS) oS[i] = s;
                    if (oV) oV[i] = v;
                }
                const float* a = in.science->data() + off;
                const float* b = in.reference->data() + off;
                const std::uint16_t* m = inMask ? inMask->data() + off : nullptr;
                for (int i = 0; i < count; ++i)
                    if ((m && (m[i] & bad)) || !std::isfinite(a[i]) || !std::isfinite(b[i])) {
                        oD[i] = oC[i] = nan;
                        if (oS) oS[i] = nan;
                        if (oV) oV[i] = nan;
                        if (oVD) oVD[i] = nan;
                    }
            }

            out.timing.outputS += seconds(t1, Clock::now());
            // Report the tile nearest the image centre.
            const double dc = std::hypot(px - 0.5 * (W - 1), py - 0.5 * (H - 1));
            if (dc < bestCentre) {
                bestCentre = dc;
                out.fD = k.fD;
                out.fS = k.fS;
                out.psfD = k.psfD;
                out.fftWidth = fw;
                out.fftHeight = fh;
                out.overlapPx = margin;
                out.offset = dOffset * fnorm * dScale;
            }
            ++out.tiles;
        }

    // Flag pixels whose kernels reach a bad pixel or the image border (their values are less
    // certain): a separable box dilation of the bad-pixel map by the P_D half-size.
    const auto tMask = Clock::now();
    const int reach = out.psfD.width() / 2;
    // Rows: mark [x - reach, x + reach] around every bad pixel (a running "last bad x"), into a ring
    // of the 2 reach + 2 rows the column window needs. A row is marked before Edge is written into it
    // (row y + reach enters when row y is written), so the input's own bits are what counts.
    const int ringRows = 2 * reach + 2;
    std::vector<std::uint8_t> ring(static_cast<std::size_t>(ringRows) * static_cast<std::size_t>(W), 0);
    auto ringRow = [&](int y) { return ring.data() + static_cast<std::size_t>(y % ringRows) * static_cast<std::size_t>(W); };
    auto markRow = [&](int y) {
        std::uint8_t* o = ringRow(y);
        std::fill(o, o + W, std::uint8_t{0});
        if (!inMask) return;
        const std::uint16_t* m = &out.mask(0, y);
        int last = -1 - 2 * reach;
        for (int x = 0; x < W + reach; ++x) {
            if (x < W && (m[x] & bad)) last = x;
            const int xo = x - reach;
            if (xo >= 0 && last >= xo - reach) o[xo] = 1;
        }
    };
    // Columns, row-major: a per-column count of marked rows inside the sliding window [y - r, y + r].
    std::vector<int> count(static_cast<std::size_t>(W), 0);
    auto addRow = [&](int y, int sign) {
        if (y < 0 || y >= H) return;
        if (sign > 0) markRow(y);
        const std::uint8_t* o = ringRow(y);
        for (int x = 0; x < W; ++x) count[static_cast<std::size_t>(x)] += sign * o[x];
    };
    for (int y = 0; y < reach && y < H; ++y) addRow(y, 1);
    const std::uint16_t edge = bits(MaskBit::Edge);
    for (int y = 0; y < H; ++y) {
        addRow(y + reach, 1);
        addRow(y - reach - 1, -1);
        std::uint16_t* m = &out.mask(0, y);
        const bool borderRow = y < reach || y >= H - reach;
        for (int x = 0; x < W; ++x)
            if (borderRow || x < reach || x >= W - reach || count[static_cast<std::size_t>(x)] > 0)
                m[x] = static_cast<std::uint16_t>(m[x] | edge);
    }
    out.timing.maskS = seconds(tMask, Clock::now());
    return out;
}

}  // namespace astrid::diff
