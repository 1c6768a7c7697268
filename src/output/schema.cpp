#include "astrid/output/schema.hpp"

#include <cmath>
#include <limits>

namespace astrid::output {

TargetRow toTargetRow(const pipeline::TargetResult& r) {
    TargetRow row{};
    row.targetId = r.target.id;
    setText(row.name, r.target.name);
    row.ra = r.target.raDeg;
    row.dec = r.target.decDeg;
    row.discMjd = r.target.discMjd.value_or(std::numeric_limits<double>::quiet_NaN());
    row.status = static_cast<std::int8_t>(r.status);
    setText(row.failStage, pipeline::stageName(r.failStage));
    setText(row.failReason, r.failReason);
    row.nEpochs = r.nEpochs;
    row.nObservations = static_cast<std::int32_t>(r.observations.size());
    row.wallS = r.wallSeconds;
    row.rank = r.rank;
    return row;
}

std::vector<ObservationRow> toObservationRows(const pipeline::TargetResult& r) {
    std::vector<ObservationRow> rows;
    rows.reserve(r.observations.size());
    for (const auto& o : r.observations) {
        ObservationRow row{};
        row.obsId = o.obsId;
        row.targetId = o.targetId;
        row.role = static_cast<std::int8_t>(o.role);
        setText(row.survey, o.survey);
        setText(row.mission, o.mission);
        setText(row.filterBand, o.filterBand);
        row.mjd = o.mjd;
        row.exposureTime = o.exposureTimeS;
        row.ra = o.raDeg;
        row.dec = o.decDeg;
        row.pixelScale = o.pixelScaleArcsec;
        row.airmass = o.airmass;
        row.seeing = o.seeingArcsec;
        row.width = o.width;
        row.height = o.height;
        setText(row.fitsPath, o.fitsPath);
        row.hdu = o.hdu;
        row.status = static_cast<std::int8_t>(o.status);
        setText(row.statusReason, o.statusReason);
        rows.push_back(row);
    }
    return rows;
}

std::vector<DifferenceRunRow> toDifferenceRunRows(const pipeline::TargetResult& r) {
    std::vector<DifferenceRunRow> rows;
    rows.reserve(r.differences.size());
    for (const auto& d : r.differences) {
        DifferenceRunRow row{};
        row.targetId = r.target.id;
        row.scienceObsId = d.scienceObsId;
        row.referenceObsId = d.referenceObsId;
        setText(row.algorithm, d.algorithm);
        setText(row.parameters, d.parameters);
        row.status = static_cast<std::int8_t>(d.status);
        setText(row.failStage, pipeline::stageName(d.failStage));
        setText(row.failReason, d.failReason);
        row.noiseLevel = d.noiseLevel;
        row.detectionThreshold = d.detectionThreshold;
        row.candidatesFound = d.candidatesFound;
        row.fwhmSci = d.fwhmSciencePx;
        row.fwhmRef = d.fwhmReferencePx;
        row.psfStarsSci = d.psfStarsScience;
        row.psfStarsRef = d.psfStarsReference;
        row.fluxRatio = d.fluxRatio;
        row.fluxRatioErr = d.fluxRatioErr;
        row.fluxRatioStars = d.fluxRatioStars;
        row.astrometricRmsPx = d.astrometricRmsPx;
        row.matchedStars = d.matchedStars;
        row.sigmaSci = d.sigmaScience;
        row.sigmaRef = d.sigmaReference;
        row.fD = d.fD;
        row.fS = d.fS;
        row.scorrStd = d.scorrStd;
        row.quality = d.quality;
        setText(row.diffPath, d.diffPath);
        setText(row.scorrPath, d.scorrPath);
        row.backgroundS = d.backgroundS;
        row.psfS = d.psfS;
        row.registrationS = d.registrationS;
        row.zogyS = d.zogyS;
        row.wallS = d.wallS;
        rows.push_back(row);
    }
    return rows;
}

std::vector<InjectionRow> toInjectionRows(const pipeline::TargetResult& r) {
    std::vector<InjectionRow> rows;
    rows.reserve(r.injections.size());
    for (const auto& f : r.injections) {
        InjectionRow row{};
        row.targetId = r.target.id;
        row.scienceObsId = f.scienceObsId;
        row.index = f.index;
        row.x = f.x, row.y = f.y, row.ra = f.ra, row.dec = f.dec;
        row.fluxSci = f.fluxSci, row.mag = f.mag, row.magLimit = f.magLimit, row.snrTrue = f.snrTrue;
        row.hostKind = f.hostKind, row.hostOffsetPx = f.hostOffsetPx;
        row.recovered = f.recovered ? 1 : 0;
        row.candX = f.candX, row.candY = f.candY, row.candSignificance = f.candSignificance;
        row.candFlux = f.candFlux, row.candFluxErr = f.candFluxErr, row.candFwhm = f.candFwhm;
        row.candSharpness = f.candSharpness;
        rows.push_back(row);
    }
    return rows;
}

std::vector<CandidateRow> toCandidateRows(const pipeline::TargetResult& r) {
    std::vector<CandidateRow> rows;
    rows.reserve(r.candidates.size());
    for (const auto& c : r.candidates) {
        CandidateRow row{};
        row.targetId = r.target.id;
        row.scienceObsId = c.scienceObsId;
        row.index = c.index;
        row.ra = c.ra, row.dec = c.dec, row.pixelX = c.x, row.pixelY = c.y;
        row.flux = c.flux, row.fluxErr = c.fluxErr, row.significance = c.significance, row.snr = c.snr;
        row.fwhm = c.fwhm, row.ellipticity = c.ellipticity, row.positionAngle = c.positionAngle;
        row.mag = c.mag, row.magErr = c.magErr;
        row.isDiffPos = c.isDiffPos, row.isSaturated = c.isSaturated, row.isBlended = c.isBlended;
        row.isEdge = c.isEdge, row.isDipole = c.isDipole;
        row.nBad = c.nBad, row.footprintPx = c.footprintPx;
        row.sharpness = c.sharpness, row.dipoleRatio = c.dipoleRatio;
        row.nearestRefDistPx = c.nearestRefDistPx, row.nearestRefMag = c.nearestRefMag;
        rows.push_back(row);
    }
    return rows;
}

std::vector<ForcedPhotometryRow> toForcedPhotometryRows(const pipeline::TargetResult& r) {
    std::vector<ForcedPhotometryRow> rows;
    rows.reserve(r.forcedPhotometry.size());
    for (const auto& f : r.forcedPhotometry) {
        ForcedPhotometryRow row{};
        row.targetId = r.target.id;
        row.scienceObsId = f.scienceObsId;
        row.sourceKind = f.sourceKind;
        row.sourceId = f.sourceId;
        row.ra = f.ra, row.dec = f.dec, row.x = f.x, row.y = f.y, row.mjd = f.mjd;
        setText(row.filter, f.filter);
        row.status = static_cast<std::int8_t>(f.status);
        setText(row.failReason, f.failReason);
        row.fluxSci = f.fluxSci, row.fluxSciErr = f.fluxSciErr, row.flux = f.flux, row.fluxErr = f.fluxErr;
        row.snr = f.snr, row.chi2 = f.chi2, row.nPix = f.nPix;
        row.mag = f.mag, row.magErr = f.magErr, row.isUpperLimit = f.isUpperLimit, row.limitSigma = f.limitSigma;
        row.zeroPoint = f.zeroPoint, row.zeroPointErr = f.zeroPointErr;
        row.normFactor = f.normFactor, row.normFactorErr = f.normFactorErr;
        row.fluxNorm = f.fluxNorm, row.fluxNormErr = f.fluxNormErr;
        row.apRadiusPx = f.apRadiusPx, row.apFluxDiff = f.apFluxDiff, row.apFluxDiffErr = f.apFluxDiffErr;
        row.apFluxSci = f.apFluxSci, row.apFluxSciErr = f.apFluxSciErr;
        row.flags = f.flags;
        rows.push_back(row);
    }
    return rows;
}

}  // namespace astrid::output
