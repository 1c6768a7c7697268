#pragma once
// The HDF5 schema, version 2: names, row layouts and enums of every table. Documented for users in
// docs/output-format.md; anything changed here changes kSchemaVersion.
// Tables are 1-D datasets of a compound type; strings are fixed-length, NUL-padded ASCII (h5py
// reads them as bytes `S<n>`; parallel HDF5 cannot write variable-length strings collectively).
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "astrid/pipeline/pipeline.hpp"

namespace astrid::output {

inline constexpr int kSchemaVersion = 3;  ///< 2: /candidates and /forced_photometry; 3: /injections

inline constexpr const char* kTargetsTable = "targets";
inline constexpr const char* kObservationsTable = "observations";
inline constexpr const char* kCatalogIssuesTable = "catalog_issues";
inline constexpr const char* kDifferenceRunsTable = "difference_runs";
inline constexpr const char* kCandidatesTable = "candidates";
inline constexpr const char* kForcedPhotometryTable = "forced_photometry";
inline constexpr const char* kInjectionsTable = "injections";

/// Copies `s` into a fixed char array, NUL-padded; too-long text ends with "..." so the truncation shows.
template <std::size_t N>
void setText(std::array<char, N>& dst, std::string_view s) {
    dst.fill('\0');
    if (s.size() <= N) {
        s.copy(dst.data(), s.size());
        return;
    }
    s.copy(dst.data(), N - 3);
    dst[N - 3] = dst[N - 2] = dst[N - 1] = '.';
}
template <std::size_t N>
std::string getText(const std::array<char, N>& src) {
    std::size_t n = 0;
    while (n < N && src[n] != '\0') ++n;
    return std::string(src.data(), n);
}

/// /targets: one row per processed target.
struct TargetRow {
    std::int64_t targetId;
    std::array<char, 32> name;
    double ra;        ///< deg ICRS
    double dec;       ///< deg
    double discMjd;   ///< NaN when the catalog has no date
    std::int8_t status;  ///< pipeline::TargetStatus: 0 ok, 1 failed, 2 skipped
    std::array<char, 16> failStage;
    std::array<char, 256> failReason;
    std::int32_t nEpochs;
    std::int32_t nObservations;
    double wallS;
    std::int32_t rank;
};

/// /observations: every observation listed for a processed target, used or not.
struct ObservationRow {
    std::int64_t obsId;
    std::int64_t targetId;
    std::int8_t role;    ///< archive::Role: -1 unassigned, 0 reference, 1 science
    std::array<char, 32> survey;
    std::array<char, 32> mission;
    std::array<char, 16> filterBand;
    double mjd;
    double exposureTime;  ///< s
    double ra;            ///< image centre, deg
    double dec;
    double pixelScale;    ///< arcsec/px
    double airmass;
    double seeing;        ///< arcsec
    std::int32_t width;
    std::int32_t height;
    std::array<char, 256> fitsPath;
    std::int32_t hdu;
    std::int8_t status;   ///< archive::ObsStatus: 0 used, 1 not_selected, 2 invalid
    std::array<char, 192> statusReason;
};

/// /catalog_issues: catalog rows that were rejected (unparseable) or excluded (by a filter).
struct CatalogIssueRow {
    std::int64_t line;       ///< 1-based line in the catalog file
    std::int64_t targetId;   ///< -1 for rejected rows
    std::int8_t kind;        ///< 0 rejected, 1 excluded
    std::array<char, 32> name;
    std::array<char, 48> category;
    std::array<char, 160> detail;
};

/// /difference_runs: one row per science epoch differenced (or failing to be).
struct DifferenceRunRow {
    std::int64_t targetId;
    std::int64_t scienceObsId;
    std::int64_t referenceObsId;
    std::array<char, 16> algorithm;
    std::array<char, 256> parameters;
    std::int8_t status;  ///< pipeline::TargetStatus: 0 ok, 1 failed
    std::array<char, 16> failStage;
    std::array<char, 192> failReason;
    double noiseLevel;   ///< std of D, science ADU
    double detectionThreshold;
    std::int32_t candidatesFound;
    double fwhmSci, fwhmRef;  ///< px
    std::int32_t psfStarsSci, psfStarsRef;
    double fluxRatio, fluxRatioErr;
    std::int32_t fluxRatioStars;
    double astrometricRmsPx;
    std::int32_t matchedStars;
    double sigmaSci, sigmaRef;  ///< background noise, ADU
    double fD, fS;
    double scorrStd;
    std::uint32_t quality;
    std::array<char, 256> diffPath;
    std::array<char, 256> scorrPath;
    double backgroundS, psfS, registrationS, zogyS, wallS;
};

/// /candidates: one row per candidate on a difference's S_corr (pipeline::CandidateRecord).
struct CandidateRow {
    std::int64_t targetId;
    std::int64_t scienceObsId;
    std::int32_t index;
    double ra, dec, pixelX, pixelY;
    double flux, fluxErr, significance, snr;
    double fwhm, ellipticity, positionAngle;
    double mag, magErr;
    std::int8_t isDiffPos, isSaturated, isBlended, isEdge, isDipole;
    std::int32_t nBad, footprintPx;
    double sharpness, dipoleRatio, nearestRefDistPx, nearestRefMag;
};

/// /forced_photometry: one row per (position, science epoch): the light curves
/// (pipeline::ForcedPhotometryRecord).
struct ForcedPhotometryRow {
    std::int64_t targetId;
    std::int64_t scienceObsId;
    std::int8_t sourceKind;  ///< 0 target, 1 job source catalog
    std::int64_t sourceId;
    double ra, dec, x, y, mjd;
    std::array<char, 16> filter;
    std::int8_t status;      ///< pipeline::PhotometryStatus: 0 pending, 1 done, 2 failed
    std::array<char, 128> failReason;
    double fluxSci, fluxSciErr, flux, fluxErr, snr, chi2;
    std::int32_t nPix;
    double mag, magErr;
    std::int8_t isUpperLimit;
    double limitSigma, zeroPoint, zeroPointErr, normFactor, normFactorErr, fluxNorm, fluxNormErr;
    std::array<double, 3> apRadiusPx, apFluxDiff, apFluxDiffErr, apFluxSci, apFluxSciErr;
    std::uint32_t flags;
};

/// /injections: one row per fake injected into a science epoch (pipeline::InjectionRecord): the
/// truth and what detection made of it; completeness is recovered / injected per magnitude bin.
struct InjectionRow {
    std::int64_t targetId;
    std::int64_t scienceObsId;
    std::int32_t index;
    double x, y, ra, dec;
    double fluxSci, mag, magLimit, snrTrue;
    std::int8_t hostKind;    ///< 0 blank sky, 1 near a detected source
    double hostOffsetPx;
    std::int8_t recovered;
    double candX, candY, candSignificance, candFlux, candFluxErr, candFwhm, candSharpness;
};

TargetRow toTargetRow(const pipeline::TargetResult& r);
std::vector<InjectionRow> toInjectionRows(const pipeline::TargetResult& r);
std::vector<CandidateRow> toCandidateRows(const pipeline::TargetResult& r);
std::vector<ForcedPhotometryRow> toForcedPhotometryRows(const pipeline::TargetResult& r);
std::vector<DifferenceRunRow> toDifferenceRunRows(const pipeline::TargetResult& r);
std::vector<ObservationRow> toObservationRows(const pipeline::TargetResult& r);

}  // namespace astrid::output
