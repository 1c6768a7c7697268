#include <array>

#include "astrid/output/schema.hpp"
#include "types.hpp"

namespace astrid::output::h5types {
namespace {
template <std::size_t N>
h5::Handle str(const std::array<char, N>&) {
    h5::Handle t(h5::check(H5Tcopy(H5T_C_S1), "H5Tcopy"));
    H5Tset_size(t.get(), N);
    H5Tset_strpad(t.get(), H5T_STR_NULLPAD);
    return t;
}

h5::Handle enum8(std::initializer_list<std::pair<const char*, std::int8_t>> values) {
    h5::Handle t(h5::check(H5Tenum_create(H5T_NATIVE_INT8), "H5Tenum_create"));
    for (const auto& [name, v] : values) H5Tenum_insert(t.get(), name, &v);
    return t;
}

h5::Handle targetStatus() { return enum8({{"ok", 0}, {"failed", 1}, {"skipped", 2}}); }
h5::Handle role() { return enum8({{"unassigned", -1}, {"reference", 0}, {"science", 1}}); }
h5::Handle obsStatus() { return enum8({{"used", 0}, {"not_selected", 1}, {"invalid", 2}}); }
h5::Handle issueKind() { return enum8({{"rejected", 0}, {"excluded", 1}}); }
h5::Handle photometryStatus() { return enum8({{"pending", 0}, {"done", 1}, {"failed", 2}}); }
h5::Handle sourceKind() { return enum8({{"target", 0}, {"source", 1}}); }
h5::Handle doubles3() {
    const hsize_t n[1] = {3};
    return h5::Handle(h5::check(H5Tarray_create2(H5T_NATIVE_DOUBLE, 1, n), "H5Tarray_create2"));
}

#define MEMBER(T, name, field, type) H5Tinsert(t.get(), name, HOFFSET(T, field), type)
}  // namespace

h5::Handle targetRow() {
    using T = TargetRow;
    h5::Handle t(h5::check(H5Tcreate(H5T_COMPOUND, sizeof(T)), "H5Tcreate"));
    T r{};
    MEMBER(T, "target_id", targetId, H5T_NATIVE_INT64);
    MEMBER(T, "name", name, str(r.name).get());
    MEMBER(T, "ra", ra, H5T_NATIVE_DOUBLE);
    MEMBER(T, "dec", dec, H5T_NATIVE_DOUBLE);
    MEMBER(T, "disc_mjd", discMjd, H5T_NATIVE_DOUBLE);
    MEMBER(T, "status", status, targetStatus().get());
    MEMBER(T, "fail_stage", failStage, str(r.failStage).get());
    MEMBER(T, "fail_reason", failReason, str(r.failReason).get());
    MEMBER(T, "n_epochs", nEpochs, H5T_NATIVE_INT32);
    MEMBER(T, "n_observations", nObservations, H5T_NATIVE_INT32);
    MEMBER(T, "wall_s", wallS, H5T_NATIVE_DOUBLE);
    MEMBER(T, "rank", rank, H5T_NATIVE_INT32);
    return t;
}

h5::Handle observationRow() {
    using T = ObservationRow;
    h5::Handle t(h5::check(H5Tcreate(H5T_COMPOUND, sizeof(T)), "H5Tcreate"));
    T r{};
    MEMBER(T, "obs_id", obsId, H5T_NATIVE_INT64);
    MEMBER(T, "target_id", targetId, H5T_NATIVE_INT64);
    MEMBER(T, "role", role, role().get());
    MEMBER(T, "survey", survey, str(r.survey).get());
    MEMBER(T, "mission", mission, str(r.mission).get());
    MEMBER(T, "filter_band", filterBand, str(r.filterBand).get());
    MEMBER(T, "mjd", mjd, H5T_NATIVE_DOUBLE);
    MEMBER(T, "exposure_time", exposureTime, H5T_NATIVE_DOUBLE);
    MEMBER(T, "ra", ra, H5T_NATIVE_DOUBLE);
    MEMBER(T, "dec", dec, H5T_NATIVE_DOUBLE);
    MEMBER(T, "pixel_scale", pixelScale, H5T_NATIVE_DOUBLE);
    MEMBER(T, "airmass", airmass, H5T_NATIVE_DOUBLE);
    MEMBER(T, "seeing", seeing, H5T_NATIVE_DOUBLE);
    MEMBER(T, "width", width, H5T_NATIVE_INT32);
    MEMBER(T, "height", height, H5T_NATIVE_INT32);
    MEMBER(T, "fits_path", fitsPath, str(r.fitsPath).get());
    MEMBER(T, "hdu", hdu, H5T_NATIVE_INT32);
    MEMBER(T, "status", status, obsStatus().get());
    MEMBER(T, "status_reason", statusReason, str(r.statusReason).get());
    return t;
}

h5::Handle differenceRunRow() {
    using T = DifferenceRunRow;
    h5::Handle t(h5::check(H5Tcreate(H5T_COMPOUND, sizeof(T)), "H5Tcreate"));
    T r{};
    MEMBER(T, "target_id", targetId, H5T_NATIVE_INT64);
    MEMBER(T, "science_obs_id", scienceObsId, H5T_NATIVE_INT64);
    MEMBER(T, "reference_obs_id", referenceObsId, H5T_NATIVE_INT64);
    MEMBER(T, "algorithm", algorithm, str(r.algorithm).get());
    MEMBER(T, "parameters", parameters, str(r.parameters).get());
    MEMBER(T, "status", status, targetStatus().get());
    MEMBER(T, "fail_stage", failStage, str(r.failStage).get());
    MEMBER(T, "fail_reason", failReason, str(r.failReason).get());
    MEMBER(T, "noise_level", noiseLevel, H5T_NATIVE_DOUBLE);
    MEMBER(T, "detection_threshold", detectionThreshold, H5T_NATIVE_DOUBLE);
    MEMBER(T, "candidates_found", candidatesFound, H5T_NATIVE_INT32);
    MEMBER(T, "fwhm_sci", fwhmSci, H5T_NATIVE_DOUBLE);
    MEMBER(T, "fwhm_ref", fwhmRef, H5T_NATIVE_DOUBLE);
    MEMBER(T, "psf_stars_sci", psfStarsSci, H5T_NATIVE_INT32);
    MEMBER(T, "psf_stars_ref", psfStarsRef, H5T_NATIVE_INT32);
    MEMBER(T, "flux_ratio", fluxRatio, H5T_NATIVE_DOUBLE);
    MEMBER(T, "flux_ratio_err", fluxRatioErr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "flux_ratio_stars", fluxRatioStars, H5T_NATIVE_INT32);
    MEMBER(T, "astrometric_rms_px", astrometricRmsPx, H5T_NATIVE_DOUBLE);
    MEMBER(T, "matched_stars", matchedStars, H5T_NATIVE_INT32);
    MEMBER(T, "sigma_sci", sigmaSci, H5T_NATIVE_DOUBLE);
    MEMBER(T, "sigma_ref", sigmaRef, H5T_NATIVE_DOUBLE);
    MEMBER(T, "f_d", fD, H5T_NATIVE_DOUBLE);
    MEMBER(T, "f_s", fS, H5T_NATIVE_DOUBLE);
    MEMBER(T, "scorr_std", scorrStd, H5T_NATIVE_DOUBLE);
    MEMBER(T, "quality", quality, H5T_NATIVE_UINT32);
    MEMBER(T, "diff_path", diffPath, str(r.diffPath).get());
    MEMBER(T, "scorr_path", scorrPath, str(r.scorrPath).get());
    MEMBER(T, "background_s", backgroundS, H5T_NATIVE_DOUBLE);
    MEMBER(T, "psf_s", psfS, H5T_NATIVE_DOUBLE);
    MEMBER(T, "registration_s", registrationS, H5T_NATIVE_DOUBLE);
    MEMBER(T, "zogy_s", zogyS, H5T_NATIVE_DOUBLE);
    MEMBER(T, "wall_s", wallS, H5T_NATIVE_DOUBLE);
    return t;
}

h5::Handle catalogIssueRow() {
    using T = CatalogIssueRow;
    h5::Handle t(h5::check(H5Tcreate(H5T_COMPOUND, sizeof(T)), "H5Tcreate"));
    T r{};
    MEMBER(T, "line", line, H5T_NATIVE_INT64);
    MEMBER(T, "target_id", targetId, H5T_NATIVE_INT64);
    MEMBER(T, "kind", kind, issueKind().get());
    MEMBER(T, "name", name, str(r.name).get());
    MEMBER(T, "category", category, str(r.category).get());
    MEMBER(T, "detail", detail, str(r.detail).get());
    return t;
}

h5::Handle candidateRow() {
    using T = CandidateRow;
    h5::Handle t(h5::check(H5Tcreate(H5T_COMPOUND, sizeof(T)), "H5Tcreate"));
    MEMBER(T, "target_id", targetId, H5T_NATIVE_INT64);
    MEMBER(T, "science_obs_id", scienceObsId, H5T_NATIVE_INT64);
    MEMBER(T, "index", index, H5T_NATIVE_INT32);
    MEMBER(T, "ra", ra, H5T_NATIVE_DOUBLE);
    MEMBER(T, "dec", dec, H5T_NATIVE_DOUBLE);
    MEMBER(T, "pixel_x", pixelX, H5T_NATIVE_DOUBLE);
    MEMBER(T, "pixel_y", pixelY, H5T_NATIVE_DOUBLE);
    MEMBER(T, "flux", flux, H5T_NATIVE_DOUBLE);
    MEMBER(T, "flux_error", fluxErr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "significance", significance, H5T_NATIVE_DOUBLE);
    MEMBER(T, "snr", snr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "fwhm", fwhm, H5T_NATIVE_DOUBLE);
    MEMBER(T, "ellipticity", ellipticity, H5T_NATIVE_DOUBLE);
    MEMBER(T, "position_angle", positionAngle, H5T_NATIVE_DOUBLE);
    MEMBER(T, "mag", mag, H5T_NATIVE_DOUBLE);
    MEMBER(T, "mag_error", magErr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "isdiffpos", isDiffPos, H5T_NATIVE_INT8);
    MEMBER(T, "is_saturated", isSaturated, H5T_NATIVE_INT8);
    MEMBER(T, "is_blended", isBlended, H5T_NATIVE_INT8);
    MEMBER(T, "is_edge", isEdge, H5T_NATIVE_INT8);
    MEMBER(T, "is_dipole", isDipole, H5T_NATIVE_INT8);
    MEMBER(T, "nbad", nBad, H5T_NATIVE_INT32);
    MEMBER(T, "footprint_px", footprintPx, H5T_NATIVE_INT32);
    MEMBER(T, "sharpness", sharpness, H5T_NATIVE_DOUBLE);
    MEMBER(T, "dipole_ratio", dipoleRatio, H5T_NATIVE_DOUBLE);
    MEMBER(T, "nearest_ref_dist_px", nearestRefDistPx, H5T_NATIVE_DOUBLE);
    MEMBER(T, "nearest_ref_mag", nearestRefMag, H5T_NATIVE_DOUBLE);
    return t;
}

h5::Handle injectionRow() {
    using T = InjectionRow;
    h5::Handle t(h5::check(H5Tcreate(H5T_COMPOUND, sizeof(T)), "H5Tcreate"));
    MEMBER(T, "target_id", targetId, H5T_NATIVE_INT64);
    MEMBER(T, "science_obs_id", scienceObsId, H5T_NATIVE_INT64);
    MEMBER(T, "index", index, H5T_NATIVE_INT32);
    MEMBER(T, "x", x, H5T_NATIVE_DOUBLE);
    MEMBER(T, "y", y, H5T_NATIVE_DOUBLE);
    MEMBER(T, "ra", ra, H5T_NATIVE_DOUBLE);
    MEMBER(T, "dec", dec, H5T_NATIVE_DOUBLE);
    MEMBER(T, "flux_sci", fluxSci, H5T_NATIVE_DOUBLE);
    MEMBER(T, "mag", mag, H5T_NATIVE_DOUBLE);
    MEMBER(T, "mag_limit", magLimit, H5T_NATIVE_DOUBLE);
    MEMBER(T, "snr_true", snrTrue, H5T_NATIVE_DOUBLE);
    MEMBER(T, "host_kind", hostKind, H5T_NATIVE_INT8);
    MEMBER(T, "host_offset_px", hostOffsetPx, H5T_NATIVE_DOUBLE);
    MEMBER(T, "recovered", recovered, H5T_NATIVE_INT8);
    MEMBER(T, "cand_x", candX, H5T_NATIVE_DOUBLE);
    MEMBER(T, "cand_y", candY, H5T_NATIVE_DOUBLE);
    MEMBER(T, "cand_significance", candSignificance, H5T_NATIVE_DOUBLE);
    MEMBER(T, "cand_flux", candFlux, H5T_NATIVE_DOUBLE);
    MEMBER(T, "cand_flux_error", candFluxErr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "cand_fwhm", candFwhm, H5T_NATIVE_DOUBLE);
    MEMBER(T, "cand_sharpness", candSharpness, H5T_NATIVE_DOUBLE);
    return t;
}

h5::Handle forcedPhotometryRow() {
    using T = ForcedPhotometryRow;
    h5::Handle t(h5::check(H5Tcreate(H5T_COMPOUND, sizeof(T)), "H5Tcreate"));
    T r{};
    const h5::Handle d3 = doubles3();
    MEMBER(T, "target_id", targetId, H5T_NATIVE_INT64);
    MEMBER(T, "science_obs_id", scienceObsId, H5T_NATIVE_INT64);
    MEMBER(T, "source_kind", sourceKind, sourceKind().get());
    MEMBER(T, "source_id", sourceId, H5T_NATIVE_INT64);
    MEMBER(T, "ra", ra, H5T_NATIVE_DOUBLE);
    MEMBER(T, "dec", dec, H5T_NATIVE_DOUBLE);
    MEMBER(T, "x", x, H5T_NATIVE_DOUBLE);
    MEMBER(T, "y", y, H5T_NATIVE_DOUBLE);
    MEMBER(T, "mjd", mjd, H5T_NATIVE_DOUBLE);
    MEMBER(T, "filter", filter, str(r.filter).get());
    MEMBER(T, "status", status, photometryStatus().get());
    MEMBER(T, "fail_reason", failReason, str(r.failReason).get());
    MEMBER(T, "flux_sci", fluxSci, H5T_NATIVE_DOUBLE);
    MEMBER(T, "flux_sci_err", fluxSciErr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "flux", flux, H5T_NATIVE_DOUBLE);
    MEMBER(T, "flux_err", fluxErr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "snr", snr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "chi2", chi2, H5T_NATIVE_DOUBLE);
    MEMBER(T, "npix", nPix, H5T_NATIVE_INT32);
    MEMBER(T, "mag", mag, H5T_NATIVE_DOUBLE);
    MEMBER(T, "mag_err", magErr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "is_upper_limit", isUpperLimit, H5T_NATIVE_INT8);
    MEMBER(T, "limit_sigma", limitSigma, H5T_NATIVE_DOUBLE);
    MEMBER(T, "zero_point", zeroPoint, H5T_NATIVE_DOUBLE);
    MEMBER(T, "zero_point_err", zeroPointErr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "norm_factor", normFactor, H5T_NATIVE_DOUBLE);
    MEMBER(T, "norm_factor_err", normFactorErr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "flux_norm", fluxNorm, H5T_NATIVE_DOUBLE);
    MEMBER(T, "flux_norm_err", fluxNormErr, H5T_NATIVE_DOUBLE);
    MEMBER(T, "ap_radius_px", apRadiusPx, d3.get());
    MEMBER(T, "ap_flux_diff", apFluxDiff, d3.get());
    MEMBER(T, "ap_flux_diff_err", apFluxDiffErr, d3.get());
    MEMBER(T, "ap_flux_sci", apFluxSci, d3.get());
    MEMBER(T, "ap_flux_sci_err", apFluxSciErr, d3.get());
    MEMBER(T, "flags", flags, H5T_NATIVE_UINT32);
    return t;
}

}  // namespace astrid::output::h5types
