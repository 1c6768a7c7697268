#pragma once
// Internals shared by difference.cpp and stack.cpp: placing one prepared image on another's pixel
// grid (stars matched through the WCS guess, the WCSs alone when stars give no consistent fit) and
// the photometric scale from PSF-fit fluxes of paired stars. Not installed.
//
// Naming: the "grid" image defines the output pixels (the science image of a difference, the first
// input of a stack); the "moving" image is resampled onto it. Maps go grid pixel -> moving pixel, and
// MatchedPair::sci is the grid star, MatchedPair::ref the moving one (the registration module's
// science -> reference direction).
#include <cstddef>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "astrid/photometry/forced_psf.hpp"
#include "astrid/pipeline/difference.hpp"
#include "astrid/pipeline/pipeline.hpp"

namespace astrid::pipeline::detail {

/// Stars for matching. Blended stars are kept: in a crowded field (the real DECam cutout: 2,263
/// detections, all but 2 of the clean ones flagged Blended at 3 FWHM) they are most of the stars,
/// and the matcher's clipping rejects the few whose centroid a neighbour pulled.
std::vector<registration::MatchPoint> matchPoints(const psf::StarFinderResult& r);

/// PSF-fit flux of a point source at (x, y) with a fixed position: the weighted-kernel estimator
/// F = sum(P d / v) / sum(P^2 / v) over the stamp's unmasked pixels (NaN when nothing is usable).
/// Both images of a pair are measured with their own PSF models, which are normalised to the total
/// flux, so the ratio does not depend on apertures or aperture corrections.
double psfFlux(const MaskedImage& m, const psf::PsfModel& model, double x, double y);

/// Pairs each grid star with the nearest moving star within `radiusPx` (moving pixels) of its
/// position mapped through `map` (grid pixel -> moving pixel). Pairs keep the grid list's order.
std::vector<registration::MatchedPair> pairThrough(const std::vector<registration::MatchPoint>& gridStars,
                                                   const std::vector<registration::MatchPoint>& movingStars,
                                                   const registration::PixelMap& map, double radiusPx);

/// How `moving` lands on `grid`'s pixels.
struct Placement {
    registration::MatchResult match;  ///< map grid pixel -> moving pixel; pairs (sci = grid star, ref = moving star)
    bool wcsOnly = false;             ///< star matching failed: the map is the WCS guess alone, and
                                      ///< match.pairs are stars paired through it within 1 px (photometry only)
};

/// Registers `moving` onto the width x height grid of `grid`: registration::matchStarLists with the
/// two WCSs as the guess (when both have one), and when the stars give no consistent fit, the WCSs
/// alone (a warning naming both images is logged under `logger`). Throws what matchStarLists throws
/// when there is no WCS guess to fall back on (DataError).
Placement registerOnto(const PreparedImage& grid, const PreparedImage& moving, int width, int height,
                       const registration::MatchConfig& config, const std::string& logger);

/// One star's flux in `image` measured through the other image's PSF: the image near (x, y) is
/// convolved with `otherPsf` (its stamp at the other image's position of the star) and fitted, with
/// a constant, by the model ownPsf(shifted to the star) (x) otherPsf over a stamp of half-size
/// stampHalfPx. Both images of a pair measured so see the same PSF, P_grid (x) P_moving, so the
/// light of neighbours and any PSF-model error enter both alike and cancel in the ratio, which a
/// plain PSF fit leaves as a seeing-dependent bias in crowded fields. Each PSF is used in its own
/// image's pixel frame (exact for registrations that are shifts; a small rotation or scale change
/// alters the overlap of elliptical PSFs only at second order). `snr` receives the plain PSF fit's
/// signal-to-noise (flux / its error from the variance plane). NaN when a pixel of the footprint is
/// outside the image, masked (background::kInfiniteVarianceMask) or not finite.
double crossConvolvedFlux(const MaskedImage& image, const psf::PsfModel& ownPsf, double x, double y,
                          const psf::PsfModel& otherPsf, double otherX, double otherY, int stampHalfPx, double& snr);

/// The photometric ratio moving / grid (registration::fluxRatio) from cross-convolved fluxes
/// (crossConvolvedFlux) of the first `maxPairs` pairs, each in its own image at its own position.
/// Pairs whose plain PSF-fit S/N is below `minSnr` in either image are left out (a faint star's
/// ratio is noisy and, in a crowded field, the most affected by neighbours and background errors)
/// unless fewer than config.minPairs remain, in which case every measured pair is used. When fewer
/// than config.minPairs pairs can be cross-convolved at all (footprints off the image or masked),
/// plain PSF fits (psfFlux, each image with its own PSF) are used instead. Throws DataError (from
/// fluxRatio) when fewer than config.minPairs pairs have finite fluxes either way.
registration::FluxRatio measureFluxRatio(const PreparedImage& grid, const PreparedImage& moving,
                                         const std::vector<registration::MatchedPair>& pairs,
                                         const registration::FluxRatioConfig& config, double minSnr = 20.0,
                                         std::size_t maxPairs = 150);

/// Photometry after a difference (photometry_stage.cpp).
/// The reference's zero point: the config's, else the first header key of cfg.zeroPointKeys; NaN.
double referenceZeroPoint(const PreparedImage& reference, const PhotometryConfig& cfg);
/// Catalog positions that fall on a w x h image (at least `margin` px inside): an angular cut
/// around the image centre first (catalogs may be all-sky; a TAN projection has no pixel for the
/// far hemisphere), then the WCS. Returns the indices into `ra`/`dec` and the pixel positions.
struct OnImage {
    std::vector<std::size_t> index;
    std::vector<double> x, y;
};
OnImage positionsOnImage(const wcs::SkyWcs& wcs, int w, int h, double margin, const std::vector<catalog::CatalogSource>& sources);

/// The reference's zero point from the job's reference catalog (cfg.referenceStars): forced PSF
/// fits at the catalog positions on the reference, unsaturated, unmasked and well fitted, then
/// photometry::zeroPointFromMagnitudes (clipped, weighted). zeroPoint NaN when nothing is usable.
struct CatalogZeroPoint {
    double zeroPoint = std::numeric_limits<double>::quiet_NaN(), zeroPointErr = zeroPoint, scatter = zeroPoint;
    int stars = 0, inImage = 0;
    std::uint32_t flags = 0;
};
CatalogZeroPoint catalogZeroPoint(const PreparedImage& reference, const PhotometryConfig& cfg);
/// D / F_D with its variance map and ZOGY's mask as one MaskedImage, for the photometry module,
/// without copying: the planes are moved out of `z` for the view's lifetime and back after.
class DifferenceView {
public:
    explicit DifferenceView(diff::ZogyResult& z) : z_(z) {
        d_.image = std::move(z.diff);
        d_.variance = std::move(z.diffVariance);
        d_.mask = std::move(z.mask);
    }
    ~DifferenceView() {
        z_.diff = std::move(d_.image);
        z_.diffVariance = std::move(d_.variance);
        z_.mask = std::move(d_.mask);
    }
    DifferenceView(const DifferenceView&) = delete;
    DifferenceView& operator=(const DifferenceView&) = delete;
    const MaskedImage& image() const noexcept { return d_; }

private:
    diff::ZogyResult& z_;
    MaskedImage d_;
};
/// The forced PSF fit on a difference: every mask bit but Edge excludes a pixel (Edge pixels are
/// within P_D's reach of a masked one, usable), over the core of radius 2 FWHM (the wings add
/// noise, not signal, and reach masked pixels: cli_photometry_campaign, 146 instead of 140 of 156
/// points unflagged, pulls 1.19 vs 1.22).
photometry::ForcedPsfConfig differenceFitConfig(double fwhmPx);

/// A job source catalog position's light-curve point of one science epoch (status Pending).
ForcedPhotometryRecord sourcePoint(const catalog::CatalogSource& source, std::int64_t scienceObsId, double mjd,
                                   const std::string& filter, double zeroPoint, double zeroPointErr,
                                   const PhotometryConfig& cfg);
/// The target's light-curve point of one science epoch before any measurement (status Pending).
ForcedPhotometryRecord targetPoint(const catalog::Target& target, std::int64_t scienceObsId, double mjd,
                                   const std::string& filter, double zeroPoint, const PhotometryConfig& cfg);
/// Forced photometry at `point`'s position on one difference (PSF fit of D with P_D and its variance
/// map, apertures on D and on the science image); images.zogy must carry diffVariance.
ForcedPhotometryRecord forcedAtTarget(ForcedPhotometryRecord point, const PreparedImage& science,
                                      DifferenceImages& images, const DifferenceRun& run, const PhotometryConfig& cfg);
/// Candidates on one difference's S_corr (the detect module) as records with sky positions and
/// reference-scale magnitudes.
std::vector<CandidateRecord> candidatesOf(const PreparedImage& science, const DifferenceImages& images,
                                          const DifferenceRun& run, double zeroPoint, const detect::DetectConfig& cfg);
/// Sky positions of the reference's brightest clean stars (for the ensemble normalisation).
std::vector<wcs::SkyPoint> ensembleStars(const PreparedImage& reference, int maxStars);
/// Forced PSF fluxes of those stars on one science image, on the reference's scale (NaN: unusable).
void ensembleFluxes(const PreparedImage& science, const DifferenceRun& run, const std::vector<wcs::SkyPoint>& stars,
                    std::vector<double>& flux, std::vector<double>& fluxErr);
/// The ensemble normalisation of a target's epochs: starFlux[epoch][star] for the epochs
/// epochObsIds; applied to every record (target or source position) of those epochs.
void normalizeEpochs(std::vector<ForcedPhotometryRecord>& records, const std::vector<std::int64_t>& epochObsIds,
                     const std::vector<std::vector<double>>& starFlux,
                     const std::vector<std::vector<double>>& starFluxErr);

/// A candidate's real/bogus features for a triplet's metadata.
training::CandidateFeatures featuresOf(const CandidateRecord& c);
/// The triplet (science, registered reference on the science flux scale, D / F_D[, S_corr]) centred
/// on (x, y) of the science image, turned north up / east left (the nearest multiple of 90 degrees,
/// mirrored as needed), with meta's position, sky position and split filled. nullopt when
/// cfg.skipEdge and the cutout crosses the border.
std::optional<training::Triplet> cutoutTriplet(const PreparedImage& science, const DifferenceImages& images,
                                               const DifferenceRun& run, const TrainingConfig& cfg, double x, double y,
                                               training::Label label, training::TripletMeta meta);

/// Fake injection and recovery on one epoch (injection.cpp; InjectionConfig). Call after every
/// product of the clean difference is made: it replaces images.zogy with the difference of the
/// science image with fakes. Positions avoid the target, masked pixels, the border and each other;
/// fluxes are set from the PSF-fit flux error of the clean difference at each position.
/// With `training` (enabled), every recovered fake also gives a triplet (label real, source
/// injected_fake) cut from the difference with fakes, appended to `triplets`; `meta` carries the
/// epoch's identity (target, obs id, mjd, filter).
std::vector<InjectionRecord> injectAndRecover(const catalog::Target& target, const PreparedImage& science,
                                              DifferenceImages& images, const DifferenceRun& run,
                                              const DifferenceConfig& diffConfig, const detect::DetectConfig& dc,
                                              double zeroPoint, const InjectionConfig& cfg,
                                              const TrainingConfig* training = nullptr,
                                              const training::TripletMeta* meta = nullptr,
                                              std::vector<training::Triplet>* triplets = nullptr);
}  // namespace astrid::pipeline::detail
