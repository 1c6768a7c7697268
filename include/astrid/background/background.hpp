#pragma once
// Mask, background and noise of one image (issue #3): the first science stage, run on every image
// before PSF modelling and differencing.
//
//   mask = buildMask(image, maskConfig, &dqPlane);          // NoData, Saturated (+growth), Bad columns
//   bkg  = estimateBackground(image, mask, backgroundConfig); // level and RMS maps (SExtractor-like)
//   var  = varianceMap(image, bkg, gain, readNoise, &mask);  // per-pixel variance, ADU^2
//
// Conventions: pixels 0-based with centres at integer coordinates, x the column, storage
// data[y * width + x] (core/image.hpp). Image values, levels and RMS are in the image's units (ADU for
// raw data), variance in those units squared; gain in e-/ADU, read noise in e-. Pixels and maps are
// float, all statistics are accumulated in double. Masked pixels get +inf variance (never NaN), so a
// consumer weighting by 1 / variance gives them zero weight without a special case.
// Everything here is single-threaded and deterministic; nothing logs above Warn, nothing prints.
#include <cstddef>
#include <cstdint>
#include <limits>

#include "astrid/core/image.hpp"

namespace astrid::background {

/// Whether buildMask looks for bad (dead or hot) detector columns.
enum class ColumnCheck { Off, Detect };

/// Parameters of buildMask.
struct MaskConfig {
    /// Pixels at or above this value (image units) are Saturated. NaN or <= 0: no saturation check
    /// (e.g. a header without SATURATE).
    double saturationAdu = std::numeric_limits<double>::quiet_NaN();
    /// Saturated pixels are grown by this radius (a disk, in pixels) so that the bleed and halo around a
    /// saturated core, which is non-linear but below the threshold, is flagged too. 0 = no growth.
    int saturationGrowPx = 2;

    /// Bad-column detection (see buildMask). The test is rank-based, so it needs no noise estimate:
    /// in each row a column is compared with the four columns at distances 2 and 3 on either side; a
    /// column that is the strict maximum (hot) or strict minimum (dead) of that neighbourhood in at
    /// least `badColumnFraction` of the sampled rows of a segment is bad there. For independent noise
    /// the chance per row is 1/5, so a false segment has probability ~1e-13; a column offset by
    /// >~ 3 sigma per pixel is found, fainter column defects are not.
    ColumnCheck badColumns = ColumnCheck::Detect;
    int badColumnSegmentPx = 64;      ///< rows per test segment (every second row is sampled); >= 16
    double badColumnFraction = 0.8;   ///< in (0.5, 1]
};

/// Builds the mask plane of `image` (same size). Bits set:
///   - NoData on NaN and +-Inf pixels;
///   - Saturated on pixels >= config.saturationAdu (when that is finite and > 0) and on every pixel
///     within config.saturationGrowPx of one;
///   - Bad on detected bad columns, over the rows where they are bad (partial columns are found with
///     their ends located to about a pixel). Columns within 3 px of the left/right edge are compared
///     with one-sided neighbours; images narrower than 7 px or shorter than the segment are not tested.
/// When `existing` is given (e.g. fits::readImagePlanes' mask, whose non-zero DQ/BPM pixels are
/// MaskBit::Bad already) its bits are OR-ed in. Throws DataError when `existing` has another size,
/// ConfigError (naming the field) for an invalid config.
Image<std::uint16_t> buildMask(const Image<float>& image, const MaskConfig& config,
                               const Image<std::uint16_t>* existing = nullptr);
/// The same, into `out`, which keeps its storage when it already has the image's size (`existing` may
/// be &out). A worker that processes many images of one size this way stops paying for fresh pages:
/// on the development machine first-touching a new 4096^2 float plane costs 30-60 ms, more than the
/// arithmetic of most passes here.
void buildMask(const Image<float>& image, const MaskConfig& config, const Image<std::uint16_t>* existing,
               Image<std::uint16_t>& out);

/// How a box's background level is taken from its clipped pixel distribution.
enum class LevelEstimator {
    /// The mode estimate 2.5 median - 1.5 mean (Pearson's rule, as SExtractor) when the clipped
    /// distribution is measurably skewed by faint sources, |mean - median| >= 3 x 0.756 sigma / sqrt(n)
    /// (three standard deviations of mean - median for Gaussian noise); the median when it is not
    /// (there the formula only adds noise: its variance is 2.9 times the median's) and, as SExtractor,
    /// when |mean - median| >= 0.3 sigma (too crowded for the formula); the mean when sigma is 0.
    Mode,
    Median,  ///< median of the clipped distribution
    Mean,    ///< mean of the clipped distribution (least noisy, most biased by faint sources)
};

/// Whether estimateBackground masks sources and measures again (see estimateBackground).
enum class SourceMasking { Off, On };

/// Parameters of estimateBackground. Defaults follow SExtractor/photutils Background2D.
struct BackgroundConfig {
    /// Nominal box (mesh cell) size in pixels. The image is divided into round(size / boxSizePx)
    /// boxes per axis (at least 1) of equal size to within a pixel, so there are no small edge boxes.
    int boxSizePx = 64;
    /// Size of the median filter over the box grid, odd (1 = none). The grid is padded by point
    /// reflection (2 v_edge - v_inside), so a linear gradient passes through the filter unchanged.
    int filterSize = 3;
    double clipSigma = 3.0;       ///< iterative clip at median +- clipSigma * sigma
    int clipIterations = 10;      ///< at most; stops earlier when the clipped set no longer changes
    LevelEstimator estimator = LevelEstimator::Mode;
    /// A box is used when at least this fraction of its pixels is unmasked (SExtractor: one half);
    /// other boxes are filled in (see estimateBackground). In the source-masked pass the fraction is
    /// relative to what the median box keeps, so a crowded field, where every box loses half its
    /// pixels to sources, keeps its boxes. When no box qualifies, boxes with at least minValidPixels
    /// usable pixels are used instead (a warning is logged); when none has that many,
    /// estimateBackground throws DataError.
    double minValidFraction = 0.5;
    int minValidPixels = 64;
    /// Pixels with any of these mask bits are ignored.
    std::uint16_t ignoreMask = static_cast<std::uint16_t>((MaskBit::Bad | MaskBit::Saturated) |
                                                          (MaskBit::NoData | MaskBit::CosmicRay));

    /// Source masking. Sources are found on the image binned 2x2: a binned pixel whose 3x3 binned
    /// neighbourhood (6x6 pixels) sums to more than 36 level + sourceThresholdSigma * 6 rms, i.e. whose
    /// 36-pixel mean is sourceThresholdSigma of its own noise above the background; the detections are
    /// dilated by sourceDilatePx (a square, rounded up to even). Bright stars and galaxies otherwise
    /// pull the boxes they sit in upwards: on the simulator's crowded fields the level comes out
    /// 0.35-0.9% of the sky too high without it (mean over the image). About half of such a field gets
    /// masked.
    SourceMasking sourceMasking = SourceMasking::On;
    double sourceThresholdSigma = 3.0;
    int sourceDilatePx = 4;
    /// Detect-and-measure rounds, each against the previous round's background. 2 halves the error
    /// next to large bright sources (and the mean error on the simulator) for ~50% more time.
    int sourcePasses = 1;
};

/// A smooth background level and RMS map with the box grid they came from.
struct BackgroundMap {
    Image<float> level;      ///< background level per pixel, image units
    Image<float> rms;        ///< background noise (1 sigma) per pixel, image units, >= 0
    double globalLevel = 0;  ///< median over the boxes that had enough pixels (before filling)
    double globalRms = 0;    ///< same, for the RMS
    int meshX = 0, meshY = 0;  ///< number of boxes along x and y
    Image<float> meshLevel;  ///< meshX x meshY box values after filling and filtering (the spline nodes)
    Image<float> meshRms;
};

/// Estimates the background of `image` in the manner of SExtractor / photutils Background2D:
///   1. per box, the usable pixels are sigma-clipped around their median (iteratively, at
///      config.clipSigma, on a fine histogram: bins of 1/10 of a robust initial sigma, so the cost is
///      linear in the pixels) and reduced to a level (config.estimator) and an RMS (clipped standard
///      deviation, corrected for the clipping: a Gaussian clipped at 3 sigma until convergence shows a
///      standard deviation 1.5% low, and the correction restores it);
///   2. boxes with too few usable pixels (see BackgroundConfig::minValidFraction) are filled in ring
///      by ring from the valid ones: from a plane fitted to the valid boxes within two boxes where
///      there are three or more (so a gradient continues into the hole), else from the mean of the
///      filled neighbours (so the level is held, not extrapolated, deep inside a masked area);
///   3. a median filter over the box grid (config.filterSize) removes boxes spoilt by a large source;
///   4. a natural bicubic spline through the box centres gives level and RMS at every pixel (C2, so no
///      box edges are visible), extended linearly outside the outermost box centres.
/// With config.sourceMasking On, steps 1-3 first run on every second row and column with a 5x5
/// filter; sources are detected against that background (see BackgroundConfig) and masked, and
/// steps 1-3 run again on all pixels, measuring image - first background per box and adding it to the
/// first background's box value: the gradient inside a box then neither widens the RMS nor biases the
/// level when masking leaves only one side of a box. config.sourcePasses repeats the detection and
/// this measurement. With it Off, one plain pass (the RMS then includes any gradient inside a box).
/// `mask` may be empty (no mask) or the image's size; pixels with any bit of config.ignoreMask, and
/// non-finite pixels, are not used. Throws DataError when the image is empty, the mask has another
/// size or no box has enough usable pixels, ConfigError (naming the field) for an invalid config.
BackgroundMap estimateBackground(const Image<float>& image, const Image<std::uint16_t>& mask,
                                 const BackgroundConfig& config);
/// The same, into `out`, reusing out.level and out.rms when they already have the image's size.
void estimateBackground(const Image<float>& image, const Image<std::uint16_t>& mask, const BackgroundConfig& config,
                        BackgroundMap& out);

/// Mask bits that make varianceMap / sanitizeVariance give a pixel +inf variance.
inline constexpr std::uint16_t kInfiniteVarianceMask =
    static_cast<std::uint16_t>((MaskBit::Bad | MaskBit::Saturated) | (MaskBit::NoData | MaskBit::CosmicRay));

/// Per-pixel variance in image units squared (ADU^2), the noise model of the simulator and of a CCD:
///   known gain g (finite, > 0):  var = (B + max(I - B, 0)) / g + (readNoise / g)^2
///     where B is bkg.level clamped at >= 0: sky plus source Poisson noise plus read noise. The source
///     term uses the noisy pixel value I (there is nothing better before a model exists), which puts
///     the variance of sky pixels 2-3% high (normalised residuals have a width of 0.98-0.99 on the
///     simulator; the upper half of the noise counts as source). A NaN read noise (a header without
///     RDNOISE) is taken from the background instead: the part of globalRms^2 that the sky's Poisson
///     noise globalLevel / g does not explain. When the measured globalRms^2 exceeds 1.5 x that
///     model's sky variance (a sky-subtracted or rescaled image, e.g. the real DECam cutouts: level
///     -2 ADU, RMS 52 ADU, GAIN 4.15), the measured rms^2 map is the sky term instead:
///     var = rms^2 + max(I - B, 0) / g.
///   unknown gain (NaN or <= 0):  var = rms^2 + max(I - B, 0) / gEff
///     with the measured background RMS map for the sky + read noise, and an effective gain for the
///     source term from the global background: rms^2 = level / g + (rn / g)^2 solved for g when
///     readNoiseElectrons is finite and > 0, else gEff = level / rms^2 (which ignores the read noise,
///     so it underestimates g and overestimates the source variance: the safe side). When the global
///     level is <= 0 (a background-subtracted image) the source term is left out.
/// Pixels that are not finite in `image`, or have any of `infiniteMask` in `mask` (when given), get
/// +inf. Throws DataError when the maps or the mask do not match the image's size, or when the read
/// noise is negative.
Image<float> varianceMap(const Image<float>& image, const BackgroundMap& bkg, double gainElectronsPerAdu,
                         double readNoiseElectrons, const Image<std::uint16_t>* mask = nullptr,
                         std::uint16_t infiniteMask = kInfiniteVarianceMask);
/// The same, into `out` (reused when it has the image's size; must not be one of the inputs, else
/// DataError).
void varianceMap(const Image<float>& image, const BackgroundMap& bkg, double gainElectronsPerAdu,
                 double readNoiseElectrons, const Image<std::uint16_t>* mask, std::uint16_t infiniteMask,
                 Image<float>& out);

/// For images that come with their own variance plane (VARIANCE, or 1/WEIGHT, or ERR^2, see
/// fits::readImagePlanes): validates it in place. Pixels whose variance is not finite or <= 0 (zero
/// weight, no coverage) get +inf variance and the NoData bit in `mask`; pixels with any of
/// `infiniteMask` already in `mask` get +inf variance. `mask` must have the variance's size or be
/// empty, in which case it is created (all zero) first. Returns the number of pixels with +inf variance
/// afterwards. Throws DataError when the sizes differ or the variance is empty.
std::size_t sanitizeVariance(Image<float>& variance, Image<std::uint16_t>& mask,
                             std::uint16_t infiniteMask = kInfiniteVarianceMask);

}  // namespace astrid::background
