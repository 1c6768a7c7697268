#include "app/archive_select.hpp"

#include "astrid/archive/manifest.hpp"

namespace astrid::app {

archive::HttpConfig httpConfigOf(const JobConfig& c) {
    archive::HttpConfig h;
    h.maxPerHost = c.httpMaxPerHost;
    h.maxAttempts = c.httpAttempts;
    h.stallTimeoutS = c.httpStallSeconds;
    h.bearerToken = archive::bearerTokenFromEnvironment();
    return h;
}

namespace {
/// Product URLs under `from` moved under `to` (a mirror of the same archive).
void rewrite(archive::Manifest& m, const std::string& from, const std::string& to) {
    if (from.empty() || to.empty() || from == to) return;
    for (auto& t : m.targets)
        for (auto& o : t.observations)
            for (auto& p : o.products)
                if (p.product.url.rfind(from, 0) == 0) p.product.url = to + p.product.url.substr(from.size());
}
std::string trimSlash(std::string s) {
    while (!s.empty() && s.back() == '/') s.pop_back();
    return s;
}
}  // namespace

std::unique_ptr<archive::Archive> makeArchive(const JobConfig& c) {
    if (c.manifest.empty()) return std::make_unique<archive::LocalArchive>(c.archive);
    auto m = std::make_shared<archive::Manifest>(archive::readManifest(c.manifest));
    rewrite(*m, trimSlash(m->mastUrl), trimSlash(c.mastUrl));
    rewrite(*m, trimSlash(m->irsaUrl), trimSlash(c.irsaUrl));
    archive::HttpConfig h = httpConfigOf(c);
    // The MAST token goes to the MAST endpoint (or its configured mirror) only, never to IRSA.
    const std::string mast = !c.mastUrl.empty() ? c.mastUrl : m->mastUrl;
    if (!mast.empty()) h.tokenHosts = {archive::urlHost(mast)};
    return std::make_unique<archive::ManifestArchive>(
        std::move(m), c.manifest, c.cache,
        c.fetchOnDemand ? archive::FetchPolicy::OnDemand : archive::FetchPolicy::Offline, std::move(h));
}

}  // namespace astrid::app
