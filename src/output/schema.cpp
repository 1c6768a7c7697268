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

}  // namespace astrid::output
