#pragma once
// Resampling the reference onto the science pixel grid with a Lanczos3 kernel.
//
// For every science (output) pixel p the map gives the reference position q = map(p); the output is
//   image(p)    = |det J(p)| * sum_ij wx_i wy_j ref(ix + i, iy + j)
//   variance(p) = det J(p)^2 * sum_ij wx_i^2 wy_j^2 var(ix + i, iy + j)   (VarianceResampling::Propagate)
//   mask(p)     = OR of mask(ix + i, iy + j) over taps with |wx_i wy_j| >= maskWeightThreshold
// with i, j = -2..3 around ix = floor(q.x), iy = floor(q.y), and wx, wy the Lanczos3 weights
// L(d) = sinc(d) sinc(d / 3) of the six tap distances, normalised on each axis so that they
// reproduce constant AND linear functions exactly (sum w = 1, sum k w_k = phase; plain normalised
// Lanczos3 misses the second by up to 0.016 px, which would shift every resampled star's centroid
// by as much; see lanczos3Weights). det J = reference pixel area per science pixel: reference values are fluxes
// per reference pixel, so multiplying by it makes them fluxes per science pixel and a star keeps its
// total flux when the pixel scales differ (FluxScaling::Conserve).
//
// Noise: Lanczos interpolation correlates the noise of neighbouring output pixels and lowers the
// per-pixel variance (to 0.6-1 of the input, depending on the sub-pixel phase); by default
// `variance` is the exact per-pixel variance of the output, not the variance of a sum of output
// pixels. Whoever sums pixels (aperture photometry, PSF fits, ZOGY's white-noise model) must account
// for the covariance, or ask for VarianceResampling::NoisePower (the local noise power per pixel).
//
// Edges and missing data: an output pixel whose reference position is outside the reference image
// (beyond half a pixel from the edge pixel centres), or not finite, gets mask NoData, image 0 and
// variance +inf. Where only part of the 6x6 footprint is inside, the inside taps are renormalised
// and the pixel gets Edge. A reference pixel with a non-finite value or a non-finite/negative
// variance is treated as NoData (value 0) and marks the outputs it touches NoData; every output
// pixel carrying NoData gets image 0 and variance +inf.
#include "astrid/core/image.hpp"
#include "astrid/registration/pixel_map.hpp"

namespace astrid::registration {

/// Whether resampling preserves total flux (surface brightness x pixel area) or pixel values.
enum class FluxScaling {
    Conserve,         ///< multiply by |det J|: a star's total flux is unchanged (for photometry, ZOGY)
    SurfaceBrightness ///< plain interpolation: values stay "per reference pixel"
};

/// What the output variance plane describes.
enum class VarianceResampling {
    /// det J^2 sum (wx wy)^2 var: the exact variance of each output pixel's value. Lanczos averages
    /// neighbours, so this is 0.6-1 x the input (by sub-pixel phase) while the noise becomes
    /// correlated: right for the per-pixel error of one pixel, too low for sums of pixels.
    Propagate,
    /// |det J| sum |wx wy| var / sum |wx wy|: the local noise power per science pixel (the variance a
    /// white-noise model should assume; sums over many pixels have this variance per pixel). Equals
    /// the input variance x |det J| where the variance is smooth, and stays positive next to steep
    /// variance features (bright star cores), where resampling the variance plane like an image would
    /// ring below zero. What ZOGY wants.
    NoisePower,
};

struct ResampleConfig {
    FluxScaling flux = FluxScaling::Conserve;
    VarianceResampling variance = VarianceResampling::Propagate;
    /// A reference pixel's mask bits reach an output pixel when its 2-D kernel weight |wx wy| is at
    /// least this: a flagged pixel can leak at most this fraction of its deviation into an unflagged
    /// output pixel (a 4000 ADU hot column: <= 4 ADU). The Lanczos3 lobes are ~0.025 at 2.5 px, so
    /// the default grows a masked pixel by 2-3 px in every direction; 0 uses the whole 6x6 footprint.
    double maskWeightThreshold = 1e-3;
};

/// The 1-D resampling weights for taps at offsets -2..3 from floor(position), for a sub-pixel phase
/// in [0, 1]: Lanczos3, normalised to sum 1 and corrected (window-weighted, minimal) so that
/// sum_k k w_k = phase exactly. w(0) is the unit impulse at offset 0; w(1 - p) is w(p) mirrored. The
/// resampler uses these values tabulated at 1/1024 px. Exposed for tests.
std::array<double, 6> lanczos3Weights(double phase) noexcept;

/// Resamples `reference` onto an outWidth x outHeight science grid through `map` (science pixel ->
/// reference pixel). Values in the reference's units (per science pixel with FluxScaling::Conserve),
/// variance in those units squared. Single-threaded (measured on one shared core, AVX2 kernel:
/// 1024^2 0.03 s, 2048^2 0.12 s, 4096^2 0.5 s). Throws DataError when the reference is empty, its
/// image, mask and variance planes differ in size, the output size is not positive or the config is
/// invalid.
MaskedImage resample(const MaskedImage& reference, const PixelMap& map, int outWidth, int outHeight,
                     const ResampleConfig& config = {});

/// The same into an existing output whose size defines the science grid (every pixel of all three
/// planes is overwritten). Reusing one output across epochs saves the first-touch page faults of
/// fresh planes (~15% of the time at 4096^2). Throws as resample, and DataError when the output's
/// planes differ in size or it is the reference itself.
void resampleInto(const MaskedImage& reference, const PixelMap& map, MaskedImage& out,
                  const ResampleConfig& config = {});

}  // namespace astrid::registration
