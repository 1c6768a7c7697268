// Source finding and measurement. The algorithms are described in stars.hpp; this file is mostly
// about doing them in a few passes over the pixels, because it runs on every image of a campaign
// (4096^2 with ~30k stars must take a small fraction of a second).
#include "astrid/psf/stars.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "astrid/core/error.hpp"
#include "astrid/core/stats.hpp"
#include "detail.hpp"

namespace astrid::psf {
namespace {
using detail::kFwhmPerSigma;

// Pixel classes for measurement. Saturated pixels keep their value for detection (a saturated core
// must stay one peak) but are never used to measure.
constexpr std::uint8_t kGood = 0, kSaturated = 1, kBad = 2;

void require(bool ok, const char* key, const std::string& what) {
    if (!ok) throw ConfigError("star finder: " + std::string(key) + " " + what, key);
}

void validate(const StarFinderConfig& c) {
    require(std::isfinite(c.thresholdSigma) && c.thresholdSigma > 0.0, "threshold_sigma", "must be > 0");
    require(std::isfinite(c.smoothingFwhmPx) && c.smoothingFwhmPx > 0.0 && c.smoothingFwhmPx <= 20.0,
            "smoothing_fwhm_px", "must be in (0, 20]");
    require(std::isfinite(c.minProminenceSigma) && c.minProminenceSigma >= 0.0, "min_prominence_sigma", "must be >= 0");
    require(std::isfinite(c.fwhmGuessPx) && c.fwhmGuessPx <= 50.0, "fwhm_guess_px", "must be <= 50 (<= 0: estimate)");
    require(c.apertureRadiusFwhm > 0.0 && c.apertureRadiusFwhm <= 20.0, "aperture_radius_fwhm", "must be in (0, 20]");
    require(c.apCorrRadiusFwhm >= c.apertureRadiusFwhm && c.apCorrRadiusFwhm <= 30.0, "ap_corr_radius_fwhm",
            "must be in [aperture_radius_fwhm, 30]");
    require(c.apCorrMinSnr >= 0.0, "ap_corr_min_snr", "must be >= 0");
    require(c.apCorrMaxStars >= 1, "ap_corr_max_stars", "must be >= 1");
    require(c.skyInnerFwhm > 0.0 && c.skyOuterFwhm > c.skyInnerFwhm && c.skyOuterFwhm <= 30.0, "sky_inner_fwhm",
            "and sky_outer_fwhm must satisfy 0 < inner < outer <= 30");
    require(c.skyResidualFraction > 0.0, "sky_residual_fraction", "must be > 0");
    require(c.blendRadiusFwhm >= 0.0 && c.blendRadiusFwhm <= 30.0, "blend_radius_fwhm", "must be in [0, 30]");
    require(c.blendMinFluxRatio >= 0.0, "blend_min_flux_ratio", "must be >= 0");
    require(c.sharpFwhmFraction >= 0.0 && c.sharpFwhmFraction < 1.0, "sharp_fwhm_fraction", "must be in [0, 1)");
    require(c.maxCentroidIterations >= 1, "max_centroid_iterations", "must be >= 1");
    require(c.centroidTolerancePx > 0.0, "centroid_tolerance_px", "must be > 0");
}

// Flux order, brightest first; NaN fluxes (only from overflowing pixel values) last, so that the order
// stays a strict weak ordering.
bool brighter(const Star& a, const Star& b) {
    if (std::isnan(a.flux) || std::isnan(b.flux)) return !std::isnan(a.flux) && std::isnan(b.flux);
    return a.flux > b.flux;
}

// The three planes with the pixel classes precomputed, so that every later pass tests one byte.
struct Planes {
    int w = 0, h = 0;
    const float* img = nullptr;
    const float* var = nullptr;
    Image<std::uint8_t> clsImage;  // written in full by the detection pass
    const std::uint8_t* cls = nullptr;
    std::size_t at(int x, int y) const noexcept {
        return static_cast<std::size_t>(y) * static_cast<std::size_t>(w) + static_cast<std::size_t>(x);
    }
};

// Horizontal pass of the separable detection kernel k[0..r] (zero outside the row). The interior runs
// in blocks of 8 with fixed-length inner loops, which GCC vectorises at -O2 (the plain loop it does not).
void smoothRow(const float* in, float* out, int w, const std::vector<float>& k) {
    const int r = static_cast<int>(k.size()) - 1;
    auto edge = [&](int x) {
        float acc = k[0] * in[x];
        for (int j = 1; j <= r; ++j) {
            if (x - j >= 0) acc += k[static_cast<std::size_t>(j)] * in[x - j];
            if (x + j < w) acc += k[static_cast<std::size_t>(j)] * in[x + j];
        }
        out[x] = acc;
    };
    int x = 0;
    for (; x < std::min(r, w); ++x) edge(x);
    for (; x + 8 <= w - r; x += 8) {
        float acc[8];
        for (int l = 0; l < 8; ++l) acc[l] = k[0] * in[x + l];
        for (int j = 1; j <= r; ++j) {
            const float kj = k[static_cast<std::size_t>(j)];
            for (int l = 0; l < 8; ++l) acc[l] += kj * (in[x + l - j] + in[x + l + j]);
        }
        for (int l = 0; l < 8; ++l) out[x + l] = acc[l];
    }
    for (; x < w; ++x) edge(x);
}

// Vertical pass: out = k0 * rows[r] + sum_j kj * (rows[r - j] + rows[r + j]).
void smoothColumns(const std::vector<const float*>& rows, float* out, int w, const std::vector<float>& k) {
    const int r = static_cast<int>(k.size()) - 1;
    const float* c = rows[static_cast<std::size_t>(r)];
    int x = 0;
    for (; x + 8 <= w; x += 8) {
        float acc[8];
        for (int l = 0; l < 8; ++l) acc[l] = k[0] * c[x + l];
        for (int j = 1; j <= r; ++j) {
            const float kj = k[static_cast<std::size_t>(j)];
            const float* a = rows[static_cast<std::size_t>(r - j)];
            const float* b = rows[static_cast<std::size_t>(r + j)];
            for (int l = 0; l < 8; ++l) acc[l] += kj * (a[x + l] + b[x + l]);
        }
        for (int l = 0; l < 8; ++l) out[x + l] = acc[l];
    }
    for (; x < w; ++x) {
        float acc = k[0] * c[x];
        for (int j = 1; j <= r; ++j)
            acc += k[static_cast<std::size_t>(j)] * (rows[static_cast<std::size_t>(r - j)][x] + rows[static_cast<std::size_t>(r + j)][x]);
        out[x] = acc;
    }
}

struct Peak {
    int ix = 0, iy = 0;
    double x = 0, y = 0;  // sub-pixel start from the smoothed image
    float value = 0;      // smoothed value at the peak
    double snr = 0;       // detection S/N
};

// Windowed first and second moments about (xc, yc) with a circular Gaussian window of sigma s.
struct Moments {
    double s0 = 0, sx = 0, sy = 0, sxx = 0, sxy = 0, syy = 0;
    bool clipped = false;     // the window box left the image
    bool touchesBad = false;  // a bad or saturated pixel inside the window core (< 2 sigma)
    bool usedSaturated = false;
};

// Saturated pixels are used only for centroids (Use::SaturatedToo): a clipped core is a flat top, symmetric
// about the star, so it centres a saturated star far better than the faint ring around its mask.
enum class Use { GoodOnly, SaturatedToo };

// exp(-(a + i)^2 c) for i = 0..n-1 with three exp calls: successive ratios form a geometric sequence.
void gaussianRow(double a, double c, int n, double* out) {
    double g = std::exp(-a * a * c);
    double q = std::exp(-(2.0 * a + 1.0) * c);
    const double qq = std::exp(-2.0 * c);
    for (int i = 0; i < n; ++i) {
        out[i] = g;
        g *= q;
        q *= qq;
    }
}

Moments windowMoments(const Planes& p, double xc, double yc, double sigma, Use use = Use::GoodOnly) {
    Moments m;
    const int r = std::min(static_cast<int>(std::ceil(4.0 * sigma)), 63);
    const int ix = static_cast<int>(std::lround(xc)), iy = static_cast<int>(std::lround(yc));
    const int x0 = ix - r, y0 = iy - r;
    const int n = 2 * r + 1;
    double wx[127], wxdx[127], wxdx2[127], wy[127];
    const double c = 1.0 / (2.0 * sigma * sigma);
    gaussianRow(x0 - xc, c, n, wx);
    gaussianRow(y0 - yc, c, n, wy);
    for (int i = 0; i < n; ++i) {
        const double dx = x0 + i - xc;
        wxdx[i] = wx[i] * dx;
        wxdx2[i] = wxdx[i] * dx;
    }
    const int ia = std::max(0, -x0), ib = std::min(n, p.w - x0);  // columns inside the image
    if (ia > 0 || ib < n) m.clipped = true;
    const double core2 = 4.0 * sigma * sigma;
    // Separable sums: per row the x-weighted moments, then the row's y weight.
    for (int j = 0; j < n; ++j) {
        const int y = y0 + j;
        if (y < 0 || y >= p.h) {
            m.clipped = true;
            continue;
        }
        const double dy = y - yc;
        const std::size_t row = p.at(0, y);
        double a0 = 0.0, a1 = 0.0, a2 = 0.0;
        for (int i = ia; i < ib; ++i) {
            const std::size_t k = row + static_cast<std::size_t>(x0 + i);
            if (p.cls[k] != kGood) {
                const double dx = x0 + i - xc;
                if (dx * dx + dy * dy < core2) m.touchesBad = true;
                if (!(use == Use::SaturatedToo && p.cls[k] == kSaturated)) continue;
                m.usedSaturated = true;
            }
            const double v = p.img[k];
            a0 += wx[i] * v;
            a1 += wxdx[i] * v;
            a2 += wxdx2[i] * v;
        }
        const double w = wy[j];
        m.s0 += w * a0;
        m.sx += w * a1;
        m.sy += w * dy * a0;
        m.sxx += w * a2;
        m.sxy += w * dy * a1;
        m.syy += w * dy * dy * a0;
    }
    return m;
}

struct CentroidResult {
    double x = 0, y = 0;
    bool ok = false;
    Moments last;  // the moments of the last iteration (about a point < tol from the result)
};

// Iterative Gaussian-windowed centroid. The step is the windowed first moment scaled by
// (s_o^2 + s_w^2) / s_w^2, the exact factor for a Gaussian object of variance s_o^2 seen through the
// window (SExtractor uses a fixed 2, which oscillates on objects much narrower than the window).
CentroidResult windowedCentroid(const Planes& p, double x, double y, double sigma, int maxIter, double tol) {
    CentroidResult res{x, y, false, {}};
    const double x0 = x, y0 = y;
    const double maxWander = std::max(2.0 * sigma, 1.5);
    const double s2 = sigma * sigma;
    for (int it = 0; it < maxIter; ++it) {
        const Moments m = windowMoments(p, res.x, res.y, sigma, Use::SaturatedToo);
        res.last = m;
        if (!(m.s0 > 0.0)) return res;
        const double mx = m.sx / m.s0, my = m.sy / m.s0;
        const double m2 = 0.5 * ((m.sxx / m.s0 - mx * mx) + (m.syy / m.s0 - my * my));
        const double factor = std::clamp(s2 / std::max(s2 - m2, 1e-6), 1.0, 3.0);
        double stepX = factor * mx, stepY = factor * my;
        const double len = std::hypot(stepX, stepY);
        if (!std::isfinite(len)) return res;  // overflowing pixel values
        if (len > sigma) {
            stepX *= sigma / len;
            stepY *= sigma / len;
        }
        res.x += stepX;
        res.y += stepY;
        if (std::hypot(res.x - x0, res.y - y0) > maxWander) return res;
        if (len < tol) {
            res.ok = true;
            return res;
        }
    }
    // Not converged to tol, but accept a centroid that has settled to a hundredth of a pixel.
    const Moments m = windowMoments(p, res.x, res.y, sigma, Use::SaturatedToo);
    res.ok = m.s0 > 0.0 && std::hypot(m.sx / m.s0, m.sy / m.s0) < 0.01;
    return res;
}

// Object covariance (pixel-convolved) from windowed moments: for a Gaussian object C seen through a
// Gaussian window W, the windowed covariance is (C^-1 + W^-1)^-1. Returns false when not positive definite.
bool deconvolvedCovariance(const Moments& m, double sigma, double& cxx, double& cxy, double& cyy) {
    if (!(m.s0 > 0.0)) return false;
    const double mx = m.sx / m.s0, my = m.sy / m.s0;
    const double mxx = m.sxx / m.s0 - mx * mx, mxy = m.sxy / m.s0 - mx * my, myy = m.syy / m.s0 - my * my;
    const double det = mxx * myy - mxy * mxy;
    if (!(mxx > 0.0 && myy > 0.0 && det > 0.0)) return false;
    // Inverse of the windowed covariance minus the window's precision.
    const double inv = 1.0 / (sigma * sigma);
    const double a = myy / det - inv, b = -mxy / det, c = mxx / det - inv;
    const double d2 = a * c - b * b;
    if (!(a > 0.0 && c > 0.0 && d2 > 0.0)) return false;
    cxx = c / d2;
    cxy = -b / d2;
    cyy = a / d2;
    return true;
}

// Adaptive moments: the window follows the object until it matches it; returns the pixel-convolved
// Gaussian sigma (geometric mean of the axes), NaN on failure. Used only to choose the window.
double adaptiveSigma(const Planes& p, double x, double y, double startSigma) {
    double sigma = startSigma;
    for (int it = 0; it < 12; ++it) {
        const CentroidResult c = windowedCentroid(p, x, y, sigma, 10, 1e-3);
        if (!c.ok) return std::numeric_limits<double>::quiet_NaN();
        x = c.x;
        y = c.y;
        const Moments m = windowMoments(p, x, y, sigma);
        if (m.touchesBad || m.clipped) return std::numeric_limits<double>::quiet_NaN();
        double cxx = 0, cxy = 0, cyy = 0;
        if (!deconvolvedCovariance(m, sigma, cxx, cxy, cyy)) {
            sigma *= 1.5;  // object broader than the window and noise made it look impossible
            if (sigma > 30.0) return std::numeric_limits<double>::quiet_NaN();
            continue;
        }
        const double s = std::pow(cxx * cyy - cxy * cxy, 0.25);
        const double next = std::clamp(s, 0.3, 30.0);
        if (std::abs(next - sigma) < 1e-3 * sigma) return next;
        sigma = next;
    }
    return sigma;
}

// The photometric aperture with linear boundary weights: a pixel whose centre lies at distance d
// gets min(1, max(0, r + 0.5 - d)), close to its overlap with the disk and continuous in the position,
// so fluxes do not jump when a star moves by a fraction of a pixel.
struct ApertureSum {
    double flux = 0, var = 0, area = 0;
    bool masked = false, saturated = false, edge = false;
};

ApertureSum aperture(const Planes& p, double xc, double yc, double radius) {
    ApertureSum a;
    const int r = static_cast<int>(std::ceil(radius + 0.5));
    const int ix = static_cast<int>(std::lround(xc)), iy = static_cast<int>(std::lround(yc));
    const double in2 = std::max(radius - 0.5, 0.0) * std::max(radius - 0.5, 0.0), out2 = (radius + 0.5) * (radius + 0.5);
    for (int y = iy - r; y <= iy + r; ++y) {
        const double dy = y - yc;
        for (int x = ix - r; x <= ix + r; ++x) {
            const double dx = x - xc;
            const double d2 = dx * dx + dy * dy;
            if (d2 >= out2) continue;
            const double wgt = d2 <= in2 ? 1.0 : radius + 0.5 - std::sqrt(d2);
            if (x < 0 || y < 0 || x >= p.w || y >= p.h) {
                a.edge = true;
                continue;
            }
            const std::size_t k = p.at(x, y);
            if (p.cls[k] != kGood) {
                (p.cls[k] == kSaturated ? a.saturated : a.masked) = true;
                continue;
            }
            a.flux += wgt * p.img[k];
            a.var += wgt * wgt * p.var[k];
            a.area += wgt;
        }
    }
    return a;
}

// Median of `data` over the good pixels of an annulus (NaN when fewer than 8) and its 1-sigma error
// from the variance plane times varScale (the median of Gaussian noise has sqrt(pi/2) times the error
// of the mean). step > 1 samples every step-th row and column, symmetric about the centre pixel.
struct AnnulusSky {
    double median = std::numeric_limits<double>::quiet_NaN();
    double error = std::numeric_limits<double>::quiet_NaN();
};

AnnulusSky annulusSky(const Planes& p, const float* data, double varScale, double xc, double yc, double rIn,
                      double rOut, std::vector<float>& buf, int step = 1) {
    AnnulusSky sky;
    buf.clear();
    double varSum = 0.0;
    const int r = static_cast<int>(std::ceil(rOut));
    const int ix = static_cast<int>(std::lround(xc)), iy = static_cast<int>(std::lround(yc));
    const double in2 = rIn * rIn, out2 = rOut * rOut;
    for (int y = iy - r; y <= iy + r; y += step) {
        if (y < 0 || y >= p.h) continue;
        const double dy = y - yc;
        const double dy2 = dy * dy;
        if (dy2 > out2) continue;
        // Only the x range that can be inside the outer circle, on the sampling grid.
        const double half = std::sqrt(out2 - dy2);
        int xa = static_cast<int>(std::ceil(xc - half));
        xa += ((ix - xa) % step + step) % step;
        while (xa < 0) xa += step;
        const int xb = std::min(static_cast<int>(std::floor(xc + half)), p.w - 1);
        for (int x = xa; x <= xb; x += step) {
            const double dx = x - xc;
            if (dx * dx + dy2 < in2) continue;
            const std::size_t k = p.at(x, y);
            if (p.cls[k] != kGood) continue;
            buf.push_back(data[k]);
            varSum += p.var[k];
        }
    }
    if (buf.size() < 8) return sky;
    const auto mid = buf.begin() + static_cast<std::ptrdiff_t>(buf.size() / 2);
    std::nth_element(buf.begin(), mid, buf.end());
    const double nb = static_cast<double>(buf.size());
    sky.median = *mid;
    sky.error = 1.2533 * std::sqrt(varScale * varSum / nb / nb);
    return sky;
}

// The light of a star between the photometric aperture (radius rAp, soft edge) and rBig, above
// `sky`: each 1-px ring contributes its median times its (soft-edge) area, so a neighbour or a cosmic
// ray covering a minority of a ring does not count. Returns NaN when a ring is mostly unusable.
double outerLight(const Planes& p, double xc, double yc, double rAp, double rBig, double sky,
                  std::vector<std::vector<float>>& rings, std::vector<double>& areas) {
    const int nRings = static_cast<int>(std::ceil(rBig - rAp)) + 2;
    rings.resize(static_cast<std::size_t>(nRings));
    areas.assign(static_cast<std::size_t>(nRings), 0.0);
    std::vector<int> total(static_cast<std::size_t>(nRings), 0);
    for (auto& r : rings) r.clear();
    const int r = static_cast<int>(std::ceil(rBig + 0.5));
    const int ix = static_cast<int>(std::lround(xc)), iy = static_cast<int>(std::lround(yc));
    for (int y = iy - r; y <= iy + r; ++y)
        for (int x = ix - r; x <= ix + r; ++x) {
            const double d = std::hypot(x - xc, y - yc);
            const double wgt = std::clamp(rBig + 0.5 - d, 0.0, 1.0) - std::clamp(rAp + 0.5 - d, 0.0, 1.0);
            if (wgt <= 0.0) continue;
            const int k = std::clamp(static_cast<int>(std::floor(d - (rAp - 0.5))), 0, nRings - 1);
            const std::size_t ks = static_cast<std::size_t>(k);
            areas[ks] += wgt;
            ++total[ks];
            if (x < 0 || y < 0 || x >= p.w || y >= p.h) return std::numeric_limits<double>::quiet_NaN();
            const std::size_t i = p.at(x, y);
            if (p.cls[i] == kGood) rings[ks].push_back(p.img[i]);
        }
    double light = 0.0;
    for (std::size_t k = 0; k < rings.size(); ++k) {
        if (total[k] == 0) continue;
        if (rings[k].size() * 2 < static_cast<std::size_t>(total[k])) return std::numeric_limits<double>::quiet_NaN();
        const auto mid = rings[k].begin() + static_cast<std::ptrdiff_t>(rings[k].size() / 2);
        std::nth_element(rings[k].begin(), mid, rings[k].end());
        light += (*mid - sky) * areas[k];
    }
    return light;
}

}  // namespace

StarFinderResult findStarsDetailed(const Image<float>& image, const Image<float>& variance,
                                   const Image<std::uint16_t>& mask, const StarFinderConfig& config) {
    validate(config);
    detail::requireSamePlanes("findStars", image, variance, mask);
    StarFinderResult result;
    const int w = image.width(), h = image.height();
    if (w < 8 || h < 8) return result;

    Planes p;
    p.w = w;
    p.h = h;
    p.img = image.data();
    p.var = variance.data();
    p.clsImage = Image<std::uint8_t>(w, h, Uninitialized{});
    p.cls = p.clsImage.data();

    // The detection kernel, normalised to unit sum; sumK2 is the sum of the squared 2-D kernel, so the
    // smoothed noise is sqrt(sumK2 * variance) for a locally flat variance.
    const double ks = config.smoothingFwhmPx / kFwhmPerSigma;
    const int kr = std::max(1, static_cast<int>(std::ceil(3.0 * ks)));
    std::vector<float> kernel(static_cast<std::size_t>(kr + 1));
    {
        std::vector<double> kd(static_cast<std::size_t>(kr + 1));
        double ksum = 0.0;
        for (int j = 0; j <= kr; ++j) ksum += (j == 0 ? 1.0 : 2.0) * (kd[static_cast<std::size_t>(j)] = std::exp(-0.5 * j * j / (ks * ks)));
        for (int j = 0; j <= kr; ++j) kernel[static_cast<std::size_t>(j)] = static_cast<float>(kd[static_cast<std::size_t>(j)] / ksum);
    }
    double k2 = 0.0;
    for (int j = 0; j <= kr; ++j) k2 += (j == 0 ? 1.0 : 2.0) * kernel[static_cast<std::size_t>(j)] * kernel[static_cast<std::size_t>(j)];
    const double sumK2 = k2 * k2;

    // One streaming pass: classify a row, smooth it horizontally into a ring of 2kr+1 rows, smooth the
    // row kr behind vertically into `sm`, and look for peaks in the row behind that. Only `sm` (needed
    // later for the saddle test) and the pixel classes are full-size; a 4k image is read once.
    Image<float> smImage(w, h, Uninitialized{});  // every pixel is written by the pass below
    float* const smData = smImage.data();
    std::vector<Peak> peaks;
    {
        const std::uint16_t* m = mask.empty() ? nullptr : mask.data();
        const std::uint16_t satBits = config.saturatedMaskBits;
        const std::uint16_t badBits = static_cast<std::uint16_t>(config.badMaskBits & ~satBits);
        const int ringRows = 2 * kr + 1;
        std::vector<float> ring(static_cast<std::size_t>(ringRows) * static_cast<std::size_t>(w));
        std::vector<float> clean(static_cast<std::size_t>(w)), zero(static_cast<std::size_t>(w), 0.0f);
        const std::vector<std::uint16_t> zeroMask(m ? 0 : static_cast<std::size_t>(w), 0);
        constexpr float kInfF = std::numeric_limits<float>::infinity();
        std::vector<const float*> rows(static_cast<std::size_t>(ringRows));
        const float thr2 = static_cast<float>(config.thresholdSigma * config.thresholdSigma * sumK2);
        auto rowOf = [&](float* v, int y) { return v + static_cast<std::size_t>(y) * static_cast<std::size_t>(w); };
        auto scanRow = [&](int y) {
            const float* r0 = rowOf(smData, y - 1);
            const float* r1 = r0 + w;
            const float* r2 = r1 + w;
            const std::size_t rowOff = p.at(0, y);
            const float* var = p.var + rowOff;
            const std::uint8_t* cls = p.cls + rowOff;
            // A good pixel must pass the S/N threshold, a saturated one is a detection by itself. The test
            // does not short-circuit on the sign: half the noise pixels are positive, and a branch on
            // that is mispredicted half the time (it cost more than the rest of the scan).
            auto passes = [&](int x) {
                const float s0 = r1[x];
                return (s0 * std::abs(s0) > thr2 * var[x]) | ((cls[x] == kSaturated) & (s0 > 0.0f));
            };
            for (int x = 1; x < w - 1; ++x) {
                if (!passes(x)) continue;
                const float s0 = r1[x];
                const std::uint8_t c = cls[x];
                if (c == kBad || !(s0 > 0.0f)) continue;
                // Ties: strictly above the neighbours before in scan order, not below those after, so a
                // flat top gives one peak.
                if (!(s0 > r0[x - 1] && s0 > r0[x] && s0 > r0[x + 1] && s0 > r1[x - 1] && s0 >= r1[x + 1] &&
                      s0 >= r2[x - 1] && s0 >= r2[x] && s0 >= r2[x + 1]))
                    continue;
                Peak pk;
                pk.ix = x;
                pk.iy = y;
                pk.value = s0;
                const double v = var[x];
                pk.snr = (c == kGood && v > 0.0) ? s0 / std::sqrt(sumK2 * v) : std::numeric_limits<double>::infinity();
                // Parabola through the 3x3 for a sub-pixel start.
                const double ddx = 2.0 * s0 - r1[x - 1] - r1[x + 1], ddy = 2.0 * s0 - r0[x] - r2[x];
                pk.x = x + (ddx > 0 ? std::clamp(0.5 * (r1[x + 1] - r1[x - 1]) / ddx, -0.5, 0.5) : 0.0);
                pk.y = y + (ddy > 0 ? std::clamp(0.5 * (r2[x] - r0[x]) / ddy, -0.5, 0.5) : 0.0);
                peaks.push_back(pk);
            }
        };
        for (int yin = 0; yin < h + kr; ++yin) {
            if (yin < h) {
                const std::size_t off = p.at(0, yin);
                const float* img = p.img + off;
                const float* var = p.var + off;
                std::uint8_t* cls = p.clsImage.data() + off;
                const std::uint16_t* mrow = m ? m + off : zeroMask.data();
                // Branch-free: a mispredicted branch per pixel costs more than the arithmetic.
                for (int x = 0; x < w; ++x) {
                    const float v = img[x], s2 = var[x];
                    const std::uint16_t mb = mrow[x];
                    const unsigned notFinite = !std::isfinite(v);
                    const unsigned sat = (mb & satBits) != 0;
                    const unsigned other = ((mb & badBits) != 0) | !(s2 >= 0.0f && s2 < kInfF);
                    const unsigned bad = notFinite | ((1u - sat) & other);
                    cls[x] = static_cast<std::uint8_t>(2u * bad + ((1u - notFinite) & sat));
                    clean[static_cast<std::size_t>(x)] = bad ? 0.0f : v;
                }
                smoothRow(clean.data(), rowOf(ring.data(), yin % ringRows), w, kernel);
            }
            const int y = yin - kr;  // rows y - kr .. y + kr are now smoothed horizontally
            if (y < 0) continue;
            for (int j = -kr; j <= kr; ++j) {
                const int yy = y + j;
                rows[static_cast<std::size_t>(j + kr)] = (yy >= 0 && yy < h) ? rowOf(ring.data(), yy % ringRows) : zero.data();
            }
            smoothColumns(rows, rowOf(smData, y), w, kernel);
            if (y >= 2) scanRow(y - 1);
        }
    }
    result.peaks = static_cast<int>(peaks.size());
    if (peaks.empty()) return result;
    std::sort(peaks.begin(), peaks.end(), [](const Peak& a, const Peak& b) { return a.value > b.value; });

    // The window: adaptive moments of the brightest unsaturated peaks (cosmic rays excluded by size).
    double sigmaW = 0.0;
    if (config.fwhmGuessPx > 0.0) {
        sigmaW = std::sqrt(std::pow(config.fwhmGuessPx / kFwhmPerSigma, 2) + 1.0 / 12.0);
    } else {
        std::vector<double> sig;
        const double start = std::max(1.0, ks * 1.5);
        for (const Peak& pk : peaks) {
            if (sig.size() >= 60) break;
            if (p.cls[p.at(pk.ix, pk.iy)] != kGood) continue;
            const double s = adaptiveSigma(p, pk.x, pk.y, start);
            if (std::isfinite(s) && s > 0.55) sig.push_back(s);
        }
        sigmaW = sig.empty() ? std::sqrt(std::pow(3.0 / kFwhmPerSigma, 2) + 1.0 / 12.0) : median(sig);
    }
    result.windowSigmaPx = sigmaW;
    // Intrinsic FWHM of a typical star: the unit of every radius below.
    const double fwhmUnit = kFwhmPerSigma * std::sqrt(std::max(sigmaW * sigmaW - 1.0 / 12.0, 0.09));

    // Merge noise bumps on the wings of brighter peaks: a peak must rise minProminenceSigma above the
    // lowest point of the straight path to every brighter peak near it.
    std::vector<char> alive(peaks.size(), 1);
    {
        std::vector<double> px(peaks.size()), py(peaks.size());
        for (std::size_t i = 0; i < peaks.size(); ++i) {
            px[i] = peaks[i].x;
            py[i] = peaks[i].y;
        }
        const double mergeRadius = std::max(10.0 * fwhmUnit, 10.0);
        const double far2 = 9.0 * fwhmUnit * fwhmUnit;
        const detail::GridIndex grid(px, py, mergeRadius);
        for (std::size_t b = 1; b < peaks.size(); ++b) {
            const Peak& pb = peaks[b];
            const double vb = p.var[p.at(pb.ix, pb.iy)];
            if (p.cls[p.at(pb.ix, pb.iy)] != kGood || !(vb > 0.0)) continue;
            const double noise = std::sqrt(sumK2 * vb);
            const double need = config.minProminenceSigma * noise;
            if (need <= 0.0) continue;
            bool merged = false;
            grid.forEachWithin(pb.x, pb.y, mergeRadius, [&](std::size_t a) {
                if (merged || a >= b || !alive[a]) return;  // a < b: brighter (sorted)
                const Peak& pa = peaks[a];
                const double dx = pa.ix - pb.ix, dy = pa.iy - pb.iy;
                // Beyond 3 FWHM a wing is far below its peak: only a much brighter peak (or a saturated
                // one, whose smoothed peak understates it) can carry a bump there.
                if (dx * dx + dy * dy > far2 && pa.value < 10.0f * pb.value && p.cls[p.at(pa.ix, pa.iy)] == kGood) return;
                const int steps = static_cast<int>(std::ceil(std::hypot(dx, dy)));
                double saddle = pb.value;
                const double sx = dx / steps, sy = dy / steps;
                double fx = pb.ix + 0.5, fy = pb.iy + 0.5;  // +0.5: truncation below rounds (all >= 0)
                for (int k = 1; k < steps; ++k) {
                    fx += sx;
                    fy += sy;
                    const int x = static_cast<int>(fx), y = static_cast<int>(fy);
                    const std::size_t idx = p.at(x, y);
                    if (p.cls[idx] == kBad) continue;  // a bad column must not look like a valley
                    saddle = std::min(saddle, static_cast<double>(smData[idx]));
                    if (pb.value - saddle >= need) return;  // a real valley: separate sources
                }
                if (pb.value - saddle < need) merged = true;
            });
            if (merged) alive[b] = 0;
        }
    }

    // Measurement.
    const double rAp = config.apertureRadiusFwhm * fwhmUnit;
    const double rIn = config.skyInnerFwhm * fwhmUnit, rOut = config.skyOuterFwhm * fwhmUnit;
    result.apertureRadiusPx = rAp;
    std::vector<Star> stars;
    std::vector<float> smoothedPeak;
    stars.reserve(peaks.size());
    std::vector<float> buf;
    const double nan = std::numeric_limits<double>::quiet_NaN();
    // Measure strip by strip, left to right within a strip: consecutive stars then share cached pixels
    // (in brightness order every star is a fresh set of cache misses; this cuts the measuring time of a
    // 4k image by a factor of three).
    std::vector<std::size_t> raster;
    for (std::size_t i = 0; i < peaks.size(); ++i)
        if (alive[i]) raster.push_back(i);
    const int strip = std::max(32, static_cast<int>(std::ceil(2.0 * rOut)));
    std::sort(raster.begin(), raster.end(), [&](std::size_t a, std::size_t b) {
        const int sa = peaks[a].iy / strip, sb = peaks[b].iy / strip;
        return sa != sb ? sa < sb : (peaks[a].ix != peaks[b].ix ? peaks[a].ix < peaks[b].ix : peaks[a].iy < peaks[b].iy);
    });
    for (std::size_t i : raster) {
        const Peak& pk = peaks[i];
        Star s;
        s.detectionSnr = pk.snr;
        const CentroidResult c = windowedCentroid(p, pk.x, pk.y, sigmaW, config.maxCentroidIterations,
                                                  config.centroidTolerancePx);
        if (c.ok) {
            s.x = c.x;
            s.y = c.y;
        } else {
            s.x = pk.x;
            s.y = pk.y;
            s.flags |= bits(StarFlag::CentroidFailed);
        }
        // Central moments hardly change over the last (< tol) step: reuse them unless saturated pixels,
        // which only the centroid may use, were in the window.
        const Moments m = c.ok && !c.last.usedSaturated ? c.last : windowMoments(p, s.x, s.y, sigmaW);
        double cxx = 0, cxy = 0, cyy = 0;
        if (deconvolvedCovariance(m, sigmaW, cxx, cxy, cyy)) {
            cxx -= 1.0 / 12.0;  // remove the pixel
            cyy -= 1.0 / 12.0;
        }
        const double det = cxx * cyy - cxy * cxy;
        if (cxx > 0.0 && cyy > 0.0 && det > 0.0) {
            s.fwhmPx = kFwhmPerSigma * std::pow(det, 0.25);
            const double mean = 0.5 * (cxx + cyy), diff = std::hypot(0.5 * (cxx - cyy), cxy);
            s.ellipticity = 1.0 - std::sqrt((mean - diff) / (mean + diff));
        } else {
            s.fwhmPx = nan;
            s.ellipticity = nan;
            s.flags |= bits(StarFlag::BadShape);
        }
        if (m.clipped) s.flags |= bits(StarFlag::Edge);

        const ApertureSum a = aperture(p, s.x, s.y, rAp);
        s.flux = a.flux;
        s.fluxErr = std::sqrt(a.var);
        s.snr = s.fluxErr > 0.0 ? s.flux / s.fluxErr : 0.0;
        if (a.masked) s.flags |= bits(StarFlag::Masked);
        if (a.saturated) s.flags |= bits(StarFlag::Saturated);
        if (a.edge) s.flags |= bits(StarFlag::Edge);
        // The local sky is the median of the smoothed image on every third row and column of the
        // annulus: as precise as all raw pixels (smoothing cuts the noise ~3x, and samples 3 px apart
        // are nearly independent) at a ninth of the cost.
        const AnnulusSky sky = annulusSky(p, smData, sumK2, s.x, s.y, rIn, rOut, buf, 3);
        s.localSky = sky.median;
        if (std::isfinite(sky.median)) {
            if (std::abs(sky.median) > 3.0 * sky.error &&
                std::abs(sky.median * a.area) > config.skyResidualFraction * std::abs(s.flux))
                s.flags |= bits(StarFlag::SkyResidual);
            if (config.localSky == LocalSky::Subtract) {
                s.flux -= sky.median * a.area;
                s.fluxErr = std::hypot(s.fluxErr, sky.error * a.area);
                s.snr = s.fluxErr > 0.0 ? s.flux / s.fluxErr : 0.0;
            }
        } else if (config.localSky == LocalSky::Subtract) {
            s.flags |= bits(StarFlag::SkyResidual);  // no sky to subtract: the flux is not what was asked
        }

        double peak = -std::numeric_limits<double>::infinity();
        const int ix = static_cast<int>(std::lround(s.x)), iy = static_cast<int>(std::lround(s.y));
        for (int y = std::max(iy - 1, 0); y <= std::min(iy + 1, h - 1); ++y)
            for (int x = std::max(ix - 1, 0); x <= std::min(ix + 1, w - 1); ++x)
                if (p.cls[p.at(x, y)] != kBad) peak = std::max(peak, static_cast<double>(p.img[p.at(x, y)]));
        s.peak = std::isfinite(peak) ? peak : nan;
        stars.push_back(s);
        smoothedPeak.push_back(pk.value);
    }

    // Flags that need the whole list: blends and sharp (cosmic-ray-like) detections.
    std::vector<double> xs(stars.size()), ys(stars.size());
    for (std::size_t i = 0; i < stars.size(); ++i) {
        xs[i] = stars[i].x;
        ys[i] = stars[i].y;
    }
    const double blendR = config.blendRadiusFwhm * fwhmUnit;
    const double apCorrR = config.apCorrRadiusFwhm * fwhmUnit;
    const detail::GridIndex grid(xs, ys, std::max(blendR, 4.0));
    for (std::size_t i = 0; i < stars.size(); ++i) {
        bool blended = false;
        grid.forEachWithin(xs[i], ys[i], blendR, [&](std::size_t j) {
            if (j != i && smoothedPeak[j] >= config.blendMinFluxRatio * smoothedPeak[i]) blended = true;
        });
        if (blended) stars[i].flags |= bits(StarFlag::Blended);
    }
    {
        std::vector<double> f;
        for (const Star& s : stars)
            if (s.flags == 0 && s.snr >= 20.0) f.push_back(s.fwhmPx);
        if (f.size() < 5)
            for (const Star& s : stars)
                if (std::isfinite(s.fwhmPx) && !(s.flags & (StarFlag::Saturated | StarFlag::Masked))) f.push_back(s.fwhmPx);
        result.fwhmPx = f.empty() ? fwhmUnit : median(f);
        const double sharp = config.sharpFwhmFraction * result.fwhmPx;
        for (Star& s : stars)
            if (std::isfinite(s.fwhmPx) && s.fwhmPx < sharp) s.flags |= bits(StarFlag::Sharp);
    }

    // Aperture correction: the curve of growth of the brightest clean stars. Neighbours whose wings
    // reach the sky annulus bias the correction low (measured ~1.5% in crowded simulated fields), so
    // stars with nothing brighter than 5% of them out to the sky annulus come first; only when fewer
    // than 5 such stars exist are stars with fainter than 20% neighbours within the big radius added.
    {
        std::vector<std::size_t> order(stars.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return brighter(stars[a], stars[b]); });
        std::vector<double> ratios;
        std::vector<std::vector<float>> rings;
        std::vector<double> areas;
        const double skyIn = apCorrR + 0.5 * fwhmUnit, skyOut = apCorrR + 2.0 * fwhmUnit;
        std::vector<char> used(stars.size(), 0);
        auto collect = [&](double isolationRadius, double isolationRatio) {
            for (std::size_t i : order) {
                if (static_cast<int>(ratios.size()) >= config.apCorrMaxStars) break;
                const Star& s = stars[i];
                if (used[i] || s.flags != 0 || !(s.snr >= config.apCorrMinSnr) || !(s.flux > 0.0)) continue;
                bool crowded = false;
                grid.forEachWithin(s.x, s.y, isolationRadius, [&](std::size_t j) {
                    if (j != i && smoothedPeak[j] >= isolationRatio * smoothedPeak[i]) crowded = true;
                });
                if (crowded) continue;
                const AnnulusSky far = annulusSky(p, p.img, 1.0, s.x, s.y, skyIn, skyOut, buf);
                if (!std::isfinite(far.median)) continue;
                const double outer = outerLight(p, s.x, s.y, rAp, apCorrR, far.median, rings, areas);
                if (!std::isfinite(outer)) continue;
                const double ratio = (s.flux + outer) / s.flux;
                // A 2-FWHM aperture holds 65-99% of any real PSF: a ratio far outside that is a failed
                // measurement (a neighbour or a defect in the annulus), not a curve of growth.
                if (!(ratio > 0.5 && ratio < 3.0)) continue;
                ratios.push_back(ratio);
                used[i] = 1;
            }
        };
        collect(skyOut + fwhmUnit, 0.05);
        if (ratios.size() < 5) collect(apCorrR + fwhmUnit, 0.2);
        result.apertureCorrectionStars = static_cast<int>(ratios.size());
        if (ratios.size() >= 3) {
            result.apertureCorrection = median(ratios);
        } else {
            // Too few stars for a curve of growth (a small or sparse image, found by the campaign on a
            // 256 px field where one star gave -0.23): the correction of a circular Moffat with beta 3
            // and this image's FWHM, so fluxes stay totals and comparable between images.
            const double alpha = result.fwhmPx / (2.0 * std::sqrt(std::pow(2.0, 1.0 / 3.0) - 1.0));
            const double u = rAp / alpha;
            result.apertureCorrection = 1.0 / (1.0 - std::pow(1.0 + u * u, -2.0));
        }
    }
    for (Star& s : stars) {
        s.flux *= result.apertureCorrection;
        s.fluxErr *= result.apertureCorrection;
        s.snr = s.fluxErr > 0.0 ? s.flux / s.fluxErr : 0.0;
    }
    std::sort(stars.begin(), stars.end(), brighter);
    result.stars = std::move(stars);
    return result;
}

std::vector<Star> findStars(const Image<float>& image, const Image<float>& variance,
                            const Image<std::uint16_t>& mask, const StarFinderConfig& config) {
    return findStarsDetailed(image, variance, mask, config).stars;
}

}  // namespace astrid::psf
