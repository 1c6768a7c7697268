#include "astrid/pipeline/pipeline.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "astrid/core/angle.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/pipeline/difference.hpp"
#include "astrid/wcs/sky_wcs.hpp"
#include "detail.hpp"

namespace astrid::pipeline {
using archive::ObsStatus;
using archive::Observation;
using archive::Role;

std::string stageName(Stage stage) {
    switch (stage) {
        case Stage::None: return "";
        case Stage::Archive: return "archive";
        case Stage::Select: return "select";
        case Stage::Load: return "load";
        case Stage::Validate: return "validate";
        case Stage::Background: return "background";
        case Stage::Psf: return "psf";
        case Stage::Registration: return "registration";
        case Stage::Difference: return "difference";
        case Stage::Internal: return "internal";
    }
    return "unknown";
}

namespace {
/// A failure inside a stage: carries the stage so processTarget can record it.
struct StageFailure {
    Stage stage;
    std::string reason;
};

/// One loaded epoch (the images later stages work on): the image with its variance/mask planes.
struct LoadedImage {
    Observation* obs;
    fits::ImagePlanes planes;
    std::optional<wcs::SkyWcs> wcs;
    int width() const { return planes.science.image.width(); }
    int height() const { return planes.science.image.height(); }
};

std::string fileLabel(const Observation& o) {
    return o.fitsPath + (o.hdu > 0 ? "[" + std::to_string(o.hdu) + "]" : std::string());
}

// The AstrID Observation constraints, plus what every later stage needs.
void validateMetadata(const Observation& o) {
    const std::string f = fileLabel(o);
    auto bad = [&](const std::string& what) { throw StageFailure{Stage::Validate, f + ": " + what}; };
    if (std::isnan(o.raDeg) || std::isnan(o.decDeg)) bad("no usable celestial WCS");
    if (!(o.raDeg >= 0.0 && o.raDeg < 360.0)) bad("RA " + std::to_string(o.raDeg) + " outside [0, 360)");
    if (!(o.decDeg >= -90.0 && o.decDeg <= 90.0)) bad("Dec " + std::to_string(o.decDeg) + " outside [-90, 90]");
    if (!(o.exposureTimeS > 0.0)) bad("exposure time (EXPTIME) missing or not > 0");
    if (!(o.airmass > 0.0)) bad("airmass (AIRMASS) missing or not > 0");
    if (!(o.seeingArcsec > 0.0)) bad("seeing (SEEING or FWHM) missing or not > 0");
    if (std::isnan(o.mjd)) bad("observation date (MJD-OBS/DATE-OBS) missing");
}

LoadedImage loadOne(Observation& o, archive::Archive& archive, const catalog::Target& target,
                    const ValidationConfig& vc) {
    LoadedImage li{&o, {}, std::nullopt};
    const std::string path = archive.fetch(o);
    try {
        li.planes = fits::readImagePlanes(path + (o.hdu >= 0 ? "[" + std::to_string(o.hdu) + "]" : std::string()));
    } catch (const Error& e) {
        throw StageFailure{Stage::Load, e.what()};
    }
    validateMetadata(o);
    try {
        li.wcs.emplace(wcs::SkyWcs::fromHeader(li.planes.science.header));
    } catch (const WcsError& e) {
        throw StageFailure{Stage::Validate, e.what()};
    }
    const Image<float>& image = li.planes.science.image;
    std::size_t bad = 0;
    for (float v : image.pixels()) bad += !std::isfinite(v);
    const double badFraction = static_cast<double>(bad) / static_cast<double>(image.size());
    if (badFraction > vc.maxBadFraction)
        throw StageFailure{Stage::Validate, fileLabel(o) + ": " + std::to_string(static_cast<int>(100 * badFraction)) +
                                                "% of the pixels are NaN/Inf (max_bad_fraction " +
                                                fmt::format("{:g}", vc.maxBadFraction) + ")"};
    if (!wcs::footprintContains(*li.wcs, image.width(), image.height(), {target.raDeg, target.decDeg},
                                vc.targetMarginPx))
        // How far off it is tells a user whether the pointing or the WCS is at fault (a reference
        // pointed 1 degree away from the science images fails here first, before the overlap check).
        throw StageFailure{Stage::Validate,
                           fileLabel(o) + fmt::format(": the target position (RA {:.5f}, Dec {:.5f}) is not on the image "
                                                      "(its centre is {:.3f} deg away)",
                                                      target.raDeg, target.decDeg,
                                                      angularSeparationDeg(target.raDeg, target.decDeg, o.raDeg, o.decDeg))};
    return li;
}
/// The labelled triplets of one clean difference: one per candidate (real when it is the catalog
/// target, within matchRadiusFwhm of its position; bogus otherwise: what the subtraction left) and
/// one at the target's forced position (real when its forced S/N reaches detectSnr, otherwise
/// blank_sky: the transient is not visible there, which is neither real nor an artifact).
void cutoutsOfEpoch(TargetResult& r, const PreparedImage& science, const DifferenceImages& images,
                    const DifferenceRun& run, const std::vector<CandidateRecord>& cands,
                    const ForcedPhotometryRecord& point, const training::TripletMeta& epochMeta,
                    const PipelineConfig& config) {
    const auto& tc = config.training;
    double tx = std::numeric_limits<double>::quiet_NaN(), ty = tx;
    if (science.wcs) {
        try {
            const auto p = science.wcs->skyToPixel(r.target.raDeg, r.target.decDeg);
            tx = p.x, ty = p.y;
        } catch (const Error&) {
        }
    }
    const double radius = tc.matchRadiusFwhm * (run.fwhmSciencePx > 0 ? run.fwhmSciencePx : 3.0);
    for (const auto& c : cands) {
        training::TripletMeta m = epochMeta;
        m.candidateIndex = c.index;
        m.features = detail::featuresOf(c);
        m.ra = c.ra, m.dec = c.dec;
        const bool isTarget = c.isDiffPos && std::hypot(c.x - tx, c.y - ty) <= radius;
        m.labelSource = isTarget ? training::LabelSource::CatalogTransient : training::LabelSource::UnmatchedCandidate;
        if (auto t = detail::cutoutTriplet(science, images, run, tc, c.x, c.y,
                                           isTarget ? training::Label::Real : training::Label::Bogus, m))
            r.triplets.push_back(std::move(*t));
    }
    if (std::isfinite(tx) && std::isfinite(ty)) {
        training::TripletMeta m = epochMeta;
        m.labelSource = training::LabelSource::CatalogTransient;
        m.ra = r.target.raDeg, m.dec = r.target.decDeg;
        m.features.flux = point.fluxSci, m.features.fluxErr = point.fluxSciErr;
        m.features.snr = point.status == PhotometryStatus::Done ? point.fluxSci / point.fluxSciErr : m.features.snr;
        m.features.mag = point.mag, m.features.magErr = point.magErr;
        const bool seen = point.status == PhotometryStatus::Done && m.features.snr >= tc.detectSnr;
        if (auto t = detail::cutoutTriplet(science, images, run, tc, tx, ty,
                                           seen ? training::Label::Real : training::Label::BlankSky, m))
            r.triplets.push_back(std::move(*t));
    }
}

/// Differences every science epoch against the reference. One epoch's failure is recorded in its
/// DifferenceRun and the others go on; the target fails only when no epoch could be differenced.
void throwIfStopped(std::stop_token stop) {
    if (stop.stop_requested()) throw Cancelled{};
}

void differenceEpochs(TargetResult& r, std::vector<LoadedImage>& loaded, LoadedImage& ref, const PipelineConfig& config,
                      std::stop_token stop) {
    auto logger = log::get("astrid.pipeline");
    PreparedImage reference;
    try {
        reference = prepareImage(std::move(ref.planes), config.prepare);
    } catch (const StageError& e) {
        throw StageFailure{e.stage(), std::string("reference ") + e.what()};
    }
    // Photometry needs D's variance map; the ensemble normalisation the reference's bright stars.
    const bool photometry = config.photometry.enabled;
    DifferenceConfig diffConfig = config.difference;
    diffConfig.zogy.keepDiffVariance = diffConfig.zogy.keepDiffVariance || photometry || config.injection.perEpoch > 0;
    double zeroPoint = detail::referenceZeroPoint(reference, config.photometry), zeroPointErr = 0.0;
    if (photometry && !config.photometry.referenceStars.empty()) {
        const auto zp = detail::catalogZeroPoint(reference, config.photometry);
        if (std::isfinite(zp.zeroPoint)) {
            zeroPoint = zp.zeroPoint;
            zeroPointErr = zp.zeroPointErr;
            logger->debug("{}: reference zero point {:.4f} +- {:.4f} from {} of {} catalog stars (scatter {:.3f} mag)",
                          r.target.name, zp.zeroPoint, zp.zeroPointErr, zp.stars, zp.inImage, zp.scatter);
        } else {
            logger->warn("{}: the reference catalog gives no zero point ({} stars on the reference); {}", r.target.name,
                         zp.inImage, std::isfinite(zeroPoint) ? "using the header's" : "fluxes only");
        }
    }
    // Job source-catalog positions on the reference image (a cheap angular cut first: catalogs may
    // be all-sky), measured on every science epoch like the target.
    std::vector<const catalog::CatalogSource*> sources;
    if (photometry && !config.photometry.sources.empty() && reference.wcs) {
        const auto on = detail::positionsOnImage(*reference.wcs, reference.pixels.image.width(),
                                                 reference.pixels.image.height(), 0.0, config.photometry.sources);
        for (auto i : on.index) sources.push_back(&config.photometry.sources[i]);
    }
    std::vector<std::int64_t> epochObsIds;
    const auto ensembleStars = photometry ? detail::ensembleStars(reference, config.photometry.ensembleStars)
                                          : std::vector<wcs::SkyPoint>{};
    std::vector<std::vector<double>> starFlux, starFluxErr;
    std::vector<ForcedPhotometryRecord> points;
    int failed = 0;
    for (LoadedImage& li : loaded) {
        if (li.obs->role != Role::Science) continue;
        throwIfStopped(stop);
        DifferenceRun run;
        run.scienceObsId = li.obs->obsId;
        run.referenceObsId = ref.obs->obsId;
        ForcedPhotometryRecord point = detail::targetPoint(r.target, run.scienceObsId, li.obs->mjd, li.obs->filterBand,
                                                           zeroPoint, config.photometry);
        point.zeroPointErr = std::isfinite(zeroPoint) ? zeroPointErr : point.zeroPointErr;
        std::vector<ForcedPhotometryRecord> sourcePoints;
        for (const auto* src : sources)
            sourcePoints.push_back(detail::sourcePoint(*src, run.scienceObsId, li.obs->mjd, li.obs->filterBand, zeroPoint,
                                                       zeroPointErr, config.photometry));
        std::vector<double> sf(ensembleStars.size(), std::numeric_limits<double>::quiet_NaN()), sfe = sf;
        try {
            PreparedImage science = prepareImage(std::move(li.planes), config.prepare);
            auto images = differenceImages(science, reference, diffConfig, config.prepare, run);
            std::vector<CandidateRecord> cands;
            if (config.detectCandidates) {
                detect::DetectConfig dc = config.detect;
                dc.thresholdSigma = config.difference.detectionThreshold;
                cands = detail::candidatesOf(science, images, run, zeroPoint, dc);
                run.candidatesFound = static_cast<int>(cands.size());
                r.candidates.insert(r.candidates.end(), cands.begin(), cands.end());
            }
            if (photometry) {
                point = detail::forcedAtTarget(point, science, images, run, config.photometry);
                for (auto& sp : sourcePoints) sp = detail::forcedAtTarget(sp, science, images, run, config.photometry);
                detail::ensembleFluxes(science, run, ensembleStars, sf, sfe);
            }
            training::TripletMeta epochMeta;
            epochMeta.targetId = r.target.id;
            epochMeta.targetName = r.target.name;
            epochMeta.obsId = run.scienceObsId;
            epochMeta.mjd = li.obs->mjd;
            epochMeta.filter = li.obs->filterBand;
            if (config.training.enabled) cutoutsOfEpoch(r, science, images, run, cands, point, epochMeta, config);
            run.backgroundS = science.backgroundS;
            run.psfS = science.psfS;
            if (config.differenceOutput.writeFits) {
                const std::filesystem::path dir = std::filesystem::path(config.differenceOutput.directory) / r.target.name;
                std::filesystem::create_directories(dir);
                const std::string prefix = (dir / (std::to_string(run.scienceObsId) + "_")).string();
                writeDifferenceFits(prefix, science, images, run);
                run.diffPath = prefix + "diff.fits";
                run.scorrPath = prefix + "scorr.fits";
            }
            if (config.injection.perEpoch > 0) {  // last: it replaces the clean difference in `images`
                throwIfStopped(stop);
                detect::DetectConfig dc = config.detect;
                dc.thresholdSigma = config.difference.detectionThreshold;
                try {
                    auto fakes = detail::injectAndRecover(r.target, science, images, run, diffConfig, dc, zeroPoint,
                                                          config.injection, &config.training, &epochMeta, &r.triplets);
                    r.injections.insert(r.injections.end(), fakes.begin(), fakes.end());
                } catch (const Error& e) {  // the clean products stand; this epoch has no fakes
                    logger->warn("{}: epoch {}: fake injection failed: {}", r.target.name, run.scienceObsId, e.what());
                }
            }
            logger->debug("{}: epoch {} differenced: S_corr std {:.3f}, astrometric rms {:.3f} px, flux ratio {:.4f}",
                          r.target.name, run.scienceObsId, run.scorrStd, run.astrometricRmsPx, run.fluxRatio);
        } catch (const StageError& e) {
            run.status = TargetStatus::Failed;
            run.failStage = e.stage();
            run.failReason = e.what();
            logger->warn("{}: epoch {} not differenced ({}): {}", r.target.name, run.scienceObsId,
                         stageName(e.stage()), e.what());
        } catch (const Cancelled&) {
            throw;
        } catch (const std::exception& e) {  // e.g. a full disk writing the FITS outputs
            run.status = TargetStatus::Failed;
            run.failStage = Stage::Difference;
            run.failReason = e.what();
        }
        if (photometry) {
            points.push_back(std::move(point));
            points.insert(points.end(), sourcePoints.begin(), sourcePoints.end());
            for (std::size_t k = points.size() - 1 - sourcePoints.size(); k < points.size(); ++k) {
                if (run.status == TargetStatus::Failed && points[k].status != PhotometryStatus::Done) {
                    points[k].status = PhotometryStatus::Failed;
                    points[k].failReason = "no difference (" + stageName(run.failStage) + ")";
                }
            }
            epochObsIds.push_back(run.scienceObsId);
            starFlux.push_back(std::move(sf));
            starFluxErr.push_back(std::move(sfe));
        }
        r.differences.push_back(std::move(run));
        failed += r.differences.back().status == TargetStatus::Failed;
    }
    if (photometry) {
        detail::normalizeEpochs(points, epochObsIds, starFlux, starFluxErr);
        r.forcedPhotometry = std::move(points);
    }
    if (failed > 0 && failed == static_cast<int>(r.differences.size()))
        throw StageFailure{r.differences.front().failStage,
                           "no science epoch could be differenced; first: " + r.differences.front().failReason};
}
}  // namespace

TargetResult processTarget(const catalog::Target& target, archive::Archive& archive, const PipelineConfig& config,
                           std::stop_token stop) {
    const auto t0 = std::chrono::steady_clock::now();
    auto logger = log::get("astrid.pipeline");
    TargetResult r;
    r.target = target;
    try {
        throwIfStopped(stop);
        try {
            r.observations = archive.listObservations(target);
        } catch (const DataError& e) {
            throw StageFailure{Stage::Archive, e.what()};  // the archive's verdict: asking again changes nothing
        } catch (const Error& e) {
            r.transient = true;  // an archive that could not be listed may answer next time
            throw StageFailure{Stage::Archive, e.what()};
        }
        if (r.observations.empty())
            throw StageFailure{Stage::Archive, "no observations in " + archive.describe() + " for " + target.name};

        // A file the archive could not even read fails the target: silently ignoring it would hide
        // a corrupt archive.
        for (const Observation& o : r.observations)
            if (o.status == ObsStatus::Invalid) throw StageFailure{Stage::Load, o.statusReason};

        if (std::string why = selectObservations(target, r.observations, config.select); !why.empty())
            throw StageFailure{Stage::Select, why};

        std::vector<LoadedImage> loaded;
        for (Observation& o : r.observations) {
            if (o.status != ObsStatus::Used) continue;
            throwIfStopped(stop);
            try {
                loaded.push_back(loadOne(o, archive, target, config.validate));
            } catch (const StageFailure& f) {
                o.status = ObsStatus::Invalid;
                o.statusReason = f.reason;
                throw;
            }
        }
        // Every science image must be covered by a reference well enough to difference it.
        LoadedImage* ref = nullptr;
        for (auto& li : loaded)
            if (li.obs->role == Role::Reference) ref = &li;
        for (auto& li : loaded) {
            if (li.obs->role != Role::Science) continue;
            ++r.nEpochs;
            if (!ref) continue;
            const double overlap =
                wcs::footprintOverlap(*li.wcs, li.width(), li.height(), *ref->wcs, ref->width(), ref->height());
            if (overlap < config.select.minOverlap) {
                li.obs->status = ObsStatus::Invalid;
                // The reference by file name only: status_reason is 192 characters in the output and
                // the numbers must not be cut off (its full path is in its own observation row).
                li.obs->statusReason = "reference " + std::filesystem::path(fileLabel(*ref->obs)).filename().string() +
                                       " covers " +
                                       std::to_string(static_cast<int>(100 * overlap)) +
                                       "% of the image (min_overlap " + fmt::format("{:g}", config.select.minOverlap) + ")";
                throw StageFailure{Stage::Validate, fileLabel(*li.obs) + ": " + li.obs->statusReason};
            }
        }
        if (config.differenceOutput.enabled && ref) differenceEpochs(r, loaded, *ref, config, stop);
        r.status = TargetStatus::Ok;
    } catch (const StageFailure& f) {
        r.status = TargetStatus::Failed;
        r.failStage = f.stage;
        r.failReason = f.reason;
        logger->warn("{}: failed in {}: {}", target.name, stageName(f.stage), f.reason);
    } catch (const Cancelled&) {
        throw;
    } catch (const std::exception& e) {
        r.transient = true;
        r.status = TargetStatus::Failed;
        r.failStage = Stage::Internal;
        r.failReason = e.what();
        logger->error("{}: internal error: {}", target.name, e.what());
    }
    r.wallSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace astrid::pipeline
