#pragma once
// Co-adding the exposures of one epoch (`astrid stack`): a deeper reference or science image from
// several exposures, before differencing.
//
//   inputs[k] = prepareImage(readImagePlanes(file_k))   (mask, background, variance, stars, PSF, cosmic rays)
//   stack     = stackImages(inputs, config, prepare)    (onto inputs[0]'s pixel grid and flux scale)
//   writeStackFits(path, stack)                         (image, VARIANCE, COUNT; read back by readImagePlanes)
//
// Per input: placed on the first input's grid (used pixel for pixel when its WCS says it is already
// there; else registered like differenceImages registers a reference: stars matched through the WCS
// guess, asterism matching without a WCS, the WCSs alone when stars give no consistent fit; Lanczos3,
// flux-conserving), scaled to the first input's photometry (the flux ratio of paired stars from
// cross-convolved PSF fits, as differenceImages measures it; 1 when it cannot be measured), weighted
// by the inverse of its sky variance. Per pixel: a clipped, weighted mean (see StackConfig). Conventions: pixels 0-based, centres at integers (core/image.hpp);
// values in the first input's ADU, background-subtracted; variance in ADU^2. MPI-free, single-threaded.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "astrid/pipeline/config.hpp"
#include "astrid/pipeline/difference.hpp"

namespace astrid::pipeline {

/// Parameters of stackImages.
struct StackConfig {
    registration::MatchConfig match;
    /// Lanczos3 resampling of inputs that are not on the first input's grid (the variance is always the
    /// local noise power, VarianceResampling::NoisePower, as differenceImages uses: what ZOGY models).
    registration::ResampleConfig resample;
    registration::FluxRatioConfig fluxRatio;
    /// An input whose WCS puts every pixel within this of the same pixel of the first input (checked
    /// on a 16 px grid and the edges) is used as it is, without resampling.
    double sameGridTolerancePx = 0.01;
    /// Per-pixel clipping, where at least clipMinInputs inputs contribute: a value y_k is rejected
    /// when |y_k - m| > clipSigma sqrt(V_k + pi/(2n) median(V) + (clipAmplitudeFraction m)^2), with m
    /// the median of the n values, V their variances (source noise included). The amplitude term
    /// keeps the sharper exposures' star cores (seeing differs between exposures) - SWarp's clipped
    /// mean (Gruen, Seitz & Bernstein 2014, PASP 126, 158; their defaults 4 and 0.3).
    double clipSigma = 4.0;
    double clipAmplitudeFraction = 0.3;
    int clipMinInputs = 3;
};

/// How an input reached the first input's grid.
enum class StackPlacement {
    SameGrid,  ///< already on it (WCS check): used pixel for pixel
    Matched,   ///< registered with stars matched through the WCS guess
    Pattern,   ///< registered with asterism (triangle) matching
    WcsOnly,   ///< star matching failed: registered with the WCSs alone
};
std::string placementName(StackPlacement p);

/// What happened to one input.
struct StackInputInfo {
    std::string label;                 ///< PreparedImage::label ("file[hdu]")
    StackPlacement placement = StackPlacement::SameGrid;
    int matchedStars = 0;              ///< registration inliers (0 for SameGrid and WcsOnly)
    double astrometricRmsPx = 0.0;     ///< matcher's residual rms (NaN for SameGrid and WcsOnly)
    double scale = 1.0;                ///< the input was multiplied by this (1 / its flux ratio to the first)
    double scaleError = 0.0;
    int scaleStars = 0;                ///< stars in the ratio; 0 = not measurable, scale 1 used
    double fwhmPx = 0.0;               ///< the input's PSF FWHM
    double skyRms = 0.0;               ///< global sky noise, the input's ADU
    double weightShare = 0.0;          ///< its fraction of the total weight, summed over all pixels
    std::size_t usedPixels = 0;        ///< pixels where it contributed
    std::size_t clippedPixels = 0;     ///< pixels where it was rejected by the clipping
};

/// The co-added image.
struct StackResult {
    /// Weighted mean (first input's ADU, background-subtracted), mask and variance (ADU^2). Pixels to
    /// which no input contributes: image 0, variance +inf, mask NoData OR-ed with the inputs' bits there.
    /// Elsewhere the mask carries only the contributing inputs' non-fatal bits (Edge, Interpolated).
    MaskedImage pixels;
    Image<std::uint16_t> count;        ///< inputs contributing per pixel (after clipping)
    /// The first input's header with the stack's keys: NCOMBINE, IMCMBnnn (input names, with scale and
    /// placement in the comment), GAIN and RDNOISE of the weighted mean (so a later varianceMap is right
    /// even without the VARIANCE plane; removed when an input has no GAIN), no SATURATE (saturated
    /// pixels are masked per input and never reach the stack), BKGSUB = T.
    fits::Header header;
    std::vector<StackInputInfo> inputs;
    double gain = 0.0;                 ///< effective e-/ADU of the mean (NaN when unknown)
    double readNoise = 0.0;            ///< effective read noise, e- at that gain (NaN when unknown)
    std::size_t clippedValues = 0;     ///< input pixels rejected by the clipping, all inputs
    std::size_t uncoveredPixels = 0;   ///< pixels to which no input contributes
};

/// Stacks `inputs` (each from prepareImage) onto inputs[0]'s grid and flux scale (see the file
/// comment and StackConfig). Weights: 1 / (scale^2 x the input's sky variance map), a per-pixel
/// inverse variance without the source term: weights that follow a pixel's own (noisy) value would
/// bias the mean low and give bright stars another effective PSF than faint ones when the seeing
/// differs between exposures (SWarp's background weight maps do the same). The output variance is
/// sum w^2 V / (sum w)^2 with the full variances V. `prepare.background` measures the sky noise map.
/// Throws DataError naming the input when `inputs` is empty, an input has no PSF, an input has another
/// size and one of the two has no WCS, or registration fails without a WCS to fall back on;
/// StageError (Background, Registration) naming the input for failures in those stages.
StackResult stackImages(const std::vector<PreparedImage>& inputs, const StackConfig& config,
                        const PrepareConfig& prepare = {});

/// Writes the stack: the primary HDU is the image (float32, NaN where no input contributes) with
/// stack.header, then image extensions VARIANCE (ADU^2, +inf where uncovered) and COUNT (inputs per
/// pixel). fits::readImagePlanes reads the VARIANCE plane back, so prepareImage uses it. Throws
/// FitsError.
void writeStackFits(const std::string& path, const StackResult& stack);

}  // namespace astrid::pipeline
