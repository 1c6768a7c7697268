#pragma once
// Photometric scaling between the reference and a science image from matched stars.
#include <vector>

#include "astrid/registration/match.hpp"

namespace astrid::registration {

struct FluxRatioConfig {
    /// Only the brightest pairs (by sqrt(sci flux x ref flux)) are used: a faint star's log ratio is
    /// noisy and, at S/N ~ 10, biased by ~sigma^2 / 2 (0.5%). 0 uses every pair.
    int brightestPairs = 100;
    /// Log ratios further than clipSigma x 1.4826 MAD from the median are rejected; repeated until
    /// nothing changes or maxIterations.
    double clipSigma = 3.0;
    int maxIterations = 10;
    /// Fewer usable pairs than this is a failure.
    int minPairs = 3;
};

/// ratio = reference flux / science flux: multiply the science image by it, or divide the
/// (resampled, flux-conserved) reference by it, to put both on one photometric scale.
struct FluxRatio {
    double ratio = 1.0;
    double error = 0.0;   ///< 1-sigma uncertainty of ratio (from the scatter of the used pairs)
    double scatter = 0.0; ///< rms scatter of the used pairs' ln(ratio) (fractional scatter per star)
    int nUsed = 0;        ///< pairs in the final estimate
    int nRejected = 0;    ///< candidates (brightest, positive finite fluxes) clipped as outliers
};

/// Robust ratio of reference to science flux: among pairs with positive finite fluxes, the
/// brightestPairs brightest; their ln(ref / sci) is MAD-clipped around the median, and the ratio is
/// exp(mean of the survivors), its error ratio x std / sqrt(n). Saturated or blended stars are
/// outliers to the clipping; exclude known-saturated stars beforehand if they might be the majority
/// of the brightest. Throws DataError (with the counts) when fewer than minPairs pairs are usable,
/// DataError for an invalid config.
FluxRatio fluxRatio(const std::vector<MatchedPair>& pairs, const FluxRatioConfig& config = {});

}  // namespace astrid::registration
