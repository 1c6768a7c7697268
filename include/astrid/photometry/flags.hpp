#pragma once
// Flags and the position type shared by every photometry result.
//
// Conventions of the whole module: pixels 0-based with pixel centres at integer coordinates, x the
// column (pixel (x, y) covers [x - 0.5, x + 0.5] x [y - 0.5, y + 0.5]); fluxes in image units (the
// sum of pixel values, e.g. ADU); variances in image units squared; masks are MaskBit planes.
// A result never carries a silent NaN: a flux is NaN only together with a flag that says why
// (OffImage, NoBackground, TooFewPixels, FitFailed, InvalidInput).
#include <cstdint>
#include <string>

namespace astrid::photometry {

/// A position on the pixel grid (0-based, centres at integers, x the column).
struct PixelPosition {
    double x = 0.0;
    double y = 0.0;
};

/// Bits of the `flags` field of every photometry result. Several may be set.
enum class PhotFlag : std::uint32_t {
    OffImage = 1u << 0,      ///< position not finite or its pixel outside the image: nothing measured (NaN)
    Edge = 1u << 1,          ///< the aperture / PSF stamp reaches beyond the image: measured on the part inside
    Masked = 1u << 2,        ///< pixels left out (a badMaskBits bit, non-finite value or unusable variance)
    Saturated = 1u << 3,     ///< a pixel carrying a saturatedMaskBits bit lies in the aperture / stamp
    NoBackground = 1u << 4,  ///< too few usable annulus pixels: background-subtracted fluxes NaN
    TooFewPixels = 1u << 5,  ///< PSF fit: too few usable pixels or too little of the PSF on them (NaN)
    FitFailed = 1u << 6,     ///< PSF fit: singular normal equations or an unusable PSF stamp (NaN)
    UpperLimit = 1u << 7,    ///< magnitude: the flux is below the detection threshold; mag is a limit
    InvalidInput = 1u << 8,  ///< magnitude / calibration: flux or error not finite, error <= 0 (NaN)
    TooFewStars = 1u << 9,   ///< zero point / ensemble: fewer stars than the configured minimum
    NoBaseline = 1u << 10,   ///< ensemble: a star without enough valid epochs for a baseline (not used)
    Interpolated = 1u << 11, ///< PSF fit: pixels interpolated over a defect (a bad column, a cosmic ray) were used
};
constexpr std::uint32_t bits(PhotFlag f) noexcept { return static_cast<std::uint32_t>(f); }
constexpr std::uint32_t operator|(PhotFlag a, PhotFlag b) noexcept { return bits(a) | bits(b); }
constexpr std::uint32_t operator|(std::uint32_t a, PhotFlag b) noexcept { return a | bits(b); }
constexpr bool hasFlag(std::uint32_t flags, PhotFlag f) noexcept { return (flags & bits(f)) != 0; }

/// Flags that mean "no number was measured": the flux (or magnitude, zero point) is NaN.
inline constexpr std::uint32_t kNoMeasurementFlags = PhotFlag::OffImage | PhotFlag::NoBackground |
                                                     PhotFlag::TooFewPixels | PhotFlag::FitFailed |
                                                     PhotFlag::InvalidInput;

/// The names of the set bits, '|'-separated ("edge|masked"); "" for 0. For logs and CSV export.
std::string flagNames(std::uint32_t flags);

}  // namespace astrid::photometry
