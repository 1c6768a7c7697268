#pragma once
// The geometric part of registration: where each SCIENCE pixel falls on the REFERENCE image.
//
// Direction: every transform here maps science pixel (x, y) -> reference pixel (x', y'), because
// resampling pulls reference pixels onto the science grid (one look-up per output pixel).
// Pixels are 0-based with centres at integer coordinates, x the column (core/image.hpp).
#include <array>
#include <cstddef>
#include <span>
#include <vector>

#include "astrid/wcs/sky_wcs.hpp"

namespace astrid::registration {

using wcs::PixelPoint;

/// Handedness of a similarity transform: Mirrored flips the y axis before rotating.
enum class Parity { Preserved, Mirrored };

/// A 2-D polynomial of total degree `order` (1..3) per output coordinate:
///   x' = sum_{p+q <= order} ax[pq] u^p v^q,  y' likewise,  u = (x - centreX) / scale, v = (y - centreY) / scale.
/// The normalisation keeps a cubic fit well conditioned over a 4k image; it is part of the transform
/// (fit() chooses it from the data, the factories use centre 0 and scale 1). Monomial order in the
/// coefficient arrays: 1, u, v, u^2, u v, v^2, u^3, u^2 v, u v^2, v^3 (the first terms(order)).
class PolyTransform {
public:
    static constexpr int kMaxOrder = 3;
    using Coefficients = std::array<double, 10>;

    /// The identity (order 1).
    PolyTransform() : PolyTransform(identity()) {}
    /// The identity as a polynomial of `order` (1..3). Throws DataError for another order.
    static PolyTransform identity(int order = 1);
    /// x' = c[0] + c[1] x + c[2] y,  y' = c[3] + c[4] x + c[5] y (pixels).
    static PolyTransform affine(const std::array<double, 6>& c);
    /// x' = s R(angle) P x + (dx, dy), P = diag(1, -1) for Parity::Mirrored: scale s (output px per
    /// input px, > 0), rotation counter-clockwise from +x towards +y in degrees, shift in output px.
    static PolyTransform similarity(double scale, double rotationDeg, double dx, double dy,
                                    Parity parity = Parity::Preserved);
    /// Any coefficients (see the class comment for their order); throws DataError for a bad order or
    /// a non-positive scale.
    static PolyTransform fromCoefficients(int order, double centreX, double centreY, double scale,
                                          const Coefficients& ax, const Coefficients& ay);

    /// Weighted least squares fit of to[i] ~ T(from[i]) with polynomials of `order` (1..3); weights
    /// empty = all 1. The normalisation centre is the mean of `from`, the scale its largest |offset|.
    /// Throws DataError when the spans differ in size, there are fewer points than terms(order), the
    /// points are degenerate (e.g. collinear for an affine fit) or a value is not finite.
    static PolyTransform fit(std::span<const PixelPoint> from, std::span<const PixelPoint> to, int order,
                             std::span<const double> weights = {});

    /// Number of coefficients per coordinate: 3, 6, 10 for orders 1..3.
    static int terms(int order) noexcept { return (order + 1) * (order + 2) / 2; }

    int order() const noexcept { return order_; }
    PixelPoint apply(double x, double y) const noexcept;
    PixelPoint apply(PixelPoint p) const noexcept { return apply(p.x, p.y); }
    /// d(x', y') / d(x, y) at (x, y), row-major {dx'/dx, dx'/dy, dy'/dx, dy'/dy}.
    std::array<double, 4> jacobian(double x, double y) const noexcept;

    double centreX() const noexcept { return cx_; }
    double centreY() const noexcept { return cy_; }
    double scale() const noexcept { return scale_; }
    const Coefficients& coefficientsX() const noexcept { return ax_; }
    const Coefficients& coefficientsY() const noexcept { return ay_; }

private:
    PolyTransform(int order, double cx, double cy, double scale, const Coefficients& ax, const Coefficients& ay)
        : order_(order), cx_(cx), cy_(cy), scale_(scale), ax_(ax), ay_(ay) {}
    int order_ = 1;
    double cx_ = 0.0, cy_ = 0.0, scale_ = 1.0;
    Coefficients ax_{}, ay_{};
};

/// How a PixelMap built from two WCSs samples them.
struct PixelMapConfig {
    /// Spacing (science px) of the grid on which sci pixel -> sky -> ref pixel is evaluated exactly;
    /// in between the map is interpolated with tensor-product cubic Lagrange polynomials (exact for
    /// any polynomial of degree <= 3 per axis, error ~ spacing^4 x the 4th derivative otherwise).
    /// Measured worst error over 20000 random points of simulated pairs (1024^2 and 4096^2, 0.5"/px,
    /// pointings tens of px and ~1 deg apart): TAN 5e-10 px, SIP and TPV with 1.5 px of cubic
    /// distortion 4e-9 px at 32 px spacing, 1e-6 px at 128 px; test_registration pins < 1e-4 px.
    /// Building the grid for 4096^2 takes ~15 ms.
    int gridSpacingPx = 32;
    /// The map is checked against exact WCS evaluation at every cell centre (where the cubic's error
    /// peaks); while the worst error exceeds this, the spacing is halved (down to minGridSpacingPx;
    /// beyond that a warning is logged and PixelMap::gridErrorPx() reports the error).
    double maxGridErrorPx = 1e-3;
    int minGridSpacingPx = 4;
};

/// Science pixel -> reference pixel: a base map composed with a correction polynomial,
///   ref = correction(base(sci)).
/// The base is either the two WCSs (sci pixel -> sky -> ref pixel, sampled on a grid and
/// interpolated) or a plain PolyTransform. The correction (identity by default) acts on base
/// output, i.e. in reference pixels; matching fits it to star pairs, so a WCS pointing or rotation
/// error of either image is absorbed by an affine correction while the WCS keeps the distortion.
/// Copyable value type; all const methods are thread-safe.
class PixelMap {
public:
    /// The identity map (base = correction = identity transform).
    PixelMap();

    /// Base from two WCSs over a science image of width x height pixels. The grid extends two cells
    /// beyond the image on every side; outside that the end cells' polynomials extrapolate.
    /// Throws DataError for a non-positive size or config, or when the reference WCS cannot place a
    /// grid node's sky position (images on opposite sides of the sky); WcsError from wcslib.
    static PixelMap fromWcs(const wcs::SkyWcs& science, const wcs::SkyWcs& reference, int width, int height,
                            const PixelMapConfig& config = {});
    /// Base from a transform (exact everywhere, no grid).
    static PixelMap fromTransform(const PolyTransform& base);

    /// The same base with `correction` replacing the current correction.
    PixelMap withCorrection(const PolyTransform& correction) const;

    /// Science pixel -> reference pixel (correction included).
    PixelPoint apply(double x, double y) const noexcept;
    PixelPoint apply(PixelPoint p) const noexcept { return apply(p.x, p.y); }
    /// Batch version; the spans must have equal sizes (DataError otherwise).
    void apply(std::span<const double> x, std::span<const double> y, std::span<double> xRef,
               std::span<double> yRef) const;
    /// The base map alone (what the correction is fitted on).
    PixelPoint applyBase(double x, double y) const noexcept;
    /// d(ref) / d(sci) at a science pixel, row-major {dx'/dx, dx'/dy, dy'/dx, dy'/dy}.
    std::array<double, 4> jacobian(double x, double y) const noexcept;
    /// det of jacobian(): reference pixel area per science pixel (negative when the map mirrors).
    double jacobianDeterminant(double x, double y) const noexcept;

    const PolyTransform& correction() const noexcept { return correction_; }
    /// True for a WCS-based map.
    bool hasWcsBase() const noexcept { return kind_ == Kind::Grid; }
    /// Grid node spacing actually used (science px); 0 for a transform base.
    int gridSpacingPx() const noexcept { return kind_ == Kind::Grid ? spacing_ : 0; }
    /// Worst interpolation error of the base measured at the grid's cell centres inside the image
    /// (reference px); 0 for a transform base.
    double gridErrorPx() const noexcept { return gridErrorPx_; }
    /// The science image size a WCS-based map was built for (0 x 0 for a transform base).
    int width() const noexcept { return width_; }
    int height() const noexcept { return height_; }

    /// Fast evaluation along rows of the science grid (what resample uses): columns x0 .. x0 + n - 1
    /// of any row y, returning reference positions and jacobian determinants. The map is
    /// interpolated with the same tensor-product cubic Lagrange scheme as the WCS grid: for a WCS
    /// base on the map's own grid; for a transform base on a 16 px grid evaluated exactly as rows
    /// are reached, which is exact for positions of per-axis degree <= 3 (an affine or similarity
    /// base with any correction up to order 3). Per pixel ~a dozen multiply-adds. Holds a reference
    /// to the map: the map must outlive it. Not thread-safe (scratch buffers); use one per thread.
    class RowEvaluator {
    public:
        RowEvaluator(const PixelMap& map, int x0, int n);
        /// Fills xRef, yRef, det (each of size n) for science row y.
        void evaluate(double y, std::span<double> xRef, std::span<double> yRef, std::span<double> det);

    private:
        const PixelMap& map_;
        int x0_, n_;
        int spacing_ = 0, nodes_ = 0;
        double origin_ = 0.0;              // science x of node column 0
        std::vector<int> col_;             // first of the four nodes of each column
        std::vector<std::array<double, 4>> colW_;
        std::vector<double> rowX_, rowY_, rowDet_;  // node columns interpolated to the row
        // Transform base: node rows (every spacing_ in y) evaluated exactly on first use; slot j mod 8
        // (four consecutive rows are needed at once).
        struct NodeRow {
            long long j = -1;
            bool valid = false;
            std::vector<double> x, y, det;
        };
        std::vector<NodeRow> cache_;
        const NodeRow& nodeRow(long long j);
    };

private:
    enum class Kind { Transform, Grid };
    void rebuildComposite();
    // Lagrange stencil of a coordinate: first node index and the four weights (and their derivatives).
    struct Stencil {
        int first;
        std::array<double, 4> w, dw;
    };
    Stencil stencil(double coord, double origin, int nodes) const noexcept;
    double interpolate(const std::vector<double>& v, const Stencil& sx, const Stencil& sy) const noexcept;

    Kind kind_ = Kind::Transform;
    PolyTransform base_;
    PolyTransform correction_;
    int width_ = 0, height_ = 0;
    int spacing_ = 0, nx_ = 0, ny_ = 0;
    double originX_ = 0.0, originY_ = 0.0;  // science coordinates of node (0, 0)
    double gridErrorPx_ = 0.0;
    // Node values, row-major [j * nx_ + i]: the base, det of its jacobian, and the composite.
    std::vector<double> baseX_, baseY_, baseDet_, mapX_, mapY_, mapDet_;
};

}  // namespace astrid::registration
