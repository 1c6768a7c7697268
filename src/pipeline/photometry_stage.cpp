// Photometry after each difference (issue #4): forced photometry at the target's position on D, the
// reference's zero point, field stars for the ensemble normalisation. Algorithms in
// docs/algorithms.md ("Photometry"); the photometry module does the measuring.
#include <algorithm>
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "astrid/core/angle.hpp"
#include "astrid/photometry/photometry.hpp"
#include "detail.hpp"

namespace astrid::pipeline::detail {
namespace {
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();
}  // namespace

double referenceZeroPoint(const PreparedImage& reference, const PhotometryConfig& cfg) {
    if (std::isfinite(cfg.zeroPoint)) return cfg.zeroPoint;
    for (const std::string& key : cfg.zeroPointKeys) {
        try {
            if (auto v = reference.header.getDouble(key); v && std::isfinite(*v)) return *v;
        } catch (const Error&) {
            // A malformed optional key counts as absent.
        }
    }
    return kNan;
}

OnImage positionsOnImage(const wcs::SkyWcs& wcs, int w, int h, double margin,
                         const std::vector<catalog::CatalogSource>& sources) {
    OnImage out;
    const double cx = 0.5 * (w - 1), cy = 0.5 * (h - 1);
    const auto centre = wcs.pixelToSky(cx, cy), step = wcs.pixelToSky(cx + 1.0, cy);
    const double scaleDeg = angularSeparationDeg(centre.raDeg, centre.decDeg, step.raDeg, step.decDeg);
    const double radius = 0.75 * std::hypot(w, h) * scaleDeg;  // generous: distortion, rotation
    for (std::size_t i = 0; i < sources.size(); ++i) {
        const auto& s = sources[i];
        if (angularSeparationDeg(centre.raDeg, centre.decDeg, s.raDeg, s.decDeg) > radius) continue;
        try {
            const auto p = wcs.skyToPixel(s.raDeg, s.decDeg);
            if (!(p.x >= margin && p.y >= margin && p.x <= w - 1 - margin && p.y <= h - 1 - margin)) continue;
            out.index.push_back(i);
            out.x.push_back(p.x);
            out.y.push_back(p.y);
        } catch (const WcsError&) {
            // no pixel for this position: not on the image
        }
    }
    return out;
}

CatalogZeroPoint catalogZeroPoint(const PreparedImage& reference, const PhotometryConfig& cfg) {
    CatalogZeroPoint out;
    if (cfg.referenceStars.empty() || !reference.wcs || !reference.psf) return out;
    const int w = reference.pixels.image.width(), h = reference.pixels.image.height();
    const auto on = positionsOnImage(*reference.wcs, w, h, reference.psf->halfSize(), cfg.referenceStars);
    std::vector<photometry::PixelPosition> pos;
    std::vector<double> mags;
    for (std::size_t k = 0; k < on.index.size(); ++k) {
        pos.push_back({on.x[k], on.y[k]});
        mags.push_back(cfg.referenceStars[on.index[k]].mag);
    }
    if (pos.empty()) return out;
    const psf::PsfModel& model = *reference.psf;
    const photometry::PsfProvider provider = [&model](double x, double y, double dx, double dy) {
        return model.stampAt(x, y, dx, dy);
    };
    photometry::ForcedPsfConfig fc;
    fc.fitRadiusPx = 2.0 * (reference.stars.fwhmPx > 0 ? reference.stars.fwhmPx : model.fwhmPx());
    const auto fits = photometry::forcedPsfPhotometry(reference.pixels, pos, provider, fc);
    std::vector<double> flux, fluxErr, mag;
    for (std::size_t i = 0; i < fits.size(); ++i) {
        // Saturated or masked stars and blends (a poor fit) would bias the zero point.
        if (fits[i].flags & (photometry::kNoMeasurementFlags | bits(photometry::PhotFlag::Saturated) |
                             bits(photometry::PhotFlag::Masked)))
            continue;
        if (!(fits[i].chi2PerDof < 5.0)) continue;
        flux.push_back(fits[i].flux);
        fluxErr.push_back(fits[i].fluxErr);
        mag.push_back(mags[i]);
    }
    out.inImage = static_cast<int>(pos.size());
    photometry::ZeroPointConfig zc;
    zc.minSnr = cfg.referenceStarMinSnr;
    const auto zp = photometry::zeroPointFromMagnitudes(flux, fluxErr, mag, {}, zc);
    out.zeroPoint = zp.nUsed > 0 ? zp.zeroPoint : kNan;
    out.zeroPointErr = zp.nUsed > 0 ? zp.zeroPointErr : kNan;
    out.scatter = zp.scatter;
    out.stars = zp.nUsed;
    out.flags = zp.flags;
    return out;
}

namespace {
/// A light-curve point before any measurement (status Pending): identity, epoch, zero point.
ForcedPhotometryRecord pendingPoint(std::int8_t kind, std::int64_t id, double ra, double dec, std::int64_t scienceObsId,
                                    double mjd, const std::string& filter, double zeroPoint, double zeroPointErr,
                                    const PhotometryConfig& cfg) {
    ForcedPhotometryRecord rec;
    rec.scienceObsId = scienceObsId;
    rec.sourceKind = kind;
    rec.sourceId = id;
    rec.ra = ra;
    rec.dec = dec;
    rec.mjd = mjd;
    rec.filter = filter;
    rec.limitSigma = cfg.upperLimitSigma;
    rec.zeroPoint = zeroPoint;
    rec.zeroPointErr = std::isfinite(zeroPoint) ? zeroPointErr : kNan;
    return rec;
}
}  // namespace

ForcedPhotometryRecord sourcePoint(const catalog::CatalogSource& source, std::int64_t scienceObsId, double mjd,
                                   const std::string& filter, double zeroPoint, double zeroPointErr,
                                   const PhotometryConfig& cfg) {
    return pendingPoint(1, source.id, source.raDeg, source.decDeg, scienceObsId, mjd, filter, zeroPoint, zeroPointErr,
                        cfg);
}

ForcedPhotometryRecord targetPoint(const catalog::Target& target, std::int64_t scienceObsId, double mjd,
                                   const std::string& filter, double zeroPoint, const PhotometryConfig& cfg) {
    return pendingPoint(0, target.id, target.raDeg, target.decDeg, scienceObsId, mjd, filter, zeroPoint, 0.0, cfg);
}

photometry::ForcedPsfConfig differenceFitConfig(double fwhmPx) {
    photometry::ForcedPsfConfig fc;
    // Edge (ZOGY's kernels reached a masked pixel) and Interpolated (a defect interpolated over before
    // the subtraction) pixels are fitted; the latter flag the point.
    fc.badMaskBits = static_cast<std::uint16_t>(0xFFFF & ~(bits(MaskBit::Edge) | bits(MaskBit::Interpolated)));
    fc.interpolatedMaskBits = bits(MaskBit::Interpolated);
    fc.fitRadiusPx = 2.0 * fwhmPx;
    return fc;
}

ForcedPhotometryRecord forcedAtTarget(ForcedPhotometryRecord rec, const PreparedImage& science, DifferenceImages& images,
                                      const DifferenceRun& run, const PhotometryConfig& cfg) {
    const double zeroPoint = rec.zeroPoint;
    if (!science.wcs) {
        rec.status = PhotometryStatus::Failed;
        rec.failReason = "the science image has no WCS to place the target";
        return rec;
    }
    const auto p = science.wcs->skyToPixel(rec.ra, rec.dec);
    rec.x = p.x;
    rec.y = p.y;

    // D / F_D with its own variance map (source noise included) and ZOGY's mask. Masked pixels are
    // NaN in D and drop out; Edge pixels (within P_D's reach of a masked pixel) are used, and the
    // fit is flagged Masked when its stamp holds a masked pixel: ZOGY sets masked pixels to the
    // background before its transforms, so D near a masked pixel that held light (a host galaxy's
    // saturated core, a bad column across the source) is wrong, and such points are not to be
    // trusted (the photometry campaign: pulls of 5-70 sigma among them, none among the others).
    const double fwhm = run.fwhmSciencePx > 0 ? run.fwhmSciencePx : 3.0;
    const photometry::ForcedPsfConfig fc = differenceFitConfig(fwhm);
    photometry::ForcedPsfResult fit;
    photometry::ApertureResult apD;
    photometry::ApertureConfig ac;
    {  // the planes go back into images.zogy at the end of this block
        const DifferenceView view(images.zogy);
        const MaskedImage& d = view.image();
        const photometry::PixelPosition pos{p.x, p.y};
        fit = photometry::forcedPsfPhotometry(d, std::span(&pos, 1), images.zogy.psfD, fc).front();
        for (std::size_t i = 0; i < 3; ++i) rec.apRadiusPx[i] = cfg.apertureRadiiFwhm[i] * fwhm;
        ac.radiiPx.assign(rec.apRadiusPx.begin(), rec.apRadiusPx.end());
        ac.background = photometry::LocalBackground::None;  // D has no background
        ac.badMaskBits = fc.badMaskBits;
        apD = photometry::aperturePhotometry(d, p.x, p.y, ac);
    }
    ac.background = photometry::LocalBackground::Median;
    ac.annulusInnerPx = cfg.annulusInnerFwhm * fwhm;
    ac.annulusOuterPx = cfg.annulusOuterFwhm * fwhm;
    ac.badMaskBits = 0xFFFF;
    const auto apS = photometry::aperturePhotometry(science.pixels, p.x, p.y, ac);
    for (std::size_t i = 0; i < 3; ++i) {
        rec.apFluxDiff[i] = apD.apertures[i].flux;
        rec.apFluxDiffErr[i] = apD.apertures[i].fluxErr;
        rec.apFluxSci[i] = apS.apertures[i].flux;
        rec.apFluxSciErr[i] = apS.apertures[i].fluxErr;
    }
    rec.flags = fit.flags | apD.flags;
    rec.fluxSci = fit.flux;
    rec.fluxSciErr = fit.fluxErr;
    rec.chi2 = fit.chi2PerDof;
    rec.nPix = fit.nPixels;
    // A fit over masked or saturated pixels that the PSF does not describe (a saturated star's
    // residual under the target: faint transients at 500 sigma) is no measurement. Found on a
    // faint-transient campaign: every |pull| > 10 had Masked|Saturated and chi2/dof 15-130.
    constexpr double kMaxChi2MaskedFit = 3.0;
    const bool corrupted = (fit.flags & (bits(photometry::PhotFlag::Masked) | bits(photometry::PhotFlag::Saturated))) &&
                           fit.chi2PerDof > kMaxChi2MaskedFit;
    if ((fit.flags & photometry::kNoMeasurementFlags) || corrupted) {
        rec.status = PhotometryStatus::Failed;
        rec.failReason = corrupted ? fmt::format("forced PSF fit on D over {} pixels does not fit (chi2/dof {:.1f})",
                                                 photometry::flagNames(fit.flags & (bits(photometry::PhotFlag::Masked) |
                                                                                    bits(photometry::PhotFlag::Saturated))),
                                                 fit.chi2PerDof)
                                   : "forced PSF fit on D: " + photometry::flagNames(fit.flags);
        rec.flux = rec.fluxErr = rec.snr = rec.mag = rec.magErr = kNan;
        return rec;
    }
    // The reference's flux scale (F_r reference ADU per science ADU), its error propagated.
    const double fr = run.fluxRatio, frErr = run.fluxRatioErr;
    rec.flux = fit.flux * fr;
    rec.fluxErr = std::hypot(fit.fluxErr * fr, fit.flux * frErr);
    rec.snr = rec.flux / rec.fluxErr;
    photometry::MagnitudeConfig mc;
    mc.detectionSigma = cfg.detectionSigma;
    mc.upperLimitSigma = cfg.upperLimitSigma;
    if (std::isfinite(zeroPoint)) {
        const auto m = photometry::toMagnitude(rec.flux, rec.fluxErr, zeroPoint,
                                               std::isfinite(rec.zeroPointErr) ? rec.zeroPointErr : 0.0, mc);
        rec.mag = m.mag;
        rec.magErr = m.magErr;
        rec.isUpperLimit = m.isUpperLimit();
        rec.flags |= m.flags;
    } else {
        rec.mag = rec.magErr = kNan;
        rec.isUpperLimit = !(rec.snr >= cfg.detectionSigma);
    }
    rec.fluxNorm = rec.flux;
    rec.fluxNormErr = rec.fluxErr;
    rec.status = PhotometryStatus::Done;
    return rec;
}

std::vector<CandidateRecord> candidatesOf(const PreparedImage& science, const DifferenceImages& images,
                                          const DifferenceRun& run, double zeroPoint, const detect::DetectConfig& cfg) {
    std::vector<detect::KnownSource> refSrc, sciSrc;
    const double fr = run.fluxRatio > 0 ? run.fluxRatio : 1.0;
    for (const psf::Star& s : images.registeredReferenceStars.stars)
        if (!(s.flags & psf::bits(psf::StarFlag::Edge)) && s.flux > 0) refSrc.push_back({s.x, s.y, s.flux / fr});
    for (const psf::Star& s : science.stars.stars)
        if (s.flux > 0) sciSrc.push_back({s.x, s.y, s.flux});
    auto det = detect::detectCandidates(images.zogy, refSrc, sciSrc, cfg);
    if (science.wcs)
        detect::fillSkyPositions(det.candidates, [&](double x, double y) {
            const auto p = science.wcs->pixelToSky(x, y);
            return std::pair{p.raDeg, p.decDeg};
        });
    // Magnitudes on the reference's scale (the zero point is the reference's).
    auto magOf = [&](double fluxSci) {
        const double f = std::fabs(fluxSci) * fr;
        return std::isfinite(zeroPoint) && f > 0 ? zeroPoint - 2.5 * std::log10(f) : kNan;
    };
    std::vector<CandidateRecord> out;
    out.reserve(det.candidates.size());
    for (std::size_t i = 0; i < det.candidates.size(); ++i) {
        const detect::Candidate& c = det.candidates[i];
        CandidateRecord r;
        r.scienceObsId = run.scienceObsId;
        r.index = static_cast<int>(i);
        r.ra = c.raDeg, r.dec = c.decDeg, r.x = c.x, r.y = c.y;
        r.flux = c.flux, r.fluxErr = c.fluxErr, r.significance = c.significance, r.snr = c.snr;
        r.fwhm = c.fwhmPx, r.ellipticity = c.ellipticity, r.positionAngle = c.positionAngleDeg;
        r.mag = magOf(c.flux);
        r.magErr = c.flux != 0.0 ? photometry::kMagPerLnFlux * c.fluxErr / std::fabs(c.flux) : kNan;
        r.isDiffPos = c.isDiffPos, r.isSaturated = c.isSaturated(), r.isBlended = c.isBlended();
        r.isEdge = c.isEdge(), r.isDipole = c.isDipole();
        r.nBad = c.nbad, r.footprintPx = c.areaPx;
        r.sharpness = c.sharpness, r.dipoleRatio = c.dipoleRatio;
        r.nearestRefDistPx = c.nearestRefDistPx;
        r.nearestRefMag = magOf(c.nearestRefFlux);
        out.push_back(r);
    }
    return out;
}

std::vector<wcs::SkyPoint> ensembleStars(const PreparedImage& reference, int maxStars) {
    std::vector<wcs::SkyPoint> out;
    if (!reference.wcs) return out;
    // Bright, clean, unsaturated stars (the star list is sorted brightest first).
    for (const psf::Star& s : reference.stars.stars) {
        if (static_cast<int>(out.size()) >= maxStars) break;
        if (s.flags != 0 || !(s.snr >= 50.0)) continue;
        out.push_back(reference.wcs->pixelToSky(s.x, s.y));
    }
    return out;
}

void ensembleFluxes(const PreparedImage& science, const DifferenceRun& run, const std::vector<wcs::SkyPoint>& stars,
                    std::vector<double>& flux, std::vector<double>& fluxErr) {
    flux.assign(stars.size(), kNan);
    fluxErr.assign(stars.size(), kNan);
    if (!science.wcs || !science.psf || stars.empty()) return;
    std::vector<photometry::PixelPosition> pos;
    pos.reserve(stars.size());
    for (const auto& s : stars) {
        const auto p = science.wcs->skyToPixel(s.raDeg, s.decDeg);
        pos.push_back({p.x, p.y});
    }
    const psf::PsfModel& model = *science.psf;
    const auto fits = photometry::forcedPsfPhotometry(
        science.pixels, pos, [&model](double x, double y, double dx, double dy) { return model.stampAt(x, y, dx, dy); });
    for (std::size_t i = 0; i < fits.size(); ++i) {
        if (fits[i].flags & (photometry::kNoMeasurementFlags | bits(photometry::PhotFlag::Masked) |
                             bits(photometry::PhotFlag::Saturated)))
            continue;
        // On the reference's scale, like the light curve points.
        flux[i] = fits[i].flux * run.fluxRatio;
        fluxErr[i] = fits[i].fluxErr * run.fluxRatio;
    }
}

void normalizeEpochs(std::vector<ForcedPhotometryRecord>& records, const std::vector<std::int64_t>& epochObsIds,
                     const std::vector<std::vector<double>>& starFlux,
                     const std::vector<std::vector<double>>& starFluxErr) {
    // starFlux[epoch][star]; records of any position, matched to their epoch by scienceObsId.
    const int nEpochs = static_cast<int>(starFlux.size());
    if (nEpochs == 0 || nEpochs != static_cast<int>(epochObsIds.size())) return;
    const int nStars = static_cast<int>(starFlux.front().size());
    photometry::FluxMatrix m;
    m.nStars = nStars;
    m.nEpochs = nEpochs;
    m.flux.assign(static_cast<std::size_t>(nStars) * static_cast<std::size_t>(nEpochs), kNan);
    m.fluxErr = m.flux;
    for (int e = 0; e < nEpochs; ++e)
        for (int s = 0; s < nStars; ++s) {
            m.flux[m.index(s, e)] = starFlux[static_cast<std::size_t>(e)][static_cast<std::size_t>(s)];
            m.fluxErr[m.index(s, e)] = starFluxErr[static_cast<std::size_t>(e)][static_cast<std::size_t>(s)];
        }
    photometry::EnsembleResult ens;
    try {
        ens = photometry::ensembleNormalization(m);
    } catch (const Error&) {
        return;  // too few epochs or stars: the points stay unnormalised (norm_factor 1)
    }
    for (ForcedPhotometryRecord& r : records) {
        const auto at = std::find(epochObsIds.begin(), epochObsIds.end(), r.scienceObsId);
        if (at == epochObsIds.end()) continue;
        const auto e = static_cast<std::size_t>(at - epochObsIds.begin());
        const double c = ens.correction[e];
        const double cErr = ens.correctionErr[e];
        r.flags |= ens.epochFlags[e];
        if (!std::isfinite(c) || !(c > 0.0) || r.status != PhotometryStatus::Done) continue;
        const auto nf = photometry::normalizeFlux(r.flux, r.fluxErr, c, std::isfinite(cErr) ? cErr : 0.0);
        r.normFactor = c;
        r.normFactorErr = cErr;
        r.fluxNorm = nf.flux;
        r.fluxNormErr = nf.fluxErr;
    }
}

}  // namespace astrid::pipeline::detail
