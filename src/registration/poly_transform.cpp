#include <Eigen/Dense>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>

#include "astrid/core/error.hpp"
#include "astrid/registration/pixel_map.hpp"

namespace astrid::registration {

namespace {
void checkOrder(int order) {
    if (order < 1 || order > PolyTransform::kMaxOrder)
        throw DataError("polynomial transform order " + std::to_string(order) + " is not in 1..3");
}

// The monomials 1, u, v, u^2, u v, v^2, u^3, u^2 v, u v^2, v^3.
inline std::array<double, 10> monomials(double u, double v) noexcept {
    const double uu = u * u, vv = v * v;
    return {1.0, u, v, uu, u * v, vv, uu * u, uu * v, u * vv, vv * v};
}
}  // namespace

PolyTransform PolyTransform::identity(int order) {
    checkOrder(order);
    Coefficients ax{}, ay{};
    ax[1] = 1.0;
    ay[2] = 1.0;
    return PolyTransform(order, 0.0, 0.0, 1.0, ax, ay);
}

PolyTransform PolyTransform::affine(const std::array<double, 6>& c) {
    Coefficients ax{}, ay{};
    ax[0] = c[0], ax[1] = c[1], ax[2] = c[2];
    ay[0] = c[3], ay[1] = c[4], ay[2] = c[5];
    return PolyTransform(1, 0.0, 0.0, 1.0, ax, ay);
}

PolyTransform PolyTransform::similarity(double scale, double rotationDeg, double dx, double dy, Parity parity) {
    const double a = rotationDeg * std::numbers::pi / 180.0;
    const double c = scale * std::cos(a), s = scale * std::sin(a);
    // R P with P = diag(1, -1) negates the second column.
    const double m = parity == Parity::Mirrored ? -1.0 : 1.0;
    return affine({dx, c, -s * m, dy, s, c * m});
}

PolyTransform PolyTransform::fromCoefficients(int order, double centreX, double centreY, double scale,
                                              const Coefficients& ax, const Coefficients& ay) {
    checkOrder(order);
    if (!(scale > 0.0) || !std::isfinite(scale) || !std::isfinite(centreX) || !std::isfinite(centreY))
        throw DataError("polynomial transform: normalisation scale must be positive and finite");
    Coefficients x{}, y{};
    // Coefficients beyond the order are dropped so that apply() can always evaluate all ten terms.
    for (int t = 0; t < terms(order); ++t) {
        x[static_cast<std::size_t>(t)] = ax[static_cast<std::size_t>(t)];
        y[static_cast<std::size_t>(t)] = ay[static_cast<std::size_t>(t)];
    }
    return PolyTransform(order, centreX, centreY, scale, x, y);
}

PixelPoint PolyTransform::apply(double x, double y) const noexcept {
    const double u = (x - cx_) / scale_, v = (y - cy_) / scale_;
    const auto m = monomials(u, v);
    double px = 0.0, py = 0.0;
    for (std::size_t t = 0; t < m.size(); ++t) {
        px += ax_[t] * m[t];
        py += ay_[t] * m[t];
    }
    return {px, py};
}

std::array<double, 4> PolyTransform::jacobian(double x, double y) const noexcept {
    const double u = (x - cx_) / scale_, v = (y - cy_) / scale_;
    // d/du and d/dv of the monomials.
    const std::array<double, 10> du{0, 1, 0, 2 * u, v, 0, 3 * u * u, 2 * u * v, v * v, 0};
    const std::array<double, 10> dv{0, 0, 1, 0, u, 2 * v, 0, u * u, 2 * u * v, 3 * v * v};
    std::array<double, 4> j{};
    for (std::size_t t = 0; t < du.size(); ++t) {
        j[0] += ax_[t] * du[t];
        j[1] += ax_[t] * dv[t];
        j[2] += ay_[t] * du[t];
        j[3] += ay_[t] * dv[t];
    }
    for (double& e : j) e /= scale_;
    return j;
}

PolyTransform PolyTransform::fit(std::span<const PixelPoint> from, std::span<const PixelPoint> to, int order,
                                 std::span<const double> weights) {
    checkOrder(order);
    const std::size_t n = from.size();
    if (to.size() != n || (!weights.empty() && weights.size() != n))
        throw DataError("polynomial fit: point and weight lists differ in size");
    const int nt = terms(order);
    if (n < static_cast<std::size_t>(nt))
        throw DataError("polynomial fit of order " + std::to_string(order) + " needs at least " +
                        std::to_string(nt) + " points, got " + std::to_string(n));
    double cx = 0.0, cy = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        if (!std::isfinite(from[i].x) || !std::isfinite(from[i].y) || !std::isfinite(to[i].x) ||
            !std::isfinite(to[i].y) || (!weights.empty() && !(weights[i] >= 0.0 && std::isfinite(weights[i]))))
            throw DataError("polynomial fit: point " + std::to_string(i) + " is not finite (or has a negative weight)");
        cx += from[i].x;
        cy += from[i].y;
    }
    cx /= static_cast<double>(n);
    cy /= static_cast<double>(n);
    double scale = 0.0;
    for (std::size_t i = 0; i < n; ++i) scale = std::max({scale, std::fabs(from[i].x - cx), std::fabs(from[i].y - cy)});
    scale = std::max(scale, 1.0);

    Eigen::MatrixXd a(static_cast<Eigen::Index>(n), nt);
    Eigen::MatrixXd b(static_cast<Eigen::Index>(n), 2);
    for (std::size_t i = 0; i < n; ++i) {
        const double sw = weights.empty() ? 1.0 : std::sqrt(weights[i]);
        const auto m = monomials((from[i].x - cx) / scale, (from[i].y - cy) / scale);
        const auto r = static_cast<Eigen::Index>(i);
        for (int t = 0; t < nt; ++t) a(r, t) = sw * m[static_cast<std::size_t>(t)];
        b(r, 0) = sw * to[i].x;
        b(r, 1) = sw * to[i].y;
    }
    Eigen::ColPivHouseholderQR<Eigen::MatrixXd> qr(a);
    // Normalised monomials are O(1), so a relative threshold on the pivots detects degenerate
    // geometry (collinear points, all weight on too few points) reliably.
    qr.setThreshold(1e-9);
    if (qr.rank() < nt)
        throw DataError("polynomial fit of order " + std::to_string(order) + ": the " + std::to_string(n) +
                        " points are degenerate (rank " + std::to_string(qr.rank()) + " < " + std::to_string(nt) + ")");
    const Eigen::MatrixXd sol = qr.solve(b);
    Coefficients ax{}, ay{};
    for (int t = 0; t < nt; ++t) {
        ax[static_cast<std::size_t>(t)] = sol(t, 0);
        ay[static_cast<std::size_t>(t)] = sol(t, 1);
    }
    return PolyTransform(order, cx, cy, scale, ax, ay);
}

}  // namespace astrid::registration
