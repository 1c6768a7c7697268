#pragma once
// MAST through its invoke API (POST <base>/api/v0/invoke, form field `request` holding
// {service, params, format, pagesize, page}): CAOM observations by position with server-side
// filters (Mast.Caom.Filtered.Position), their products (Mast.Caom.Products), and the download
// endpoint (<base>/api/v0.1/Download/file?uri=<dataURI>). Paging is followed to the last page.
#include <string>
#include <vector>

#include "astrid/archive/http.hpp"
#include "astrid/archive/query.hpp"

namespace astrid::archive {

struct MastConfig {
    std::string baseUrl = "https://mast.stsci.edu";
    int pageSize = 2000;
    int productBatch = 50;  ///< obsids per Mast.Caom.Products request
};

class MastClient {
public:
    MastClient(HttpClient& http, MastConfig config);
    /// Image observations within config.radiusDeg of (ra, dec) whose t_min lies in
    /// [tMinMjd, tMaxMjd], in config.missions (all when empty) and config.filter (when set).
    /// Throws HttpError (transport) and IoError (a MAST error status or a malformed answer).
    std::vector<RemoteObservation> observations(double raDeg, double decDeg, double tMinMjd, double tMaxMjd,
                                                const QueryConfig& config);
    /// Fills each observation's products (one request per productBatch observations).
    void attachProducts(std::vector<RemoteObservation>& observations);
    std::string downloadUrl(const std::string& dataUri) const;
    std::string invokeUrl() const { return config_.baseUrl + "/api/v0/invoke"; }

private:
    HttpClient& http_;
    MastConfig config_;
};

}  // namespace astrid::archive
