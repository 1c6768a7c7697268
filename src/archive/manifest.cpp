#include "astrid/archive/manifest.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/fits/fits_file.hpp"

namespace astrid::archive {
namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

namespace {
ojson numOrNull(double v) { return std::isfinite(v) ? ojson(v) : ojson(nullptr); }
double numFrom(const ojson& j, const char* key) {
    const auto it = j.find(key);
    return it == j.end() || it->is_null() ? RemoteObservation::kNaN : it->get<double>();
}
const char* roleName(Role r) { return r == Role::Reference ? "reference" : r == Role::Science ? "science" : "unassigned"; }
Role roleFrom(const std::string& s) {
    if (s == "reference") return Role::Reference;
    if (s == "science") return Role::Science;
    throw DataError("role must be reference or science, not '" + s + "'");
}
PlanStatus statusFrom(const std::string& s) {
    if (s == "paired") return PlanStatus::Paired;
    if (s == "unpaired") return PlanStatus::Unpaired;
    if (s == "error") return PlanStatus::Error;
    throw DataError("status must be paired, unpaired or error, not '" + s + "'");
}
/// The stable part of a reason, for the summary counts: up to the first number or bracket.
std::string reasonCategory(const std::string& r) {
    std::size_t end = r.find_first_of("([0123456789:");
    std::string s = r.substr(0, end);
    while (!s.empty() && (s.back() == ' ' || s.back() == ';')) s.pop_back();
    return s.empty() ? r : s;
}
}  // namespace

void writeManifest(const Manifest& m, const std::string& path) {
    ojson j;
    j["format"] = "astrid-manifest";
    j["format_version"] = m.formatVersion;
    j["created_utc"] = m.createdUtc;
    j["command"] = m.command;
    j["catalog"] = m.catalog;
    j["archives"] = {{"mast", m.mastUrl}, {"irsa", m.irsaUrl}};
    const QueryConfig& q = m.query;
    j["query"] = {{"missions", q.missions},         {"radius_deg", q.radiusDeg},
                  {"days_before", q.daysBefore},    {"ref_margin_days", q.refMarginDays},
                  {"days_after", q.daysAfter},      {"min_overlap", q.minOverlap},
                  {"max_reference", q.maxReference}, {"max_science", q.maxScience},
                  {"require_both", q.requireBoth},  {"filter", q.filter},
                  {"calib_levels", q.calibLevels},  {"product_types", q.productTypes},
                  {"max_product_bytes", q.maxProductBytes}};
    std::map<std::string, int> reasons;
    int paired = 0, unpaired = 0, errors = 0;
    for (const auto& t : m.targets) {
        if (t.status == PlanStatus::Paired) ++paired;
        else {
            (t.status == PlanStatus::Error ? errors : unpaired)++;
            ++reasons[reasonCategory(t.reason)];
        }
    }
    std::int64_t bytes = 0;
    const auto products = manifestProducts(m);
    for (const auto& p : products) bytes += std::max<std::int64_t>(0, p.size);
    j["summary"] = {{"targets", m.targets.size()}, {"paired", paired},          {"unpaired", unpaired},
                    {"error", errors},             {"products", products.size()}, {"bytes", bytes},
                    {"reasons", reasons}};
    ojson targets = ojson::array();
    for (const auto& t : m.targets) {
        ojson jt = {{"target_id", t.target.id},
                    {"name", t.target.name},
                    {"ra", t.target.raDeg},
                    {"dec", t.target.decDeg},
                    {"disc_mjd", t.target.discMjd ? ojson(*t.target.discMjd) : ojson(nullptr)},
                    {"status", planStatusName(t.status)},
                    {"reason", t.reason},
                    {"found", t.found},
                    {"archive", t.archive},
                    {"mission", t.mission},
                    {"instrument", t.instrument},
                    {"filter", t.filter}};
        ojson jo = ojson::array();
        for (const auto& o : t.observations) {
            ojson po = ojson::array();
            for (const auto& p : o.products)
                po.push_back({{"filename", p.product.filename},
                              {"uri", p.product.uri},
                              {"url", p.product.url},
                              {"size", p.product.size},
                              {"product_type", p.productType},
                              {"subgroup", p.subgroup},
                              {"calib_level", p.calibLevel},
                              {"description", p.description}});
            jo.push_back({{"role", roleName(o.role)},
                          {"archive", o.archive},
                          {"obsid", o.obsid},
                          {"obs_name", o.obsName},
                          {"collection", o.collection},
                          {"instrument", o.instrument},
                          {"filter", o.filter},
                          {"t_min", numOrNull(o.tMinMjd)},
                          {"t_max", numOrNull(o.tMaxMjd)},
                          {"exposure_s", numOrNull(o.exposureS)},
                          {"ra", numOrNull(o.raDeg)},
                          {"dec", numOrNull(o.decDeg)},
                          {"s_region", o.sRegion},
                          {"calib_level", o.calibLevel},
                          {"coadd", o.coadd},
                          {"overlap", numOrNull(o.overlap)},
                          {"products", po}});
        }
        jt["observations"] = jo;
        targets.push_back(std::move(jt));
    }
    j["targets"] = std::move(targets);

    const std::string tmp = path + ".tmp." + std::to_string(::getpid());
    {
        std::ofstream out(tmp);
        if (!out) throw IoError("cannot write " + tmp);
        out << j.dump(1) << "\n";
        out.close();
        if (!out) throw IoError("cannot write " + tmp + " (disk full?)");
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    if (ec) throw IoError("cannot rename " + tmp + " to " + path + ": " + ec.message());
}

Manifest readManifest(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw IoError("cannot open manifest " + path);
    ojson j;
    try {
        j = ojson::parse(in);
    } catch (const ojson::exception& e) {
        throw DataError("manifest " + path + " is not valid JSON: " + e.what());
    }
    Manifest m;
    std::string where = "top level";
    try {
        if (j.value("format", std::string()) != "astrid-manifest")
            throw DataError("\"format\" is not \"astrid-manifest\"");
        m.formatVersion = j.at("format_version").get<int>();
        if (m.formatVersion != Manifest::kFormatVersion)
            throw DataError(fmt::format("format_version {} (this astrid reads {})", m.formatVersion, Manifest::kFormatVersion));
        m.createdUtc = j.value("created_utc", "");
        m.command = j.value("command", "");
        m.catalog = j.value("catalog", "");
        if (auto a = j.find("archives"); a != j.end()) {
            m.mastUrl = a->value("mast", "");
            m.irsaUrl = a->value("irsa", "");
        }
        if (auto q = j.find("query"); q != j.end()) {
            where = "query";
            m.query.missions = q->value("missions", std::vector<std::string>{});
            m.query.radiusDeg = q->value("radius_deg", m.query.radiusDeg);
            m.query.daysBefore = q->value("days_before", m.query.daysBefore);
            m.query.refMarginDays = q->value("ref_margin_days", m.query.refMarginDays);
            m.query.daysAfter = q->value("days_after", m.query.daysAfter);
            m.query.minOverlap = q->value("min_overlap", m.query.minOverlap);
            m.query.maxReference = q->value("max_reference", m.query.maxReference);
            m.query.maxScience = q->value("max_science", m.query.maxScience);
            m.query.requireBoth = q->value("require_both", m.query.requireBoth);
            m.query.filter = q->value("filter", std::string());
        }
        const auto& targets = j.at("targets");
        for (std::size_t i = 0; i < targets.size(); ++i) {
            const auto& jt = targets[i];
            where = fmt::format("targets[{}]", i);
            TargetPlan t;
            t.target.id = jt.at("target_id").get<std::int64_t>();
            t.target.name = jt.at("name").get<std::string>();
            t.target.raDeg = jt.at("ra").get<double>();
            t.target.decDeg = jt.at("dec").get<double>();
            if (!jt.at("disc_mjd").is_null()) t.target.discMjd = jt.at("disc_mjd").get<double>();
            t.status = statusFrom(jt.at("status").get<std::string>());
            t.reason = jt.value("reason", "");
            t.found = jt.value("found", 0);
            t.archive = jt.value("archive", "");
            t.mission = jt.value("mission", "");
            t.instrument = jt.value("instrument", "");
            t.filter = jt.value("filter", "");
            const auto& jo = jt.at("observations");
            for (std::size_t k = 0; k < jo.size(); ++k) {
                where = fmt::format("targets[{}] ({}) observations[{}]", i, t.target.name, k);
                const auto& o = jo[k];
                RemoteObservation r;
                r.role = roleFrom(o.at("role").get<std::string>());
                r.archive = o.value("archive", "");
                r.obsid = o.at("obsid").get<std::string>();
                r.obsName = o.value("obs_name", "");
                r.collection = o.value("collection", "");
                r.instrument = o.value("instrument", "");
                r.filter = o.value("filter", "");
                r.tMinMjd = numFrom(o, "t_min");
                r.tMaxMjd = numFrom(o, "t_max");
                r.exposureS = numFrom(o, "exposure_s");
                r.raDeg = numFrom(o, "ra");
                r.decDeg = numFrom(o, "dec");
                r.sRegion = o.value("s_region", "");
                r.calibLevel = o.value("calib_level", -1);
                r.coadd = o.value("coadd", false);
                r.overlap = numFrom(o, "overlap");
                for (const auto& p : o.at("products")) {
                    RemoteProduct rp;
                    rp.product.filename = p.at("filename").get<std::string>();
                    rp.product.uri = p.value("uri", "");
                    rp.product.url = p.at("url").get<std::string>();
                    rp.product.size = p.value("size", static_cast<std::int64_t>(-1));
                    rp.productType = p.value("product_type", "");
                    rp.subgroup = p.value("subgroup", "");
                    rp.calibLevel = p.value("calib_level", -1);
                    rp.description = p.value("description", "");
                    // A name that could escape the cache is refused when the manifest is read,
                    // before anything is downloaded.
                    checkProductName(rp.product.filename, "manifest " + path);
                    r.products.push_back(std::move(rp));
                }
                t.observations.push_back(std::move(r));
            }
            m.targets.push_back(std::move(t));
        }
    } catch (const ojson::exception& e) {
        throw DataError("manifest " + path + ", " + where + ": " + e.what());
    } catch (const DataError& e) {
        throw DataError("manifest " + path + ", " + where + ": " + e.what());
    }
    return m;
}

std::vector<Product> manifestProducts(const Manifest& m) {
    std::vector<Product> out;
    std::set<std::string> seen;
    for (const auto& t : m.targets) {
        if (t.status != PlanStatus::Paired) continue;
        for (const auto& o : t.observations)
            for (const auto& p : o.products)
                if (seen.insert(productKey(p.product.uri.empty() ? p.product.url : p.product.uri) + "/" + p.product.filename).second)
                    out.push_back(p.product);
    }
    return out;
}

ManifestArchive::ManifestArchive(const std::string& manifestPath, const std::string& cacheDir, FetchPolicy policy,
                                 HttpConfig http)
    : ManifestArchive(std::make_shared<const Manifest>(readManifest(manifestPath)), manifestPath, cacheDir, policy,
                      std::move(http)) {}

ManifestArchive::ManifestArchive(std::shared_ptr<const Manifest> manifest, std::string manifestPath,
                                 const std::string& cacheDir, FetchPolicy policy, HttpConfig http)
    : manifest_(std::move(manifest)),
      manifestPath_(std::move(manifestPath)),
      cache_(cacheDir),
      policy_(policy),
      httpConfig_(std::move(http)) {
    if (httpConfig_.slotDirectory.empty()) httpConfig_.slotDirectory = cache_.slotDirectory().string();
}

std::string ManifestArchive::describe() const {
    return "manifest:" + manifestPath_ + " cache:" + cache_.root().string() +
           (policy_ == FetchPolicy::OnDemand ? " (fetch on demand)" : " (offline)");
}

const TargetPlan* ManifestArchive::plan(const catalog::Target& target) const {
    for (const auto& t : manifest_->targets)
        if (t.target.id == target.id) {
            if (t.target.name != target.name)
                throw DataError(fmt::format("manifest {} lists target id {} as '{}', the catalog as '{}': the manifest "
                                            "was made from another catalog",
                                            manifestPath_, target.id, t.target.name, target.name));
            return &t;
        }
    return nullptr;
}

std::vector<Observation> ManifestArchive::listObservations(const catalog::Target& target) {
    // A target the manifest did not pair, or does not hold, is a verdict on the data (DataError: not
    // retried), with the manifest's own reason.
    const TargetPlan* t = plan(target);
    if (!t)
        throw DataError(fmt::format("{} (id {}) is not in the manifest {} (queried with --limit, or from another "
                                    "catalog?)",
                                    target.name, target.id, manifestPath_));
    if (t->status != PlanStatus::Paired)
        throw DataError(fmt::format("{} is {} in the manifest {}: {}", target.name, planStatusName(t->status),
                                    manifestPath_, t->reason.empty() ? std::string("no reason recorded") : t->reason));
    std::vector<const RemoteProduct*> products;
    for (const auto& o : t->observations)
        for (const auto& p : o.products) products.push_back(&p);
    std::stable_sort(products.begin(), products.end(),
                     [](const auto* a, const auto* b) { return a->product.filename < b->product.filename; });
    std::vector<Observation> out;
    for (std::size_t i = 0; i < products.size(); ++i) {
        const Product& p = products[i]->product;
        Observation o;
        const fs::path path = cache_.pathFor(p);
        if (!cache_.contains(p)) {
            if (policy_ == FetchPolicy::Offline) {
                o.status = ObsStatus::Invalid;
                o.statusReason = "not staged: " + p.filename + " is not in the cache " + cache_.root().string() +
                                 " (run astrid stage, or set fetch_on_demand = true)";
            } else {
                if (!http_) http_ = std::make_unique<HttpClient>(httpConfig_);
                cache_.fetch(p, *http_);  // HttpError: the pipeline records a transient failure
            }
        }
        if (o.status != ObsStatus::Invalid) {
            try {
                auto f = fits::FitsFile::open(path.string());
                f.select({});
                const auto shape = f.imageShape();
                o = observationFromHeader(f.readHeader(), static_cast<int>(shape.at(0)), static_cast<int>(shape.at(1)));
                o.hdu = f.currentHdu();
            } catch (const Error& e) {
                o.status = ObsStatus::Invalid;
                o.statusReason = e.what();
            }
        }
        o.fitsPath = path.string();
        o.targetId = target.id;
        o.obsId = target.id * 10000 + static_cast<std::int64_t>(i);
        out.push_back(std::move(o));
    }
    return out;
}

}  // namespace astrid::archive
