#include "detail.hpp"

#include <algorithm>
#include <limits>
#include <numbers>
#include <string>

#include "astrid/core/error.hpp"

#include <Eigen/Dense>

namespace astrid::psf::detail {
namespace {
constexpr double kPi = std::numbers::pi;

double lanczos3(double t) noexcept {
    if (t == 0.0) return 1.0;
    if (t <= -3.0 || t >= 3.0) return 0.0;
    const double a = kPi * t;
    return 3.0 * std::sin(a) * std::sin(a / 3.0) / (a * a);
}

bool validParams(const MoffatParams& p) noexcept {
    const double det = p.c11 * p.c22 - p.c12 * p.c12;
    return std::isfinite(p.amp) && std::isfinite(p.x0) && std::isfinite(p.y0) && p.c11 > 0.0 && p.c22 > 0.0 &&
           det > 0.0 && std::isfinite(det) && p.beta >= 1.1 && p.beta <= 30.0;
}

constexpr int kParams = 7;
using Vec7 = Eigen::Matrix<double, kParams, 1>;
using Mat7 = Eigen::Matrix<double, kParams, kParams>;

Vec7 toVec(const MoffatParams& p) {
    Vec7 v;
    v << p.amp, p.x0, p.y0, p.c11, p.c12, p.c22, p.beta;
    return v;
}
MoffatParams fromVec(const Vec7& v) { return MoffatParams{v[0], v[1], v[2], v[3], v[4], v[5], v[6]}; }

// One pass over the stamp: chi^2 and, when `normal` is given, the normal equations J^T W J and J^T W r.
double evaluate(const Image<double>& data, const Image<double>& weight, const MoffatParams& p, double gridFwhm,
                Mat7* hessian, Vec7* gradient) {
    const int n = data.width();
    const int h = n / 2;
    const double det = p.c11 * p.c22 - p.c12 * p.c12;
    const double norm = (p.beta - 1.0) * std::sqrt(det) / kPi;
    const double dNdc11 = norm * p.c22 / (2.0 * det), dNdc22 = norm * p.c11 / (2.0 * det),
                 dNdc12 = -norm * p.c12 / det, dNdbeta = norm / (p.beta - 1.0);
    if (hessian) {
        hessian->setZero();
        gradient->setZero();
    }
    double chi2 = 0.0;
    Vec7 jac;
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i) {
            const double w = weight(i, j), d = data(i, j);
            if (!(w > 0.0) || !std::isfinite(d)) continue;
            const double px = i - h, py = j - h;
            const int ns = subSamples(std::hypot(px, py), gridFwhm);
            double g = 0, gx = 0, gy = 0, g11 = 0, g12 = 0, g22 = 0, gb = 0;
            for (int b = 0; b < ns; ++b) {
                const double dy = py + (b + 0.5) / ns - 0.5 - p.y0;
                for (int a = 0; a < ns; ++a) {
                    const double dx = px + (a + 0.5) / ns - 0.5 - p.x0;
                    const double q = p.c11 * dx * dx + 2.0 * p.c12 * dx * dy + p.c22 * dy * dy;
                    const double l = std::log1p(q);
                    const double v = std::exp(-p.beta * l);
                    g += v;
                    if (hessian) {
                        const double dvdq = -p.beta * v / (1.0 + q);
                        gx += dvdq * -2.0 * (p.c11 * dx + p.c12 * dy);
                        gy += dvdq * -2.0 * (p.c12 * dx + p.c22 * dy);
                        g11 += dvdq * dx * dx;
                        g12 += dvdq * 2.0 * dx * dy;
                        g22 += dvdq * dy * dy;
                        gb += -l * v;
                    }
                }
            }
            const double inv = 1.0 / (ns * ns);
            const double model = p.amp * norm * g * inv;
            const double r = d - model;
            chi2 += w * r * r;
            if (hessian) {
                jac << norm * g * inv, p.amp * norm * gx * inv, p.amp * norm * gy * inv,
                    p.amp * (norm * g11 + dNdc11 * g) * inv, p.amp * (norm * g12 + dNdc12 * g) * inv,
                    p.amp * (norm * g22 + dNdc22 * g) * inv, p.amp * (norm * gb + dNdbeta * g) * inv;
                hessian->selfadjointView<Eigen::Lower>().rankUpdate(jac, w);
                *gradient += (w * r) * jac;
            }
        }
    if (hessian) *hessian = hessian->selfadjointView<Eigen::Lower>();
    return chi2;
}
}  // namespace

GridIndex::GridIndex(const std::vector<double>& xs, const std::vector<double>& ys, double cellPx)
    : xs_(&xs), ys_(&ys) {
    // Non-finite points are not indexed (and so never found).
    auto finite = [&](std::size_t i) { return std::isfinite(xs[i]) && std::isfinite(ys[i]); };
    bool any = false;
    double x1 = 0, y1 = 0;
    for (std::size_t i = 0; i < xs.size(); ++i) {
        if (!finite(i)) continue;
        if (!any) {
            x0_ = x1 = xs[i];
            y0_ = y1 = ys[i];
            any = true;
        }
        x0_ = std::min(x0_, xs[i]);
        x1 = std::max(x1, xs[i]);
        y0_ = std::min(y0_, ys[i]);
        y1 = std::max(y1, ys[i]);
    }
    cell_ = std::isfinite(cellPx) ? std::max(cellPx, 1.0) : 1.0;
    // Keep the cell table small whatever the spread of the points.
    while ((x1 - x0_) / cell_ * ((y1 - y0_) / cell_) > 4.0e6) cell_ *= 2.0;
    nx_ = static_cast<int>((x1 - x0_) / cell_) + 1;
    ny_ = static_cast<int>((y1 - y0_) / cell_) + 1;
    const std::size_t cells = static_cast<std::size_t>(nx_) * static_cast<std::size_t>(ny_);
    std::vector<std::size_t> cellIndex(xs.size(), cells);
    start_.assign(cells + 1, 0);
    for (std::size_t i = 0; i < xs.size(); ++i) {
        if (!finite(i)) continue;
        cellIndex[i] = static_cast<std::size_t>(cellOfY(ys[i])) * static_cast<std::size_t>(nx_) +
                       static_cast<std::size_t>(cellOf(xs[i], nx_));
        ++start_[cellIndex[i] + 1];
    }
    for (std::size_t c = 0; c < cells; ++c) start_[c + 1] += start_[c];
    order_.resize(start_[cells]);
    std::vector<std::size_t> fill(start_.begin(), start_.end() - 1);
    for (std::size_t i = 0; i < xs.size(); ++i)
        if (cellIndex[i] < cells) order_[fill[cellIndex[i]]++] = i;
}

std::array<double, 6> lanczos3Weights(double frac) {
    std::array<double, 6> w{};
    double sum = 0.0;
    for (int k = -2; k <= 3; ++k) sum += (w[static_cast<std::size_t>(k + 2)] = lanczos3(frac - k));
    for (double& v : w) v /= sum;
    return w;
}

Image<double> lanczosSample(const Image<double>& in, double dx, double dy) {
    const int nx = in.width(), ny = in.height();
    const double fx = std::floor(dx), fy = std::floor(dy);
    const auto wx = lanczos3Weights(dx - fx), wy = lanczos3Weights(dy - fy);
    const int ox = static_cast<int>(fx), oy = static_cast<int>(fy);
    Image<double> tmp(nx, ny, 0.0), out(nx, ny, 0.0);
    for (int j = 0; j < ny; ++j)
        for (int i = 0; i < nx; ++i) {
            double s = 0.0;
            for (int k = -2; k <= 3; ++k) {
                const int src = i + ox + k;
                if (src >= 0 && src < nx) s += wx[static_cast<std::size_t>(k + 2)] * in(src, j);
            }
            tmp(i, j) = s;
        }
    for (int j = 0; j < ny; ++j)
        for (int i = 0; i < nx; ++i) {
            double s = 0.0;
            for (int k = -2; k <= 3; ++k) {
                const int src = j + oy + k;
                if (src >= 0 && src < ny) s += wy[static_cast<std::size_t>(k + 2)] * tmp(i, src);
            }
            out(i, j) = s;
        }
    return out;
}

MoffatParams moffatFromShape(double fwhmPx, double beta, double ellipticity, double positionAngleDeg) {
    const double alpha = fwhmPx / (2.0 * std::sqrt(std::pow(2.0, 1.0 / beta) - 1.0));
    const double a = alpha / std::sqrt(1.0 - ellipticity), b = alpha * std::sqrt(1.0 - ellipticity);
    const double c = std::cos(positionAngleDeg * kPi / 180.0), s = std::sin(positionAngleDeg * kPi / 180.0);
    // Q = x'^2 / a^2 + y'^2 / b^2 with x' = c dx + s dy, y' = -s dx + c dy.
    MoffatParams p;
    p.c11 = c * c / (a * a) + s * s / (b * b);
    p.c22 = s * s / (a * a) + c * c / (b * b);
    p.c12 = c * s * (1.0 / (a * a) - 1.0 / (b * b));
    p.beta = beta;
    return p;
}

void shapeFromMoffat(const MoffatParams& p, double& fwhmPx, double& ellipticity, double& positionAngleDeg) {
    const double det = p.c11 * p.c22 - p.c12 * p.c12;
    const double q = std::pow(2.0, 1.0 / p.beta) - 1.0;
    fwhmPx = 2.0 * std::sqrt(q) / std::pow(det, 0.25);
    const double mean = 0.5 * (p.c11 + p.c22), diff = std::hypot(0.5 * (p.c11 - p.c22), p.c12);
    const double lmax = mean + diff, lmin = mean - diff;
    ellipticity = 1.0 - std::sqrt(lmin / lmax);
    // The largest eigenvalue's axis is the minor axis; the major axis is 90 degrees from it.
    double pa = 0.5 * std::atan2(2.0 * p.c12, p.c11 - p.c22) * 180.0 / kPi - 90.0;
    if (pa <= -90.0) pa += 180.0;
    if (pa > 90.0) pa -= 180.0;
    positionAngleDeg = pa;
}

int subSamples(double r, double fwhm) noexcept {
    // The midpoint rule's error scales as (pixel / FWHM)^2: 5 x 5 in the core of a 2.5 px PSF keeps
    // it near 0.1% of the pixel value (0.05% of the FWHM); broader PSFs need fewer samples for the same.
    const double f = std::max(fwhm, 0.5);
    if (r < 1.5 * f) return std::clamp(static_cast<int>(std::ceil(12.5 / f)), 1, 8);
    if (r < 3.0 * f) return std::clamp(static_cast<int>(std::ceil(7.5 / f)), 1, 5);
    return 1;
}

Image<double> renderMoffat(const MoffatParams& p, int halfSize, double gridFwhm) {
    const int n = 2 * halfSize + 1;
    Image<double> out(n, n, 0.0);
    const double det = p.c11 * p.c22 - p.c12 * p.c12;
    const double norm = p.amp * (p.beta - 1.0) * std::sqrt(det) / kPi;
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i) {
            const double px = i - halfSize, py = j - halfSize;
            const int ns = subSamples(std::hypot(px, py), gridFwhm);
            double g = 0.0;
            for (int b = 0; b < ns; ++b) {
                const double dy = py + (b + 0.5) / ns - 0.5 - p.y0;
                for (int a = 0; a < ns; ++a) {
                    const double dx = px + (a + 0.5) / ns - 0.5 - p.x0;
                    const double q = p.c11 * dx * dx + 2.0 * p.c12 * dx * dy + p.c22 * dy * dy;
                    g += std::exp(-p.beta * std::log1p(q));
                }
            }
            out(i, j) = norm * g / (ns * ns);
        }
    return out;
}

MoffatFit fitMoffat(const Image<double>& data, const Image<double>& weight, const MoffatParams& start,
                    double gridFwhm, int maxIterations) {
    MoffatFit fit;
    fit.params = start;
    if (!validParams(start)) return fit;
    Mat7 hess;
    Vec7 grad;
    double chi2 = evaluate(data, weight, start, gridFwhm, &hess, &grad);
    if (!std::isfinite(chi2)) return fit;
    double lambda = 1e-3;
    Vec7 p = toVec(start);
    bool converged = false;
    int it = 0;
    for (; it < maxIterations && !converged; ++it) {
        bool stepped = false;
        while (lambda < 1e12) {
            Mat7 a = hess;
            for (int k = 0; k < kParams; ++k) a(k, k) += lambda * std::max(hess(k, k), 1e-300);
            const Vec7 step = a.ldlt().solve(grad);
            const Vec7 trial = p + step;
            const MoffatParams tp = fromVec(trial);
            double trialChi2 = std::numeric_limits<double>::infinity();
            if (step.allFinite() && validParams(tp)) trialChi2 = evaluate(data, weight, tp, gridFwhm, nullptr, nullptr);
            if (trialChi2 < chi2) {
                const double gain = (chi2 - trialChi2) / std::max(chi2, 1e-300);
                p = trial;
                chi2 = evaluate(data, weight, tp, gridFwhm, &hess, &grad);
                lambda = std::max(lambda * 0.1, 1e-9);
                stepped = true;
                // Converged when a full step barely improves chi^2 any more.
                if (gain < 1e-10) converged = true;
                break;
            }
            lambda *= 10.0;
        }
        if (!stepped) converged = true;  // no downhill step left: at the minimum to rounding
    }
    fit.params = fromVec(p);
    fit.ok = validParams(fit.params) && fit.params.amp > 0.0;
    fit.iterations = it;
    fit.chi2 = chi2;
    return fit;
}

void requireSamePlanes(const char* who, const Image<float>& image, const Image<float>& variance,
                       const Image<std::uint16_t>& mask) {
    auto check = [&](const char* plane, int w, int h) {
        if (w != image.width() || h != image.height())
            throw DataError(std::string(who) + ": " + plane + " plane is " + std::to_string(w) + "x" +
                            std::to_string(h) + ", image " + std::to_string(image.width()) + "x" +
                            std::to_string(image.height()));
    };
    check("variance", variance.width(), variance.height());
    if (!mask.empty()) check("mask", mask.width(), mask.height());
}

}  // namespace astrid::psf::detail
