#pragma once
// Star matching between a science and a reference star list, and the fit of the PixelMap correction.
//
// Two ways in:
//   matchStars    a guess map (normally PixelMap::fromWcs) predicts each science star's reference
//                 position; nearest neighbours within a small radius are paired and the correction
//                 polynomial is fitted robustly (weighted, iteratively clipped). ~10 ms for 3000 stars;
//                 needs the guess right to a few px (a common shift up to offsetSearchPx is found first).
//   matchPatterns no usable guess: triangles of the brightest stars are compared through their
//                 similarity invariants (side ratios, as Groth 1986 / Valdes et al. 1995 / astroalign),
//                 each candidate triangle pair proposes a similarity transform that is scored against
//                 the bright stars; the best one seeds matchStars. Any rotation, mirroring (optional),
//                 scale within MatchConfig::patternScale +- patternScaleTolerance, any offset that
//                 leaves ~30% of the bright stars in common. 3-200 ms; a failure scans every
//                 candidate (~0.2 s) before throwing.
// matchStarLists chooses: the guess when it works, patterns otherwise.
//
// Positions are 0-based pixels (centres at integers); fluxes in any units consistent within a list.
#include <string>
#include <vector>

#include "astrid/registration/pixel_map.hpp"

namespace astrid::registration {

/// One detected star: centroid (pixels) and flux (ADU or any linear unit; only ranks and ratios used).
struct MatchPoint {
    double x = 0.0, y = 0.0, flux = 0.0;
};

/// A science star and its reference counterpart.
struct MatchedPair {
    MatchPoint sci;
    MatchPoint ref;
};

/// Whether pattern matching may return a mirrored (parity-flipped) transform.
enum class Mirroring { Allowed, Forbidden };

/// Parameters of star matching. Radii are in reference pixels.
struct MatchConfig {
    // --- matching with a guess, and the refinement after pattern matching
    /// A science star pairs with the nearest reference star within this radius of its predicted
    /// position. Mismatches grow quickly with it in crowded fields (3000 stars/Mpx: ~8% of stars have
    /// an unrelated neighbour within 3 px), so a larger guess error is absorbed by offsetSearchPx.
    double searchRadiusPx = 3.0;
    /// Before pairing, the brightest stars vote for a common shift of the guess within this radius
    /// (2-D histogram of offsets, 1 px bins), and then the brightest stars (as many as keep chance
    /// neighbours rare) are paired within half this radius to fit a first affine correction; 0
    /// disables both. Absorbs WCS pointing errors of tens of px and scale/rotation errors of
    /// several px across the field.
    double offsetSearchPx = 20.0;
    /// Correction polynomial order (1 affine, 2, 3). Lowered automatically while there are fewer than
    /// 3 x terms(order) pairs; MatchResult::order reports what was fitted.
    int correctionOrder = 1;
    /// The fit is weighted and clipped by brightness bin (up to 8 bins of >= 40 pairs), because
    /// centroid errors grow steeply towards faint stars: a pair whose residual exceeds clipSigma x
    /// its bin's robust per-axis scatter (median residual / sqrt(2 ln 2)) is rejected, the others
    /// weigh 1 / scatter^2; the fit is repeated until nothing changes, at most clipIterations times.
    double clipSigma = 3.0;
    int clipIterations = 10;
    /// Fewer pairs than this after clipping is a failure (DataError).
    int minMatches = 6;
    /// rmsPx is computed over this many of the brightest used pairs (by science flux).
    int rmsBrightest = 50;
    /// A final rmsPx above this means the pairs are not one consistent transform (DataError).
    double maxRmsPx = 1.0;

    // --- pattern matching
    int patternStars = 40;           ///< brightest stars of each list that form triangles (C(n,3) each)
    int patternVerifyStars = 150;    ///< brightest stars of each list that score a candidate transform
    double patternTolerance = 0.01;  ///< max difference of the two side-ratio invariants
    double patternMinSidePx = 8.0;   ///< triangles with a shorter side are too noisy to use
    double patternRadiusPx = 3.0;    ///< a scored star counts when it lands this close to a reference star
    double patternScale = 1.0;       ///< expected reference px per science px
    double patternScaleTolerance = 0.1;  ///< allowed fractional deviation from patternScale
    Mirroring mirroring = Mirroring::Allowed;
    /// A candidate transform must place at least this many scored stars on reference stars, and
    /// well above the chance level 3 + lambda (lambda = expected chance coincidences from the star
    /// densities): max(minPatternMatches, 3 + 2 lambda + 6 sqrt(lambda)).
    int minPatternMatches = 8;
};

/// How the pairs of a MatchResult were found.
enum class MatchMethod { Guess, Pattern };

/// The outcome of matching. All residuals are reference pixels, 2-D: rms = sqrt(<dx^2 + dy^2>)
/// (the per-axis rms is this / sqrt(2)).
struct MatchResult {
    PixelMap map;                     ///< the guess's base with the fitted correction
    MatchMethod method = MatchMethod::Guess;
    int order = 1;                    ///< order of the fitted correction
    int nScience = 0, nReference = 0; ///< input list sizes
    int nMatched = 0;                 ///< science stars paired within searchRadiusPx (final pass)
    int nUsed = 0;                    ///< pairs kept by the clipping (the fit's inliers)
    double rmsPx = 0.0;               ///< residual rms of the rmsBrightest brightest used pairs
    double rmsAllPx = 0.0;            ///< residual rms of all used pairs
    double offsetXPx = 0.0, offsetYPx = 0.0;  ///< shift the offset search applied to the guess (ref px)
    int nPatternMatches = 0;          ///< Pattern: scored stars the best triangle transform placed
    std::vector<MatchedPair> pairs;   ///< the used pairs (inliers), brightest (science flux) first
};

/// Pairs the lists through `guess` and fits its correction (see the file comment). The result's map
/// is guess.withCorrection(fitted): the guess's own correction is used only to predict positions.
/// Throws DataError (with the counts) when either list has fewer than minMatches stars, fewer than
/// minMatches pairs survive, the fit is degenerate or its rmsPx exceeds maxRmsPx; DataError for an
/// invalid config.
MatchResult matchStars(const std::vector<MatchPoint>& sciStars, const std::vector<MatchPoint>& refStars,
                       const PixelMap& guess, const MatchConfig& config = {});

/// Pattern matching without a guess: the result's map has a similarity-transform base (from the best
/// triangle match) and the fitted correction. Throws DataError naming the counts when a list has
/// fewer than 3 usable stars or no candidate reaches minPatternMatches (lists that do not overlap,
/// a scale outside the tolerance, a mirrored pair with Mirroring::Forbidden), and as matchStars.
MatchResult matchPatterns(const std::vector<MatchPoint>& sciStars, const std::vector<MatchPoint>& refStars,
                          const MatchConfig& config = {});

/// Pattern matching on top of a base map that is right in shape but wrong in pointing (e.g. two
/// WCSs with a large zero-point error): the science stars are moved through `base.applyBase` first,
/// the triangle match is done there, and the result keeps the base (and so the WCS distortion).
MatchResult matchPatterns(const std::vector<MatchPoint>& sciStars, const std::vector<MatchPoint>& refStars,
                          const PixelMap& base, const MatchConfig& config = {});

/// matchStars through `guess` when it is given and succeeds, else matchPatterns (on top of the
/// guess's base when there is one, else without). Throws what matchPatterns throws.
MatchResult matchStarLists(const std::vector<MatchPoint>& sciStars, const std::vector<MatchPoint>& refStars,
                           const PixelMap* guess, const MatchConfig& config = {});

}  // namespace astrid::registration
