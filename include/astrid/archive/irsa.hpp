#pragma once
// IRSA for ZTF: the image search service (IBE; <base>/ibe/search/ztf/products/{sci,ref}?POS=ra,dec
// [&WHERE=...]&ct=csv) for science images by position and time and for the reference images
// (co-adds) of the same field, CCD, quadrant and filter; file URLs under <base>/ibe/data/ztf/.
#include <string>
#include <vector>

#include "astrid/archive/http.hpp"
#include "astrid/archive/query.hpp"

namespace astrid::archive {

struct IrsaConfig {
    std::string baseUrl = "https://irsa.ipac.caltech.edu";
};

class IrsaClient {
public:
    IrsaClient(HttpClient& http, IrsaConfig config);
    /// ZTF science images containing (ra, dec) with obsjd in [tMinMjd, tMaxMjd] (as MJD), plus the
    /// reference images of the same quadrants, each with its one FITS product. Throws HttpError
    /// and IoError (a malformed table).
    std::vector<RemoteObservation> ztfImages(double raDeg, double decDeg, double tMinMjd, double tMaxMjd);

private:
    HttpClient& http_;
    IrsaConfig config_;
};

/// Splits one CSV line (double-quoted fields with "" escapes).
std::vector<std::string> splitCsvLine(const std::string& line);

}  // namespace astrid::archive
