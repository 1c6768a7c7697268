#pragma once
// The download cache: one directory shared by every rank (on the parallel filesystem), addressed
// by a hash of each product's archive identity, so the same product fetched by any rank, any
// run or any manifest lands in one place and is downloaded once.
//
// Layout: <root>/objects/<h[0:2]>/<h>/<filename>   h = FNV-1a 64 (hex) of the product URI
//         <root>/objects/<h[0:2]>/<h>/<filename>.part / .lock   while it downloads
//         <root>/locks/hosts/<host>.<i>.lock        the per-host concurrency slots
// A file under its final name is complete and verified (size, FITS DATASUM/CHECKSUM when present).
#include <cstdint>
#include <filesystem>
#include <string>

#include "astrid/archive/http.hpp"

namespace astrid::archive {

/// One file of an archive.
struct Product {
    std::string uri;          ///< the archive's identity (MAST dataURI, IRSA path); the cache key
    std::string url;          ///< where to download it
    std::string filename;     ///< a plain file name: no directory, no ".."
    std::int64_t size = -1;   ///< bytes as the archive lists them; -1 unknown
};

/// Throws DataError when `name` could write outside its directory: empty, "." or "..", containing
/// '/', '\\', "..", a NUL or control character. `what` names the source in the message.
void checkProductName(const std::string& name, const std::string& what);

/// "" when the file's FITS checksums verify (or it has none), else why not.
std::string verifyFitsFile(const std::filesystem::path& file);

class ProductCache {
public:
    /// Creates <root> when missing. Throws IoError when it cannot.
    explicit ProductCache(std::filesystem::path root);

    /// Where the product lives (or will). Throws DataError for an unsafe file name.
    std::filesystem::path pathFor(const Product& product) const;
    bool contains(const Product& product) const;

    enum class Outcome { Cached, Downloaded };
    struct Fetched {
        std::filesystem::path path;
        Outcome outcome = Outcome::Cached;
        DownloadResult download;
    };
    /// The product's local path, downloading it first when absent (resuming a partial download;
    /// waiting when another process is downloading it). Throws DataError (unsafe name), HttpError.
    Fetched fetch(const Product& product, HttpClient& http, const ProgressFn& progress = {});

    const std::filesystem::path& root() const noexcept { return root_; }
    /// The slot directory to put into HttpConfig so every process using this cache shares the
    /// per-host limit.
    std::filesystem::path slotDirectory() const { return root_ / "locks" / "hosts"; }

private:
    std::filesystem::path root_;
};

/// FNV-1a 64 of `text` as 16 hex digits.
std::string productKey(const std::string& text);

}  // namespace astrid::archive
