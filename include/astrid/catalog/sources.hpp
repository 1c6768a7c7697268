#pragma once
// Source catalogs of fixed sky positions (issue #4): positions for forced photometry on every
// science epoch (job key source_catalog) and reference stars with magnitudes for the zero point
// (job key reference_catalog). CSV with a header line naming the columns, in any order:
//   ra, dec     ICRS degrees (required; also ra_deg/dec_deg, raj2000/dej2000)
//   id          integer (optional; default: the 0-based data row)
//   mag         magnitude (optional; also magnitude; required for a reference catalog)
// Other columns are ignored; blank lines and lines starting with '#' are skipped. A row that cannot
// be read is an error naming the file and line (a catalog is input to every target: a half-read one
// would silently change every light curve).
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

namespace astrid::catalog {

struct CatalogSource {
    std::int64_t id = -1;
    double raDeg = 0.0, decDeg = 0.0;
    double mag = std::numeric_limits<double>::quiet_NaN();
};

/// Reads a source catalog. requireMag: every row must have a finite magnitude. Throws CatalogError
/// naming the file and line (a missing file, a header without ra/dec, a bad number, duplicate ids).
std::vector<CatalogSource> readSourceCatalog(const std::string& path, bool requireMag = false);

}  // namespace astrid::catalog
