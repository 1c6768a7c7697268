#pragma once
// Plain per-stage configuration aggregates. Only app/ parses them from job files; the defaults are
// the documented defaults of docs/running.md.
#include <array>
#include <limits>
#include <string>
#include <vector>

#include "astrid/catalog/sources.hpp"
#include "astrid/training/triplet.hpp"

#include "astrid/background/background.hpp"
#include "astrid/detect/detect.hpp"
#include "astrid/diff/zogy.hpp"
#include "astrid/psf/psf_model.hpp"
#include "astrid/psf/stars.hpp"
#include "astrid/registration/registration.hpp"

namespace astrid::pipeline {

/// Which observations pair up for a target (the AstrID rules, stricter where its users asked).
struct SelectionConfig {
    double daysBefore = 365.0;   ///< reference epochs in [disc - daysBefore, disc - refMarginDays]
    double refMarginDays = 1.0;
    double daysAfter = 365.0;    ///< science epochs in [disc, disc + daysAfter]
    int maxReference = 1;        ///< best-seeing references first
    int maxScience = 20;         ///< earliest science epochs first
    bool requireBoth = true;     ///< a target without a reference and a science epoch fails
    std::string filter;          ///< only this filter band when non-empty
    double minOverlap = 0.85;    ///< minimum fraction of a science image the reference covers
};

/// What a loaded image must satisfy (the AstrID Observation constraints plus data sanity).
struct ValidationConfig {
    double maxBadFraction = 0.5;  ///< NaN/Inf pixels tolerated, as a fraction of the image
    double targetMarginPx = 0.0;  ///< the target must fall at least this far inside every image
};

struct PrepareConfig {
    background::MaskConfig mask;
    background::BackgroundConfig background;
    psf::StarFinderConfig stars;
    psf::PsfConfig psf;
    /// Cosmic-ray masking (prepareImage): a pixel whose excess over its 4 neighbours exceeds this many
    /// sigma and the PSF's own centre-minus-neighbours fraction plus cosmicRayMargin.
    double cosmicRayThresholdSigma = 5.0;
    double cosmicRayMargin = 0.15;
    /// Defects interpolated over (prepareImage, after cosmic-ray masking): runs of at most this many
    /// Bad or CosmicRay pixels along a row, between usable pixels, get values and variances linear
    /// between their two neighbours and the Interpolated bit instead of their defect bit, so that a
    /// bad column does not become a ~6 px strip of missing data after resampling nor a hole that ZOGY
    /// fills with the background. 2 takes bad columns and leaves cosmic rays (masked with their 8
    /// neighbours: runs of 3+) masked: interpolating those as well (6) added 12% more candidates on the
    /// defect campaign (docs/testing.md). 0: off (the defects stay masked).
    int interpolateMaxRun = 2;
};

struct DifferenceConfig {
    registration::MatchConfig match;
    registration::ResampleConfig resample;
    registration::FluxRatioConfig fluxRatio;
    /// ZOGY parameters; S itself is not kept (S_corr and D are; photometry fits D).
    diff::ZogyConfig zogy = [] {
        diff::ZogyConfig z;
        z.keepScore = false;
        // Interpolated pixels (PrepareConfig::interpolateMaxRun) take part in the subtraction; they
        // keep their bit in the result's mask, which detection and photometry treat as masked.
        z.badMask = static_cast<std::uint16_t>(0xFFFFu & ~static_cast<unsigned>(bits(MaskBit::Interpolated)));
        return z;
    }();
    double detectionThreshold = 5.0;  ///< recorded in /difference_runs; used by detection (issue #4)
    int minMatchedStars = 20;         ///< fewer: quality flag FewMatchedStars
    double maxAstrometricRmsPx = 0.1; ///< more: quality flag LargeAstrometricRms
};

/// Whether and where the campaign differences every science epoch.
struct DifferenceOutputConfig {
    bool enabled = true;           ///< run background, PSF, registration and ZOGY per science epoch
    bool writeFits = false;        ///< write D and S_corr (+ PSFs) as FITS files
    std::string directory;         ///< where: <directory>/<target>/<obs_id>_diff.fits ...
};

/// Photometry after each difference (issue #4): forced photometry at the target's position on
/// every science epoch, and the ensemble normalisation of a target's epochs.
struct PhotometryConfig {
    bool enabled = true;
    /// Zero point of the reference image (mag of 1 ADU); NaN: read from its header (one of
    /// zeroPointKeys); none found: fluxes only, magnitudes NaN and flagged.
    double zeroPoint = std::numeric_limits<double>::quiet_NaN();
    std::vector<std::string> zeroPointKeys{"MAGZP", "MAGZERO", "MAGZPT", "ZEROPT", "PHOTZP", "ZP"};
    double detectionSigma = 3.0;   ///< flux / error at or above: a detection (magnitude)
    double upperLimitSigma = 5.0;  ///< otherwise this many sigma make the upper limit
    std::array<double, 3> apertureRadiiFwhm{1.0, 2.0, 3.0};  ///< in the science image's FWHM
    double annulusInnerFwhm = 4.0, annulusOuterFwhm = 6.0;  ///< science-image aperture background
    int ensembleStars = 60;        ///< brightest clean reference stars for the ensemble normalisation
    /// Job source catalog: forced photometry at each of these positions that falls on a science
    /// image, on every epoch (/forced_photometry rows with source_kind 1), normalised like the target.
    std::vector<catalog::CatalogSource> sources;
    /// Reference catalog (stars with magnitudes): the reference image's zero point from forced PSF
    /// fits at these positions (photometry::zeroPointFromMagnitudes), instead of its header.
    std::vector<catalog::CatalogSource> referenceStars;
    double referenceStarMinSnr = 20.0;  ///< catalog stars fainter than this on the reference are not used
};

/// Fake point sources injected into every science epoch to measure completeness and to label
/// training data (issue #5). They go into a copy of the prepared science image, after its PSF was
/// measured and after the clean difference made every product, and that copy is differenced
/// again: fakes never reach /candidates, /forced_photometry or the ensemble normalisation.
struct InjectionConfig {
    int perEpoch = 0;               ///< fakes per science epoch; 0: no injection
    /// Magnitudes relative to the epoch's 5-sigma limit at each position (PSF fit on the clean
    /// difference): uniform in [dmagMin, dmagMax], i.e. true S/N from 5 x 10^(-0.4 dmagMax) to
    /// 5 x 10^(-0.4 dmagMin) (defaults: 2 to 50).
    double dmagMin = -2.5, dmagMax = 1.0;
    double hostFraction = 0.5;      ///< fraction placed 0.5-2 FWHM from a detected source (hosts, stars)
    double minTargetDistanceFwhm = 10.0;  ///< no fake this close to the target
    double minSeparationFwhm = 6.0;       ///< fakes are at least this far apart
    double marginPx = 32.0;         ///< from the border (a 63 px cutout fits)
    double matchRadiusFwhm = 1.0;   ///< a positive candidate this close recovers a fake
    std::uint64_t seed = 1;         ///< with the target id and the epoch: the same fakes on a resume
};

/// Labelled cutout triplets for machine learning (issue #5; /training, docs/training.md).
struct TrainingConfig {
    bool enabled = false;
    /// planes science, reference (scaled to the science flux), difference (D / F_D)[, scorr];
    /// 63 x 63 px by default; orientation north up, east left (see cutouts.cpp).
    training::TripletLayout layout;
    bool skipEdge = false;          ///< skip cutouts that cross the image border (else padded, mask kOutside)
    double matchRadiusFwhm = 1.0;   ///< a candidate this close to the target is the catalog transient
    double detectSnr = 5.0;         ///< the target's forced position is "real" at this forced S/N or above
};

struct PipelineConfig {
    SelectionConfig select;
    ValidationConfig validate;
    PrepareConfig prepare;
    DifferenceConfig difference;
    DifferenceOutputConfig differenceOutput;
    /// Candidates on every difference (issue #4); the threshold is difference.detectionThreshold.
    bool detectCandidates = true;
    detect::DetectConfig detect;
    PhotometryConfig photometry;
    InjectionConfig injection;
    TrainingConfig training;
};

}  // namespace astrid::pipeline
