// Measurement of the sources of one footprint on D / F_D: windowed centroid and moments, joint PSF
// fit with P_D, the noise inflation read off S_corr, flags and features.
#include <algorithm>
#include <cmath>
#include <numbers>

#include "astrid/core/error.hpp"
#include "detail.hpp"

namespace astrid::detect::detail {
namespace {
constexpr double kFwhmPerSigma = 2.3548200450309493;  // 2 sqrt(2 ln 2)

double lanczos3(double x) {
    x = std::fabs(x);
    if (x < 1e-12) return 1.0;
    if (x >= 3.0) return 0.0;
    const double px = std::numbers::pi * x;
    return 3.0 * std::sin(px) * std::sin(px / 3.0) / (px * px);
}

/// Normalised Lanczos-3 taps: value at fractional offset -f of a sampled function is
/// sum_t w[t + 3] s(i + t).
void lanczosTaps(double f, double w[7]) {
    double sum = 0.0;
    for (int t = -3; t <= 3; ++t) sum += (w[t + 3] = lanczos3(f + t));
    for (int t = 0; t < 7; ++t) w[t] /= sum;
}

/// A rectangular cut of sign x (D / F_D - neighbours' models): NaN where a pixel is unusable or off
/// the image.
struct Patch {
    int x0 = 0, y0 = 0, w = 0, h = 0;
    std::vector<double> v;
    double at(int x, int y) const {
        const int i = x - x0, j = y - y0;
        if (i < 0 || j < 0 || i >= w || j >= h) return std::numeric_limits<double>::quiet_NaN();
        return v[static_cast<std::size_t>(j) * static_cast<std::size_t>(w) + static_cast<std::size_t>(i)];
    }
};

struct Moments {
    double sumW = 0, mx = 0, my = 0, xx = 0, xy = 0, yy = 0;  ///< weighted sum, mean offset, second moments about the mean
};

/// Gaussian-windowed moments about (cx, cy) over a box of half-size ceil(4 sigma). With `fill`,
/// unusable pixels (NaN) take the PSF's value there scaled to the window's flux (sum w v /
/// sum w P over the usable ones): a bad column or cosmic ray on one side of a source would
/// otherwise pull its centroid to the other side.
template <class Sampler>
Moments windowMoments(const Sampler& at, double cx, double cy, double sigma, const PsfStamp* fill = nullptr) {
    const int r = static_cast<int>(std::ceil(4.0 * sigma));
    const int ix = static_cast<int>(std::lround(cx)), iy = static_cast<int>(std::lround(cy));
    const double k = -0.5 / (sigma * sigma);
    double wx[2 * 64 + 1];
    const int rr = std::min(r, 64);
    for (int i = -rr; i <= rr; ++i) wx[i + rr] = std::exp(k * (ix + i - cx) * (ix + i - cx));
    double s = 0, sx = 0, sy = 0, sxx = 0, sxy = 0, syy = 0;
    int missing = 0;
    auto add = [&](double wv, double dx, double dy) {
        s += wv;
        sx += wv * dx;
        sy += wv * dy;
        sxx += wv * dx * dx;
        sxy += wv * dx * dy;
        syy += wv * dy * dy;
    };
    for (int j = -rr; j <= rr; ++j) {
        const double dy = iy + j - cy;
        const double wy = std::exp(k * dy * dy);
        for (int i = -rr; i <= rr; ++i) {
            const double v = at(ix + i, iy + j);
            if (!std::isfinite(v)) {
                ++missing;
                continue;
            }
            const double dx = ix + i - cx;
            const double wv = wx[i + rr] * wy * v;
            add(wv, dx, dy);
        }
    }
    if (missing > 0 && fill != nullptr) {
        double wp = 0.0;  // sum w P over the usable pixels
        for (int j = -rr; j <= rr; ++j) {
            const double dy = iy + j - cy;
            const double wy = std::exp(k * dy * dy);
            for (int i = -rr; i <= rr; ++i)
                if (std::isfinite(at(ix + i, iy + j))) wp += wx[i + rr] * wy * fill->valueAt(ix + i - cx, dy);
        }
        const double flux = wp > 0.0 ? s / wp : 0.0;
        if (flux > 0.0)
            for (int j = -rr; j <= rr; ++j) {
                const double dy = iy + j - cy;
                const double wy = std::exp(k * dy * dy);
                for (int i = -rr; i <= rr; ++i) {
                    if (std::isfinite(at(ix + i, iy + j))) continue;
                    const double dx = ix + i - cx;
                    const double wv = wx[i + rr] * wy * flux * fill->valueAt(dx, dy);
                    add(wv, dx, dy);
                }
            }
    }
    Moments m;
    m.sumW = s;
    if (!(s > 0.0)) return m;
    m.mx = sx / s;
    m.my = sy / s;
    m.xx = sxx / s - m.mx * m.mx;
    m.xy = sxy / s - m.mx * m.my;
    m.yy = syy / s - m.my * m.my;
    return m;
}

/// Deconvolves windowed second moments from the window: C = (C_w^-1 - I / sigma^2)^-1 (exact for a
/// Gaussian source). False when C_w^-1 - I / sigma^2 is not positive definite.
bool deconvolveWindow(double xx, double xy, double yy, double sigma, double& cxx, double& cxy, double& cyy) {
    const double det = xx * yy - xy * xy;
    if (!(det > 0.0) || !(xx > 0.0)) return false;
    const double s2 = 1.0 / (sigma * sigma);
    const double ixx = yy / det - s2, iyy = xx / det - s2, ixy = -xy / det;
    const double idet = ixx * iyy - ixy * ixy;
    if (!(idet > 0.0) || !(ixx > 0.0)) return false;
    cxx = iyy / idet;
    cyy = ixx / idet;
    cxy = -ixy / idet;
    return true;
}

/// Solves the symmetric system a x = b in place (Gaussian elimination with partial pivoting); on
/// return `inv` holds a^-1. False when a is singular.
bool solve(std::vector<double> a, std::vector<double>& b, std::vector<double>& inv, int n) {
    inv.assign(static_cast<std::size_t>(n) * static_cast<std::size_t>(n), 0.0);
    for (int i = 0; i < n; ++i) inv[static_cast<std::size_t>(i * n + i)] = 1.0;
    auto A = [&](int r, int c) -> double& { return a[static_cast<std::size_t>(r * n + c)]; };
    auto I = [&](int r, int c) -> double& { return inv[static_cast<std::size_t>(r * n + c)]; };
    for (int c = 0; c < n; ++c) {
        int p = c;
        for (int r = c + 1; r < n; ++r)
            if (std::fabs(A(r, c)) > std::fabs(A(p, c))) p = r;
        if (!(std::fabs(A(p, c)) > 0.0)) return false;
        if (p != c) {
            for (int k = 0; k < n; ++k) std::swap(A(p, k), A(c, k)), std::swap(I(p, k), I(c, k));
            std::swap(b[static_cast<std::size_t>(p)], b[static_cast<std::size_t>(c)]);
        }
        const double d = A(c, c);
        for (int r = 0; r < n; ++r) {
            if (r == c) continue;
            const double f = A(r, c) / d;
            if (f == 0.0) continue;
            for (int k = 0; k < n; ++k) A(r, k) -= f * A(c, k), I(r, k) -= f * I(c, k);
            b[static_cast<std::size_t>(r)] -= f * b[static_cast<std::size_t>(c)];
        }
    }
    for (int r = 0; r < n; ++r) {
        const double d = A(r, r);
        b[static_cast<std::size_t>(r)] /= d;
        for (int k = 0; k < n; ++k) I(r, k) /= d;
    }
    return true;
}

/// A source being measured: its position and the PSF model shifted there.
struct Source {
    double x = 0, y = 0;      ///< current position
    double startX = 0, startY = 0;
    int px = 0, py = 0;       ///< integer centre of `model`
    std::vector<double> model;  ///< P_D shifted to (x, y), on the stamp grid centred at (px, py)
    double flux = 0;
    bool centroidFailed = false;
    double fwhm = std::numeric_limits<double>::quiet_NaN();
    double e = std::numeric_limits<double>::quiet_NaN(), pa = std::numeric_limits<double>::quiet_NaN();
    bool badShape = true;
};

void place(Source& s, const PsfStamp& psf) {
    s.px = static_cast<int>(std::lround(s.x));
    s.py = static_cast<int>(std::lround(s.y));
    psf.shifted(s.x - s.px, s.y - s.py, s.model);
}

double modelAt(const Source& s, const PsfStamp& psf, int x, int y) {
    const int h = psf.half(), i = x - s.px + h, j = y - s.py + h;
    if (i < 0 || j < 0 || i >= psf.size() || j >= psf.size()) return 0.0;
    return s.model[static_cast<std::size_t>(j) * static_cast<std::size_t>(psf.size()) + static_cast<std::size_t>(i)];
}

/// Joint linear PSF fit of the sources' fluxes over the pixels within `radius` of any of them.
/// Returns the diagonal of (P^T P)^-1 per source (NaN when singular).
std::vector<double> fitFluxes(std::vector<Source>& src, const diff::ZogyResult& z, const PsfStamp& psf,
                              std::uint16_t bad, double radius) {
    const int n = static_cast<int>(src.size());
    const int W = z.diff.width(), H = z.diff.height();
    const int R = static_cast<int>(std::ceil(radius));
    const double r2 = radius * radius;
    int x0 = W, y0 = H, x1 = -1, y1 = -1;
    for (const Source& s : src) {
        x0 = std::min(x0, s.px - R), x1 = std::max(x1, s.px + R);
        y0 = std::min(y0, s.py - R), y1 = std::max(y1, s.py + R);
    }
    x0 = std::max(x0, 0), y0 = std::max(y0, 0), x1 = std::min(x1, W - 1), y1 = std::min(y1, H - 1);
    std::vector<double> a(static_cast<std::size_t>(n) * static_cast<std::size_t>(n), 0.0), b(static_cast<std::size_t>(n), 0.0),
        p(static_cast<std::size_t>(n));
    for (int y = y0; y <= y1; ++y)
        for (int x = x0; x <= x1; ++x) {
            const double d = z.diff(x, y);
            if (!std::isfinite(d) || (!z.mask.empty() && (z.mask(x, y) & bad))) continue;
            bool near = false;
            for (const Source& s : src)
                if ((x - s.x) * (x - s.x) + (y - s.y) * (y - s.y) <= r2) near = true;
            if (!near) continue;
            for (int k = 0; k < n; ++k) p[static_cast<std::size_t>(k)] = modelAt(src[static_cast<std::size_t>(k)], psf, x, y);
            for (int r = 0; r < n; ++r) {
                b[static_cast<std::size_t>(r)] += d * p[static_cast<std::size_t>(r)];
                for (int c = 0; c < n; ++c) a[static_cast<std::size_t>(r * n + c)] += p[static_cast<std::size_t>(r)] * p[static_cast<std::size_t>(c)];
            }
        }
    std::vector<double> inv, diag(static_cast<std::size_t>(n), std::numeric_limits<double>::quiet_NaN());
    if (!solve(a, b, inv, n)) {
        for (Source& s : src) s.flux = std::numeric_limits<double>::quiet_NaN();
        return diag;
    }
    for (int k = 0; k < n; ++k) {
        src[static_cast<std::size_t>(k)].flux = b[static_cast<std::size_t>(k)];
        diag[static_cast<std::size_t>(k)] = inv[static_cast<std::size_t>(k * n + k)];
    }
    return diag;
}

/// The 3-point Gaussian (log-parabola) vertex along one axis; a parabola when a value is not
/// positive; 0 when a neighbour is missing. Clamped to half a pixel.
double vertex(double a, double b, double c) {
    if (!std::isfinite(a) || !std::isfinite(c)) return 0.0;
    double d = 0.0;
    if (a > 0 && b > 0 && c > 0) {
        const double la = std::log(a), lb = std::log(b), lc = std::log(c);
        const double den = la - 2.0 * lb + lc;
        if (den < 0.0) d = 0.5 * (la - lc) / den;
    } else {
        const double den = a - 2.0 * b + c;
        if (den < 0.0) d = 0.5 * (a - c) / den;
    }
    return std::clamp(d, -0.5, 0.5);
}
}  // namespace

PsfStamp::PsfStamp(const Image<double>& stamp) : stamp_(stamp) {
    if (stamp.empty() || stamp.width() != stamp.height() || stamp.width() % 2 == 0)
        throw DataError("detect: P_D must be a square stamp of odd size (got " + std::to_string(stamp.width()) + "x" +
                        std::to_string(stamp.height()) + ")");
    double sum = 0.0;
    for (double v : stamp.pixels()) sum += v;
    if (!(sum > 0.0) || !std::isfinite(sum)) throw DataError("detect: P_D has no finite positive sum");
    half_ = stamp.width() / 2;
    // Adaptive moments: the window sigma that equals the deconvolved size (one step for a Gaussian).
    auto at = [&](int x, int y) {
        return (x < 0 || y < 0 || x >= stamp_.width() || y >= stamp_.height()) ? 0.0 : stamp_(x, y);
    };
    double sigma = 1.5;
    double cxx = 0, cxy = 0, cyy = 0;
    for (int it = 0; it < 100; ++it) {
        const Moments m = windowMoments(at, half_, half_, sigma);
        if (!deconvolveWindow(m.xx, m.xy, m.yy, sigma, cxx, cxy, cyy)) {
            sigma *= 1.5;  // window far too small for the profile: widen and try again
            continue;
        }
        const double next = std::pow(cxx * cyy - cxy * cxy, 0.25);
        const bool done = std::fabs(next - sigma) < 1e-7;
        sigma = next;
        if (done) break;
    }
    sigma_ = sigma;
    const double det = (cxx - 1.0 / 12) * (cyy - 1.0 / 12) - cxy * cxy;
    fwhm_ = det > 0 ? kFwhmPerSigma * std::pow(det, 0.25) : kFwhmPerSigma * sigma;
}

double PsfStamp::valueAt(double dx, double dy) const {
    const double u = half_ + dx, v = half_ + dy;
    const int i = static_cast<int>(std::floor(u)), j = static_cast<int>(std::floor(v));
    if (i < 0 || j < 0 || i + 1 >= size() || j + 1 >= size()) return 0.0;
    const double fu = u - i, fv = v - j;
    return (1 - fv) * ((1 - fu) * stamp_(i, j) + fu * stamp_(i + 1, j)) + fv * ((1 - fu) * stamp_(i, j + 1) + fu * stamp_(i + 1, j + 1));
}

void PsfStamp::shifted(double fx, double fy, std::vector<double>& out) const {
    const int n = size();
    double wx[7], wy[7];
    lanczosTaps(fx, wx);
    lanczosTaps(fy, wy);
    std::vector<double> rows(static_cast<std::size_t>(n) * static_cast<std::size_t>(n), 0.0);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i) {
            double s = 0.0;
            for (int t = -3; t <= 3; ++t)
                if (i + t >= 0 && i + t < n) s += wx[t + 3] * stamp_(i + t, j);
            rows[static_cast<std::size_t>(j * n + i)] = s;
        }
    out.assign(static_cast<std::size_t>(n) * static_cast<std::size_t>(n), 0.0);
    for (int j = 0; j < n; ++j)
        for (int t = -3; t <= 3; ++t) {
            if (j + t < 0 || j + t >= n) continue;
            const double w = wy[t + 3];
            const double* src = rows.data() + static_cast<std::size_t>((j + t) * n);
            double* dst = out.data() + static_cast<std::size_t>(j * n);
            for (int i = 0; i < n; ++i) dst[i] += w * src[i];
        }
}

bool deconvolvedShape(double xx, double xy, double yy, double sigma, double& fwhmPx, double& ellipticity,
                      double& positionAngleDeg) {
    double cxx, cxy, cyy;
    if (!deconvolveWindow(xx, xy, yy, sigma, cxx, cxy, cyy)) return false;
    cxx -= 1.0 / 12, cyy -= 1.0 / 12;  // the pixel
    const double det = cxx * cyy - cxy * cxy;
    if (!(det > 0.0) || !(cxx > 0.0)) return false;
    const double tr = 0.5 * (cxx + cyy), disc = std::sqrt(0.25 * (cxx - cyy) * (cxx - cyy) + cxy * cxy);
    const double l1 = tr + disc, l2 = tr - disc;
    if (!(l2 > 0.0)) return false;
    fwhmPx = kFwhmPerSigma * std::pow(det, 0.25);
    ellipticity = 1.0 - std::sqrt(l2 / l1);
    positionAngleDeg = 0.5 * std::atan2(2.0 * cxy, cxx - cyy) * 180.0 / std::numbers::pi;
    if (positionAngleDeg <= -90.0) positionAngleDeg += 180.0;
    return true;
}

void peakStart(const Peak& p, int sign, const diff::ZogyResult& z, const DetectConfig& cfg, double& x, double& y) {
    const int W = z.scorr.width(), H = z.scorr.height();
    auto at = [&](int i, int j) {
        return i >= 0 && j >= 0 && i < W && j < H && (z.mask.empty() || !(z.mask(i, j) & cfg.badMaskBits))
                   ? sign * static_cast<double>(z.scorr(i, j))
                   : std::numeric_limits<double>::quiet_NaN();
    };
    x = p.x + vertex(at(p.x - 1, p.y), p.value, at(p.x + 1, p.y));
    y = p.y + vertex(at(p.x, p.y - 1), p.value, at(p.x, p.y + 1));
}

int saturatedReach(const DetectConfig& cfg, const PsfStamp& psf) {
    return cfg.saturatedExclusionPx < 0.0 ? psf.half() : static_cast<int>(std::floor(cfg.saturatedExclusionPx));
}

bool nearSaturated(const diff::ZogyResult& z, int px, int py, int reach, std::uint16_t satBits) {
    if (z.mask.empty() || !satBits) return false;
    const int W = z.mask.width(), H = z.mask.height(), r2 = reach * reach;
    for (int y = std::max(0, py - reach); y <= std::min(H - 1, py + reach); ++y)
        for (int x = std::max(0, px - reach); x <= std::min(W - 1, px + reach); ++x)
            if ((x - px) * (x - px) + (y - py) * (y - py) <= r2 && (z.mask(x, y) & satBits)) return true;
    return false;
}

namespace {
/// What every measurement of one ZogyResult shares.
struct Context {
    const diff::ZogyResult& z;
    const PsfStamp& psf;
    const DetectConfig& cfg;
    int W, H;
    bool haveMask;
    double sigmaW, fitRadius, maxShift;
    bool usable(int x, int y) const {
        return x >= 0 && y >= 0 && x < W && y < H && std::isfinite(z.diff(x, y)) &&
               (!haveMask || !(z.mask(x, y) & cfg.badMaskBits));
    }
    /// sqrt(V(S) / F_S) at a pixel: S recomputed from D (S = F_D^2 D/F_D (x) P_D, masked pixels at
    /// the background as ZOGY has them) against S_corr there. 1 when S_corr is too small to tell.
    double noiseInflation(int px, int py) const {
        const double sc = z.scorr(px, py);
        if (!(std::fabs(sc) >= 1.0)) return 1.0;
        const int h = psf.half();
        double s = 0.0;
        for (int j = -h; j <= h; ++j)
            for (int k = -h; k <= h; ++k)
                if (usable(px + k, py + j)) s += z.diff(px + k, py + j) * psf.stamp()(k + h, j + h);
        const double q = std::fabs(s * z.fD * z.fD) / (std::fabs(sc) * std::sqrt(z.fS));
        return std::isfinite(q) && q > 0.0 ? q : 1.0;
    }
};

/// One pass over a group: windowed centroids on sign x (D - the others' models) and the joint
/// flux fit. Returns the diagonal of (P^T P)^-1 per source.
std::vector<double> measurePass(const std::vector<Member>& members, std::vector<Source>& src, const Context& ctx) {
    const PsfStamp& psf = ctx.psf;
    const DetectConfig& cfg = ctx.cfg;
    src.assign(members.size(), Source{});
    for (std::size_t i = 0; i < src.size(); ++i) {
        Source& s = src[i];
        s.startX = members[i].startX, s.startY = members[i].startY;
        s.x = s.startX, s.y = s.startY;
        place(s, psf);
    }
    const bool joint = src.size() > 1;
    if (joint) fitFluxes(src, ctx.z, psf, cfg.badMaskBits, ctx.fitRadius);
    const int reach = static_cast<int>(std::ceil(4.0 * ctx.sigmaW + ctx.maxShift)) + 1;
    Patch patch;
    for (std::size_t i = 0; i < src.size(); ++i) {
        Source& s = src[i];
        const double sign = members[i].sign;
        patch.x0 = members[i].peak.x - reach, patch.y0 = members[i].peak.y - reach;
        patch.w = patch.h = 2 * reach + 1;
        patch.v.assign(static_cast<std::size_t>(patch.w) * static_cast<std::size_t>(patch.h),
                       std::numeric_limits<double>::quiet_NaN());
        for (int j = 0; j < patch.h; ++j)
            for (int k = 0; k < patch.w; ++k) {
                const int x = patch.x0 + k, y = patch.y0 + j;
                if (!ctx.usable(x, y)) continue;
                double v = ctx.z.diff(x, y);
                if (joint)
                    for (std::size_t o = 0; o < src.size(); ++o)
                        if (o != i && std::isfinite(src[o].flux)) v -= src[o].flux * modelAt(src[o], psf, x, y);
                patch.v[static_cast<std::size_t>(j * patch.w + k)] = sign * v;
            }
        auto at = [&](int x, int y) { return patch.at(x, y); };
        if (!members[i].fixedPosition) {
            // Iterations that run out without converging keep the last position (as SExtractor
            // does); a window with no positive light or a walk beyond maxShift fails.
            double x = s.startX, y = s.startY;
            bool ok = true;
            for (int it = 0; it < cfg.maxCentroidIterations; ++it) {
                const Moments m = windowMoments(at, x, y, ctx.sigmaW, &psf);
                if (!(m.sumW > 0.0)) {
                    ok = false;
                    break;
                }
                // Factor 2: for a source the size of the window the weighted mean moves half way.
                const double stepX = 2.0 * m.mx, stepY = 2.0 * m.my;
                x += stepX, y += stepY;
                if (std::hypot(x - s.startX, y - s.startY) > ctx.maxShift) {
                    ok = false;
                    break;
                }
                if (std::hypot(stepX, stepY) < cfg.centroidTolerancePx) break;
            }
            if (ok) {
                s.x = x, s.y = y;
            } else {
                s.centroidFailed = true;
                s.x = s.startX, s.y = s.startY;
            }
        }
        const Moments m = windowMoments(at, s.x, s.y, ctx.sigmaW, &psf);
        if (m.sumW > 0.0) s.badShape = !deconvolvedShape(m.xx, m.xy, m.yy, ctx.sigmaW, s.fwhm, s.e, s.pa);
        place(s, psf);
    }
    return fitFluxes(src, ctx.z, psf, cfg.badMaskBits, ctx.fitRadius);
}

/// The most significant further source in the residual of the group's fit: the residual matched
/// with P_D (over the fit radius) in units of its noise, (1 / F_D) sqrt(sum P^2) times the noise
/// inflation, on the footprints' pixels at least residualMinSeparationFwhm from every source, of
/// the footprint's sign. It must reach thresholdSigma and deblendContrast x the group's highest
/// S_corr peak.
bool residualPeak(const std::vector<Member>& members, const std::vector<Source>& src,
                  const std::vector<const Footprint*>& footprints, const Context& ctx, Member& found) {
    const PsfStamp& psf = ctx.psf;
    const DetectConfig& cfg = ctx.cfg;
    const int h = psf.half();
    const int R = std::min(h, static_cast<int>(std::ceil(ctx.fitRadius)));
    const double r2 = ctx.fitRadius * ctx.fitRadius;
    int x0 = ctx.W, y0 = ctx.H, x1 = -1, y1 = -1;
    for (const Footprint* f : footprints)
        for (const Pixel& p : f->pixels) x0 = std::min(x0, p.x), x1 = std::max(x1, p.x), y0 = std::min(y0, p.y), y1 = std::max(y1, p.y);
    Patch res;
    res.x0 = x0 - R, res.y0 = y0 - R, res.w = x1 - x0 + 1 + 2 * R, res.h = y1 - y0 + 1 + 2 * R;
    res.v.assign(static_cast<std::size_t>(res.w) * static_cast<std::size_t>(res.h), std::numeric_limits<double>::quiet_NaN());
    for (int j = 0; j < res.h; ++j)
        for (int k = 0; k < res.w; ++k) {
            const int x = res.x0 + k, y = res.y0 + j;
            if (!ctx.usable(x, y)) continue;
            double v = ctx.z.diff(x, y);
            for (const Source& s : src)
                if (std::isfinite(s.flux)) v -= s.flux * modelAt(s, psf, x, y);
            res.v[static_cast<std::size_t>(j * res.w + k)] = v;
        }
    auto matched = [&](int x, int y) {
        double sum = 0.0, p2 = 0.0;
        for (int j = -R; j <= R; ++j)
            for (int k = -R; k <= R; ++k) {
                if (k * k + j * j > r2) continue;
                const double v = res.at(x + k, y + j);
                if (!std::isfinite(v)) continue;
                const double p = psf.stamp()(k + h, j + h);
                sum += v * p;
                p2 += p * p;
            }
        return p2 > 0.0 ? sum * ctx.z.fD / std::sqrt(p2) : 0.0;
    };
    double top = 0.0;
    for (const Member& m : members) top = std::max(top, static_cast<double>(m.peak.value));
    const double limit = std::max(cfg.thresholdSigma, cfg.deblendContrast * top);
    const double minSep2 = std::pow(cfg.residualMinSeparationFwhm * psf.fwhmPx(), 2);
    struct Hit {
        double t;
        int x, y, footprint, sign;
    };
    std::vector<Hit> hits;
    for (std::size_t f = 0; f < footprints.size(); ++f) {
        const int sign = footprints[f]->sign;
        for (const Pixel& p : footprints[f]->pixels) {
            bool far = true;
            for (const Source& s : src)
                if ((p.x - s.x) * (p.x - s.x) + (p.y - s.y) * (p.y - s.y) < minSep2) far = false;
            if (!far) continue;
            const double t = sign * matched(p.x, p.y);
            if (t >= limit) hits.push_back(Hit{t, p.x, p.y, static_cast<int>(f), sign});
        }
    }
    std::sort(hits.begin(), hits.end(), [](const Hit& a, const Hit& b) {
        return a.t > b.t || (a.t == b.t && (a.y < b.y || (a.y == b.y && a.x < b.x)));
    });
    for (std::size_t k = 0; k < hits.size() && k < 5; ++k) {
        const Hit& hit = hits[k];
        if (hit.t / ctx.noiseInflation(hit.x, hit.y) < limit) continue;
        if (cfg.artifacts == Artifacts::Drop) {  // the rules detectCandidates applies to peaks
            const int reach = saturatedReach(cfg, psf);
            const double border = cfg.borderMarginFwhm * psf.fwhmPx();
            if (reach > 0 && nearSaturated(ctx.z, hit.x, hit.y, reach, cfg.saturatedMaskBits)) continue;
            if (std::min({hit.x, hit.y, ctx.W - 1 - hit.x, ctx.H - 1 - hit.y}) < border) continue;
        }
        found = Member{};
        found.peak = Peak{hit.x, hit.y, static_cast<float>(hit.sign * ctx.z.scorr(hit.x, hit.y))};
        found.sign = hit.sign;
        found.footprint = hit.footprint;
        found.fromResidual = true;
        found.startX = hit.x + vertex(hit.sign * matched(hit.x - 1, hit.y), hit.t, hit.sign * matched(hit.x + 1, hit.y));
        found.startY = hit.y + vertex(hit.sign * matched(hit.x, hit.y - 1), hit.t, hit.sign * matched(hit.x, hit.y + 1));
        return true;
    }
    return false;
}
}  // namespace

int measureGroup(std::vector<Member> members, const std::vector<const Footprint*>& footprints,
                 const diff::ZogyResult& z, const PsfStamp& psf, const DetectConfig& cfg, std::vector<Candidate>& out,
                 std::vector<int>& origin) {
    const Context ctx{z, psf, cfg, z.diff.width(), z.diff.height(), !z.mask.empty(), psf.sigmaPx(),
                      std::max(1.5, cfg.fitRadiusFwhm * psf.fwhmPx()), std::max(1.0, 0.5 * psf.fwhmPx())};
    const bool dipole = std::any_of(members.begin(), members.end(), [](const Member& m) { return m.fixedPosition; });
    std::vector<int> from(members.size());
    for (std::size_t i = 0; i < from.size(); ++i) from[i] = static_cast<int>(i);
    std::vector<Source> src;
    std::vector<double> invDiag = measurePass(members, src, ctx);
    int added = 0;
    Member extra;
    while (!dipole && added < cfg.maxResidualSources && residualPeak(members, src, footprints, ctx, extra)) {
        // The sources already fitted go on from where this pass put them: a peak of S_corr that
        // merged two sources walks towards one of them as the other is fitted.
        for (std::size_t i = 0; i < members.size(); ++i)
            if (!src[i].centroidFailed) members[i].startX = src[i].x, members[i].startY = src[i].y;
        members.push_back(extra);
        from.push_back(-1);
        ++added;
        invDiag = measurePass(members, src, ctx);
    }
    // With sources added, a source the others explain goes: a peak of S_corr where two sources
    // merged sits between them, and once both are fitted it only absorbs their misplaced light.
    // Each member in turn (the weakest first) is left out and the rest fitted again (three passes,
    // each going on from the last); when chi^2 over the footprints' pixels rises by less than
    // thresholdSigma^2 (in units of the noise there), the simpler fit stands.
    auto chi2 = [&](const std::vector<Source>& fit) {
        double sum = 0.0;
        for (const Footprint* f : footprints)
            for (const Pixel& p : f->pixels) {
                if (!ctx.usable(p.x, p.y)) continue;
                double model = 0.0;
                for (const Source& o : fit)
                    if (std::isfinite(o.flux)) model += o.flux * modelAt(o, psf, p.x, p.y);
                const double r = (z.diff(p.x, p.y) - model) * z.fD;
                sum += r * r;
            }
        return sum;
    };
    auto settle = [&](std::vector<Member>& m, std::vector<Source>& fit) {
        std::vector<double> d;
        for (int pass = 0; pass < 3; ++pass) {
            d = measurePass(m, fit, ctx);
            for (std::size_t i = 0; i < m.size(); ++i)
                if (!fit[i].centroidFailed && !m[i].fixedPosition) m[i].startX = fit[i].x, m[i].startY = fit[i].y;
        }
        return d;
    };
    if (added > 0) invDiag = settle(members, src);
    for (bool dropped = added > 0; dropped && members.size() > 1;) {
        dropped = false;
        const double full = chi2(src);
        std::vector<std::size_t> order(members.size());
        std::vector<double> snr(members.size());
        for (std::size_t i = 0; i < members.size(); ++i) {
            order[i] = i;
            snr[i] = members[i].sign * src[i].flux / std::sqrt(invDiag[i]);
        }
        std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return snr[a] < snr[b]; });
        for (std::size_t i : order) {
            std::vector<Member> trial = members;
            trial.erase(trial.begin() + static_cast<std::ptrdiff_t>(i));
            std::vector<Source> fit;
            std::vector<double> d = settle(trial, fit);
            const double q = ctx.noiseInflation(members[i].peak.x, members[i].peak.y);
            if ((chi2(fit) - full) / (q * q) < cfg.thresholdSigma * cfg.thresholdSigma) {
                members = std::move(trial);
                src = std::move(fit);
                invDiag = std::move(d);
                from.erase(from.begin() + static_cast<std::ptrdiff_t>(i));
                dropped = true;
                break;
            }
        }
    }
    origin.insert(origin.end(), from.begin(), from.end());

    // Footprint pixels go to the member of their footprint whose fitted model is the largest there
    // (the nearest when no model reaches).
    std::vector<int> area(members.size(), 0), perFootprint(footprints.size(), 0);
    for (const Member& m : members) ++perFootprint[static_cast<std::size_t>(m.footprint)];
    for (std::size_t f = 0; f < footprints.size(); ++f)
        for (const Pixel& p : footprints[f]->pixels) {
            int best = -1;
            double bestModel = 0.0, bestD2 = std::numeric_limits<double>::infinity();
            for (std::size_t i = 0; i < members.size(); ++i) {
                if (members[i].footprint != static_cast<int>(f)) continue;
                const double v = std::isfinite(src[i].flux) ? members[i].sign * src[i].flux * modelAt(src[i], psf, p.x, p.y) : 0.0;
                const double d2 = (p.x - src[i].x) * (p.x - src[i].x) + (p.y - src[i].y) * (p.y - src[i].y);
                if (v > bestModel || (bestModel <= 0.0 && v <= 0.0 && d2 < bestD2)) best = static_cast<int>(i), bestModel = std::max(v, 0.0), bestD2 = d2;
            }
            if (best >= 0) ++area[static_cast<std::size_t>(best)];
        }

    const int W = ctx.W, H = ctx.H;
    const bool haveMask = ctx.haveMask;
    const double fitRadius = ctx.fitRadius;
    auto usable = [&](int x, int y) { return ctx.usable(x, y); };
    const double sigmaBkg = 1.0 / z.fD;
    for (std::size_t i = 0; i < src.size(); ++i) {
        const Source& s = src[i];
        const Peak& p = members[i].peak;
        const double sign = members[i].sign;
        Candidate c;
        c.x = s.x, c.y = s.y;
        c.peakX = p.x, c.peakY = p.y;
        c.significance = sign * p.value;
        c.isDiffPos = members[i].sign > 0;
        c.flux = s.flux;
        c.areaPx = area[i];
        c.footprintPeaks = perFootprint[static_cast<std::size_t>(members[i].footprint)];
        if (c.footprintPeaks > 1) c.flags |= CandidateFlag::Blended;
        if (s.centroidFailed) c.flags |= CandidateFlag::CentroidFailed;
        if (s.badShape) {
            c.flags |= CandidateFlag::BadShape;
        } else {
            c.fwhmPx = s.fwhm, c.ellipticity = s.e, c.positionAngleDeg = s.pa;
        }
        if (haveMask && (z.mask(p.x, p.y) & bits(MaskBit::Edge))) c.flags |= CandidateFlag::KernelEdge;
        c.fluxErr = ctx.noiseInflation(p.x, p.y) * sigmaBkg * std::sqrt(invDiag[i]);
        c.snr = std::fabs(c.flux) / c.fluxErr;
        // Over the fit radius: the PSF fit's chi^2, the model's brightest pixel, saturation, edges.
        const double r2 = fitRadius * fitRadius;
        const int R = static_cast<int>(std::ceil(fitRadius));
        double chi = 0.0, best = -1.0;
        int nChi = 0, bx = s.px, by = s.py;
        for (int y = s.py - R; y <= s.py + R; ++y)
            for (int x = s.px - R; x <= s.px + R; ++x) {
                if ((x - s.x) * (x - s.x) + (y - s.y) * (y - s.y) > r2) continue;
                if (x < 0 || y < 0 || x >= W || y >= H) {
                    c.flags |= CandidateFlag::Edge;
                    continue;
                }
                const std::uint16_t m = haveMask ? z.mask(x, y) : 0;
                if (m & cfg.saturatedMaskBits) c.flags |= CandidateFlag::Saturated;
                if (m & cfg.noDataMaskBits) c.flags |= CandidateFlag::Edge;
                if (!usable(x, y)) {
                    if (!(m & cfg.noDataMaskBits)) c.flags |= CandidateFlag::NearMask;
                    continue;
                }
                double model = 0.0;
                for (const Source& o : src)
                    if (std::isfinite(o.flux)) model += o.flux * modelAt(o, psf, x, y);
                const double r = (z.diff(x, y) - model) / sigmaBkg;
                chi += r * r;
                ++nChi;
                const double own = modelAt(s, psf, x, y);
                if (own > best) best = own, bx = x, by = y;
            }
        if (nChi > static_cast<int>(src.size())) c.chi2 = chi / (nChi - static_cast<int>(src.size()));
        if (best > 0.0 && std::isfinite(s.flux) && s.flux != 0.0) {
            double others = 0.0;
            for (const Source& o : src)
                if (&o != &s && std::isfinite(o.flux)) others += o.flux * modelAt(o, psf, bx, by);
            c.sharpness = (z.diff(bx, by) - others) / (s.flux * best);
        }

        // ZTF-style box features at the peak.
        double sum = 0.0, sumAbs = 0.0;
        for (int j = -2; j <= 2; ++j)
            for (int k = -2; k <= 2; ++k) {
                const int x = p.x + k, y = p.y + j;
                if (!usable(x, y)) {
                    ++c.nbad;
                    continue;
                }
                const double v = sign * z.diff(x, y);
                if (v < 0.0) ++c.nneg;
                sum += v;
                sumAbs += std::fabs(v);
            }
        if (sumAbs > 0.0) c.sumRatio = sum / sumAbs;
        out.push_back(c);
    }
    return added;
}

}  // namespace astrid::detect::detail
