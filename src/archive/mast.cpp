#include "astrid/archive/mast.hpp"

#include <chrono>
#include <cmath>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"

namespace astrid::archive {
using nlohmann::json;

namespace {
std::string str(const json& row, const char* key) {
    const auto it = row.find(key);
    if (it == row.end() || it->is_null()) return {};
    if (it->is_string()) return it->get<std::string>();
    if (it->is_number_integer()) return std::to_string(it->get<long long>());
    if (it->is_number()) return fmt::format("{}", it->get<double>());
    return it->dump();
}
double num(const json& row, const char* key) {
    const auto it = row.find(key);
    if (it == row.end() || it->is_null()) return RemoteObservation::kNaN;
    if (it->is_number()) return it->get<double>();
    if (it->is_string()) {
        try {
            return std::stod(it->get<std::string>());
        } catch (const std::exception&) {
            return RemoteObservation::kNaN;
        }
    }
    return RemoteObservation::kNaN;
}

/// One invoke call with paging: every page's `data` rows concatenated.
std::vector<json> invoke(HttpClient& http, const std::string& url, const std::string& service, const json& params,
                         int pageSize) {
    std::vector<json> rows;
    for (int page = 1;; ++page) {
        json request = {{"service", service}, {"params", params}, {"format", "json"}, {"pagesize", pageSize}, {"page", page}};
        json answer;
        for (int poll = 0;; ++poll) {
            const std::string body = http.postForm(url, {{"request", request.dump()}});
            try {
                answer = json::parse(body);
            } catch (const json::exception& e) {
                throw IoError(fmt::format("MAST {} at {}: the answer is not JSON ({}): {}", service, url, e.what(),
                                          body.substr(0, 120)));
            }
            const std::string status = str(answer, "status");
            if (status == "EXECUTING" && poll < 30) {
                // Long queries answer EXECUTING first; the same request later returns the result.
                std::this_thread::sleep_for(std::chrono::seconds(std::min(10, 1 + poll)));
                continue;
            }
            if (status != "COMPLETE")
                throw IoError(fmt::format("MAST {} at {}: status {}: {}", service, url, status.empty() ? "(none)" : status,
                                          str(answer, "msg")));
            break;
        }
        const auto data = answer.find("data");
        if (data == answer.end() || !data->is_array())
            throw IoError(fmt::format("MAST {} at {}: the answer has no data array", service, url));
        for (const auto& r : *data) rows.push_back(r);
        int pages = 1;
        if (auto p = answer.find("paging"); p != answer.end() && p->is_object()) {
            if (auto pf = p->find("pagesFiltered"); pf != p->end() && pf->is_number_integer()) pages = pf->get<int>();
        }
        if (page >= pages || data->empty()) break;
    }
    return rows;
}
}  // namespace

MastClient::MastClient(HttpClient& http, MastConfig config) : http_(http), config_(std::move(config)) {
    while (!config_.baseUrl.empty() && config_.baseUrl.back() == '/') config_.baseUrl.pop_back();
}

std::string MastClient::downloadUrl(const std::string& dataUri) const {
    return config_.baseUrl + "/api/v0.1/Download/file?uri=" + urlEncode(dataUri);
}

std::vector<RemoteObservation> MastClient::observations(double ra, double dec, double tMin, double tMax,
                                                        const QueryConfig& c) {
    json filters = json::array();
    filters.push_back({{"paramName", "dataproduct_type"}, {"values", {"image"}}});
    if (!c.missions.empty()) filters.push_back({{"paramName", "obs_collection"}, {"values", c.missions}});
    filters.push_back({{"paramName", "t_min"}, {"values", {{{"min", tMin}, {"max", tMax}}}}});
    if (!c.filter.empty()) filters.push_back({{"paramName", "filters"}, {"values", {c.filter}}});
    if (!c.calibLevels.empty()) filters.push_back({{"paramName", "calib_level"}, {"values", c.calibLevels}});
    const json params = {{"columns", "*"},
                         {"filters", filters},
                         {"position", fmt::format("{:.8f}, {:.8f}, {:.6f}", ra, dec, c.radiusDeg)}};
    const auto rows = invoke(http_, invokeUrl(), "Mast.Caom.Filtered.Position", params, config_.pageSize);
    std::vector<RemoteObservation> out;
    out.reserve(rows.size());
    for (const auto& r : rows) {
        RemoteObservation o;
        o.archive = "mast";
        o.obsid = str(r, "obsid");
        o.obsName = str(r, "obs_id");
        o.collection = str(r, "obs_collection");
        o.instrument = str(r, "instrument_name");
        o.filter = str(r, "filters");
        o.tMinMjd = num(r, "t_min");
        o.tMaxMjd = num(r, "t_max");
        o.exposureS = num(r, "t_exptime");
        o.raDeg = num(r, "s_ra");
        o.decDeg = num(r, "s_dec");
        o.sRegion = str(r, "s_region");
        const double level = num(r, "calib_level");
        o.calibLevel = std::isnan(level) ? -1 : static_cast<int>(level);
        if (o.obsid.empty()) throw IoError("MAST observation without obsid at " + invokeUrl());
        out.push_back(std::move(o));
    }
    return out;
}

void MastClient::attachProducts(std::vector<RemoteObservation>& obs) {
    const std::size_t batch = static_cast<std::size_t>(std::max(1, config_.productBatch));
    for (std::size_t start = 0; start < obs.size(); start += batch) {
        std::string ids;
        for (std::size_t i = start; i < std::min(obs.size(), start + batch); ++i) ids += (ids.empty() ? "" : ",") + obs[i].obsid;
        const auto rows = invoke(http_, invokeUrl(), "Mast.Caom.Products", json{{"obsid", ids}}, config_.pageSize);
        for (const auto& r : rows) {
            std::string parent = str(r, "parent_obsid");
            if (parent.empty()) parent = str(r, "obsID");
            for (std::size_t i = start; i < std::min(obs.size(), start + batch); ++i) {
                if (obs[i].obsid != parent) continue;
                RemoteProduct p;
                p.product.uri = str(r, "dataURI");
                p.product.filename = str(r, "productFilename");
                const double size = num(r, "size");
                p.product.size = std::isnan(size) ? -1 : static_cast<std::int64_t>(size);
                p.product.url = downloadUrl(p.product.uri);
                p.productType = str(r, "productType");
                p.subgroup = str(r, "productSubGroupDescription");
                p.description = str(r, "description");
                const double level = num(r, "calib_level");
                p.calibLevel = std::isnan(level) ? -1 : static_cast<int>(level);
                if (!p.product.uri.empty()) obs[i].products.push_back(std::move(p));
            }
        }
    }
}

}  // namespace astrid::archive
