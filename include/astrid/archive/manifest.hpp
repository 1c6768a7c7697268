#pragma once
// The query manifest (JSON, format in docs/archives.md): every target of the catalog with what
// the archives returned, the pairing decision and its reason, and the products to download.
// `astrid query` writes it, `astrid stage` downloads it into a ProductCache, and `astrid run`
// reads it through ManifestArchive (offline from the cache, or fetching on demand).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "astrid/archive/archive.hpp"
#include "astrid/archive/cache.hpp"
#include "astrid/archive/http.hpp"
#include "astrid/archive/query.hpp"

namespace astrid::archive {

struct Manifest {
    static constexpr int kFormatVersion = 1;
    int formatVersion = kFormatVersion;
    std::string createdUtc;
    std::string command;
    std::string catalog;
    std::string mastUrl, irsaUrl;  ///< the endpoints queried ("" = not queried)
    QueryConfig query;
    std::vector<TargetPlan> targets;
};

/// Writes atomically (temporary file + rename). Throws IoError.
void writeManifest(const Manifest& manifest, const std::string& path);
/// Throws DataError naming the file and the offending entry; IoError when unreadable.
Manifest readManifest(const std::string& path);
/// Every product of the paired targets, each once (by cache key), in manifest order.
std::vector<Product> manifestProducts(const Manifest& manifest);

enum class FetchPolicy { Offline, OnDemand };

/// An Archive over a manifest and a cache. listObservations() lists one Observation per product
/// file of the target's paired observations, in file-name order (as LocalArchive does), with the
/// metadata of the cached file's header; a product not in the cache is downloaded first
/// (OnDemand) or listed Invalid with "not staged" (Offline). A target the manifest did not pair, or
/// does not hold, throws DataError with the manifest's reason (the pipeline does not retry it).
/// Thread-compatible: one instance per thread.
class ManifestArchive final : public Archive {
public:
    /// Throws DataError/IoError for an unreadable manifest or cache.
    ManifestArchive(const std::string& manifestPath, const std::string& cacheDir, FetchPolicy policy,
                    HttpConfig http = {});
    ManifestArchive(std::shared_ptr<const Manifest> manifest, std::string manifestPath, const std::string& cacheDir,
                    FetchPolicy policy, HttpConfig http = {});
    std::vector<Observation> listObservations(const catalog::Target& target) override;
    std::string fetch(const Observation& obs) override { return obs.fitsPath; }
    std::string describe() const override;
    /// The manifest's entry for a target (matched by id, checked by name); nullptr when absent.
    const TargetPlan* plan(const catalog::Target& target) const;

private:
    std::shared_ptr<const Manifest> manifest_;
    std::string manifestPath_;
    ProductCache cache_;
    FetchPolicy policy_;
    HttpConfig httpConfig_;
    std::unique_ptr<HttpClient> http_;
};

}  // namespace astrid::archive
