#include "astrid/pipeline/pipeline.hpp"

#include <chrono>
#include <cmath>
#include <optional>

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/wcs/sky_wcs.hpp"

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

/// One loaded epoch (the images later stages work on).
struct LoadedImage {
    Observation* obs;
    fits::ImageHdu hdu;
    std::optional<wcs::SkyWcs> wcs;
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
        li.hdu = fits::readImage(path + (o.hdu >= 0 ? "[" + std::to_string(o.hdu) + "]" : std::string()));
    } catch (const Error& e) {
        throw StageFailure{Stage::Load, e.what()};
    }
    validateMetadata(o);
    try {
        li.wcs.emplace(wcs::SkyWcs::fromHeader(li.hdu.header));
    } catch (const WcsError& e) {
        throw StageFailure{Stage::Validate, e.what()};
    }
    std::size_t bad = 0;
    for (float v : li.hdu.image.pixels()) bad += !std::isfinite(v);
    const double badFraction = static_cast<double>(bad) / static_cast<double>(li.hdu.image.size());
    if (badFraction > vc.maxBadFraction)
        throw StageFailure{Stage::Validate, fileLabel(o) + ": " + std::to_string(static_cast<int>(100 * badFraction)) +
                                                "% of the pixels are NaN/Inf (max_bad_fraction " +
                                                fmt::format("{:g}", vc.maxBadFraction) + ")"};
    if (!wcs::footprintContains(*li.wcs, li.hdu.image.width(), li.hdu.image.height(), {target.raDeg, target.decDeg},
                                vc.targetMarginPx))
        throw StageFailure{Stage::Validate, fileLabel(o) + ": the target position is not on the image"};
    return li;
}
}  // namespace

TargetResult processTarget(const catalog::Target& target, archive::Archive& archive, const PipelineConfig& config) {
    const auto t0 = std::chrono::steady_clock::now();
    auto logger = log::get("astrid.pipeline");
    TargetResult r;
    r.target = target;
    try {
        try {
            r.observations = archive.listObservations(target);
        } catch (const Error& e) {
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
            try {
                loaded.push_back(loadOne(o, archive, target, config.validate));
            } catch (const StageFailure& f) {
                o.status = ObsStatus::Invalid;
                o.statusReason = f.reason;
                throw;
            }
        }
        // Every science image must be covered by a reference well enough to difference it.
        const LoadedImage* ref = nullptr;
        for (const auto& li : loaded)
            if (li.obs->role == Role::Reference) ref = &li;
        for (auto& li : loaded) {
            if (li.obs->role != Role::Science) continue;
            ++r.nEpochs;
            if (!ref) continue;
            const double overlap = wcs::footprintOverlap(*li.wcs, li.hdu.image.width(), li.hdu.image.height(),
                                                         *ref->wcs, ref->hdu.image.width(), ref->hdu.image.height());
            if (overlap < config.select.minOverlap) {
                li.obs->status = ObsStatus::Invalid;
                li.obs->statusReason = "reference covers " + std::to_string(static_cast<int>(100 * overlap)) +
                                       "% of the image (min_overlap " + fmt::format("{:g}", config.select.minOverlap) + ")";
                throw StageFailure{Stage::Validate, fileLabel(*li.obs) + ": " + li.obs->statusReason};
            }
        }
        r.status = TargetStatus::Ok;
    } catch (const StageFailure& f) {
        r.status = TargetStatus::Failed;
        r.failStage = f.stage;
        r.failReason = f.reason;
        logger->warn("{}: failed in {}: {}", target.name, stageName(f.stage), f.reason);
    } catch (const std::exception& e) {
        r.status = TargetStatus::Failed;
        r.failStage = Stage::Internal;
        r.failReason = e.what();
        logger->error("{}: internal error: {}", target.name, e.what());
    }
    r.wallSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return r;
}

}  // namespace astrid::pipeline
