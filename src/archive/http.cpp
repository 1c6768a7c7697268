// libcurl behind HttpClient: the only translation unit that includes <curl/curl.h>.
#include "astrid/archive/http.hpp"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <fmt/format.h>

#include "astrid/core/log.hpp"
#include "astrid/core/text.hpp"

namespace astrid::archive {
namespace fs = std::filesystem;

HttpError::HttpError(const std::string& message, std::string url, long status)
    : IoError(message), url_(std::move(url)), status_(status) {}

std::string bearerTokenFromEnvironment() {
    const char* t = std::getenv("MAST_API_TOKEN");
    return t ? std::string(t) : std::string();
}

std::string urlEncode(const std::string& text) {
    static const char* hex = "0123456789ABCDEF";
    std::string out;
    out.reserve(text.size() * 3);
    for (unsigned char c : text) {
        if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
            out.push_back(static_cast<char>(c));
        } else {
            out.push_back('%');
            out.push_back(hex[c >> 4]);
            out.push_back(hex[c & 15]);
        }
    }
    return out;
}

std::string urlHost(const std::string& url) {
    const auto scheme = url.find("://");
    if (scheme == std::string::npos) return {};
    auto start = scheme + 3;
    const auto end = url.find_first_of("/?#", start);
    std::string host = url.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (const auto at = host.rfind('@'); at != std::string::npos) host = host.substr(at + 1);  // no user info
    return host;
}

namespace {
auto logger() { return log::get("astrid.archive.http"); }

void globalInit() {
    static std::once_flag once;
    std::call_once(once, [] {
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) throw IoError("libcurl could not be initialised");
    });
}

/// The URL as it may appear in a message or log: without user info (credentials).
std::string printableUrl(const std::string& url) {
    const auto scheme = url.find("://");
    if (scheme == std::string::npos) return url;
    const auto at = url.find('@', scheme + 3);
    const auto slash = url.find('/', scheme + 3);
    if (at == std::string::npos || (slash != std::string::npos && at > slash)) return url;
    return url.substr(0, scheme + 3) + url.substr(at + 1);
}

/// Whether the bearer token may be sent to `url`: only to the hosts it was issued for.
bool tokenGoesTo(const HttpConfig& cfg, const std::string& url) {
    const std::string host = text::toLower(urlHost(url));
    if (host.empty()) return false;
    return std::any_of(cfg.tokenHosts.begin(), cfg.tokenHosts.end(),
                       [&](const std::string& h) { return text::toLower(h) == host; });
}

bool retryableStatus(long s) { return s == 408 || s == 425 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504; }

bool retryableCurl(CURLcode c) {
    switch (c) {
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_PARTIAL_FILE:
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM: return true;
        default: return false;
    }
}

std::string snippet(const std::string& body) {
    std::string s = body.substr(0, 200);
    for (char& c : s)
        if (static_cast<unsigned char>(c) < 32) c = ' ';
    return s;
}

// ---- per-host concurrency limit -------------------------------------------------------------
// Without a slot directory: a counting semaphore per host in this process. With one: lock files
// <dir>/<host>.<i>.lock held with flock, so every process (rank) sharing the directory shares
// the limit; the kernel releases a dead process's slot.
struct InProcessSlots {
    std::mutex m;
    std::condition_variable cv;
    std::map<std::string, int> used;
};
InProcessSlots& inProcessSlots() {
    static InProcessSlots s;
    return s;
}

class HostSlot {
public:
    HostSlot(const HttpConfig& cfg, const std::string& host) : host_(host) {
        const int limit = std::max(1, cfg.maxPerHost);
        if (cfg.slotDirectory.empty()) {
            auto& s = inProcessSlots();
            std::unique_lock lock(s.m);
            s.cv.wait(lock, [&] { return s.used[host_] < limit; });
            ++s.used[host_];
            inProcess_ = true;
            return;
        }
        std::string safe = host;
        std::replace_if(safe.begin(), safe.end(), [](char c) { return !std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-'; }, '_');
        std::error_code ec;
        fs::create_directories(cfg.slotDirectory, ec);
        for (int round = 0;; ++round) {
            for (int i = 0; i < limit; ++i) {
                const std::string path = cfg.slotDirectory + "/" + safe + "." + std::to_string(i) + ".lock";
                const int fd = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
                if (fd < 0) throw IoError("cannot open the host slot lock " + path + ": " + std::strerror(errno));
                if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
                    fd_ = fd;
                    return;
                }
                ::close(fd);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(round < 50 ? 5 : 25));
        }
    }
    ~HostSlot() {
        if (inProcess_) {
            auto& s = inProcessSlots();
            {
                std::lock_guard lock(s.m);
                --s.used[host_];
            }
            s.cv.notify_all();
        }
        if (fd_ >= 0) ::close(fd_);  // closing releases the flock
    }
    HostSlot(const HostSlot&) = delete;
    HostSlot& operator=(const HostSlot&) = delete;

private:
    std::string host_;
    bool inProcess_ = false;
    int fd_ = -1;
};

/// An exclusive flock on a lock file, blocking; released on destruction (or process death).
class FileLock {
public:
    explicit FileLock(const fs::path& path) {
        fd_ = ::open(path.c_str(), O_CREAT | O_RDWR | O_CLOEXEC, 0644);
        if (fd_ < 0) throw IoError("cannot open lock file " + path.string() + ": " + std::strerror(errno));
        while (::flock(fd_, LOCK_EX) != 0) {
            if (errno == EINTR) continue;
            const int e = errno;
            ::close(fd_);
            throw IoError("cannot lock " + path.string() + ": " + std::strerror(e));
        }
    }
    ~FileLock() { ::close(fd_); }
    FileLock(const FileLock&) = delete;
    FileLock& operator=(const FileLock&) = delete;

private:
    int fd_ = -1;
};

std::int64_t fileSize(const fs::path& p) {
    struct stat st {};
    return ::stat(p.c_str(), &st) == 0 ? static_cast<std::int64_t>(st.st_size) : -1;
}

struct Attempt {
    CURLcode code = CURLE_OK;
    long status = 0;
    double retryAfterS = -1;
    std::string curlMessage;
    std::string errorBody;
};

// State of one download attempt, shared with the curl callbacks.
struct DownloadState {
    CURL* curl = nullptr;
    int fd = -1;
    std::int64_t offset = 0;        // bytes in the part file when the attempt started
    std::int64_t written = 0;       // bytes written by this attempt
    long status = 0;                // of the final response, known at the first body byte
    bool statusChecked = false;
    bool rangeMismatch = false;
    bool diskError = false;
    std::string diskMessage;
    std::string contentRange;
    std::string errorBody;
    const ProgressFn* progress = nullptr;
};

size_t downloadHeader(char* data, size_t size, size_t n, void* user) {
    auto* st = static_cast<DownloadState*>(user);
    std::string line(data, size * n);
    if (line.rfind("HTTP/", 0) == 0) st->contentRange.clear();  // a new response (redirects)
    if (line.size() > 14 && strncasecmp(line.c_str(), "Content-Range:", 14) == 0) {
        st->contentRange = line.substr(14);
        while (!st->contentRange.empty() && std::isspace(static_cast<unsigned char>(st->contentRange.back())))
            st->contentRange.pop_back();
    }
    return size * n;
}

size_t downloadBody(char* data, size_t size, size_t n, void* user) {
    auto* st = static_cast<DownloadState*>(user);
    const size_t len = size * n;
    if (!st->statusChecked) {
        st->statusChecked = true;
        curl_easy_getinfo(st->curl, CURLINFO_RESPONSE_CODE, &st->status);
        if (st->status == 200 && st->offset > 0) {
            // The server ignored our Range: start the file again.
            if (::ftruncate(st->fd, 0) != 0 || ::lseek(st->fd, 0, SEEK_SET) != 0) {
                st->diskError = true;
                st->diskMessage = std::strerror(errno);
                return 0;
            }
            st->offset = 0;
        } else if (st->status == 206) {
            // "bytes START-END/TOTAL": START must be where our file ends.
            const auto pos = st->contentRange.find("bytes ");
            const long long start = pos == std::string::npos ? -1 : std::atoll(st->contentRange.c_str() + pos + 6);
            if (start != st->offset) {
                st->rangeMismatch = true;
                return 0;
            }
        }
    }
    if (st->status < 200 || st->status >= 300) {
        if (st->errorBody.size() < 4096) st->errorBody.append(data, std::min<size_t>(len, 4096 - st->errorBody.size()));
        return len;
    }
    size_t done = 0;
    while (done < len) {
        const ssize_t w = ::write(st->fd, data + done, len - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            st->diskError = true;
            st->diskMessage = std::strerror(errno);
            return 0;
        }
        done += static_cast<size_t>(w);
    }
    st->written += static_cast<std::int64_t>(len);
    if (st->progress && *st->progress) (*st->progress)(static_cast<std::int64_t>(len));
    return len;
}

size_t appendToString(char* data, size_t size, size_t n, void* user) {
    static_cast<std::string*>(user)->append(data, size * n);
    return size * n;
}
}  // namespace

struct HttpClient::Impl {
    HttpConfig cfg;
    CURL* curl = nullptr;
    std::mt19937_64 rng{std::random_device{}()};

    explicit Impl(HttpConfig c) : cfg(std::move(c)) {
        globalInit();
        curl = curl_easy_init();
        if (!curl) throw IoError("libcurl: cannot create a transfer handle");
    }
    ~Impl() {
        if (curl) curl_easy_cleanup(curl);
    }

    /// Options common to every request; the token header list must outlive the transfer.
    curl_slist* prepare(const std::string& url, bool download) {
        curl_easy_reset(curl);
        curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
        if (!cfg.caFile.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, cfg.caFile.c_str());
        curl_easy_setopt(curl, CURLOPT_USERAGENT, cfg.userAgent.c_str());
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(cfg.connectTimeoutS * 1000));
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, std::max(1L, static_cast<long>(cfg.stallTimeoutS + 0.5)));
        if (!download) curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(cfg.requestTimeoutS * 1000));
        curl_slist* headers = nullptr;
        if (!cfg.bearerToken.empty() && tokenGoesTo(cfg, url))
            headers = curl_slist_append(headers, ("Authorization: Bearer " + cfg.bearerToken).c_str());
        if (headers) curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        return headers;
    }

    Attempt finish(CURLcode code, char* errbuf) {
        Attempt a;
        a.code = code;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a.status);
        curl_off_t ra = -1;
        if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0) a.retryAfterS = static_cast<double>(ra);
        if (code != CURLE_OK) a.curlMessage = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(code));
        if (code == CURLE_OPERATION_TIMEDOUT) a.curlMessage = "timed out (" + a.curlMessage + ")";
        return a;
    }

    double backoff(int retry, double retryAfterS, const std::string& what) {
        double delay;
        if (retryAfterS > 0) {
            delay = std::min(retryAfterS, cfg.retryAfterMaxS);
            if (retryAfterS > cfg.retryAfterMaxS)
                logger()->warn("{}: Retry-After {} s capped at {} s", what, retryAfterS, cfg.retryAfterMaxS);
        } else {
            const double cap = std::min(cfg.backoffMaxS, cfg.backoffInitialS * std::pow(2.0, retry - 1));
            delay = std::uniform_real_distribution<double>(0.5, 1.0)(rng) * cap;
        }
        return delay;
    }

    static std::string describe(const Attempt& a) {
        if (a.code != CURLE_OK) return a.status ? fmt::format("HTTP {}, then {}", a.status, a.curlMessage) : a.curlMessage;
        std::string s = fmt::format("HTTP {}", a.status);
        if (!a.errorBody.empty()) s += " (" + snippet(a.errorBody) + ")";
        return s;
    }

    std::string request(const std::string& url, const std::string* postBody) {
        const std::string shown = printableUrl(url);
        const char* method = postBody ? "POST" : "GET";
        Attempt last;
        for (int attempt = 1; attempt <= cfg.maxAttempts; ++attempt) {
            std::string body;
            char errbuf[CURL_ERROR_SIZE] = {0};
            Attempt a;
            {
                HostSlot slot(cfg, urlHost(url));
                curl_slist* headers = prepare(url, false);
                curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
                curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, appendToString);
                curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
                if (postBody) {
                    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, postBody->c_str());
                    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(postBody->size()));
                }
                const CURLcode code = curl_easy_perform(curl);
                curl_slist_free_all(headers);
                a = finish(code, errbuf);
            }
            if (a.code == CURLE_OK && a.status >= 200 && a.status < 300) return body;
            if (a.code == CURLE_OK) a.errorBody = body;
            last = a;
            const bool retry = a.code != CURLE_OK ? retryableCurl(a.code) : retryableStatus(a.status);
            if (!retry) break;
            if (attempt == cfg.maxAttempts) break;
            const double delay = backoff(attempt, a.retryAfterS, shown);
            logger()->warn("{} {}: {}; retry {}/{} in {:.2f} s{}", method, shown, describe(a), attempt,
                           cfg.maxAttempts - 1, delay, a.retryAfterS > 0 ? " (Retry-After)" : "");
            std::this_thread::sleep_for(std::chrono::duration<double>(delay));
        }
        throw HttpError(fmt::format("{} {} failed: {}", method, shown, describe(last)), shown, last.status);
    }
};

HttpClient::HttpClient(HttpConfig config) : impl_(std::make_unique<Impl>(std::move(config))) {}
HttpClient::~HttpClient() = default;
HttpClient::HttpClient(HttpClient&&) noexcept = default;
HttpClient& HttpClient::operator=(HttpClient&&) noexcept = default;
const HttpConfig& HttpClient::config() const noexcept { return impl_->cfg; }

std::string HttpClient::get(const std::string& url) { return impl_->request(url, nullptr); }

std::string HttpClient::postForm(const std::string& url, const std::vector<std::pair<std::string, std::string>>& fields) {
    std::string body;
    for (const auto& [k, v] : fields) {
        if (!body.empty()) body.push_back('&');
        body += urlEncode(k) + "=" + urlEncode(v);
    }
    return impl_->request(url, &body);
}

DownloadResult HttpClient::download(const std::string& url, const fs::path& dest, std::int64_t expectedSize,
                                    const VerifyFn& verify, const ProgressFn& progress) {
    Impl& im = *impl_;
    const std::string shown = printableUrl(url);
    const fs::path part = dest.string() + ".part";
    DownloadResult result;
    std::error_code ec;
    fs::create_directories(dest.parent_path(), ec);
    if (ec) throw IoError("cannot create directory " + dest.parent_path().string() + ": " + ec.message());

    // One downloader per destination, across threads and processes; whoever comes second finds
    // the file complete.
    FileLock lock(dest.string() + ".lock");
    if (fs::exists(dest)) {
        result.bytes = fileSize(dest);
        return result;
    }

    std::string lastReason;
    long lastStatus = 0;
    // A complete, verified part file is renamed; a bad one removed. Returns "" when renamed.
    auto settle = [&](std::int64_t have) -> std::string {
        if (expectedSize >= 0 && have != expectedSize) {
            fs::remove(part, ec);
            return fmt::format("size mismatch: received {} bytes, the archive lists {}", have, expectedSize);
        }
        if (verify) {
            std::string why = verify(part);
            if (!why.empty()) {
                fs::remove(part, ec);
                return "verification failed: " + why;
            }
        }
        // The data were fsynced before the rename, so the final name never points at unwritten
        // bytes. The directory is not fsynced: a rename lost in a crash leaves a complete .part
        // that the next attempt verifies and renames without downloading (measured: the directory
        // fsync cost 2-4 ms per file here, more than the transfer of a small file).
        fs::rename(part, dest, ec);
        if (ec) throw IoError("cannot rename " + part.string() + " to " + dest.string() + ": " + ec.message());
        result.bytes = have;
        return {};
    };

    for (int attempt = 1; attempt <= im.cfg.maxAttempts; ++attempt) {
        result.attempts = attempt;
        std::int64_t have = std::max<std::int64_t>(0, fileSize(part));
        if (expectedSize >= 0 && have > expectedSize) {
            fs::remove(part, ec);
            have = 0;
        }
        if (expectedSize >= 0 && have == expectedSize && have > 0) {
            // A previous attempt received every byte (its connection then failed): no request.
            lastReason = settle(have);
            if (lastReason.empty()) return result;
            continue;
        }
        DownloadState st;
        st.fd = ::open(part.c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (st.fd < 0) throw IoError("cannot write " + part.string() + ": " + std::strerror(errno));
        if (::lseek(st.fd, have, SEEK_SET) != have) {
            ::close(st.fd);
            throw IoError("cannot seek in " + part.string() + ": " + std::strerror(errno));
        }
        st.curl = im.curl;
        st.offset = have;
        st.progress = &progress;
        char errbuf[CURL_ERROR_SIZE] = {0};
        Attempt a;
        {
            HostSlot slot(im.cfg, urlHost(url));
            curl_slist* headers = im.prepare(url, true);
            curl_easy_setopt(im.curl, CURLOPT_ERRORBUFFER, errbuf);
            curl_easy_setopt(im.curl, CURLOPT_HEADERFUNCTION, downloadHeader);
            curl_easy_setopt(im.curl, CURLOPT_HEADERDATA, &st);
            curl_easy_setopt(im.curl, CURLOPT_WRITEFUNCTION, downloadBody);
            curl_easy_setopt(im.curl, CURLOPT_WRITEDATA, &st);
            const std::string range = std::to_string(have) + "-";
            if (have > 0) {
                curl_easy_setopt(im.curl, CURLOPT_RANGE, range.c_str());
                result.resumed = true;
            }
            const CURLcode code = curl_easy_perform(im.curl);
            curl_slist_free_all(headers);
            a = im.finish(code, errbuf);
        }
        a.errorBody = st.errorBody;
        result.transferred += st.written;
        const bool syncFailed = im.cfg.syncToDisk && ::fsync(st.fd) != 0;
        ::close(st.fd);
        if (st.diskError) throw IoError("cannot write " + part.string() + ": " + st.diskMessage);
        if (syncFailed) throw IoError("cannot fsync " + part.string() + ": " + std::strerror(errno));
        lastStatus = a.status;
        const std::int64_t now = std::max<std::int64_t>(0, fileSize(part));
        if (now == 0 && !(a.code == CURLE_OK && a.status >= 200 && a.status < 300))
            fs::remove(part, ec);  // nothing to resume: leave no empty file behind
        if (st.rangeMismatch) {
            fs::remove(part, ec);
            lastReason = "the server answered a Range request with another range (" + st.contentRange + ")";
            continue;
        }
        if (a.code == CURLE_OK && a.status == 416 && have > 0) {
            // Our partial file does not fit the server's: start again.
            fs::remove(part, ec);
            lastReason = "HTTP 416 on resuming at byte " + std::to_string(have);
            continue;
        }
        double retryAfter = -1;
        if (a.code == CURLE_OK && a.status >= 200 && a.status < 300) {
            lastReason = settle(now);
            if (lastReason.empty()) return result;
        } else {
            lastReason = Impl::describe(a);
            const bool retry = a.code != CURLE_OK ? retryableCurl(a.code) : retryableStatus(a.status);
            if (!retry) {
                if (a.code == CURLE_OK) fs::remove(part, ec);  // an error page never becomes data
                break;
            }
            retryAfter = a.retryAfterS;
        }
        if (attempt == im.cfg.maxAttempts) break;
        const double delay = im.backoff(attempt, retryAfter, shown);
        logger()->warn("GET {}: {}; retry {}/{} in {:.2f} s{}{}", shown, lastReason, attempt, im.cfg.maxAttempts - 1,
                       delay, retryAfter > 0 ? " (Retry-After)" : "",
                       now > 0 ? fmt::format(", resuming at byte {}", now) : std::string());
        std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    }
    throw HttpError(fmt::format("GET {} failed after {} attempt(s): {}", shown, result.attempts, lastReason), shown,
                    lastStatus);
}

}  // namespace astrid::archive
