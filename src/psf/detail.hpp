#pragma once
// Internals shared by stars.cpp and psf_model.cpp: a neighbour grid, the Lanczos-3 sub-pixel shift and
// the pixel-integrated elliptical Moffat (rendering and Levenberg-Marquardt fit). Not installed.
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "astrid/core/image.hpp"

namespace astrid::psf::detail {

constexpr double kFwhmPerSigma = 2.3548200450309493;  // 2 sqrt(2 ln 2)

/// Buckets points on a square grid so that "everything within r" is a look at a few cells.
class GridIndex {
public:
    GridIndex(const std::vector<double>& xs, const std::vector<double>& ys, double cellPx);
    /// Calls f(index) for every point within `radius` of (x, y) (the point itself included).
    template <class F>
    void forEachWithin(double x, double y, double radius, F&& f) const {
        if (!(std::isfinite(x) && std::isfinite(y) && std::isfinite(radius))) return;
        const int cx0 = cellOf(x - radius, nx_), cx1 = cellOf(x + radius, nx_);
        const int cy0 = cellOfY(y - radius), cy1 = cellOfY(y + radius);
        const double r2 = radius * radius;
        for (int cy = cy0; cy <= cy1; ++cy)
            for (int cx = cx0; cx <= cx1; ++cx) {
                const std::size_t c = static_cast<std::size_t>(cy) * static_cast<std::size_t>(nx_) +
                                      static_cast<std::size_t>(cx);
                for (std::size_t k = start_[c]; k < start_[c + 1]; ++k) {
                    const std::size_t i = order_[k];
                    const double dx = (*xs_)[i] - x, dy = (*ys_)[i] - y;
                    if (dx * dx + dy * dy <= r2) f(i);
                }
            }
    }

private:
    // Callers pass finite values only.
    int cellOf(double v, int n) const noexcept {
        const double c = std::floor((v - x0_) / cell_);
        return c < 0 ? 0 : (c >= n ? n - 1 : static_cast<int>(c));
    }
    int cellOfY(double v) const noexcept {
        const double c = std::floor((v - y0_) / cell_);
        return c < 0 ? 0 : (c >= ny_ ? ny_ - 1 : static_cast<int>(c));
    }
    const std::vector<double>* xs_;
    const std::vector<double>* ys_;
    double x0_ = 0, y0_ = 0, cell_ = 1;
    int nx_ = 1, ny_ = 1;
    std::vector<std::size_t> start_, order_;
};

/// Lanczos-3 weights for sampling at fractional offset `frac` in [0, 1): taps at integer offsets
/// -2..3 from floor(position); normalised to unit sum so that a constant stays constant.
std::array<double, 6> lanczos3Weights(double frac);

/// out(i, j) = in(i + dx, j + dy) by separable Lanczos-3 interpolation (so the content moves by
/// (-dx, -dy)); samples outside `in` count as zero. in and out have the same size.
Image<double> lanczosSample(const Image<double>& in, double dx, double dy);

/// An elliptical Moffat in quadratic-form parameters: I = amp * N * (1 + Q)^-beta with
/// Q = c11 dx^2 + 2 c12 dx dy + c22 dy^2, (dx, dy) = pixel - (x0, y0), N = (beta - 1) sqrt(det C) / pi
/// so that amp is the integral over the plane.
struct MoffatParams {
    double amp = 1.0, x0 = 0.0, y0 = 0.0, c11 = 1.0, c12 = 0.0, c22 = 1.0, beta = 3.0;
};

/// Shape <-> quadratic form (fwhm is the geometric mean FWHM, ellipticity 1 - b/a, PA from +x to +y).
MoffatParams moffatFromShape(double fwhmPx, double beta, double ellipticity, double positionAngleDeg);
void shapeFromMoffat(const MoffatParams& p, double& fwhmPx, double& ellipticity, double& positionAngleDeg);

/// Sub-samples per pixel axis used for pixel integration at distance r (px) from the stamp centre
/// for a profile of FWHM `fwhm`: ceil(12.5 / FWHM) in the core (r < 1.5 FWHM; 5 at 2.5 px, 3 at
/// 4.5 px), ceil(7.5 / FWHM) to 3 FWHM, 1 beyond. The pixel integration of every model (fit and
/// rendering) goes through this, so they agree exactly.
int subSamples(double r, double fwhm) noexcept;

/// Renders the pixel-integrated Moffat into a (2h+1)^2 stamp whose centre pixel is (h, h); p.x0/p.y0
/// are offsets from that centre. `gridFwhm` chooses the sub-sampling (see subSamples).
Image<double> renderMoffat(const MoffatParams& p, int halfSize, double gridFwhm);

/// Result of fitMoffat.
struct MoffatFit {
    MoffatParams params;
    bool ok = false;
    int iterations = 0;
    double chi2 = 0.0;
};

/// Weighted least-squares fit (Levenberg-Marquardt, analytic Jacobian) of a pixel-integrated elliptical
/// Moffat to a stamp centred at (h, h); weight <= 0 or non-finite data excludes a pixel. beta is kept in
/// [1.1, 30] and C positive definite. `gridFwhm` as in renderMoffat.
MoffatFit fitMoffat(const Image<double>& data, const Image<double>& weight, const MoffatParams& start,
                    double gridFwhm, int maxIterations = 100);

/// Throws DataError naming `who` when the variance plane, or a non-empty mask, differs in size
/// from the image.
void requireSamePlanes(const char* who, const Image<float>& image, const Image<float>& variance,
                       const Image<std::uint16_t>& mask);

}  // namespace astrid::psf::detail
