// ZOGY (Zackay, Ofek & Gal-Yam 2016). Equation numbers refer to that paper.
#include "astrid/diff/zogy.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>
#include <vector>

#include "astrid/core/error.hpp"
#include "fft.hpp"

namespace astrid::diff {
namespace {
using fft::Buffer;
using fft::Complex;
using fft::Plan2d;
constexpr double kTwoPi = 2.0 * std::numbers::pi;

bool isBad(const Image<std::uint16_t>* mask, std::uint16_t bad, int x, int y) {
    return mask && ((*mask)(x, y) & bad) != 0;
}

/// Median of sqrt(variance) over the good pixels of a region: the background noise of a tile.
double medianSigma(const Image<float>& var, const Image<std::uint16_t>* mask, std::uint16_t bad, const Box& box) {
    std::vector<float> v;
    v.reserve(static_cast<std::size_t>(box.width()) * static_cast<std::size_t>(box.height()));
    for (int y = box.y0; y < box.y1; ++y)
        for (int x = box.x0; x < box.x1; ++x) {
            const float s = var(x, y);
            if (!isBad(mask, bad, x, y) && std::isfinite(s) && s > 0.0f) v.push_back(s);
        }
    if (v.empty()) return 0.0;
    auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    return std::sqrt(static_cast<double>(*mid));
}

/// Places a centred PSF stamp with its centre pixel at the origin (wrapped), as FFT convolution wants.
void embedPsf(const Image<double>& stamp, Buffer<double>& out, int w, int h) {
    std::fill(out.data(), out.data() + out.size(), 0.0);
    const int hx = stamp.width() / 2, hy = stamp.height() / 2;
    for (int j = 0; j < stamp.height(); ++j)
        for (int i = 0; i < stamp.width(); ++i) {
            const int x = ((i - hx) % w + w) % w, y = ((j - hy) % h + h) % h;
            out[static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x)] += stamp(i, j);
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

int goodFftSize(int minimum) {
    for (int n = std::max(minimum, 1);; ++n) {
        int m = n;
        for (int p : {2, 3, 5, 7})
            while (m % p == 0) m /= p;
        if (m == 1) return n;
    }
}

ZogyResult zogy(const ZogyInput& in, const ZogyConfig& cfg) {
    if (!in.science || !in.reference || !in.scienceVariance || !in.referenceVariance)
        throw DataError("zogy: science, reference and both variance images are required");
    const int W = in.science->width(), H = in.science->height();
    auto sameSize = [&](int w, int h) { return w == W && h == H; };
    if (!sameSize(in.reference->width(), in.reference->height()) ||
        !sameSize(in.scienceVariance->width(), in.scienceVariance->height()) ||
        !sameSize(in.referenceVariance->width(), in.referenceVariance->height()) ||
        (in.mask && !sameSize(in.mask->width(), in.mask->height())))
        throw DataError("zogy: science, reference, variance and mask images differ in size");
    if (!in.sciencePsf || !in.referencePsf) throw DataError("zogy: both PSF providers are required");
    if (!(in.fluxRatio > 0.0) || !std::isfinite(in.fluxRatio))
        throw DataError("zogy: flux ratio must be finite and > 0 (got " + std::to_string(in.fluxRatio) + ")");
    const std::uint16_t bad = cfg.badMask;
    const double Fr = in.fluxRatio;  // F_n = 1

    ZogyResult out;
    out.diff = Image<float>(W, H, std::numeric_limits<float>::quiet_NaN());
    out.score = Image<float>(W, H, std::numeric_limits<float>::quiet_NaN());
    out.scorr = Image<float>(W, H, std::numeric_limits<float>::quiet_NaN());
    out.scoreVariance = Image<float>(W, H, std::numeric_limits<float>::quiet_NaN());
    out.mask = in.mask ? *in.mask : Image<std::uint16_t>(W, H, 0);

    const int core = cfg.tilePx > 0 ? cfg.tilePx : std::max(W, H);
    const int nx = (W + core - 1) / core, ny = (H + core - 1) / core;
    // Equal tiles: no sliver tiles at the right/top edge.
    const int tw = (W + nx - 1) / nx, th = (H + ny - 1) / ny;
    const double cx = 0.5 * (W - 1), cy = 0.5 * (H - 1);

    for (int ty = 0; ty < ny; ++ty)
        for (int tx = 0; tx < nx; ++tx) {
            const Box tile{tx * tw, ty * th, std::min(W, (tx + 1) * tw), std::min(H, (ty + 1) * th)};
            const double px = 0.5 * (tile.x0 + tile.x1 - 1), py = 0.5 * (tile.y0 + tile.y1 - 1);
            const Image<double> psfN = in.sciencePsf(px, py);
            const Image<double> psfR = in.referencePsf(px, py);
            checkStamp(psfN, "science");
            checkStamp(psfR, "reference");
            const int half = std::max({psfN.width(), psfN.height(), psfR.width(), psfR.height()}) / 2;
            const int margin = cfg.overlapPx > 0 ? cfg.overlapPx : 3 * half;
            const Box region{tile.x0 - margin, tile.y0 - margin, tile.x1 + margin, tile.y1 + margin};
            const int fw = goodFftSize(region.width()), fh = goodFftSize(region.height());
            const Plan2d& plan = Plan2d::get(fw, fh);
            const std::size_t nr = plan.realSize(), nc = plan.spectrumSize();
            const double norm = 1.0 / static_cast<double>(nr);
            const Box inImage = region.intersect(Box{0, 0, W, H});

            const double sn = in.sigmaScience > 0 ? in.sigmaScience : medianSigma(*in.scienceVariance, in.mask, bad, inImage);
            const double sr = in.sigmaReference > 0 ? in.sigmaReference : medianSigma(*in.referenceVariance, in.mask, bad, inImage);
            if (!(sn > 0.0) || !(sr > 0.0))
                throw DataError("zogy: no usable pixels to estimate the background noise of the tile at (" +
                                std::to_string(tile.x0) + ", " + std::to_string(tile.y0) + ")");

            // Load the tile (offset: region.x0/y0 at FFT index 0). Bad or missing pixels become the
            // background (0) with background variance: nothing bright is left to ring.
            Buffer<double> n(nr), r(nr), vn(nr), vr(nr);
            for (int j = 0; j < fh; ++j)
                for (int i = 0; i < fw; ++i) {
                    const int x = region.x0 + i, y = region.y0 + j;
                    const std::size_t k = static_cast<std::size_t>(j) * static_cast<std::size_t>(fw) + static_cast<std::size_t>(i);
                    const bool inside = x >= 0 && y >= 0 && x < W && y < H && x < region.x1 && y < region.y1;
                    bool good = inside && !isBad(in.mask, bad, x, y);
                    double a = 0, b = 0, va = sn * sn, vb = sr * sr;
                    if (good) {
                        a = (*in.science)(x, y);
                        b = (*in.reference)(x, y);
                        if (cfg.sourceNoise) {
                            va = (*in.scienceVariance)(x, y);
                            vb = (*in.referenceVariance)(x, y);
                        }
                        good = std::isfinite(a) && std::isfinite(b) && std::isfinite(va) && std::isfinite(vb) && va > 0 && vb > 0;
                        if (!good) a = b = 0, va = sn * sn, vb = sr * sr;
                    }
                    n[k] = a, r[k] = b, vn[k] = va, vr[k] = vb;
                }

            Buffer<double> pn(nr), pr(nr);
            embedPsf(psfN, pn, fw, fh);
            embedPsf(psfR, pr, fw, fh);
            Buffer<Complex> Pn(nc), Pr(nc), Nh(nc), Rh(nc);
            plan.forward(pn, Pn);
            plan.forward(pr, Pr);
            plan.forward(n, Nh);
            plan.forward(r, Rh);
            // Normalise the PSFs to unit sum exactly (P(0) = 1).
            const Complex pn0 = Pn[0], pr0 = Pr[0];
            const double sn2 = sn * sn, sr2 = sr * sr;
            const double fD = Fr / std::sqrt(sn2 * Fr * Fr + sr2);  // eq 15
            const double floorD2 = cfg.psfFloor * (sn2 * Fr * Fr + sr2);

            Buffer<Complex> Dh(nc), Sh(nc), Kn(nc), Kr(nc), SNh(nc), SRh(nc);
            double fS = 0.0;
            const int wc = fw / 2 + 1;
            for (int j = 0; j < fh; ++j)
                for (int i = 0; i < wc; ++i) {
                    const std::size_t k = static_cast<std::size_t>(j) * static_cast<std::size_t>(wc) + static_cast<std::size_t>(i);
                    const Complex p_n = Pn[k] / pn0, p_r = Pr[k] / pr0;
                    const double an = std::norm(p_n), ar = std::norm(p_r);
                    const double d2 = sn2 * Fr * Fr * ar + sr2 * an + floorD2;  // eq 12 denominator squared
                    const double sq = std::sqrt(d2);
                    Dh[k] = (Fr * p_r * Nh[k] - p_n * Rh[k]) / sq;                  // eq 13
                    Kn[k] = Fr * Fr * ar * std::conj(p_n) / d2;                      // eq 28
                    Kr[k] = Fr * an * std::conj(p_r) / d2;                           // eq 29
                    SNh[k] = Kn[k] * Nh[k];
                    SRh[k] = Kr[k] * Rh[k];
                    Sh[k] = SNh[k] - SRh[k];                                         // eq 17 = k_n N - k_r R
                    // F_S (eq 42) over the full spectrum: interior half-spectrum columns count twice.
                    const double weight = (i == 0 || (fw % 2 == 0 && i == fw / 2)) ? 1.0 : 2.0;
                    fS += weight * Fr * Fr * an * ar / d2;
                }
            fS *= norm;

            // D and S.
            Buffer<double> D(nr), S(nr);
            plan.inverse(Dh, D);
            plan.inverse(Sh, S);
            // V(S_N) = V_n (x) k_n^2, V(S_R) = V_r (x) k_r^2 (eqs 26-27).
            auto varianceTerm = [&](Buffer<Complex>& K, Buffer<double>& v) {
                Buffer<double> kr(nr);
                Buffer<Complex> tmp(nc);
                std::copy(K.data(), K.data() + nc, tmp.data());
                plan.inverse(tmp, kr);
                for (std::size_t q = 0; q < nr; ++q) kr[q] = (kr[q] * norm) * (kr[q] * norm);
                Buffer<Complex> K2(nc), V(nc);
                plan.forward(kr, K2);
                plan.forward(v, V);
                for (std::size_t q = 0; q < nc; ++q) V[q] *= K2[q];
                Buffer<double> outv(nr);
                plan.inverse(V, outv);
                for (std::size_t q = 0; q < nr; ++q) outv[q] *= norm;
                return outv;
            };
            Buffer<double> VSN = varianceTerm(Kn, vn);
            Buffer<double> VSR = varianceTerm(Kr, vr);
            // Astrometric noise (eqs 30-31): sigma_x^2 (dS/dx)^2 + sigma_y^2 (dS/dy)^2 for S_N and S_R.
            Buffer<double> Vast(nr);
            std::fill(Vast.data(), Vast.data() + nr, 0.0);
            const double sx2 = cfg.astrometricSigmaXPx * cfg.astrometricSigmaXPx;
            const double sy2 = cfg.astrometricSigmaYPx * cfg.astrometricSigmaYPx;
            if (sx2 > 0.0 || sy2 > 0.0) {
                Buffer<Complex> G(nc);
                Buffer<double> g(nr);
                for (Buffer<Complex>* part : {&SNh, &SRh})
                    for (int axis = 0; axis < 2; ++axis) {
                        const double s2 = axis == 0 ? sx2 : sy2;
                        if (s2 <= 0.0) continue;
                        for (int j = 0; j < fh; ++j)
                            for (int i = 0; i < wc; ++i) {
                                const std::size_t k = static_cast<std::size_t>(j) * static_cast<std::size_t>(wc) + static_cast<std::size_t>(i);
                                // Signed frequency in cycles per pixel; the Nyquist term has no derivative.
                                double f = 0.0;
                                if (axis == 0) f = (fw % 2 == 0 && i == fw / 2) ? 0.0 : static_cast<double>(i) / fw;
                                else {
                                    const int jj = j <= fh / 2 ? j : j - fh;
                                    f = (fh % 2 == 0 && j == fh / 2) ? 0.0 : static_cast<double>(jj) / fh;
                                }
                                G[k] = (*part)[k] * Complex(0.0, kTwoPi * f);
                            }
                        plan.inverse(G, g);
                        for (std::size_t q = 0; q < nr; ++q) Vast[q] += s2 * (g[q] * norm) * (g[q] * norm);
                    }
            }

            // The tile's core goes to the output.
            for (int y = tile.y0; y < tile.y1; ++y)
                for (int x = tile.x0; x < tile.x1; ++x) {
                    const std::size_t k = static_cast<std::size_t>(y - region.y0) * static_cast<std::size_t>(fw) +
                                          static_cast<std::size_t>(x - region.x0);
                    if (isBad(in.mask, bad, x, y) || !std::isfinite((*in.science)(x, y)) || !std::isfinite((*in.reference)(x, y)))
                        continue;  // NaN stays
                    const double s = S[k] * norm;
                    const double v = VSN[k] + VSR[k] + Vast[k];
                    out.diff(x, y) = static_cast<float>(D[k] * norm / fD);
                    out.score(x, y) = static_cast<float>(s);
                    out.scoreVariance(x, y) = static_cast<float>(v);
                    out.scorr(x, y) = static_cast<float>(v > 0 ? s / std::sqrt(v) : 0.0);
                }

            const bool central = px - 0.5 * tw <= cx && cx < px + 0.5 * tw + 1 && py - 0.5 * th <= cy && cy < py + 0.5 * th + 1;
            if (central || out.tiles == 0) {
                out.fD = fD;
                out.fS = fS;
                out.sigmaScience = sn;
                out.sigmaReference = sr;
                out.fftWidth = fw;
                out.fftHeight = fh;
                // P_D (eq 14) as a stamp of the PSFs' size.
                Buffer<Complex> PD(nc);
                for (std::size_t k = 0; k < nc; ++k) {
                    const Complex p_n = Pn[k] / pn0, p_r = Pr[k] / pr0;
                    const double d2 = sn2 * Fr * Fr * std::norm(p_r) + sr2 * std::norm(p_n) + floorD2;
                    PD[k] = Fr * p_n * p_r / (fD * std::sqrt(d2));
                }
                Buffer<double> pd(nr);
                plan.inverse(PD, pd);
                out.psfD = Image<double>(2 * half + 1, 2 * half + 1, 0.0);
                for (int j = -half; j <= half; ++j)
                    for (int i = -half; i <= half; ++i) {
                        const int x = (i + fw) % fw, y = (j + fh) % fh;
                        out.psfD(i + half, j + half) = pd[static_cast<std::size_t>(y) * static_cast<std::size_t>(fw) + static_cast<std::size_t>(x)] * norm;
                    }
            }
            ++out.tiles;
        }

    // Flag pixels whose kernels reach a bad pixel or the image border (their values are less
    // certain): a separable box dilation of the bad-pixel map by the P_D half-size.
    const int reach = out.psfD.width() / 2;
    Image<std::uint8_t> rows(W, H, 0), near(W, H, 0);
    for (int y = 0; y < H; ++y) {
        int last = -1 - 2 * reach;  // x of the last bad pixel seen
        for (int x = 0; x < W + reach; ++x) {
            if (x < W && isBad(in.mask, bad, x, y)) last = x;
            const int xo = x - reach;  // window [xo - reach, xo + reach] contains `last`?
            if (xo >= 0 && xo < W && last >= xo - reach) rows(xo, y) = 1;
        }
    }
    for (int x = 0; x < W; ++x) {
        int last = -1 - 2 * reach;
        for (int y = 0; y < H + reach; ++y) {
            if (y < H && rows(x, y)) last = y;
            const int yo = y - reach;
            if (yo >= 0 && yo < H && last >= yo - reach) near(x, yo) = 1;
        }
    }
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x)
            if (near(x, y) || x < reach || y < reach || x >= W - reach || y >= H - reach)
                out.mask(x, y) = static_cast<std::uint16_t>(out.mask(x, y) | bits(MaskBit::Edge));
    return out;
}

}  // namespace astrid::diff
