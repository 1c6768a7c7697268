#pragma once
// An observation: one image of a target's field as an archive describes it (the AstrID Observation
// fields). Values a header lacks are NaN / empty; validation in pipeline/ decides what is fatal.
#include <cstdint>
#include <limits>
#include <string>

namespace astrid::archive {

enum class Role : std::int8_t { Unassigned = -1, Reference = 0, Science = 1 };

/// What happened to an observation in the target's pipeline (written to /observations.status).
enum class ObsStatus : std::int8_t {
    Used = 0,         ///< selected and loaded
    NotSelected = 1,  ///< outside the date windows, another filter/mission, or beyond the per-role maximum
    Invalid = 2,      ///< selected but unreadable or failing validation (reason says which)
};

struct Observation {
    static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
    std::int64_t obsId = -1;     ///< stable id: targetId * 10000 + index in the archive listing
    std::int64_t targetId = -1;
    Role role = Role::Unassigned;
    std::string survey;          ///< TELESCOP (e.g. "CTIO 4.0-m telescope", "SIMULATED")
    std::string mission;         ///< INSTRUME (e.g. "DECam")
    std::string filterBand;      ///< first word of FILTER
    double mjd = kNaN;
    double exposureTimeS = kNaN;
    double raDeg = kNaN;         ///< image centre, ICRS
    double decDeg = kNaN;
    double pixelScaleArcsec = kNaN;
    double airmass = kNaN;
    double seeingArcsec = kNaN;  ///< SEEING, else FWHM [px] x pixel scale
    int width = 0;
    int height = 0;
    std::string fitsPath;        ///< file path as the archive fetched it
    int hdu = -1;                ///< 0-based HDU holding the image
    ObsStatus status = ObsStatus::NotSelected;
    std::string statusReason;    ///< why not used / invalid (empty when used)
};

}  // namespace astrid::archive
