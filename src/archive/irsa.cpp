#include "astrid/archive/irsa.hpp"

#include <cmath>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"
#include "astrid/core/time.hpp"

namespace astrid::archive {

std::vector<std::string> splitCsvLine(const std::string& line) {
    std::vector<std::string> out(1);
    bool quoted = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (quoted) {
            if (c == '"' && i + 1 < line.size() && line[i + 1] == '"') out.back().push_back('"'), ++i;
            else if (c == '"') quoted = false;
            else out.back().push_back(c);
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            out.emplace_back();
        } else if (c != '\r') {
            out.back().push_back(c);
        }
    }
    return out;
}

namespace {
using Row = std::map<std::string, std::string>;

std::vector<Row> parseCsv(const std::string& body, const std::string& url) {
    std::vector<Row> rows;
    std::istringstream in(body);
    std::string line;
    std::vector<std::string> header;
    long n = 0;
    while (std::getline(in, line)) {
        ++n;
        if (text::trim(line).empty()) continue;
        auto fields = splitCsvLine(line);
        if (header.empty()) {
            for (auto& f : fields) f = std::string(text::trim(f));
            header = std::move(fields);
            continue;
        }
        if (fields.size() != header.size())
            throw IoError(fmt::format("IRSA table from {}: line {} has {} fields, the header {}", url, n, fields.size(),
                                      header.size()));
        Row r;
        for (std::size_t i = 0; i < header.size(); ++i) r[header[i]] = std::string(text::trim(fields[i]));
        rows.push_back(std::move(r));
    }
    return rows;
}

const std::string& need(const Row& r, const char* key, const std::string& url) {
    const auto it = r.find(key);
    if (it == r.end()) throw IoError(fmt::format("IRSA table from {}: no column '{}'", url, key));
    return it->second;
}
double toNumber(const std::string& s) {
    try {
        return s.empty() ? RemoteObservation::kNaN : std::stod(s);
    } catch (const std::exception&) {
        return RemoteObservation::kNaN;
    }
}
int toInt(const std::string& s, const char* key, const std::string& url) {
    try {
        return std::stoi(s);
    } catch (const std::exception&) {
        throw IoError(fmt::format("IRSA table from {}: '{}' is not an integer in column {}", url, s, key));
    }
}
/// IBE dates look like "2018-03-01 07:31:02.853+00".
double dateToMjd(std::string s) {
    if (s.size() > 19) s.resize(19);
    const auto mjd = parseIsoDateToMjd(s);
    return mjd ? *mjd : RemoteObservation::kNaN;
}
std::string corners(const Row& r) {
    std::string s = "POLYGON ICRS";
    for (int i = 1; i <= 4; ++i) {
        const auto ra = r.find("ra" + std::to_string(i)), dec = r.find("dec" + std::to_string(i));
        if (ra == r.end() || dec == r.end() || ra->second.empty() || dec->second.empty()) return {};
        s += " " + ra->second + " " + dec->second;
    }
    return s;
}
}  // namespace

IrsaClient::IrsaClient(HttpClient& http, IrsaConfig config) : http_(http), config_(std::move(config)) {
    while (!config_.baseUrl.empty() && config_.baseUrl.back() == '/') config_.baseUrl.pop_back();
}

std::vector<RemoteObservation> IrsaClient::ztfImages(double ra, double dec, double tMin, double tMax) {
    const std::string pos = fmt::format("{:.8f},{:.8f}", ra, dec);
    const std::string where = fmt::format("obsjd>={:.6f} AND obsjd<={:.6f}", tMin + 2400000.5, tMax + 2400000.5);
    const std::string sciUrl = config_.baseUrl + "/ibe/search/ztf/products/sci?POS=" + urlEncode(pos) +
                               "&WHERE=" + urlEncode(where) + "&ct=csv";
    std::vector<RemoteObservation> out;
    std::set<std::string> quadrants;  // field/ccd/qid/filter of the science images
    for (const Row& r : parseCsv(http_.get(sciUrl), sciUrl)) {
        const int field = toInt(need(r, "field", sciUrl), "field", sciUrl);
        const int ccd = toInt(need(r, "ccdid", sciUrl), "ccdid", sciUrl);
        const int qid = toInt(need(r, "qid", sciUrl), "qid", sciUrl);
        const std::string& fc = need(r, "filtercode", sciUrl);
        const std::string& ffd = need(r, "filefracday", sciUrl);
        const std::string& itc = need(r, "imgtypecode", sciUrl);
        if (ffd.size() != 14) throw IoError("IRSA table from " + sciUrl + ": filefracday '" + ffd + "' is not 14 digits");
        RemoteObservation o;
        o.archive = "irsa";
        o.collection = "ZTF";
        o.instrument = "ZTF";
        o.filter = fc;
        o.obsName = fmt::format("ztf_{}_{:06d}_{}_c{:02d}_{}_q{}", ffd, field, fc, ccd, itc, qid);
        o.obsid = o.obsName;
        o.tMinMjd = toNumber(need(r, "obsjd", sciUrl)) - 2400000.5;
        o.exposureS = r.count("exptime") ? toNumber(r.at("exptime")) : RemoteObservation::kNaN;
        o.tMaxMjd = o.tMinMjd + (std::isnan(o.exposureS) ? 0.0 : o.exposureS / 86400.0);
        o.raDeg = r.count("ra") ? toNumber(r.at("ra")) : RemoteObservation::kNaN;
        o.decDeg = r.count("dec") ? toNumber(r.at("dec")) : RemoteObservation::kNaN;
        o.sRegion = corners(r);
        o.calibLevel = 2;
        RemoteProduct p;
        p.product.filename = o.obsName + "_sciimg.fits";
        const std::string rel = fmt::format("sci/{}/{}/{}/{}", ffd.substr(0, 4), ffd.substr(4, 4), ffd.substr(8), p.product.filename);
        p.product.uri = "irsa:ztf/products/" + rel;
        p.product.url = config_.baseUrl + "/ibe/data/ztf/products/" + rel;
        p.productType = "SCIENCE";
        p.calibLevel = 2;
        o.products.push_back(std::move(p));
        quadrants.insert(fmt::format("{}/{}/{}/{}", field, ccd, qid, fc));
        out.push_back(std::move(o));
    }
    if (quadrants.empty()) return out;
    const std::string refUrl = config_.baseUrl + "/ibe/search/ztf/products/ref?POS=" + urlEncode(pos) + "&ct=csv";
    for (const Row& r : parseCsv(http_.get(refUrl), refUrl)) {
        const int field = toInt(need(r, "field", refUrl), "field", refUrl);
        const int ccd = toInt(need(r, "ccdid", refUrl), "ccdid", refUrl);
        const int qid = toInt(need(r, "qid", refUrl), "qid", refUrl);
        const std::string& fc = need(r, "filtercode", refUrl);
        if (!quadrants.count(fmt::format("{}/{}/{}/{}", field, ccd, qid, fc))) continue;  // no science image to pair
        RemoteObservation o;
        o.archive = "irsa";
        o.collection = "ZTF";
        o.instrument = "ZTF";
        o.filter = fc;
        o.coadd = true;
        o.obsName = fmt::format("ztf_{:06d}_{}_c{:02d}_q{}", field, fc, ccd, qid);
        o.obsid = o.obsName + "_refimg";
        o.tMinMjd = dateToMjd(need(r, "startobsdate", refUrl));
        o.tMaxMjd = dateToMjd(need(r, "endobsdate", refUrl));
        o.raDeg = r.count("ra") ? toNumber(r.at("ra")) : RemoteObservation::kNaN;
        o.decDeg = r.count("dec") ? toNumber(r.at("dec")) : RemoteObservation::kNaN;
        o.sRegion = corners(r);
        o.calibLevel = 3;
        RemoteProduct p;
        p.product.filename = o.obsName + "_refimg.fits";
        const std::string f6 = fmt::format("{:06d}", field);
        const std::string rel = fmt::format("ref/{}/field{}/{}/ccd{:02d}/q{}/{}", f6.substr(0, 3), f6, fc, ccd, qid,
                                            p.product.filename);
        p.product.uri = "irsa:ztf/products/" + rel;
        p.product.url = config_.baseUrl + "/ibe/data/ztf/products/" + rel;
        p.productType = "SCIENCE";
        p.calibLevel = 3;
        o.products.push_back(std::move(p));
        out.push_back(std::move(o));
    }
    return out;
}

}  // namespace astrid::archive
