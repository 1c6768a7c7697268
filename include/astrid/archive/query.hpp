#pragma once
// Archive look-up ahead of a campaign: what a remote archive holds for a target, and the
// reference/science pairing rules that decide which of it is worth downloading.
//
// Pairing (per target with a discovery date `disc`, MJD):
//   reference epochs: t_max <= disc - refMarginDays and t_min >= disc - daysBefore
//                     (co-added references, IRSA refimg, need only t_max <= disc - refMarginDays)
//   science epochs:   t_min in [disc, disc + daysAfter]
//   a pair shares the archive, mission (obs_collection), instrument and filter: cross-mission
//   pairs gave unusable differences in AstrID;
//   a reference counts for a science image when its footprint (s_region) covers at least
//   minOverlap of the science footprint;
//   per (mission, instrument, filter) group: references ranked by how many science images they
//   cover, then exposure time, then closeness to disc; the best maxReference that cover
//   something are kept, with the science images they cover (earliest first, maxScience);
//   the group with the most science images wins; requireBoth demands a reference and a science
//   image, else the target is unpaired with the reason.
//   Products: only productType in productTypes, calib_level in calibLevels, FITS files, at most
//   maxProductBytes, with a safe file name; an observation without one is dropped (counted).
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "astrid/archive/cache.hpp"
#include "astrid/archive/observation.hpp"
#include "astrid/catalog/catalog.hpp"

namespace astrid::archive {

/// One file of a remote observation, as the archive lists it.
struct RemoteProduct {
    Product product;
    std::string productType;   ///< MAST productType (SCIENCE, AUXILIARY, PREVIEW, ...)
    std::string subgroup;      ///< MAST productSubGroupDescription (FLT, DRZ, I2D, ...)
    std::string description;
    int calibLevel = -1;
};

/// One observation of a remote archive (CAOM fields for MAST; ZTF image metadata for IRSA).
struct RemoteObservation {
    static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
    std::string archive;       ///< "mast" or "irsa"
    std::string obsid;         ///< MAST obsid / IRSA image id: the archive's key
    std::string obsName;       ///< MAST obs_id (dataset name) / ZTF file stem
    std::string collection;    ///< obs_collection: HST, JWST, TESS, PS1, ZTF, ...
    std::string instrument;
    std::string filter;
    double tMinMjd = kNaN, tMaxMjd = kNaN;
    double exposureS = kNaN;
    double raDeg = kNaN, decDeg = kNaN;
    std::string sRegion;       ///< footprint, IVOA STC-S ("POLYGON [frame] ra dec ...", "CIRCLE ...")
    int calibLevel = -1;
    bool coadd = false;        ///< a co-added reference (IRSA refimg): only its end date counts
    Role role = Role::Unassigned;
    double overlap = kNaN;     ///< science: fraction of its footprint the chosen reference covers
    std::vector<RemoteProduct> products;
};

struct QueryConfig {
    std::vector<std::string> missions;  ///< obs_collection values (MAST); empty: any
    double radiusDeg = 0.01;            ///< search cone around the target
    double daysBefore = 365.0;
    double refMarginDays = 1.0;
    double daysAfter = 365.0;
    double minOverlap = 0.85;
    int maxReference = 1;
    int maxScience = 20;
    bool requireBoth = true;
    std::string filter;                 ///< only this filter when non-empty
    std::vector<int> calibLevels{2, 3};
    std::vector<std::string> productTypes{"SCIENCE"};
    std::int64_t maxProductBytes = 4LL << 30;
};

enum class PlanStatus { Paired, Unpaired, Error };
const char* planStatusName(PlanStatus s);

/// What the query decided for one target.
struct TargetPlan {
    catalog::Target target;
    PlanStatus status = PlanStatus::Unpaired;
    std::string reason;     ///< why unpaired / the archive error; notes when paired
    std::string archive, mission, instrument, filter;
    int found = 0;          ///< observations the archives returned
    std::vector<RemoteObservation> observations;  ///< the selected ones, references first
};

/// Applies the pairing rules to what the archives returned for a target.
TargetPlan pairTarget(const catalog::Target& target, std::vector<RemoteObservation> found, const QueryConfig& config);

/// Fraction of footprint `a` covered by footprint `b` (STC-S POLYGON or CIRCLE, ICRS degrees);
/// nullopt when either cannot be parsed.
std::optional<double> footprintCoverage(const std::string& a, const std::string& b);

}  // namespace astrid::archive
