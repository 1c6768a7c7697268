#include "astrid/registration/pixel_map.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"

namespace astrid::registration {

namespace {
// Cubic Lagrange basis on the nodes -1, 0, 1, 2 at parameter t (t in [0, 1) inside the central cell)
// and its derivative in t.
inline std::array<double, 4> lagrange(double t) noexcept {
    const double tm1 = t - 1.0, tm2 = t - 2.0, tp1 = t + 1.0;
    return {-t * tm1 * tm2 / 6.0, tp1 * tm1 * tm2 / 2.0, -tp1 * t * tm2 / 2.0, tp1 * t * tm1 / 6.0};
}
inline std::array<double, 4> lagrangeDerivative(double t) noexcept {
    const double tt = t * t;
    return {-(3.0 * tt - 6.0 * t + 2.0) / 6.0, (3.0 * tt - 4.0 * t - 1.0) / 2.0, -(3.0 * tt - 2.0 * t - 2.0) / 2.0,
            (3.0 * tt - 1.0) / 6.0};
}

// Nodes needed to cover [0, size - 1] plus two cells of margin on each side.
int nodeCount(int size, int spacing) { return (size - 1 + spacing - 1) / spacing + 5; }
}  // namespace

PixelMap::PixelMap() : base_(PolyTransform::identity()), correction_(PolyTransform::identity()) {}

PixelMap PixelMap::fromTransform(const PolyTransform& base) {
    PixelMap m;
    m.base_ = base;
    return m;
}

PixelMap::Stencil PixelMap::stencil(double coord, double origin, int nodes) const noexcept {
    const double s = (coord - origin) / spacing_;
    // Points outside the covered range use the end cell's polynomial (extrapolation): the clamp
    // also keeps every index valid for a NaN or huge coordinate.
    double c = std::floor(s);
    c = std::clamp(std::isfinite(c) ? c : 1.0, 1.0, static_cast<double>(nodes - 3));
    const double t = s - c;
    Stencil st{static_cast<int>(c) - 1, lagrange(t), lagrangeDerivative(t)};
    for (double& d : st.dw) d /= spacing_;
    return st;
}

double PixelMap::interpolate(const std::vector<double>& v, const Stencil& sx, const Stencil& sy) const noexcept {
    double s = 0.0;
    for (int j = 0; j < 4; ++j) {
        const double* row = v.data() + static_cast<std::size_t>(sy.first + j) * static_cast<std::size_t>(nx_) +
                            static_cast<std::size_t>(sx.first);
        s += sy.w[static_cast<std::size_t>(j)] * (sx.w[0] * row[0] + sx.w[1] * row[1] + sx.w[2] * row[2] + sx.w[3] * row[3]);
    }
    return s;
}

PixelMap PixelMap::fromWcs(const wcs::SkyWcs& science, const wcs::SkyWcs& reference, int width, int height,
                           const PixelMapConfig& config) {
    if (width <= 0 || height <= 0)
        throw DataError(fmt::format("PixelMap::fromWcs: image size {} x {} is not positive", width, height));
    if (config.gridSpacingPx < 1 || config.minGridSpacingPx < 1 || !(config.maxGridErrorPx > 0.0))
        throw DataError("PixelMap::fromWcs: grid spacing and error tolerance must be positive");

    // Exact sci pixel -> sky -> ref pixel for a batch of points.
    auto exact = [&](std::vector<double>& x, std::vector<double>& y) {
        std::vector<double> ra(x.size()), dec(x.size());
        science.pixelToSky(x, y, ra, dec);
        reference.skyToPixel(ra, dec, x, y);
    };

    PixelMap m;
    m.kind_ = Kind::Grid;
    m.width_ = width;
    m.height_ = height;
    int spacing = std::max(config.gridSpacingPx, config.minGridSpacingPx);
    for (;;) {
        m.spacing_ = spacing;
        m.nx_ = nodeCount(width, spacing);
        m.ny_ = nodeCount(height, spacing);
        m.originX_ = -2.0 * spacing;
        m.originY_ = -2.0 * spacing;
        const std::size_t nn = static_cast<std::size_t>(m.nx_) * static_cast<std::size_t>(m.ny_);
        std::vector<double> x(nn), y(nn);
        for (int j = 0; j < m.ny_; ++j)
            for (int i = 0; i < m.nx_; ++i) {
                x[static_cast<std::size_t>(j * m.nx_ + i)] = m.originX_ + i * spacing;
                y[static_cast<std::size_t>(j * m.nx_ + i)] = m.originY_ + j * spacing;
            }
        exact(x, y);
        for (std::size_t k = 0; k < nn; ++k)
            if (!std::isfinite(x[k]) || !std::isfinite(y[k]))
                throw DataError(fmt::format(
                    "PixelMap::fromWcs: science pixel ({}, {}) has no reference pixel (the two WCSs do not overlap "
                    "near the {} x {} science image)",
                    m.originX_ + static_cast<double>(k % static_cast<std::size_t>(m.nx_)) * spacing,
                    m.originY_ + static_cast<double>(k / static_cast<std::size_t>(m.nx_)) * spacing, width, height));
        m.baseX_ = std::move(x);
        m.baseY_ = std::move(y);

        // Interpolation error at the centres of the cells inside the image, where the cubic's
        // error polynomial (t+1) t (t-1) (t-2) is largest.
        std::vector<double> cx, cy;
        for (double yc = 0.5 * spacing; yc < height - 1 + 0.5 * spacing; yc += spacing)
            for (double xc = 0.5 * spacing; xc < width - 1 + 0.5 * spacing; xc += spacing) {
                cx.push_back(std::min(xc, width - 1.0));
                cy.push_back(std::min(yc, height - 1.0));
            }
        std::vector<double> ex = cx, ey = cy;
        exact(ex, ey);
        double worst = 0.0;
        for (std::size_t k = 0; k < cx.size(); ++k) {
            const Stencil sx = m.stencil(cx[k], m.originX_, m.nx_), sy = m.stencil(cy[k], m.originY_, m.ny_);
            const double err = std::hypot(m.interpolate(m.baseX_, sx, sy) - ex[k], m.interpolate(m.baseY_, sx, sy) - ey[k]);
            // NaN (a failed exact evaluation) counts as a failure of the check.
            worst = std::isnan(err) ? HUGE_VAL : std::max(worst, err);
        }
        m.gridErrorPx_ = worst;
        if (worst <= config.maxGridErrorPx || spacing / 2 < config.minGridSpacingPx) break;
        spacing /= 2;
    }
    if (m.gridErrorPx_ > config.maxGridErrorPx)
        log::get("astrid.registration")
            ->warn("WCS pixel map: interpolation error {:.2g} px at the minimum grid spacing {} px exceeds {:.2g} px",
                   m.gridErrorPx_, m.spacing_, config.maxGridErrorPx);

    // det of the base jacobian at the nodes, from the interpolant's own derivative.
    m.baseDet_.resize(m.baseX_.size());
    for (int j = 0; j < m.ny_; ++j)
        for (int i = 0; i < m.nx_; ++i) {
            const Stencil sx = m.stencil(m.originX_ + i * spacing, m.originX_, m.nx_);
            const Stencil sy = m.stencil(m.originY_ + j * spacing, m.originY_, m.ny_);
            const Stencil dx{sx.first, sx.dw, sx.dw}, dy{sy.first, sy.dw, sy.dw};
            const double xx = m.interpolate(m.baseX_, dx, sy), xy = m.interpolate(m.baseX_, sx, dy);
            const double yx = m.interpolate(m.baseY_, dx, sy), yy = m.interpolate(m.baseY_, sx, dy);
            m.baseDet_[static_cast<std::size_t>(j * m.nx_ + i)] = xx * yy - xy * yx;
        }
    m.rebuildComposite();
    return m;
}

void PixelMap::rebuildComposite() {
    if (kind_ != Kind::Grid) return;
    const std::size_t nn = baseX_.size();
    mapX_.resize(nn);
    mapY_.resize(nn);
    mapDet_.resize(nn);
    for (std::size_t k = 0; k < nn; ++k) {
        const PixelPoint p = correction_.apply(baseX_[k], baseY_[k]);
        const auto j = correction_.jacobian(baseX_[k], baseY_[k]);
        mapX_[k] = p.x;
        mapY_[k] = p.y;
        mapDet_[k] = (j[0] * j[3] - j[1] * j[2]) * baseDet_[k];
    }
}

PixelMap PixelMap::withCorrection(const PolyTransform& correction) const {
    PixelMap m = *this;
    m.correction_ = correction;
    m.rebuildComposite();
    return m;
}

PixelPoint PixelMap::apply(double x, double y) const noexcept {
    if (kind_ == Kind::Transform) return correction_.apply(base_.apply(x, y));
    const Stencil sx = stencil(x, originX_, nx_), sy = stencil(y, originY_, ny_);
    return {interpolate(mapX_, sx, sy), interpolate(mapY_, sx, sy)};
}

void PixelMap::apply(std::span<const double> x, std::span<const double> y, std::span<double> xRef,
                     std::span<double> yRef) const {
    if (y.size() != x.size() || xRef.size() != x.size() || yRef.size() != x.size())
        throw DataError("PixelMap::apply: span sizes differ");
    for (std::size_t i = 0; i < x.size(); ++i) {
        const PixelPoint p = apply(x[i], y[i]);
        xRef[i] = p.x;
        yRef[i] = p.y;
    }
}

PixelPoint PixelMap::applyBase(double x, double y) const noexcept {
    if (kind_ == Kind::Transform) return base_.apply(x, y);
    const Stencil sx = stencil(x, originX_, nx_), sy = stencil(y, originY_, ny_);
    return {interpolate(baseX_, sx, sy), interpolate(baseY_, sx, sy)};
}

std::array<double, 4> PixelMap::jacobian(double x, double y) const noexcept {
    if (kind_ == Kind::Transform) {
        const PixelPoint b = base_.apply(x, y);
        const auto jb = base_.jacobian(x, y), jc = correction_.jacobian(b.x, b.y);
        return {jc[0] * jb[0] + jc[1] * jb[2], jc[0] * jb[1] + jc[1] * jb[3], jc[2] * jb[0] + jc[3] * jb[2],
                jc[2] * jb[1] + jc[3] * jb[3]};
    }
    const Stencil sx = stencil(x, originX_, nx_), sy = stencil(y, originY_, ny_);
    const Stencil dx{sx.first, sx.dw, sx.dw}, dy{sy.first, sy.dw, sy.dw};
    return {interpolate(mapX_, dx, sy), interpolate(mapX_, sx, dy), interpolate(mapY_, dx, sy),
            interpolate(mapY_, sx, dy)};
}

double PixelMap::jacobianDeterminant(double x, double y) const noexcept {
    const auto j = jacobian(x, y);
    return j[0] * j[3] - j[1] * j[2];
}

// ------------------------------------------------------------------------------------------------

namespace {
// Node spacing of the evaluation grid for a transform base: exact for per-axis degree <= 3; other
// compositions (a cubic base with a cubic correction) err by ~h^4 x the fourth derivative,
// negligible for image-scale polynomials at 16 px.
constexpr int kTransformSpacing = 16;
}  // namespace

PixelMap::RowEvaluator::RowEvaluator(const PixelMap& map, int x0, int n) : map_(map), x0_(x0), n_(std::max(n, 0)) {
    if (map_.kind_ == Kind::Grid) {
        spacing_ = map_.spacing_;
        origin_ = map_.originX_;
        nodes_ = map_.nx_;
    } else {
        spacing_ = kTransformSpacing;
        origin_ = x0_ - 2.0 * spacing_;
        nodes_ = nodeCount(std::max(n_, 1), spacing_);
        cache_.resize(8);
    }
    col_.resize(static_cast<std::size_t>(n_));
    colW_.resize(static_cast<std::size_t>(n_));
    for (int k = 0; k < n_; ++k) {
        // The stencil arithmetic of the grid, with this evaluator's node columns.
        const double s = (x0_ + k - origin_) / spacing_;
        const double c = std::clamp(std::floor(s), 1.0, static_cast<double>(nodes_ - 3));
        col_[static_cast<std::size_t>(k)] = static_cast<int>(c) - 1;
        colW_[static_cast<std::size_t>(k)] = lagrange(s - c);
    }
    rowX_.resize(static_cast<std::size_t>(nodes_));
    rowY_.resize(static_cast<std::size_t>(nodes_));
    rowDet_.resize(static_cast<std::size_t>(nodes_));
}

const PixelMap::RowEvaluator::NodeRow& PixelMap::RowEvaluator::nodeRow(long long j) {
    NodeRow& r = cache_[static_cast<std::size_t>(((j % 8) + 8) % 8)];
    if (r.valid && r.j == j) return r;
    r.j = j;
    r.valid = true;
    const auto nn = static_cast<std::size_t>(nodes_);
    r.x.resize(nn);
    r.y.resize(nn);
    r.det.resize(nn);
    const double y = static_cast<double>(j) * spacing_;
    for (std::size_t i = 0; i < nn; ++i) {
        const double x = origin_ + static_cast<double>(i) * spacing_;
        const PixelPoint p = map_.apply(x, y);
        r.x[i] = p.x;
        r.y[i] = p.y;
        r.det[i] = map_.jacobianDeterminant(x, y);
    }
    return r;
}

void PixelMap::RowEvaluator::evaluate(double y, std::span<double> xRef, std::span<double> yRef, std::span<double> det) {
    const auto n = static_cast<std::size_t>(n_);
    if (xRef.size() < n || yRef.size() < n || det.size() < n)
        throw DataError("PixelMap::RowEvaluator: output spans shorter than the row");
    if (n == 0) return;
    if (!(std::fabs(y) < 1e12)) {  // NaN, or far beyond any image: no position
        std::fill_n(xRef.begin(), n, std::numeric_limits<double>::quiet_NaN());
        std::fill_n(yRef.begin(), n, std::numeric_limits<double>::quiet_NaN());
        std::fill_n(det.begin(), n, std::numeric_limits<double>::quiet_NaN());
        return;
    }
    const int lo = col_.front(), hi = col_.back() + 3;
    // Collapse the four node rows onto this row once, then every pixel is a 4-tap dot product.
    if (map_.kind_ == Kind::Transform) {
        const double s = y / spacing_;
        const double c = std::floor(s);
        const auto w = lagrange(s - c);
        const auto j0 = static_cast<long long>(c) - 1;
        const NodeRow* r[4] = {&nodeRow(j0), &nodeRow(j0 + 1), &nodeRow(j0 + 2), &nodeRow(j0 + 3)};
        for (int i = lo; i <= hi; ++i) {
            const auto u = static_cast<std::size_t>(i);
            rowX_[u] = w[0] * r[0]->x[u] + w[1] * r[1]->x[u] + w[2] * r[2]->x[u] + w[3] * r[3]->x[u];
            rowY_[u] = w[0] * r[0]->y[u] + w[1] * r[1]->y[u] + w[2] * r[2]->y[u] + w[3] * r[3]->y[u];
            rowDet_[u] = w[0] * r[0]->det[u] + w[1] * r[1]->det[u] + w[2] * r[2]->det[u] + w[3] * r[3]->det[u];
        }
    } else {
        const Stencil sy = map_.stencil(y, map_.originY_, map_.ny_);
        const auto nx = static_cast<std::size_t>(map_.nx_);
        for (int i = lo; i <= hi; ++i) {
            double sx = 0.0, syv = 0.0, sd = 0.0;
            for (std::size_t j = 0; j < 4; ++j) {
                const std::size_t k = static_cast<std::size_t>(sy.first + static_cast<int>(j)) * nx + static_cast<std::size_t>(i);
                sx += sy.w[j] * map_.mapX_[k];
                syv += sy.w[j] * map_.mapY_[k];
                sd += sy.w[j] * map_.mapDet_[k];
            }
            rowX_[static_cast<std::size_t>(i)] = sx;
            rowY_[static_cast<std::size_t>(i)] = syv;
            rowDet_[static_cast<std::size_t>(i)] = sd;
        }
    }
    for (std::size_t k = 0; k < n; ++k) {
        const auto c = static_cast<std::size_t>(col_[k]);
        const auto& w = colW_[k];
        xRef[k] = w[0] * rowX_[c] + w[1] * rowX_[c + 1] + w[2] * rowX_[c + 2] + w[3] * rowX_[c + 3];
        yRef[k] = w[0] * rowY_[c] + w[1] * rowY_[c + 1] + w[2] * rowY_[c + 2] + w[3] * rowY_[c + 3];
        det[k] = w[0] * rowDet_[c] + w[1] * rowDet_[c + 1] + w[2] * rowDet_[c + 2] + w[3] * rowDet_[c + 3];
    }
}

}  // namespace astrid::registration
