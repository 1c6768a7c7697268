// Exact circle-pixel overlap and aperture photometry (aperture.hpp).
//
// The overlap in closed form. With the circle centred at the origin, let S(x, y) be the signed area
// of the disc inside the rectangle spanned by the origin and (x, y):
//   S(x, y) = sign(x) sign(y) g(|x|, |y|),   g(a, b) = area of {0 <= X <= a, 0 <= Y <= b, X^2 + Y^2 <= r^2}.
// Then the disc's area inside [x0, x1] x [y0, y1] is S(x1, y1) - S(x0, y1) - S(x1, y0) + S(x0, y0)
// (S is a two-dimensional antiderivative of the disc's indicator that vanishes on both axes). With
// a, b clamped to [0, r] and h(t) = sqrt(r^2 - t^2):
//   a^2 + b^2 <= r^2:  g = a b                                  (the corner is inside the disc)
//   otherwise:         g = G(a) + G(b) - pi r^2 / 4,   G(t) = (t h(t) + r^2 atan2(t, h(t))) / 2,
// because the rectangle minus the part of the quarter disc beyond it is b h(b) + int_{h(b)}^{a} h,
// and int_0^t h = G(t); the asin of the textbook form is written atan2(t, h) with h = sqrt((r - t)(r + t))
// so that it stays accurate where t -> r. G depends on one coordinate only, so for a grid of pixels
// it is evaluated once per grid line, and every corner costs a few multiplications.
#include "astrid/photometry/aperture.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "detail.hpp"

namespace astrid::photometry {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// One grid line at signed distance t from the centre: |t| clamped to r, its G, and the sign of t.
struct Edge {
    double u = 0.0;
    double g = 0.0;
    double sign = 0.0;
};

inline Edge edgeAt(double t, double r, double quarter) noexcept {
    const double a = std::fabs(t);
    const double s = t > 0.0 ? 1.0 : (t < 0.0 ? -1.0 : 0.0);
    if (a >= r) return {r, quarter, s};
    const double h = std::sqrt((r - a) * (r + a));
    return {a, 0.5 * (a * h + r * r * std::atan2(a, h)), s};
}

inline double cornerArea(const Edge& ex, const Edge& ey, double r2, double quarter) noexcept {
    const double g = (ex.u * ex.u + ey.u * ey.u <= r2) ? ex.u * ey.u : ex.g + ey.g - quarter;
    return ex.sign * ey.sign * g;
}

void checkConfig(const ApertureConfig& c) {
    if (c.radiiPx.empty()) throw ConfigError("aperture: radiiPx is empty", "radiiPx");
    for (double r : c.radiiPx)
        if (!(r > 0.0) || !std::isfinite(r))
            throw ConfigError(fmt::format("aperture: radius {} is not a positive number", r), "radiiPx");
    if (c.background != LocalBackground::None) {
        if (!(c.annulusInnerPx >= 0.0) || !std::isfinite(c.annulusInnerPx))
            throw ConfigError("aperture: annulusInnerPx must be >= 0", "annulusInnerPx");
        if (!(c.annulusOuterPx > c.annulusInnerPx) || !std::isfinite(c.annulusOuterPx))
            throw ConfigError("aperture: annulusOuterPx must exceed annulusInnerPx", "annulusOuterPx");
        if (!(c.clipSigma > 0.0)) throw ConfigError("aperture: clipSigma must be > 0", "clipSigma");
        if (c.clipIterations < 0) throw ConfigError("aperture: clipIterations must be >= 0", "clipIterations");
        if (c.minBackgroundPixels < 1)
            throw ConfigError("aperture: minBackgroundPixels must be >= 1", "minBackgroundPixels");
    }
}

// The box of pixels a disc of radius r at (x, y) can touch (half-open).
Box discBox(double x, double y, double r) {
    return Box{static_cast<int>(std::floor(x - r + 0.5)), static_cast<int>(std::floor(y - r + 0.5)),
               static_cast<int>(std::floor(x + r + 0.5)) + 1, static_cast<int>(std::floor(y + r + 0.5)) + 1};
}

// Scratch reused across positions of one batch.
struct Scratch {
    std::vector<double> weights;
    std::vector<double> annulus;
};

void measureBackground(const MaskedImage& im, double x, double y, const ApertureConfig& c, Scratch& s,
                       ApertureResult& res) {
    const int w = im.width();
    const bool hasMask = !im.mask.empty();
    const double rIn2 = c.annulusInnerPx * c.annulusInnerPx, rOut2 = c.annulusOuterPx * c.annulusOuterPx;
    const Box box = discBox(x, y, c.annulusOuterPx).intersect(im.image.bbox());
    s.annulus.clear();
    for (int py = box.y0; py < box.y1; ++py) {
        const double dy2 = (py - y) * (py - y);
        if (dy2 >= rOut2) continue;
        const std::size_t row = static_cast<std::size_t>(py) * static_cast<std::size_t>(w);
        const float* d = im.image.data() + row;
        const float* v = im.variance.data() + row;
        const std::uint16_t* m = hasMask ? im.mask.data() + row : nullptr;
        // The row's pixels with rIn^2 <= r^2 < rOut^2: one or two runs; the exact test stays per pixel
        // (the runs are only bounds, one pixel wider than needed).
        const double outer = std::sqrt(rOut2 - dy2);
        const int x0 = std::max(box.x0, static_cast<int>(std::floor(x - outer))),
                  x1 = std::min(box.x1 - 1, static_cast<int>(std::ceil(x + outer)));
        int h0 = x1 + 1, h1 = x1;  // the hole [h0, h1] holds no annulus pixel
        if (dy2 < rIn2) {
            const double inner = std::sqrt(rIn2 - dy2);
            h0 = static_cast<int>(std::ceil(x - inner)) + 1;
            h1 = static_cast<int>(std::floor(x + inner)) - 1;
        }
        for (int px = x0; px <= x1; ++px) {
            if (px == h0 && h0 <= h1) {
                px = h1;
                continue;
            }
            const double r2 = (px - x) * (px - x) + dy2;
            if (r2 < rIn2 || r2 >= rOut2) continue;
            if (!detail::usable(d[px], v[px], m ? m[px] : 0, c.badMaskBits, 0.0f)) continue;
            s.annulus.push_back(d[px]);
        }
    }
    const auto st = detail::sigmaClip(s.annulus, c.clipSigma, c.clipIterations);
    res.nBackground = st.n;
    if (st.n < c.minBackgroundPixels) {
        res.background = kNaN;
        res.backgroundErr = kNaN;
        res.backgroundRms = st.n > 0 ? st.stddev : kNaN;
        res.flags |= bits(PhotFlag::NoBackground);
        return;
    }
    const double n = static_cast<double>(st.n);
    res.backgroundRms = st.stddev;
    if (c.background == LocalBackground::Median) {
        res.background = st.median;
        res.backgroundErr = std::sqrt(std::numbers::pi / 2.0) * st.stddev / std::sqrt(n);
    } else {
        // Var(2.5 med - 1.5 mean) for Gaussian noise: (6.25 pi/2 + 2.25 - 7.5) s^2 / n = 4.5675 s^2 / n.
        res.background = 2.5 * st.median - 1.5 * st.mean;
        res.backgroundErr = 2.1372 * st.stddev / std::sqrt(n);
    }
}

ApertureResult measureOne(const MaskedImage& im, double x, double y, const ApertureConfig& c, Scratch& s) {
    ApertureResult res;
    res.x = x;
    res.y = y;
    res.apertures.resize(c.radiiPx.size());
    const int w = im.width(), h = im.height();
    const bool inside = std::isfinite(x) && std::isfinite(y) && x >= -0.5 && x < w - 0.5 && y >= -0.5 && y < h - 0.5;
    if (!inside) {
        for (std::size_t k = 0; k < c.radiiPx.size(); ++k) {
            ApertureSum& a = res.apertures[k];
            a.radiusPx = c.radiiPx[k];
            a.flux = a.fluxErr = a.rawSum = kNaN;
            a.area = 0.0;
            a.missingArea = std::numbers::pi * a.radiusPx * a.radiusPx;
            a.flags = bits(PhotFlag::OffImage);
        }
        res.background = res.backgroundErr = res.backgroundRms = kNaN;
        res.flags = bits(PhotFlag::OffImage);
        return res;
    }

    if (c.background != LocalBackground::None) measureBackground(im, x, y, c, s, res);

    const bool hasMask = !im.mask.empty();
    const Box imageBox = im.image.bbox();
    for (std::size_t k = 0; k < c.radiiPx.size(); ++k) {
        ApertureSum& a = res.apertures[k];
        a.radiusPx = c.radiiPx[k];
        const Box box = discBox(x, y, a.radiusPx);
        circleOverlapWeights(x, y, a.radiusPx, box, s.weights);
        double sum = 0.0, area = 0.0, var = 0.0, missing = 0.0;
        int nBad = 0;
        std::uint32_t flags = 0;
        const int bw = box.width();
        for (int py = box.y0; py < box.y1; ++py) {
            const double* wrow = s.weights.data() + static_cast<std::size_t>(py - box.y0) * static_cast<std::size_t>(bw);
            const bool rowInside = py >= 0 && py < h;
            const std::size_t row = rowInside ? static_cast<std::size_t>(py) * static_cast<std::size_t>(w) : 0;
            for (int px = box.x0; px < box.x1; ++px) {
                const double wt = wrow[px - box.x0];
                if (wt <= 0.0) continue;
                if (!rowInside || !imageBox.contains(px, py)) {
                    missing += wt;
                    flags |= bits(PhotFlag::Edge);
                    continue;
                }
                const float d = im.image.data()[row + static_cast<std::size_t>(px)];
                const float v = im.variance.data()[row + static_cast<std::size_t>(px)];
                const std::uint16_t m = hasMask ? im.mask.data()[row + static_cast<std::size_t>(px)] : 0;
                if (m & c.saturatedMaskBits) flags |= bits(PhotFlag::Saturated);
                if (!detail::usable(d, v, m, c.badMaskBits, 0.0f)) {
                    missing += wt;
                    ++nBad;
                    flags |= bits(PhotFlag::Masked);
                    continue;
                }
                sum += wt * d;
                area += wt;
                var += wt * wt * v;
            }
        }
        a.rawSum = sum;
        a.area = area;
        a.missingArea = missing;
        a.nBad = nBad;
        if (c.background == LocalBackground::None) {
            a.flux = sum;
            a.fluxErr = std::sqrt(var);
        } else if (hasFlag(res.flags, PhotFlag::NoBackground)) {
            a.flux = a.fluxErr = kNaN;
            flags |= bits(PhotFlag::NoBackground);
        } else {
            a.flux = sum - area * res.background;
            a.fluxErr = std::sqrt(var + area * area * res.backgroundErr * res.backgroundErr);
        }
        a.flags = flags;
        res.flags |= flags;
    }
    return res;
}

}  // namespace

double circleRectOverlap(double cx, double cy, double r, double x0, double y0, double x1, double y1) noexcept {
    if (!(r > 0.0) || !(x1 > x0) || !(y1 > y0)) return 0.0;
    const double quarter = 0.25 * std::numbers::pi * r * r, r2 = r * r;
    const Edge ex0 = edgeAt(x0 - cx, r, quarter), ex1 = edgeAt(x1 - cx, r, quarter);
    const Edge ey0 = edgeAt(y0 - cy, r, quarter), ey1 = edgeAt(y1 - cy, r, quarter);
    const double a = cornerArea(ex1, ey1, r2, quarter) - cornerArea(ex0, ey1, r2, quarter) -
                     cornerArea(ex1, ey0, r2, quarter) + cornerArea(ex0, ey0, r2, quarter);
    return std::clamp(a, 0.0, (x1 - x0) * (y1 - y0));
}

void circleOverlapWeights(double cx, double cy, double r, const Box& box, std::vector<double>& weights) {
    const int bw = std::max(0, box.width()), bh = std::max(0, box.height());
    weights.assign(static_cast<std::size_t>(bw) * static_cast<std::size_t>(bh), 0.0);
    if (!(r > 0.0) || bw == 0 || bh == 0) return;
    const double quarter = 0.25 * std::numbers::pi * r * r, r2 = r * r;
    // Grid lines: x edge i is the left edge of pixel box.x0 + i (i = bw: the right edge of the last).
    thread_local std::vector<Edge> ex, ey;
    ex.resize(static_cast<std::size_t>(bw) + 1);
    ey.resize(static_cast<std::size_t>(bh) + 1);
    for (int i = 0; i <= bw; ++i) ex[static_cast<std::size_t>(i)] = edgeAt((box.x0 + i - 0.5) - cx, r, quarter);
    for (int j = 0; j <= bh; ++j) ey[static_cast<std::size_t>(j)] = edgeAt((box.y0 + j - 0.5) - cy, r, quarter);
    for (int j = 0; j < bh; ++j) {
        const double dy = std::fabs(box.y0 + j - cy);
        const double nearY = std::max(0.0, dy - 0.5), farY = dy + 0.5;
        if (nearY >= r) continue;
        const Edge& e0 = ey[static_cast<std::size_t>(j)];
        const Edge& e1 = ey[static_cast<std::size_t>(j) + 1];
        double* out = weights.data() + static_cast<std::size_t>(j) * static_cast<std::size_t>(bw);
        for (int i = 0; i < bw; ++i) {
            const double dx = std::fabs(box.x0 + i - cx);
            const double nearX = std::max(0.0, dx - 0.5), farX = dx + 0.5;
            if (nearX * nearX + nearY * nearY >= r2) continue;  // entirely outside: 0
            if (farX * farX + farY * farY <= r2) {               // entirely inside: 1
                out[i] = 1.0;
                continue;
            }
            const Edge& f0 = ex[static_cast<std::size_t>(i)];
            const Edge& f1 = ex[static_cast<std::size_t>(i) + 1];
            const double a = cornerArea(f1, e1, r2, quarter) - cornerArea(f0, e1, r2, quarter) -
                             cornerArea(f1, e0, r2, quarter) + cornerArea(f0, e0, r2, quarter);
            out[i] = std::clamp(a, 0.0, 1.0);
        }
    }
}

std::vector<ApertureResult> aperturePhotometry(const MaskedImage& image, std::span<const PixelPosition> positions,
                                               const ApertureConfig& config) {
    checkConfig(config);
    detail::checkPlanes(image, "aperturePhotometry");
    std::vector<ApertureResult> out(positions.size());
    Scratch scratch;
    for (const std::size_t idx : detail::rowOrder(positions))
        out[idx] = measureOne(image, positions[idx].x, positions[idx].y, config, scratch);
    return out;
}

ApertureResult aperturePhotometry(const MaskedImage& image, double x, double y, const ApertureConfig& config) {
    const PixelPosition p{x, y};
    return aperturePhotometry(image, std::span<const PixelPosition>(&p, 1), config).front();
}

}  // namespace astrid::photometry
