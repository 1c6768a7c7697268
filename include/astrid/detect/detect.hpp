#pragma once
// Detection and measurement of candidates on a ZOGY difference (issue #4). No MPI, no I/O: the
// pipeline calls it on one difference and writes the rows.
//
// Inputs: a diff::ZogyResult (S_corr, D / F_D, the combined science + registered-reference mask with
// ZOGY's Edge bits, P_D, F_D, F_S) and, optionally, the known sources of both images on the science
// grid. Conventions: pixels 0-based with centres at integer coordinates, x the column; fluxes in
// science ADU (the flux scale of D / F_D), signed: negative for a source that faded; S_corr in sigma.
//
// What is done, and how (docs/algorithms.md, "Detection on S_corr", has the references):
//   pixels     a pixel takes part when S_corr is finite and it carries none of badMaskBits (by
//              default every bit but ZOGY's Edge). Masked and NaN pixels never join a footprint, so
//              they never make a candidate, and NaN never reaches a measurement.
//   footprints 8-connected pixels with S_corr >= footprintSigma (positive) or <= -footprintSigma
//              (negative), found in one pass of run-length labelling. A footprint is kept when its
//              extremum reaches thresholdSigma and it has at least minPixels pixels.
//   deblending two steps. (1) The footprint's pixels are flooded from the top down (a watershed on
//              |S_corr|): when two regions meet at a saddle, the one with the lower peak is a
//              separate source if it rises deblendMinProminenceSigma above the saddle and
//              deblendContrast x the footprint's highest peak, and itself reaches thresholdSigma
//              (the prominence form of SExtractor's multi-threshold deblending). (2) S_corr is
//              smoothed by P_D twice over and normalised by the sources' own noise, so a fainter
//              neighbour at 2 FWHM is often only a shoulder: the sources are fitted jointly and the
//              residual D - model, matched with P_D, is searched for a further source (at least
//              residualMinSeparationFwhm from the others, reaching thresholdSigma in its own noise
//              and deblendContrast x the highest peak); when one is added, the others are refitted
//              from where they are, and a source the new fit no longer needs (chi^2 over the
//              footprint rises by less than thresholdSigma^2 without it: the merged peak between
//              two close sources) is dropped (DAOPHOT's find - fit - subtract loop, up to
//              maxResidualSources). Sources of a footprint with several are flagged Blended; each
//              footprint pixel belongs to the source whose fitted model is largest there (areaPx).
//   position   Gaussian-windowed centroid on D (SExtractor's XWIN_IMAGE) with the window of P_D's
//              Gaussian-equivalent sigma, started from the S_corr peak refined by a 3-point Gaussian
//              fit per axis; the other sources of a blend are subtracted first (their PSF models at
//              the fitted fluxes) and masked pixels in the window take the PSF's value at the
//              window's flux. When it does not converge within max(1, FWHM / 2) px of the start, the
//              refined S_corr peak is kept and CentroidFailed is set.
//   flux       PSF fit of D / F_D with P_D (Lanczos-3 shifted to the centroid) at fixed position over
//              the pixels within fitRadiusFwhm x FWHM(P_D) of the source: F = sum(d P) / sum(P^2),
//              jointly (linear least squares) for the sources of one group. Equal to S / F_S for an
//              isolated source at a pixel centre. fluxErr = sqrt(V(S)) / F_S for an isolated
//              source: the background error (1 / F_D) sqrt((P^T P)^-1) times the noise inflation
//              sqrt(V(S) / F_S) read off at the peak pixel as |S| / (|S_corr| sqrt(F_S)), with S
//              recomputed there from D (S = F_D^2 D/F_D (x) P_D): it includes the source noise of
//              both images and the astrometric term exactly as S_corr does. snr = |flux| / fluxErr.
//              P_D, F_D and F_S are those of ZOGY's tile nearest the image centre.
//   shape      second moments in the same Gaussian window at the centroid, deconvolved from the
//              window (exact for a Gaussian) and from the pixel (1/12 px^2 per axis), as
//              psf::findStars: fwhmPx = 2.3548 (det C)^(1/4) (Gaussian-equivalent), ellipticity
//              1 - b/a, positionAngleDeg of the major axis counter-clockwise from +x, in (-90, 90].
//              DetectionResult::psfFwhmPx is P_D's by the same measure.
//   dipoles    a positive and a negative peak closer than dipoleDistanceFwhm x FWHM(P_D) (between
//              their refined S_corr peaks) are one candidate (a misregistered or moving star, a PSF
//              mismatch): both lobes are fitted jointly at those positions (a pair of opposite PSFs a
//              fraction of a pixel apart constrains only flux x separation, so no centroid), the
//              lobe of larger |significance| keeps its measurements, the other's go into the dipole*
//              fields, and dipoleRatio = min(|F+|, |F-|) / max(|F+|, |F-|) (~1 for a pure shift).
//   artifacts  see Artifacts below: residuals of masked stars are dropped (or flagged).
// Features for real/bogus classification (ZTF alert packet names in brackets; Mahabal et al. 2019,
// Duev et al. 2019): isDiffPos [isdiffpos], fwhmPx [fwhm], ellipticity (elong = 1 / (1 - e)),
// nbad [nbad], nneg, sumRatio [sumrat], chi2 [chipsf], sharpness, dipoleRatio, nearest reference
// source distance and flux [distnr, magnr = zero point - 2.5 log10(flux)], maskedFlux.
#include <cstdint>
#include <functional>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "astrid/core/image.hpp"
#include "astrid/diff/zogy.hpp"

namespace astrid::detect {

/// Why a candidate may not be trusted, and what it is. Several may be set.
enum class CandidateFlag : std::uint32_t {
    Saturated = 1u << 0,       ///< a pixel within the fit radius carries saturatedMaskBits (science or
                               ///< reference), or (Artifacts::Flag) one within saturatedExclusionPx of the peak
    Blended = 1u << 1,         ///< deblended from a footprint with several significant peaks
    Edge = 1u << 2,            ///< the fit radius reaches beyond the image or onto NoData pixels (NoData
                               ///< includes reference pixels without usable variance, e.g. cosmic rays)
    NearMask = 1u << 3,        ///< other masked pixels (cosmic ray, bad column, saturated core) within the fit radius
    KernelEdge = 1u << 4,      ///< the peak pixel carries MaskBit::Edge: ZOGY's kernels reached a masked
                               ///< pixel or the border there (values less certain; most of them are fine)
    Dipole = 1u << 5,          ///< an opposite lobe was merged into this candidate (see dipole* fields)
    CentroidFailed = 1u << 6,  ///< the windowed centroid did not converge: x, y are the refined S_corr peak
    BadShape = 1u << 7,        ///< windowed moments not positive definite: fwhmPx, ellipticity, PA are NaN
    MaskedLight = 1u << 8,     ///< (Artifacts::Flag) |flux| < maskedFluxFactor x maskedFlux
    Border = 1u << 9,          ///< (Artifacts::Flag) closer than borderMarginFwhm to the image border
};
constexpr std::uint32_t bits(CandidateFlag f) noexcept { return static_cast<std::uint32_t>(f); }
constexpr std::uint32_t operator|(CandidateFlag a, CandidateFlag b) noexcept { return bits(a) | bits(b); }
constexpr std::uint32_t operator|(std::uint32_t a, CandidateFlag b) noexcept { return a | bits(b); }
constexpr std::uint32_t& operator|=(std::uint32_t& a, CandidateFlag b) noexcept { return a |= bits(b); }

/// A source measured on one of the two images, on the science grid, flux in science ADU: e.g. the
/// stars prepareImage found (science), and the reference's carried through the registration map with
/// their fluxes divided by the flux ratio (reference). Sources just off the grid may be included:
/// their light reaches it.
struct KnownSource {
    double x = 0.0, y = 0.0;
    double flux = 0.0;
};

/// One candidate: the AstrID Candidate fields plus real/bogus features. Pixels 0-based; fluxes in
/// science ADU, signed (negative: fainter in the science image than in the reference).
struct Candidate {
    static constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    double x = 0.0, y = 0.0;        ///< windowed centroid on D (see the top of this header)
    double raDeg = nan, decDeg = nan;  ///< filled by fillSkyPositions (or the caller)
    int peakX = 0, peakY = 0;       ///< pixel of the S_corr extremum
    double significance = 0.0;      ///< S_corr at peakX, peakY (signed, sigma)
    bool isDiffPos = true;          ///< significance > 0 (brightening)
    double flux = 0.0;              ///< PSF-fit flux of D / F_D with P_D at (x, y)
    double fluxErr = 0.0;           ///< 1 sigma, including source and astrometric noise (see top)
    double snr = 0.0;               ///< |flux| / fluxErr
    double fwhmPx = nan;            ///< Gaussian-equivalent FWHM from windowed moments (pixel removed)
    double ellipticity = nan;       ///< 1 - b/a
    double positionAngleDeg = nan;  ///< major axis, counter-clockwise from +x, (-90, 90]
    double sharpness = nan;         ///< D at the model's brightest pixel / the PSF model there: 1 for a point
                                    ///< source, > 1 sharper (cosmic ray, hot pixel), < 1 extended
    double chi2 = nan;              ///< reduced chi^2 of the PSF fit with the background noise 1 / F_D
                                    ///< (bright sources exceed 1 by their own photon noise)
    int nbad = 0;                   ///< masked, NaN or off-image pixels in the 5x5 box at the peak
    int nneg = 0;                   ///< pixels of the opposite sign in D in that box
    double sumRatio = nan;          ///< sum(sign x D) / sum(|D|) in that box (ZTF sumrat; ~0 for a dipole)
    int areaPx = 0;                 ///< footprint pixels where this source's fitted model is the largest
    int footprintPeaks = 1;         ///< sources found in its footprint (> 1: Blended)
    double dipoleRatio = 0.0;       ///< min(|F+|, |F-|) / max(|F+|, |F-|) of a Dipole, else 0
    double dipoleX = nan, dipoleY = nan;          ///< the opposite lobe's centroid (Dipole only)
    double dipoleFlux = nan, dipoleSignificance = nan;  ///< ... its flux and S_corr peak
    double nearestRefDistPx = nan;  ///< distance to the nearest reference source within refSearchRadiusPx
    double nearestRefFlux = nan;    ///< its flux (science ADU)
    int nearestRefIndex = -1;       ///< its index in the list given, -1 when none
    double maskedFlux = 0.0;        ///< the known sources' light on masked or off-image pixels as a PSF fit
                                    ///< at the peak sees it (see Artifacts)
    std::uint32_t flags = 0;        ///< CandidateFlag bits

    bool has(CandidateFlag f) const noexcept { return (flags & bits(f)) != 0; }
    bool isSaturated() const noexcept { return has(CandidateFlag::Saturated); }
    bool isBlended() const noexcept { return has(CandidateFlag::Blended); }
    bool isEdge() const noexcept { return has(CandidateFlag::Edge); }
    bool isDipole() const noexcept { return has(CandidateFlag::Dipole); }
};

/// What detectCandidates does with the likely artifacts of masking: ZOGY sets masked pixels (and
/// those off the image) to the background in both images, so a star with a hole in it (a saturated
/// core, a cosmic ray or bad column on its wing, the reference's coverage edge across it, a star
/// just off the image) is no longer cancelled by the cross-convolution, and its wings leave
/// residuals of |S_corr| 5-200 next to the hole: 15-77 per simulated 1k pair. Three rules find them:
///   near saturation  the S_corr peak lies within saturatedExclusionPx of a saturated pixel;
///   masked light     |flux| < maskedFluxFactor x maskedFlux: the light that should have cancelled
///                    (sources found in both images at the same place, with the smaller of their
///                    fluxes; a source of one image alone only where the other has no data, else it
///                    is what changed) on masked or off-image pixels within P_D's half-size, P_D as
///                    its profile, as a PSF fit at the peak sees it: sum(L P) / sum(P^2);
///   border           the refined S_corr peak lies within borderMarginFwhm x FWHM(P_D) of the image
///                    border (the light of sources just off the image is not known).
enum class Artifacts {
    Drop,  ///< not candidates (counted in DetectionResult)
    Flag,  ///< candidates flagged Saturated, MaskedLight or Border
};

/// Parameters of detectCandidates. Radii "in FWHM" use P_D's Gaussian-equivalent FWHM.
struct DetectConfig {
    double thresholdSigma = 5.0;   ///< a source's |S_corr| peak must reach this
    double footprintSigma = 3.0;   ///< footprints grow down to this |S_corr| (<= thresholdSigma, > 0)
    int minPixels = 5;             ///< smaller footprints are dropped
    double deblendMinProminenceSigma = 2.0;  ///< a second peak rises this far above its saddle ...
    double deblendContrast = 0.02;           ///< ... and this fraction of the footprint's highest peak
    /// Further sources looked for in the residual of each footprint's PSF fit (0: none), at least
    /// residualMinSeparationFwhm from the sources already fitted.
    int maxResidualSources = 3;
    double residualMinSeparationFwhm = 1.0;
    double dipoleDistanceFwhm = 2.0;  ///< pair opposite lobes closer than this; <= 0: no pairing
    double fitRadiusFwhm = 2.0;       ///< PSF-fit (and saturation / edge look-up) radius
    int maxCentroidIterations = 20;
    double centroidTolerancePx = 1e-3;
    /// Pixels with any of these bits are neither detected nor measured (default: all but Edge and
    /// Interpolated: defects interpolated over before the subtraction have real values in S_corr).
    std::uint16_t badMaskBits = static_cast<std::uint16_t>(
        0xFFFFu & ~static_cast<unsigned>(bits(MaskBit::Edge) | bits(MaskBit::Interpolated)));
    /// Pixels whose known-source light counts as masked light (Artifacts): every bit but Edge, so
    /// the light of a star on an interpolated bad column, which linear interpolation does not restore,
    /// still explains the residual next to it.
    std::uint16_t maskedLightBits = static_cast<std::uint16_t>(0xFFFFu & ~static_cast<unsigned>(bits(MaskBit::Edge)));
    std::uint16_t saturatedMaskBits = bits(MaskBit::Saturated);
    std::uint16_t noDataMaskBits = bits(MaskBit::NoData);  ///< what counts as "off the data" for Edge
    double refSearchRadiusPx = 30.0;  ///< nearest reference source look-up radius (ZTF: 30 px)
    Artifacts artifacts = Artifacts::Drop;
    double saturatedExclusionPx = -1.0;  ///< < 0: P_D's half-size (the reach of ZOGY's Edge bits); 0: off
    double maskedFluxFactor = 3.0;       ///< 0: off
    double borderMarginFwhm = 1.0;       ///< 0: off
};

/// Candidates and what the detection saw.
struct DetectionResult {
    std::vector<Candidate> candidates;  ///< sorted by |significance|, largest first
    int footprints = 0;        ///< footprints kept (extremum >= thresholdSigma, >= minPixels)
    int footprintsTooSmall = 0;  ///< footprints that reached the threshold but had < minPixels pixels
    int sources = 0;           ///< sources measured (before dipole pairing), residual ones included
    int residualSources = 0;   ///< sources found in the residuals of the footprints' PSF fits
    int blendedFootprints = 0; ///< footprints with more than one significant S_corr peak
    int dipoles = 0;           ///< lobe pairs merged
    int nearSaturated = 0;     ///< sources that met each artifact rule (dropped or flagged, see Artifacts)
    int maskedLight = 0;
    int atBorder = 0;
    double psfFwhmPx = 0.0;    ///< P_D's Gaussian-equivalent FWHM (pixel removed)
    double psfSigmaPx = 0.0;   ///< the centroid window's sigma (P_D's, pixel included)
    double thresholdS = 0.0, deblendS = 0.0, measureS = 0.0;  ///< where the time went (seconds)
};

/// Detects and measures candidates on a ZOGY result. `z` needs scorr, diff, mask (or an empty mask:
/// none), psfD, fD and fS. The known sources (either list may be empty) give the masked light; the
/// reference's also the nearestRef* fields (NaN / -1 without them). Throws DataError when the
/// planes' sizes disagree or P_D / F_D / F_S are missing, ConfigError (naming the field) for an
/// invalid config.
DetectionResult detectCandidates(const diff::ZogyResult& z, std::span<const KnownSource> referenceSources,
                                 std::span<const KnownSource> scienceSources, const DetectConfig& config = {});

/// Fills raDeg / decDeg from x, y with the caller's pixel -> sky transform (0-based pixels, ICRS
/// degrees), e.g. [&](double x, double y) { auto p = wcs.pixelToSky(x, y); return std::pair{p.raDeg, p.decDeg}; }.
/// A transform that throws astrid::Error (WcsError) leaves that candidate's NaN and goes on; returns
/// the number filled.
int fillSkyPositions(std::vector<Candidate>& candidates,
                     const std::function<std::pair<double, double>(double x, double y)>& pixelToSky);

}  // namespace astrid::detect
