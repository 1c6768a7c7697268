#pragma once
// HTTP for the archives (libcurl behind a pimpl; no curl header here). Plain library code: no MPI.
//
// Every request: TLS verification on (never switched off; a site CA bundle may be named), connect
// and stall timeouts, retries of transient failures (connection errors, timeouts, HTTP 408, 429,
// 500, 502, 503, 504) with exponential backoff and jitter (see backoffInitialS), Retry-After
// honoured, a per-host concurrency limit shared by every process that names the same slot
// directory. A bearer token (MAST_API_TOKEN) is sent as an Authorization header only to the hosts
// named in tokenHosts (the MAST endpoint: never to IRSA or a mirror of another organisation), and
// never logged or put in an error message. libcurl itself drops the header when a redirect leaves that host.
//
// download(): the body goes to "<dest>.part"; a later attempt (or a later process) resumes it with
// an HTTP Range request; the complete file is size-checked, verified by the caller's check (FITS
// DATASUM/CHECKSUM), fsynced and renamed onto <dest> atomically, so <dest> either does not exist or
// is complete and verified.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "astrid/core/error.hpp"

namespace astrid::archive {

/// An HTTP transfer failed for good (after its retries). what() names the URL (without any
/// credential), the HTTP status when there was a response, and the cause.
class HttpError : public IoError {
public:
    HttpError(const std::string& message, std::string url, long status);
    const std::string& url() const noexcept { return url_; }
    /// The last HTTP status received, 0 when no response arrived (connection refused, timeout).
    long status() const noexcept { return status_; }

private:
    std::string url_;
    long status_;
};

struct HttpConfig {
    double connectTimeoutS = 30.0;
    double requestTimeoutS = 300.0;  ///< whole API request (POST/GET of a listing), not downloads
    double stallTimeoutS = 60.0;     ///< a transfer below 1 byte/s for this long is abandoned (and retried)
    int maxAttempts = 6;             ///< per request, the first one included
    double backoffInitialS = 1.0;    ///< the n-th retry waits U(0.5, 1) * min(max, initial * 2^(n-1))
    double backoffMaxS = 60.0;
    double retryAfterMaxS = 600.0;   ///< a longer Retry-After is capped here (and logged)
    int maxPerHost = 4;              ///< concurrent requests per host, across processes sharing slotDirectory
    std::string slotDirectory;       ///< lock files of the per-host limit ("" = this process only)
    std::string bearerToken;         ///< "" = none; see bearerTokenFromEnvironment()
    std::vector<std::string> tokenHosts;  ///< host[:port] (as urlHost gives it) that get the token; empty = none
    std::string caFile;              ///< CA bundle ("" = the system's)
    std::string userAgent = "astrid";
    /// fsync a download before renaming it to its final name, so that even a node crash never
    /// leaves a final name over unwritten bytes. Off: faster (2-3 ms per file here), safe against a
    /// killed process but not against a crash of the node.
    bool syncToDisk = true;
};

/// The value of MAST_API_TOKEN, or "" when unset.
std::string bearerTokenFromEnvironment();

struct DownloadResult {
    std::int64_t bytes = 0;         ///< size of the complete file
    std::int64_t transferred = 0;   ///< bytes received over the network by this call
    int attempts = 0;
    bool resumed = false;           ///< some attempt continued a partial file with a Range request
};

/// Called with the number of new bytes as they arrive (from the transfer's thread).
using ProgressFn = std::function<void(std::int64_t newBytes)>;
/// Checks a complete downloaded file; returns "" when good, else why not (the file is discarded
/// and downloaded again, up to maxAttempts).
using VerifyFn = std::function<std::string(const std::filesystem::path& file)>;

/// One connection-reusing client. Not thread-safe: one per thread.
class HttpClient {
public:
    explicit HttpClient(HttpConfig config = {});
    ~HttpClient();
    HttpClient(HttpClient&&) noexcept;
    HttpClient& operator=(HttpClient&&) noexcept;
    HttpClient(const HttpClient&) = delete;
    HttpClient& operator=(const HttpClient&) = delete;

    /// GET; returns the body of a 2xx response. Throws HttpError.
    std::string get(const std::string& url);
    /// POST application/x-www-form-urlencoded; returns the body of a 2xx response. Throws HttpError.
    std::string postForm(const std::string& url, const std::vector<std::pair<std::string, std::string>>& fields);
    /// Downloads `url` to `dest` (see the file comment). expectedSize < 0: unknown. Throws HttpError
    /// (the last cause: status, size mismatch, verification failure) and IoError (local disk).
    DownloadResult download(const std::string& url, const std::filesystem::path& dest, std::int64_t expectedSize,
                            const VerifyFn& verify = {}, const ProgressFn& progress = {});

    const HttpConfig& config() const noexcept;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Percent-encodes everything but unreserved characters (RFC 3986).
std::string urlEncode(const std::string& text);
/// The host[:port] of an http(s) URL ("" when it has none).
std::string urlHost(const std::string& url);

}  // namespace astrid::archive
