#include "astrid/archive/archive.hpp"

#include <cmath>

#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"
#include "astrid/core/time.hpp"
#include "astrid/wcs/sky_wcs.hpp"

namespace astrid::archive {
namespace {
std::string firstOf(const fits::Header& h, std::initializer_list<const char*> keys) {
    for (const char* k : keys)
        if (auto v = h.getString(k); v && !v->empty()) return *v;
    return {};
}
double firstNumber(const fits::Header& h, std::initializer_list<const char*> keys) {
    for (const char* k : keys)
        if (auto v = h.getDouble(k)) return *v;
    return Observation::kNaN;
}
}  // namespace

Observation observationFromHeader(const fits::Header& h, int width, int height) {
    Observation o;
    o.width = width;
    o.height = height;
    o.survey = firstOf(h, {"TELESCOP", "OBSERVAT"});
    o.mission = firstOf(h, {"INSTRUME", "DETECTOR"});
    const std::string filter = firstOf(h, {"FILTER", "FILTNAM1", "FILTER1", "BAND"});
    o.filterBand = filter.substr(0, filter.find(' '));
    o.mjd = firstNumber(h, {"MJD-OBS", "MJD_OBS", "MJD"});
    if (std::isnan(o.mjd))
        if (auto d = h.getString("DATE-OBS"))
            if (auto mjd = parseIsoDateToMjd(*d)) o.mjd = *mjd;
    o.exposureTimeS = firstNumber(h, {"EXPTIME", "EXPOSURE", "ITIME"});
    o.airmass = firstNumber(h, {"AIRMASS", "SECZ"});
    try {
        const auto w = wcs::SkyWcs::fromHeader(h);
        const double cx = 0.5 * (width - 1), cy = 0.5 * (height - 1);
        const auto c = w.pixelToSky(cx, cy);
        o.raDeg = c.raDeg;
        o.decDeg = c.decDeg;
        o.pixelScaleArcsec = w.pixelScaleArcsec(cx, cy);
    } catch (const WcsError&) {
        // Left NaN: validation reports "no WCS" with the file name.
    }
    o.seeingArcsec = firstNumber(h, {"SEEING"});
    if (std::isnan(o.seeingArcsec)) {
        const double fwhmPx = firstNumber(h, {"FWHM", "PSF_FWHM", "FWHM_AVE"});
        o.seeingArcsec = fwhmPx * o.pixelScaleArcsec;
    }
    return o;
}

}  // namespace astrid::archive
