#pragma once
// processTarget(): the per-target pipeline as a pure function of (target, archive, config). No
// MPI and no global state: the runner calls it on every rank, tests call it on one core.
#include <array>
#include <cstdint>
#include <limits>
#include <stop_token>
#include <string>
#include <vector>

#include "astrid/archive/archive.hpp"
#include "astrid/catalog/catalog.hpp"
#include "astrid/pipeline/config.hpp"

namespace astrid::pipeline {

enum class TargetStatus : std::int8_t { Ok = 0, Failed = 1, Skipped = 2 };

/// Pipeline stages, in order; a failed target names the stage it failed in.
enum class Stage : std::int8_t {
    None = 0, Archive, Select, Load, Validate, Background, Psf, Registration, Difference, Internal
};
std::string stageName(Stage stage);

/// Quality flags of a difference (bit mask, /difference_runs.quality).
enum class DiffQuality : std::uint32_t {
    FewMatchedStars = 1u << 0,     ///< fewer matched stars than SelectionConfig asks for a confident fit
    LargeAstrometricRms = 1u << 1, ///< matched-star residual RMS above the limit
    PatternMatched = 1u << 2,      ///< the WCS guess failed; registration came from asterism matching
    PsfFallback = 1u << 3,         ///< an analytic Moffat PSF was used for one of the images
    ScorrWide = 1u << 4,           ///< robust std of S_corr off 1 by more than 10%
    WcsOnly = 1u << 5,             ///< star matching failed: registered with the WCSs alone (RMS: a lower bound)
};

/// One science epoch differenced against the reference (the AstrID DifferenceRun fields and more).
struct DifferenceRun {
    std::int64_t scienceObsId = -1, referenceObsId = -1;
    std::string algorithm = "zogy";
    std::string parameters;         ///< the settings that shaped this difference, "key=value;..."
    TargetStatus status = TargetStatus::Ok;
    Stage failStage = Stage::None;
    std::string failReason;
    double noiseLevel = 0.0;        ///< standard deviation of D in science ADU (1 / F_D)
    double detectionThreshold = 5.0;  ///< S_corr threshold the detection stage uses
    int candidatesFound = -1;       ///< -1 until detection runs on this difference
    double fwhmSciencePx = 0.0, fwhmReferencePx = 0.0;
    int psfStarsScience = 0, psfStarsReference = 0;
    double fluxRatio = 0.0, fluxRatioErr = 0.0;  ///< reference flux per unit science flux
    int fluxRatioStars = 0;
    double astrometricRmsPx = 0.0;  ///< 2-D residual RMS of the 20 brightest matched stars (WCS only: of
                                    ///< the stars paired within 1 px through the WCSs; NaN: none)
    int matchedStars = 0;
    double sigmaScience = 0.0, sigmaReference = 0.0;  ///< background noise, ADU
    double fD = 0.0, fS = 0.0;
    double scorrStd = 0.0;          ///< robust standard deviation of S_corr over good pixels
    std::uint32_t quality = 0;      ///< DiffQuality bits
    std::string diffPath, scorrPath;  ///< FITS files when the job writes them
    double backgroundS = 0.0, psfS = 0.0, registrationS = 0.0, zogyS = 0.0, wallS = 0.0;
};

/// One candidate found on one difference's S_corr (issue #4; /candidates). Positions are 0-based
/// pixels of the science grid; fluxes in science ADU (a PSF fit of D with P_D).
struct CandidateRecord {
    std::int64_t scienceObsId = -1;
    int index = 0;                   ///< 0.. within its difference
    double ra = 0.0, dec = 0.0;      ///< deg (science WCS)
    double x = 0.0, y = 0.0;
    double flux = 0.0, fluxErr = 0.0;
    double significance = 0.0;       ///< peak S_corr, signed (negative: fading)
    double snr = 0.0;                ///< flux / fluxErr
    double fwhm = 0.0, ellipticity = 0.0, positionAngle = 0.0;  ///< px, 1 - b/a, deg
    double mag = 0.0, magErr = 0.0;  ///< |flux| with the epoch's zero point (NaN without one)
    bool isDiffPos = true, isSaturated = false, isBlended = false, isEdge = false, isDipole = false;
    int nBad = 0;                    ///< masked pixels near the peak
    int footprintPx = 0;
    double sharpness = 0.0, dipoleRatio = 0.0;
    double nearestRefDistPx = 0.0, nearestRefMag = 0.0;  ///< nearest reference-image source (NaN: none)
};

/// Photometry status of one product (a forced measurement on one epoch).
enum class PhotometryStatus : std::int8_t { Pending = 0, Done = 1, Failed = 2 };

/// Forced photometry at a fixed sky position on one science epoch (issue #4; /forced_photometry):
/// one point of a light curve. "flux" is on the reference image's scale (the difference's science-ADU
/// flux times the epoch's flux ratio), so the points of a target share one scale.
struct ForcedPhotometryRecord {
    std::int64_t scienceObsId = -1;
    std::int8_t sourceKind = 0;      ///< 0 the catalog target, 1 a job source-catalog position
    std::int64_t sourceId = -1;      ///< target id, or the source catalog's row
    double ra = 0.0, dec = 0.0, x = 0.0, y = 0.0;
    double mjd = 0.0;
    std::string filter;
    PhotometryStatus status = PhotometryStatus::Pending;
    std::string failReason;
    double fluxSci = 0.0, fluxSciErr = 0.0;  ///< PSF fit of D with P_D, science ADU
    double flux = 0.0, fluxErr = 0.0;        ///< reference scale (fluxSci x flux ratio, its error included)
    double snr = 0.0, chi2 = 0.0;
    int nPix = 0;
    double mag = 0.0, magErr = 0.0;          ///< or the upper limit when isUpperLimit
    bool isUpperLimit = false;
    double limitSigma = 3.0;
    double zeroPoint = 0.0, zeroPointErr = 0.0;  ///< mag of 1 reference ADU (NaN: none)
    double normFactor = 1.0, normFactorErr = 0.0;  ///< ensemble normalisation c of this epoch
    double fluxNorm = 0.0, fluxNormErr = 0.0;
    std::array<double, 3> apRadiusPx{}, apFluxDiff{}, apFluxDiffErr{}, apFluxSci{}, apFluxSciErr{};
    std::uint32_t flags = 0;
};

/// One injected fake (InjectionConfig) and what detection made of it.
struct InjectionRecord {
    static constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    std::int64_t scienceObsId = -1;
    int index = 0;                   ///< within the epoch
    double x = 0.0, y = 0.0;         ///< science pixels (0-based)
    double ra = nan, dec = nan;
    double fluxSci = 0.0;            ///< injected flux, science ADU
    double mag = nan;                ///< on the reference's zero point (NaN without one)
    double magLimit = nan;           ///< 5-sigma limit at this position, same zero point
    double snrTrue = 0.0;            ///< fluxSci / sigma of a PSF fit on the clean difference there
    std::int8_t hostKind = 0;        ///< 0 blank sky, 1 near a detected source
    double hostOffsetPx = nan;       ///< distance to that source (host kind 1)
    bool recovered = false;          ///< a positive candidate within the match radius
    /// The matching candidate (NaN when not recovered).
    double candX = nan, candY = nan, candSignificance = nan, candFlux = nan, candFluxErr = nan;
    double candFwhm = nan, candSharpness = nan;
};

/// Everything a target produced: plain data the runner ships to the writer.
struct TargetResult {
    catalog::Target target;
    TargetStatus status = TargetStatus::Ok;
    Stage failStage = Stage::None;
    std::string failReason;
    std::vector<archive::Observation> observations;  ///< every listed observation with its status
    int nEpochs = 0;        ///< science epochs used
    std::vector<DifferenceRun> differences;  ///< one per science epoch that reached differencing
    std::vector<CandidateRecord> candidates;
    std::vector<ForcedPhotometryRecord> forcedPhotometry;
    std::vector<InjectionRecord> injections;  ///< fakes of every epoch (InjectionConfig)
    double wallSeconds = 0.0;
    int rank = 0;           ///< set by the runner
    /// The failure may not recur (an archive that could not be listed, an unexpected exception):
    /// the runner retries such a target, on another rank when it can. Data verdicts (a corrupt
    /// file, too few stars, no overlap) are not transient.
    bool transient = false;
};

/// Thrown by processTarget when its stop token asks it to stop: the target is abandoned, not
/// failed, and nothing of it is recorded (a resume redoes it).
struct Cancelled : std::exception {
    const char* what() const noexcept override { return "target abandoned on request"; }
};

/// Runs every stage for one target. Never throws for bad data: a failure is returned as
/// status Failed with the stage and a reason naming the file (or HDU/key) at fault.
/// `stop` is checked between stages and epochs; when it is requested, Cancelled is thrown.
TargetResult processTarget(const catalog::Target& target, archive::Archive& archive, const PipelineConfig& config,
                           std::stop_token stop = {});

/// Selection rule on its own (exposed for tests): marks observations Reference/Science/NotSelected.
/// Returns an empty string on success, otherwise why no usable pair exists.
std::string selectObservations(const catalog::Target& target, std::vector<archive::Observation>& observations,
                               const SelectionConfig& config);

}  // namespace astrid::pipeline
