#pragma once
// The point-spread function of one image, built from its stars.
//
// The model (DAOPHOT's "analytic function + look-up table", with PSFEx's polynomial variation):
//   PSF(p; x, y) = M(p) + taper(r) * sum_k T_k(p) b_k(u, v)
//   M    a pixel-integrated elliptical Moffat fitted (Levenberg-Marquardt, Eigen) to the weighted mean
//        stack of the PSF stars; it carries the wings, where single pixels are noise-dominated;
//   T_k  empirical residual tables, one per polynomial term b_k in {1, u, v, u^2, uv, v^2}
//        (u, v = image position scaled to [-1, 1]), fitted pixel by pixel by weighted least squares to
//        the recentred, flux-normalised stars with iterative sigma clipping; they carry whatever the
//        Moffat does not (non-Moffat cores, asymmetry, halos, spatial variation). They reach
//        residualRadiusFwhm and further while the stack still differs significantly from M, and are
//        tapered to zero over the last FWHM.
// Kinds: Empirical (one table), EmpiricalVarying (order 1 or 2: enough stars AND a significant chi^2
// gain over the lower order) and Moffat (too few stars for tables: M alone, fitted to their stack).
//
// Recentring: each star's stamp is resampled to put its centroid (the Star's windowed centroid) on
// the stamp's centre pixel with a separable Lanczos-3 kernel (weights normalised to unit sum); a
// pixel whose 6x6 kernel footprint touches a bad pixel, or that lies near another detection, is
// dropped for that star. Resampling blurs a sharp core slightly, differently at each sub-pixel phase;
// that blur is measured on the fitted Moffat at each star's phase and added back (psf_model.cpp).
//
// FWHM: fwhmAt(x, y) fits a pixel-integrated elliptical Moffat to stampAt(x, y) and returns the
// geometric mean of its major- and minor-axis FWHM before pixel integration, i.e. the simulator's
// TRUEFWHM convention (sim::MoffatPsf::fwhmPx). halfMaxFwhmPx() is the plainer non-parametric figure
// (half-maximum contour area of the pixelated stamp); it includes the pixel and so reads higher
// (+3-4% at 2.6 px, +1% at 4.4 px).
//
// Conventions: pixels 0-based, centres at integer coordinates, x the column; a stamp of half-size h is
// (2h+1)^2 pixels with its centre at pixel (h, h); stamps have unit sum over the stamp (the light
// beyond the stamp, ~1% for a beta 2.5 Moffat at 4 FWHM, is not in them).
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "astrid/core/image.hpp"
#include "astrid/psf/stars.hpp"

namespace astrid::psf {

/// An elliptical Moffat, I(r) ~ (1 + (x'/a)^2 + (y'/b)^2)^-beta, with sim::MoffatPsf's conventions:
/// fwhmPx is the geometric mean of the major- and minor-axis FWHM before pixel integration,
/// ellipticity is 1 - b/a, positionAngleDeg the major axis counter-clockwise from +x towards +y,
/// in (-90, 90].
struct MoffatShape {
    double fwhmPx = 3.0;
    double beta = 3.0;
    double ellipticity = 0.0;
    double positionAngleDeg = 0.0;
};

/// Parameters of buildPsf. Radii "in FWHM": the stamp half-size and the neighbour masks use the median
/// (Gaussian-equivalent) FWHM of the selected stars, the residual radius the fitted Moffat's FWHM.
struct PsfConfig {
    double minSnr = 50.0;  ///< PSF stars need this S/N
    /// A PSF star must carry none of these flags.
    std::uint32_t rejectFlags = StarFlag::Saturated | StarFlag::Masked | StarFlag::Edge | StarFlag::Blended |
                                StarFlag::CentroidFailed | StarFlag::BadShape | StarFlag::Sharp |
                                StarFlag::SkyResidual;
    double fwhmClipSigma = 3.0;        ///< keep stars within this many robust sigma of the median FWHM ...
    double fwhmClipMinFraction = 0.1;  ///< ... or within this fraction of it, whichever is wider
    double maxEllipticityExcess = 0.15; ///< drop stars whose moment ellipticity exceeds the median by more
    int halfSizePx = 0;                ///< stamp half-size; 0: round(halfSizeFwhm x FWHM) in [6, 64]
    double halfSizeFwhm = 4.0;
    int maxStars = 500;                ///< the highest-S/N this many are used (fewer for huge stamps: < 2e7 px in all)
    int maxSpatialOrder = 2;           ///< 0 = constant, 1 = linear, 2 = quadratic in (x, y)
    int minStarsEmpirical = 10;        ///< fewer usable stars: Moffat kind
    int minStarsLinear = 30;           ///< stars needed for order 1 (3 terms)
    int minStarsQuadratic = 60;        ///< stars needed for order 2 (6 terms)
    /// ... and the higher order must lower the fit's chi^2 by this many (independent-pixel) sigma more
    /// than noise would (see psf_model.cpp); <= 0 keeps the order the star counts allow.
    double spatialSignificance = 10.0;
    double residualRadiusFwhm = 3.0;   ///< the residual tables reach at least this far (see psf_model.cpp)
    double clipSigma = 3.0;            ///< per-pixel clipping of star residuals
    int clipIterations = 3;
    /// Systematic floor added to every pixel's variance, as a fraction of the model value (PSFEx's
    /// PSF_ACCURACY): keeps a few very bright stars from dominating and from being clipped for tiny
    /// interpolation errors.
    double accuracy = 0.01;
    double maxClippedFraction = 0.25;  ///< a star with more of its core (1.5 FWHM) clipped is dropped
    double neighbourMaskFwhm = 1.5;    ///< pixels this close to another detection are ignored (x2 if brighter)
    /// Build twice: the second time with every other detected star's light (first model x its flux)
    /// subtracted from the PSF stars' stamps, so that neighbours' wings do not broaden the model.
    bool subtractNeighbours = true;
    std::uint16_t badMaskBits = 0xFFFF; ///< mask bits that make a pixel unusable
    double fallbackMinSnr = 15.0;      ///< Moffat fallback: S/N needed (Blended and SkyResidual allowed)
    int minStarsMoffat = 1;            ///< fewer than this for the fallback: DataError
};

/// A PSF model; cheap to copy (a few stamps). Thread-safe for concurrent const use. Made only by
/// buildPsf or analytic() (there is no empty model: hold one in a std::optional where it may be absent).
class PsfModel {
public:
    enum class Kind { Empirical, EmpiricalVarying, Moffat };

    /// A purely analytic model (kind Moffat), e.g. for injecting fakes with a known PSF. halfSize >= 1.
    /// imageWidth/Height only set the coordinate range (fwhmAt is the same everywhere). Throws
    /// DataError for an invalid shape (fwhm <= 0, beta <= 1.1 or > 30, ellipticity outside [0, 0.9]).
    static PsfModel analytic(const MoffatShape& shape, int halfSize, int imageWidth = 0, int imageHeight = 0);

    /// The PSF at image position (x, y) (px): the image of a point source located exactly on the centre
    /// pixel (halfSize, halfSize) of a (2h+1)^2 stamp; unit sum, no negative pixels (noise wings
    /// clipped at zero). Positions outside the image are clamped to its edge (no extrapolation).
    Image<double> stampAt(double x, double y) const;
    /// As stampAt(x, y) for a point source at (halfSize + dx, halfSize + dy) in stamp pixels: for PSF
    /// photometry or fake injection of a source at image position (X, Y) use the stamp centre pixel
    /// (round(X), round(Y)) and dx = X - round(X), dy = Y - round(Y). The Moffat part is rendered at
    /// the offset exactly; the residual tables are shifted with Lanczos-3. |dx|, |dy| <= 1 is the
    /// intended range; larger shifts work but light leaves the stamp. Throws DataError when dx or dy
    /// is not finite.
    Image<double> stampAt(double x, double y, double dx, double dy) const;

    /// FWHM (px, before pixel integration, geometric mean of the axes) at the image centre.
    double fwhmPx() const noexcept { return fwhmPx_; }
    /// FWHM at (x, y): a Moffat fit to stampAt(x, y) (a few ms; constant for kinds other than
    /// EmpiricalVarying).
    double fwhmAt(double x, double y) const;
    /// The full Moffat fit to stampAt(x, y) (FWHM, beta, ellipticity, PA).
    MoffatShape shapeAt(double x, double y) const;
    /// The analytic component M (for kind Moffat, the whole model).
    const MoffatShape& moffat() const noexcept { return moffat_; }
    /// Non-parametric FWHM of the pixelated stamp at the image centre: 2 sqrt(A / pi), A the area
    /// where the bilinearly interpolated stamp is >= half its peak pixel. Includes the pixel.
    double halfMaxFwhmPx() const;

    int starsUsed() const noexcept { return static_cast<int>(starIndices_.size()); }
    /// Indices (into the stars given to buildPsf) of the stars in the final fit.
    const std::vector<std::size_t>& starIndices() const noexcept { return starIndices_; }
    Kind kind() const noexcept { return kind_; }
    int halfSize() const noexcept { return halfSize_; }
    /// 0 (constant), 1 or 2; 0 for kind Moffat.
    int spatialOrder() const noexcept { return order_; }
    /// Radius (px) out to which the residual tables correct the Moffat (0 for kind Moffat).
    double residualRadiusPx() const noexcept { return residualRadius_; }
    int imageWidth() const noexcept { return width_; }
    int imageHeight() const noexcept { return height_; }

private:
    friend PsfModel buildPsf(const Image<float>&, const Image<float>&, const Image<std::uint16_t>&,
                             const std::vector<Star>&, const PsfConfig&);
    PsfModel() = default;
    Image<double> residualAt(double x, double y) const;  // sum_k T_k b_k, tapered; empty for Moffat
    Image<double> finish(Image<double> stamp) const;      // clean negatives, unit sum

    Kind kind_ = Kind::Moffat;
    int halfSize_ = 0;
    int order_ = 0;
    int width_ = 0, height_ = 0;
    // The analytic part as fitted (quadratic form, see psf_model.cpp), its rendering at the centre and
    // the FWHM that chose its sub-pixel integration grid.
    double amp_ = 1.0, c11_ = 1.0, c12_ = 0.0, c22_ = 1.0, beta_ = 3.0, gridFwhm_ = 3.0;
    double residualRadius_ = 0.0;
    Image<double> moffatStamp_;
    std::vector<Image<double>> tables_;  // T_k, already tapered
    MoffatShape moffat_;
    double fwhmPx_ = 0.0;
    std::vector<std::size_t> starIndices_;
};

/// "empirical", "empirical-varying", "moffat".
std::string_view kindName(PsfModel::Kind kind) noexcept;

/// Builds the PSF of a background-subtracted image from its star list (findStars on the same image):
/// selects bright, isolated, unflagged stars whose FWHM is near the median, stacks them (see the top
/// of this header) and chooses the kind by how many are usable. `variance` must match the image;
/// `mask` may be empty. Throws DataError("too few stars for a PSF: N found, M usable") when not even
/// the Moffat fallback has a star (N = stars.size(), M = stars passing the fallback selection), or when
/// the Moffat fit fails; DataError when plane sizes disagree; ConfigError (naming the field) for an
/// invalid config.
PsfModel buildPsf(const Image<float>& image, const Image<float>& variance, const Image<std::uint16_t>& mask,
                  const std::vector<Star>& stars, const PsfConfig& config = {});

/// Half-maximum contour FWHM of a stamp: 2 sqrt(A / pi) with A the area (8x8 sub-samples per pixel,
/// bilinear interpolation) where the stamp is >= half its largest pixel. Pixelated: includes the pixel.
double halfMaxFwhm(const Image<double>& stamp);

}  // namespace astrid::psf
