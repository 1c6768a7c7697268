#pragma once
// Circular aperture photometry with exact pixel overlap, several radii at once, and a local
// background from an annulus.
//
// Geometry: a pixel contributes value x w, w the exact area of its unit square inside the circle
// (SEP / photutils method "exact"; our own closed form, docs/algorithms.md). Pixel (i, j) is the
// square [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]; the aperture is the disc of radius r centred on the
// (continuous) position.
//
// Per position and radius:
//   rawSum  = sum_usable w d                    (no background)
//   area    = sum_usable w                      (px^2; pi r^2 when nothing is missing)
//   flux    = rawSum - area x b                 (b the local background per pixel, 0 without one)
//   fluxErr = sqrt(sum_usable w^2 v + (area x sigma_b)^2)
// "Usable": inside the image, no badMaskBits bit, finite value, finite non-negative variance. The
// missing area (masked or off the image) is reported, never filled in: a Masked or Edge flux is the
// flux of the usable part. w^2 v (not w v as SEP and photutils do) is the variance of the estimator
// sum w d for independent pixels; the two differ only on the boundary pixels.
//
// Local background: the pixels whose centres lie in the annulus rIn <= d < rOut (centre membership,
// as photutils' ApertureStats does for everything but the sum), usable ones only, iteratively
// sigma-clipped about the median (clipSigma x the standard deviation of the kept values, up to
// clipIterations passes or until nothing changes). b is their median (Median) or
// 2.5 median - 1.5 mean (Mode, SExtractor's estimator, for crowded annuli); its error sigma_b is
// sqrt(pi / 2) s / sqrt(n) for the median and 2.137 s / sqrt(n) for the mode (their efficiencies for
// Gaussian noise), s the clipped standard deviation, n the kept pixels. Other sources in the annulus
// are the clipping's job; neighbours bright enough to matter should be masked by the caller.
#include <cstdint>
#include <span>
#include <vector>

#include "astrid/core/image.hpp"
#include "astrid/photometry/flags.hpp"

namespace astrid::photometry {

/// The exact area (px^2) of the intersection of the circle centred at (cx, cy) with radius r and the
/// axis-aligned rectangle [x0, x1] x [y0, y1] (x0 <= x1, y0 <= y1). 0 for r <= 0. Absolute error
/// ~1e-15 r^2. For one pixel (i, j) pass [i - 0.5, i + 0.5] x [j - 0.5, j + 0.5].
double circleRectOverlap(double cx, double cy, double r, double x0, double y0, double x1, double y1) noexcept;

/// Overlap weights of a circle with every pixel of `box` (row-major, box.width() x box.height(),
/// written into `weights`, resized): the exact area of pixel (x, y) inside the circle, in [0, 1];
/// exactly 1 for a pixel entirely inside and exactly 0 for one entirely outside. Pixels of the box
/// need not be inside any image. The box should cover [cx - r - 0.5, cx + r + 0.5] (and the same
/// in y) to hold the whole circle.
void circleOverlapWeights(double cx, double cy, double r, const Box& box, std::vector<double>& weights);

/// How the local background per pixel is estimated from the annulus.
enum class LocalBackground {
    None,    ///< no annulus: flux = rawSum (the image is background-subtracted and trusted)
    Median,  ///< sigma-clipped median of the annulus pixels
    Mode,    ///< 2.5 median - 1.5 mean of the sigma-clipped annulus pixels (SExtractor)
};

/// Parameters of aperturePhotometry. Radii in pixels.
struct ApertureConfig {
    std::vector<double> radiiPx{3.0, 5.0, 8.0};  ///< aperture radii, each > 0 (any order)
    LocalBackground background = LocalBackground::Median;
    double annulusInnerPx = 12.0;  ///< annulus rIn; rIn >= 0, rOut > rIn
    double annulusOuterPx = 20.0;  ///< annulus rOut
    double clipSigma = 3.0;        ///< annulus clipping threshold (> 0)
    int clipIterations = 5;        ///< passes at most (>= 0; 0: no clipping)
    int minBackgroundPixels = 10;  ///< fewer usable annulus pixels (after clipping): NoBackground
    std::uint16_t badMaskBits = 0xFFFF;  ///< mask bits that make a pixel unusable
    std::uint16_t saturatedMaskBits = bits(MaskBit::Saturated);  ///< bits that set Saturated
};

/// One aperture at one position. Units: flux, rawSum and fluxErr in image units, area in px^2.
struct ApertureSum {
    double radiusPx = 0.0;
    double flux = 0.0;         ///< rawSum - area x background; NaN only with OffImage or NoBackground
    double fluxErr = 0.0;      ///< 1 sigma (see the top of this header); NaN with flux
    double rawSum = 0.0;       ///< sum of w d over usable pixels, no background (NaN only with OffImage)
    double area = 0.0;         ///< sum of w over usable pixels
    double missingArea = 0.0;  ///< overlap area left out (masked, unusable or off the image)
    int nBad = 0;              ///< pixels inside the image with w > 0 that were not usable
    std::uint32_t flags = 0;   ///< PhotFlag bits: OffImage, Edge, Masked, Saturated, NoBackground
};

/// All apertures at one position, in the order of ApertureConfig::radiiPx.
struct ApertureResult {
    double x = 0.0, y = 0.0;
    std::vector<ApertureSum> apertures;
    double background = 0.0;     ///< local background per pixel (image units); 0 with LocalBackground::None,
                                 ///< NaN with NoBackground or OffImage
    double backgroundErr = 0.0;  ///< 1-sigma error of `background` (per pixel)
    double backgroundRms = 0.0;  ///< clipped standard deviation of the annulus pixels
    int nBackground = 0;         ///< annulus pixels kept after clipping
    std::uint32_t flags = 0;     ///< OR of the apertures' flags
};

/// Aperture photometry at each position (results in the same order). Single-threaded; the image's
/// three planes must have the same size (an empty mask plane means "no mask bits"). Throws
/// ConfigError naming the field for an invalid config, DataError when the planes differ in size.
std::vector<ApertureResult> aperturePhotometry(const MaskedImage& image, std::span<const PixelPosition> positions,
                                               const ApertureConfig& config = {});

/// One position (as the batch call).
ApertureResult aperturePhotometry(const MaskedImage& image, double x, double y, const ApertureConfig& config = {});

}  // namespace astrid::photometry
