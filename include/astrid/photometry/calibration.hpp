#pragma once
// From fluxes to calibrated light curves: magnitudes and upper limits, the zero point of an epoch
// from field stars, and the ensemble normalisation of forced fluxes across epochs.
//
// Magnitudes are zeroPoint - 2.5 log10(flux), flux in image units (the zero point is the magnitude of
// a source of flux 1). Errors are 1 sigma. Algorithms and references: docs/algorithms.md.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "astrid/photometry/flags.hpp"

namespace astrid::photometry {

/// 2.5 / ln 10: d(mag) = kMagPerLnFlux x d(flux) / flux.
inline constexpr double kMagPerLnFlux = 1.0857362047581294;

/// When a flux is a detection and how deep its upper limit is. The defaults are those of the ZTF
/// forced-photometry service (Masci et al. 2019, PASP 131, 018003; its guide's SNT = 3, SNU = 5):
/// at a position fixed in advance there is one trial per epoch, not a search over the image, so a
/// 3-sigma threshold has a 0.13% one-sided false-positive rate per measurement; the limit is
/// quoted at 5 sigma so that a source brighter than it would have been detected with high
/// probability (a source exactly at a 3-sigma limit would be missed half the time).
struct MagnitudeConfig {
    double detectionSigma = 3.0;   ///< flux / fluxErr >= this: a detection (> 0)
    double upperLimitSigma = 5.0;  ///< otherwise mag = zp - 2.5 log10(upperLimitSigma x fluxErr) (> 0)
};

/// A magnitude or an upper limit.
struct Magnitude {
    double mag = 0.0;     ///< magnitude, or the limiting magnitude with UpperLimit; NaN with InvalidInput
    double magErr = 0.0;  ///< 1 sigma: sqrt((kMagPerLnFlux fluxErr / flux)^2 + zeroPointErr^2); NaN for a limit
    double snr = 0.0;     ///< flux / fluxErr (may be negative)
    std::uint32_t flags = 0;  ///< PhotFlag: UpperLimit, InvalidInput

    bool isUpperLimit() const noexcept { return hasFlag(flags, PhotFlag::UpperLimit); }
};

/// The magnitude of a flux, or an upper limit when flux / fluxErr < detectionSigma (negative
/// fluxes included). InvalidInput (mag NaN) when flux or fluxErr is not finite, fluxErr <= 0, or the
/// zero point is not finite. Throws ConfigError for a non-positive sigma in the config.
Magnitude toMagnitude(double flux, double fluxErr, double zeroPoint, double zeroPointErr = 0.0,
                      const MagnitudeConfig& config = {});

/// Parameters of the zero-point fit.
struct ZeroPointConfig {
    double clipSigma = 3.0;   ///< reject stars more than this many robust sigma from the median (> 0)
    int clipIterations = 5;   ///< clipping passes at most (>= 0)
    int minStars = 5;         ///< fewer stars kept: TooFewStars (the value is still given if any)
    double minSnr = 5.0;      ///< stars with flux / fluxErr below this are not used
};

/// The zero point of one image. zp = m_ref + 2.5 log10(flux) per star; see zeroPointFromMagnitudes.
struct ZeroPointResult {
    double zeroPoint = 0.0;     ///< mag of a source of flux 1 (image units); NaN with TooFewStars and nUsed 0
    double zeroPointErr = 0.0;  ///< 1 sigma (see zeroPointFromMagnitudes)
    double scatter = 0.0;       ///< robust standard deviation (1.4826 MAD) of the kept stars' zp, mag
    int nUsed = 0;              ///< stars in the final estimate
    int nClipped = 0;           ///< stars rejected by the clipping
    int nInvalid = 0;           ///< stars not usable (non-finite, flux <= 0, below minSnr)
    std::uint32_t flags = 0;    ///< TooFewStars
    std::vector<std::uint8_t> used;  ///< per input star: 1 if in the final estimate
};

/// Zero point from matched stars: `flux`, `fluxErr` measured in this image (image units) and their
/// catalogue magnitudes `refMag` (errors `refMagErr`, may be empty: 0). Per star zp_i = m_i +
/// 2.5 log10 F_i with sigma_i^2 = (kMagPerLnFlux sigma_F / F)^2 + sigma_m^2. Stars are clipped
/// iteratively about the median at clipSigma x 1.4826 MAD; the estimate is the inverse-variance
/// weighted mean of the kept ones, its error sqrt(1 / sum w) x max(1, sqrt(chi2 / (n - 1))) (the
/// formal error, inflated by the Birge ratio when the stars scatter more than their errors: colour
/// terms, PSF errors). Throws DataError when the spans differ in length, ConfigError for an invalid
/// config.
ZeroPointResult zeroPointFromMagnitudes(std::span<const double> flux, std::span<const double> fluxErr,
                                        std::span<const double> refMag, std::span<const double> refMagErr,
                                        const ZeroPointConfig& config = {});

/// Zero point relative to a reference image of known zero point: the stars' fluxes in the reference
/// become magnitudes refZeroPoint - 2.5 log10(refFlux) (errors from refFluxErr, which may be empty),
/// then as zeroPointFromMagnitudes. Reference stars with refFlux <= 0 or below minSnr are not used.
ZeroPointResult zeroPointFromFluxes(std::span<const double> flux, std::span<const double> fluxErr,
                                    std::span<const double> refFlux, std::span<const double> refFluxErr,
                                    double refZeroPoint, const ZeroPointConfig& config = {});

/// Forced fluxes of N stars over K epochs, row-major by star: value (star i, epoch k) at
/// [i * nEpochs + k]. fluxErr is empty or the same size. NaN marks a missing measurement.
struct FluxMatrix {
    int nStars = 0;
    int nEpochs = 0;
    std::vector<double> flux;
    std::vector<double> fluxErr;

    double& at(int star, int epoch) { return flux[index(star, epoch)]; }
    double at(int star, int epoch) const { return flux[index(star, epoch)]; }
    std::size_t index(int star, int epoch) const noexcept {
        return static_cast<std::size_t>(star) * static_cast<std::size_t>(nEpochs) + static_cast<std::size_t>(epoch);
    }
};

/// Parameters of the ensemble normalisation.
struct EnsembleConfig {
    double clipSigma = 3.0;    ///< per epoch, reject ratios beyond this many robust sigma (> 0)
    int clipIterations = 10;   ///< clipping passes at most per epoch (>= 0)
    int minStars = 5;          ///< (>= 2) fewer stars kept in an epoch: TooFewStars (the value is still given if any)
    int minEpochsPerStar = 3;  ///< a star needs this many valid epochs for a baseline, else NoBaseline
    double minSnr = 5.0;       ///< measurements with flux / fluxErr below this are not used (when errors given)
    int passes = 2;            ///< >= 1; later passes take the baselines from the corrected fluxes
};

/// Per-epoch multiplicative corrections: corrected flux = flux / correction.
struct EnsembleResult {
    std::vector<double> correction;     ///< c_k, per epoch; NaN when no star is usable (TooFewStars)
    std::vector<double> correctionErr;  ///< sigma_c_k
    std::vector<int> nStarsUsed;        ///< stars kept after clipping, per epoch
    std::vector<std::uint32_t> epochFlags;  ///< TooFewStars
    std::vector<double> baseline;       ///< per star: median over epochs of its (corrected) flux; NaN with NoBaseline
    std::vector<double> starScatter;    ///< per star: robust std (1.4826 MAD) of flux / (c_k baseline) over
                                        ///< epochs, a variability index; NaN with NoBaseline
    std::vector<std::uint32_t> starFlags;  ///< NoBaseline
};

/// Ensemble normalisation of N reference stars over K epochs (the DSA-110 / VAST style relative
/// photometry): baseline_i = median over epochs of F_ik; per epoch the ratios r_ik = F_ik / baseline_i
/// of the usable stars are clipped iteratively about their median at clipSigma x 1.4826 MAD;
/// c_k = the median of the kept ratios, sigma_c_k = sqrt(pi / 2) s / sqrt(n) (s the standard
/// deviation of the kept ratios about c_k; sqrt(pi / 2) is the median's efficiency). In later passes
/// baseline_i = median over epochs of F_ik / c_k. The corrections are relative to the baselines, so
/// their median over epochs is ~1. Variable stars drop out by the clipping as long as they are a
/// minority in every epoch. Throws DataError when the matrix sizes are inconsistent, ConfigError for
/// an invalid config.
EnsembleResult ensembleNormalization(const FluxMatrix& fluxes, const EnsembleConfig& config = {});

/// A flux divided by an epoch's correction, with the correction's error propagated:
/// F_norm = F / c, sigma_norm^2 = (sigma / c)^2 + (F sigma_c / c^2)^2.
struct NormalizedFlux {
    double flux = 0.0;
    double fluxErr = 0.0;
};
NormalizedFlux normalizeFlux(double flux, double fluxErr, double correction, double correctionErr) noexcept;

}  // namespace astrid::photometry
