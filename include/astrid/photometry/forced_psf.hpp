#pragma once
// Forced PSF photometry at fixed positions: the weighted-kernel (matched-filter) flux estimator of
// Condon (1997, PASP 109, 166), used for forced photometry by the VAST and DSA-110 pipelines.
//
// For a source at (x, y) the PSF stamp K (unit sum over the plane, so F is the total flux) is placed
// with its centre pixel on (round(x), round(y)) and the source at the sub-pixel offset
// (dx, dy) = (x - round(x), y - round(y)). Over the usable stamp pixels i (within fitRadiusPx of the
// position when that is > 0), with data d_i, variance v_i and weights u_i:
//   F       = sum(u d K) / sum(u K^2)
//   sigma_F = sqrt(sum(u^2 K^2 v)) / sum(u K^2)
// With Weighting::InverseVariance (u = 1 / v, the default, Condon's estimator) these are
// F = sum(d K / v) / sum(K^2 / v) and sigma_F = 1 / sqrt(sum(K^2 / v)). With Weighting::Uniform
// (u = 1) the estimator does not depend on v at all: use it when the variance plane follows the
// noisy pixel values themselves (source Poisson term estimated from the data), which biases the
// inverse-variance estimator low by ~1 / (gain x the peak counts in ADU) of the flux.
// With FitBackground::Constant, F and a constant b are fitted together (weighted linear least
// squares, 2x2 normal equations); sigma_F is then the marginal error of F (b's uncertainty included).
// chi2 = sum((d - F K - b)^2 / v) over the used pixels, dof = nPixels - parameters; both use v.
// Everything is linear in the data: no iteration, no starting guess.
//
// Pixels: "usable" means inside the image, no badMaskBits bit, finite value, finite variance > 0.
// Unusable stamp pixels are left out and counted (nBad, Masked; stamp pixels off the image: Edge).
// When fewer than minPixels are usable, or they carry less than minPsfFraction of the sum of K over
// the fit region (the stamp pixels within fitRadiusPx, on the image or not), the flux is NaN with
// TooFewPixels. A position whose pixel is outside the image is OffImage.
#include <cstdint>
#include <functional>
#include <span>
#include <vector>

#include "astrid/core/image.hpp"
#include "astrid/photometry/flags.hpp"

namespace astrid::photometry {

/// The PSF for a source at image position (x, y): a (2h+1) x (2h+1) stamp whose centre pixel (h, h)
/// is the image pixel (round(x), round(y)), with the source at (h + dx, h + dy) in stamp pixels, dx,
/// dy in [-0.5, 0.5]. Unit sum over the plane (the stamp may miss the light beyond its edge). The
/// signature of psf::PsfModel::stampAt(x, y, dx, dy):
///   PsfProvider p = [&model](double x, double y, double dx, double dy) { return model.stampAt(x, y, dx, dy); };
using PsfProvider = std::function<Image<double>(double x, double y, double dx, double dy)>;

/// Moves the content of a stamp by (dx, dy) pixels with separable Lanczos-3 interpolation:
/// out(i, j) = stamp interpolated at (i - dx, j - dy), the weights of registration::lanczos3Weights
/// (unit sum, linear functions reproduced, so centroids move by exactly (dx, dy)). Light within the
/// stamp is conserved; the part shifted across the border is lost and nothing comes in (the stamp is
/// taken as zero outside). For a centred stamp (e.g. the ZOGY difference image's P_D) this gives the
/// PSF of a source at offset (dx, dy). Any finite shift; |dx|, |dy| <= 0.5 is what forced
/// photometry uses. Throws DataError when dx or dy is not finite.
Image<double> shiftStamp(const Image<double>& stamp, double dx, double dy);

/// As shiftStamp into an existing stamp of the same size (no allocation when `out` has it already).
void shiftStampInto(const Image<double>& stamp, double dx, double dy, Image<double>& out);

/// How pixels are weighted in the fit (see the top of this header).
enum class Weighting {
    InverseVariance,  ///< u = 1 / v: Condon's estimator, minimum variance when v is the true variance
    Uniform,          ///< u = 1: unbiased whatever the variance plane; the error still uses v
};

/// Whether a local background is fitted with the flux.
enum class FitBackground {
    None,      ///< the image is background-subtracted: d = F K
    Constant,  ///< d = F K + b over the stamp
};

/// Parameters of forcedPsfPhotometry.
struct ForcedPsfConfig {
    Weighting weighting = Weighting::InverseVariance;
    FitBackground background = FitBackground::None;
    /// Use only stamp pixels whose centres lie within this radius (px) of the position; <= 0: the whole
    /// stamp. A radius of ~2-3 FWHM keeps the fit off the noise-only wings and off neighbours.
    double fitRadiusPx = 0.0;
    int minPixels = 5;              ///< fewer usable pixels (or <= the fitted parameters): TooFewPixels
    double minPsfFraction = 0.5;    ///< usable pixels must carry this fraction of the fit region's sum of K
    std::uint16_t badMaskBits = 0xFFFF;  ///< mask bits that make a pixel unusable
    std::uint16_t saturatedMaskBits = bits(MaskBit::Saturated);  ///< bits that set Saturated
    std::uint16_t interpolatedMaskBits = 0;  ///< bits of usable pixels that set Interpolated when fitted
};

/// The forced PSF flux at one position. Fluxes in image units.
struct ForcedPsfResult {
    double x = 0.0, y = 0.0;
    double flux = 0.0;          ///< NaN only with OffImage, TooFewPixels or FitFailed
    double fluxErr = 0.0;       ///< 1 sigma; NaN with flux
    double background = 0.0;    ///< fitted constant per pixel (FitBackground::Constant), else 0
    double backgroundErr = 0.0; ///< its 1-sigma error (0 when not fitted)
    double chi2 = 0.0;          ///< sum of squared normalised residuals over the used pixels
    double chi2PerDof = 0.0;    ///< chi2 / (nPixels - parameters); NaN when dof <= 0
    double psfFraction = 0.0;   ///< sum of K over the used pixels / sum of K over the fit region
    int nPixels = 0;            ///< pixels used in the fit
    int nBad = 0;               ///< stamp pixels inside the image (and fit radius) that were unusable
    std::uint32_t flags = 0;    ///< PhotFlag bits: OffImage, Edge, Masked, Saturated, TooFewPixels, FitFailed, Interpolated

    /// flux / fluxErr (NaN when flux is).
    double snr() const noexcept { return flux / fluxErr; }
};

/// Forced PSF photometry with a position-dependent PSF: `psf` is called once per position with its
/// (x, y, dx, dy) (not for OffImage positions). Results in the order of `positions`. Single-threaded;
/// calls `psf` from this thread only. Throws ConfigError (naming the field) for an invalid config,
/// DataError when the image planes differ in size (an empty mask plane means no mask bits) or a
/// stamp returned by `psf` is empty or not square with odd size.
std::vector<ForcedPsfResult> forcedPsfPhotometry(const MaskedImage& image, std::span<const PixelPosition> positions,
                                                 const PsfProvider& psf, const ForcedPsfConfig& config = {});

/// Forced PSF photometry with one fixed PSF: `centredStamp` ((2h+1)^2, unit sum, the source on the
/// centre of pixel (h, h)) is shifted to each position's sub-pixel offset with shiftStamp. Throws as
/// above, and DataError when the stamp is empty, not square with odd size, or its sum is not finite
/// and positive.
std::vector<ForcedPsfResult> forcedPsfPhotometry(const MaskedImage& image, std::span<const PixelPosition> positions,
                                                 const Image<double>& centredStamp, const ForcedPsfConfig& config = {});

/// The fit alone: `stamp` is already the PSF of a source at (x, y) ((2h+1)^2, centre pixel on
/// (round(x), round(y))). For callers with their own stamps. Throws ConfigError for an invalid
/// config, DataError for a stamp that is empty or not square with odd size.
ForcedPsfResult forcedPsfFit(const MaskedImage& image, double x, double y, const Image<double>& stamp,
                             const ForcedPsfConfig& config = {});

}  // namespace astrid::photometry
