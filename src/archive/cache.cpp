#include "astrid/archive/cache.hpp"

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"
#include "astrid/fits/fits_file.hpp"

namespace astrid::archive {
namespace fs = std::filesystem;

void checkProductName(const std::string& name, const std::string& what) {
    auto bad = [&](const std::string& why) {
        throw DataError("unsafe product file name '" + name + "' from " + what + ": " + why +
                        " (it could write outside the cache); refused");
    };
    if (name.empty()) bad("empty");
    if (name == "." || name == "..") bad("a directory name");
    if (name.find('/') != std::string::npos || name.find('\\') != std::string::npos) bad("it has path components");
    if (name.find("..") != std::string::npos) bad("it contains '..'");
    for (unsigned char c : name)
        if (c < 32 || c == 127) bad("it contains a control character");
    // The cache writes <name>.part and <name>.lock beside it: those must fit NAME_MAX (255) too.
    if (name.size() > 250) bad("longer than 250 bytes");
}

std::string productKey(const std::string& text) {
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : text) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return fmt::format("{:016x}", h);
}

std::string verifyFitsFile(const fs::path& file) {
    try {
        const auto r = fits::verifyChecksums(file.string());
        return r.problem;
    } catch (const FitsError& e) {
        return std::string("not a readable FITS file: ") + e.what();
    }
}

namespace {
bool looksFits(const std::string& name) {
    std::string n = text::toLower(name);
    for (const char* z : {".gz", ".fz"})
        if (n.size() > 3 && n.ends_with(z)) n.resize(n.size() - 3);
    return n.ends_with(".fits") || n.ends_with(".fit") || n.ends_with(".fts");
}
}  // namespace

ProductCache::ProductCache(fs::path root) : root_(std::move(root)) {
    std::error_code ec;
    fs::create_directories(root_ / "objects", ec);
    if (!ec) fs::create_directories(slotDirectory(), ec);
    if (ec) throw IoError("cannot create the cache directory " + root_.string() + ": " + ec.message());
}

fs::path ProductCache::pathFor(const Product& p) const {
    checkProductName(p.filename, p.uri.empty() ? p.url : p.uri);
    const std::string key = productKey(p.uri.empty() ? p.url : p.uri);
    return root_ / "objects" / key.substr(0, 2) / key / p.filename;
}

bool ProductCache::contains(const Product& p) const {
    std::error_code ec;
    return fs::is_regular_file(pathFor(p), ec);
}

ProductCache::Fetched ProductCache::fetch(const Product& p, HttpClient& http, const ProgressFn& progress) {
    Fetched f;
    f.path = pathFor(p);
    std::error_code ec;
    if (fs::is_regular_file(f.path, ec)) {
        f.download.bytes = static_cast<std::int64_t>(fs::file_size(f.path, ec));
        return f;
    }
    VerifyFn verify;
    if (looksFits(p.filename)) verify = [](const fs::path& file) { return verifyFitsFile(file); };
    f.download = http.download(p.url, f.path, p.size, verify, progress);
    f.outcome = f.download.transferred > 0 || f.download.attempts > 0 ? Outcome::Downloaded : Outcome::Cached;
    return f;
}

}  // namespace astrid::archive
