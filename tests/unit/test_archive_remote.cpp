// Remote archives against a real HTTP server on 127.0.0.1 (tests/support/archive_server.py, the
// MAST invoke API and IRSA IBE shapes over a simulated campaign), with injected faults: 500/503
// with Retry-After, a connection dropped mid-body, a stall past the timeout, wrong Content-Length,
// corrupted bytes, 404, an unsafe product name, two processes fetching one product. No internet.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <iterator>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "astrid/archive/cache.hpp"
#include "astrid/archive/http.hpp"
#include "astrid/archive/irsa.hpp"
#include "astrid/archive/manifest.hpp"
#include "astrid/archive/mast.hpp"
#include "astrid/archive/query.hpp"
#include "astrid/core/error.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/sim/simulate.hpp"
#include "support/temp_root.hpp"

namespace astrid {
namespace {
namespace fs = std::filesystem;
using archive::HttpClient;
using archive::HttpConfig;
using archive::HttpError;
using Clock = std::chrono::steady_clock;

fs::path tempRoot() { return test::tempRoot("archive_remote"); }
constexpr const char* kToken = "test-token-0123456789";

std::string readAll(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
}

class RemoteArchive : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        sim::SimConfig c;
        c.outDir = (tempRoot() / "sim").string();
        c.targets = 2;
        c.epochs = 2;
        c.sizePx = 256;
        c.seed = 5;
        sim_ = new sim::SimSummary(sim::simulateCampaign(c));
        const fs::path portFile = tempRoot() / "port";
        pid_ = ::fork();
        if (pid_ == 0) {
            ::setenv("ARCHIVE_SERVER_TOKEN", kToken, 1);
            const std::string script = std::string(ASTRID_SOURCE_DIR) + "/tests/support/archive_server.py";
            const std::string root = c.outDir + "/archive";
            ::execl("/usr/bin/python3", "python3", script.c_str(), "--root", root.c_str(), "--port-file",
                    portFile.c_str(), "--write-checksums", "--ztf", static_cast<char*>(nullptr));
            ::_exit(127);
        }
        for (int i = 0; i < 600 && !fs::exists(portFile); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        ASSERT_TRUE(fs::exists(portFile)) << "the archive server did not start";
        base_ = new std::string("http://127.0.0.1:" + readAll(portFile));
    }
    static void TearDownTestSuite() {
        if (pid_ > 0) {
            ::kill(pid_, SIGTERM);
            ::waitpid(pid_, nullptr, 0);
        }
        delete base_;
        delete sim_;
    }
    void SetUp() override {
        ASSERT_NE(base_, nullptr);
        HttpClient(quick()).postForm(*base_ + "/_reset", {});
        dir_ = tempRoot() / ::testing::UnitTest::GetInstance()->current_test_info()->name();
        fs::create_directories(dir_);
    }

    static HttpConfig quick() {
        HttpConfig h;
        h.connectTimeoutS = 2;
        h.requestTimeoutS = 10;
        h.stallTimeoutS = 1;
        h.maxAttempts = 4;
        h.backoffInitialS = 0.02;
        h.backoffMaxS = 0.1;
        h.bearerToken = kToken;
        h.tokenHosts = {archive::urlHost(*base_)};
        return h;
    }
    static void control(const std::string& spec) { HttpClient(quick()).postForm(*base_ + "/_control", {{"spec", spec}}); }
    static nlohmann::json stats() { return nlohmann::json::parse(HttpClient(quick()).get(*base_ + "/_stats")); }

    /// The first epoch file of the first target as a MAST product.
    static archive::Product product(int epoch = 0) {
        const auto& e = sim_->epochs.at(static_cast<std::size_t>(epoch));
        const fs::path local = fs::path(tempRoot() / "sim") / e.file;
        archive::Product p;
        p.filename = local.filename().string();
        p.uri = "mast:SIMULATED/product/" + p.filename;
        p.url = *base_ + "/api/v0.1/Download/file?uri=" + archive::urlEncode(p.uri);
        p.size = static_cast<std::int64_t>(fs::file_size(local));
        return p;
    }
    static fs::path localFile(int epoch = 0) { return fs::path(tempRoot() / "sim") / sim_->epochs.at(static_cast<std::size_t>(epoch)).file; }

    static inline pid_t pid_ = -1;
    static inline std::string* base_ = nullptr;
    static inline sim::SimSummary* sim_ = nullptr;
    fs::path dir_;
};

TEST_F(RemoteArchive, DownloadsVerifiedBytesAtomically) {
    archive::ProductCache cache(dir_ / "cache");
    HttpClient http(quick());
    const auto p = product();
    const auto f = cache.fetch(p, http);
    EXPECT_EQ(f.outcome, archive::ProductCache::Outcome::Downloaded);
    EXPECT_EQ(readAll(f.path), readAll(localFile()));
    EXPECT_FALSE(fs::exists(f.path.string() + ".part"));
    EXPECT_EQ(archive::verifyFitsFile(f.path), "");
    // The server wrote checksums: the verification really checked something.
    EXPECT_GT(fits::verifyChecksums(f.path.string()).withChecksum, 0);
    const auto again = cache.fetch(p, http);
    EXPECT_EQ(again.outcome, archive::ProductCache::Outcome::Cached);
    EXPECT_EQ(stats()["full_bodies"][p.filename], 1);
}

TEST_F(RemoteArchive, Retries503HonouringRetryAfter) {
    const auto p = product();
    control(R"({"match": ")" + p.filename + R"(", "fault": "status503", "retry_after": 1, "times": 1})");
    HttpClient http(quick());
    const auto t0 = Clock::now();
    const auto r = http.download(p.url, dir_ / p.filename, p.size, archive::verifyFitsFile);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    EXPECT_EQ(r.attempts, 2);
    EXPECT_GE(s, 0.95) << "Retry-After: 1 was not honoured (backoff alone is 0.02 s)";
    EXPECT_EQ(readAll(dir_ / p.filename), readAll(localFile()));
}

TEST_F(RemoteArchive, Persistent500IsAClearErrorWithUrlAndStatus) {
    const auto p = product();
    control(R"({"match": ")" + p.filename + R"(", "fault": "status500", "times": -1})");
    HttpClient http(quick());
    try {
        http.download(p.url, dir_ / p.filename, p.size);
        FAIL() << "no error";
    } catch (const HttpError& e) {
        EXPECT_EQ(e.status(), 500);
        EXPECT_NE(std::string(e.what()).find(p.url), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("HTTP 500"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("4 attempt"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir_ / p.filename));
    EXPECT_FALSE(fs::exists(dir_ / (p.filename + ".part")));
    EXPECT_EQ(stats()["requests"]["/api/v0.1/Download/file"], 4);
}

TEST_F(RemoteArchive, DroppedConnectionResumesWithRange) {
    const auto p = product();
    control(R"({"match": ")" + p.filename + R"(", "fault": "drop", "times": 1})");
    HttpClient http(quick());
    const auto r = http.download(p.url, dir_ / p.filename, p.size, archive::verifyFitsFile);
    EXPECT_TRUE(r.resumed);
    EXPECT_EQ(r.attempts, 2);
    // Half the file, then the rest: nothing downloaded twice.
    EXPECT_EQ(r.transferred, p.size);
    EXPECT_EQ(readAll(dir_ / p.filename), readAll(localFile()));
}

TEST_F(RemoteArchive, StallPastTheTimeoutIsRetried) {
    const auto p = product();
    control(R"({"match": ")" + p.filename + R"(", "fault": "slow", "delay": 3, "times": 1})");
    HttpClient http(quick());  // stall timeout 1 s
    const auto t0 = Clock::now();
    const auto r = http.download(p.url, dir_ / p.filename, p.size);
    EXPECT_EQ(r.attempts, 2);
    EXPECT_LT(std::chrono::duration<double>(Clock::now() - t0).count(), 2.9) << "the stalled request was waited out";
    // Stalling for ever: an error naming the timeout.
    HttpConfig two = quick();
    two.maxAttempts = 2;
    HttpClient http2(two);
    control(R"({"match": ")" + p.filename + R"(", "fault": "slow", "delay": 3, "times": 2})");
    try {
        http2.download(p.url, dir_ / "again.fits", p.size);
        FAIL() << "no error";
    } catch (const HttpError& e) {
        EXPECT_EQ(e.status(), 0);
        EXPECT_NE(std::string(e.what()).find("timed out"), std::string::npos) << e.what();
    }
}

TEST_F(RemoteArchive, WrongContentLength) {
    const auto p = product();
    // Too short, every time: the size check refuses it.
    control(R"({"match": ")" + p.filename + R"(", "fault": "short_length", "times": -1})");
    HttpClient http(quick());
    try {
        http.download(p.url, dir_ / p.filename, p.size);
        FAIL() << "no error";
    } catch (const HttpError& e) {
        EXPECT_NE(std::string(e.what()).find("size mismatch"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir_ / p.filename));
    HttpClient(quick()).postForm(*base_ + "/_reset", {});
    // Too long once (the body ends early): the bytes received are the whole file, verified.
    control(R"({"match": ")" + p.filename + R"(", "fault": "long_length", "times": 1})");
    const auto r = http.download(p.url, dir_ / p.filename, p.size, archive::verifyFitsFile);
    EXPECT_EQ(readAll(dir_ / p.filename), readAll(localFile()));
    EXPECT_EQ(r.transferred, p.size);
}

TEST_F(RemoteArchive, CorruptedBytesFailTheChecksum) {
    const auto p = product();
    control(R"({"match": ")" + p.filename + R"(", "fault": "corrupt", "times": -1})");
    archive::ProductCache cache(dir_ / "cache");
    HttpClient http(quick());
    try {
        cache.fetch(p, http);
        FAIL() << "no error";
    } catch (const HttpError& e) {
        EXPECT_NE(std::string(e.what()).find("DATASUM"), std::string::npos) << e.what();
    }
    EXPECT_FALSE(cache.contains(p));
    // Corrupted once: the second download is good.
    HttpClient(quick()).postForm(*base_ + "/_reset", {});
    control(R"({"match": ")" + p.filename + R"(", "fault": "corrupt", "times": 1})");
    const auto f = cache.fetch(p, http);
    EXPECT_EQ(f.download.attempts, 2);
    EXPECT_EQ(readAll(f.path), readAll(localFile()));
}

TEST_F(RemoteArchive, NotFoundIsNotRetried) {
    archive::Product p = product();
    p.uri = "mast:SIMULATED/product/nothing.fits";
    p.filename = "nothing.fits";
    p.url = *base_ + "/api/v0.1/Download/file?uri=" + archive::urlEncode(p.uri);
    archive::ProductCache cache(dir_ / "cache");
    HttpClient http(quick());
    try {
        cache.fetch(p, http);
        FAIL() << "no error";
    } catch (const HttpError& e) {
        EXPECT_EQ(e.status(), 404);
        EXPECT_NE(std::string(e.what()).find("HTTP 404"), std::string::npos);
    }
    EXPECT_EQ(stats()["requests"]["/api/v0.1/Download/file"], 1);
}

TEST_F(RemoteArchive, UnsafeProductNamesAreRefusedBeforeAnyRequest) {
    archive::ProductCache cache(dir_ / "cache");
    HttpClient http(quick());
    for (const char* name : {"../evil.fits", "..", "a/b.fits", "/etc/passwd", "x\\..\\y.fits", "", "a..fits"}) {
        archive::Product p = product();
        p.filename = name;
        EXPECT_THROW(cache.fetch(p, http), DataError) << name;
    }
    // Too long for its .part/.lock companions (NAME_MAX 255); 250 bytes is the longest accepted.
    archive::Product longName = product();
    longName.filename = std::string(247, 'a') + ".fit";
    EXPECT_THROW(cache.pathFor(longName), DataError);
    longName.filename.pop_back();
    EXPECT_NO_THROW(cache.pathFor(longName));
    EXPECT_EQ(stats()["requests"].count("/api/v0.1/Download/file"), 0u);
    EXPECT_FALSE(fs::exists(dir_ / "evil.fits"));
    // A manifest carrying such a name is refused when read.
    std::ofstream(dir_ / "m.json") << R"({"format": "astrid-manifest", "format_version": 1, "targets": [
        {"target_id": 0, "name": "x", "ra": 1, "dec": 2, "disc_mjd": 5, "status": "paired", "observations": [
          {"role": "science", "obsid": "1", "products": [{"filename": "../../x.fits", "url": "http://127.0.0.1:1/x"}]}]}]})";
    try {
        archive::readManifest((dir_ / "m.json").string());
        FAIL() << "no error";
    } catch (const DataError& e) {
        EXPECT_NE(std::string(e.what()).find("targets[0] (x) observations[0]"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("../../x.fits"), std::string::npos) << e.what();
    }
}

TEST_F(RemoteArchive, TwoProcessesDownloadOneProductOnce) {
    const auto p = product(1);
    // ~0.8 s per transfer so the second process arrives while the first downloads.
    control(R"({"match": ")" + p.filename + R"(", "fault": "throttle", "rate": 350000, "times": 2})");
    const fs::path cacheDir = dir_ / "cache";
    archive::ProductCache(cacheDir).slotDirectory();
    std::vector<pid_t> kids;
    for (int k = 0; k < 2; ++k) {
        const pid_t pid = ::fork();
        if (pid == 0) {
            int code = 1;
            try {
                HttpConfig h = quick();
                h.stallTimeoutS = 5;
                archive::ProductCache cache(cacheDir);
                h.slotDirectory = cache.slotDirectory().string();
                HttpClient http(h);
                const auto f = cache.fetch(p, http);
                code = readAll(f.path) == readAll(localFile(1)) ? 0 : 2;
            } catch (...) {
                code = 3;
            }
            ::_exit(code);
        }
        kids.push_back(pid);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    for (pid_t k : kids) {
        int status = 0;
        ::waitpid(k, &status, 0);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child exit " << WEXITSTATUS(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the server counts after its last write
    const auto s = stats();
    EXPECT_EQ(s["full_bodies"][p.filename], 1);
    EXPECT_EQ(s["requests"]["/api/v0.1/Download/file"], 1);
}

TEST_F(RemoteArchive, PerHostLimitIsSharedThroughTheSlotDirectory) {
    // One slot: two throttled downloads in two threads take twice as long as one.
    const auto a = product(0), b = product(1);
    control(R"({"match": "Download", "fault": "throttle", "rate": 1000000, "times": 2})");
    HttpConfig h = quick();
    h.maxPerHost = 1;
    h.stallTimeoutS = 5;
    h.slotDirectory = (dir_ / "slots").string();
    const auto t0 = Clock::now();
    std::thread t1([&] { HttpClient(h).download(a.url, dir_ / a.filename, a.size); });
    std::thread t2([&] { HttpClient(h).download(b.url, dir_ / b.filename, b.size); });
    t1.join();
    t2.join();
    const double both = std::chrono::duration<double>(Clock::now() - t0).count();
    const double one = static_cast<double>(a.size) / 1e6;
    EXPECT_GT(both, 1.7 * one) << "the two downloads overlapped despite max_per_host 1";
    EXPECT_TRUE(fs::exists(dir_ / a.filename) && fs::exists(dir_ / b.filename));
}

TEST_F(RemoteArchive, MastQueryWithPagingAndProducts) {
    HttpClient http(quick());
    archive::MastClient mast(http, {*base_, 1, 1});  // one row per page, one obsid per products call
    const auto& t = sim_->targets.at(0);
    archive::QueryConfig q;
    q.missions = {"SIMULATED"};
    auto obs = mast.observations(t.raDeg, t.decDeg, *t.discMjd - 400, *t.discMjd + 400, q);
    ASSERT_EQ(obs.size(), 3u);  // reference + 2 science epochs of this target only
    for (const auto& o : obs) {
        EXPECT_EQ(o.collection, "SIMULATED");
        EXPECT_EQ(o.filter, "r");
        EXPECT_FALSE(o.sRegion.empty());
    }
    mast.attachProducts(obs);
    for (const auto& o : obs) EXPECT_EQ(o.products.size(), 3u);  // science, weight map, preview
    const auto plan = archive::pairTarget(t, obs, [] {
        archive::QueryConfig c;
        c.minOverlap = 0.3;
        c.daysBefore = 400;
        return c;
    }());
    ASSERT_EQ(plan.status, archive::PlanStatus::Paired) << plan.reason;
    ASSERT_EQ(plan.observations.size(), 3u);
    for (const auto& o : plan.observations) {
        ASSERT_EQ(o.products.size(), 1u) << "weight maps and previews are not science images";
        EXPECT_EQ(o.products[0].productType, "SCIENCE");
    }
    // Server-side filters: another mission returns nothing.
    q.missions = {"HST"};
    EXPECT_TRUE(mast.observations(t.raDeg, t.decDeg, *t.discMjd - 400, *t.discMjd + 400, q).empty());
}

TEST_F(RemoteArchive, BearerTokenIsSentAndNeverShown) {
    HttpConfig h = quick();
    h.bearerToken = "wrong-secret-token";
    h.maxAttempts = 1;
    HttpClient http(h);
    archive::MastClient mast(http, {*base_});
    try {
        mast.observations(10, 10, 0, 1, {});
        FAIL() << "no error";
    } catch (const HttpError& e) {
        EXPECT_EQ(e.status(), 401);
        EXPECT_EQ(std::string(e.what()).find("wrong-secret-token"), std::string::npos) << e.what();
    }
}

TEST_F(RemoteArchive, BearerTokenGoesOnlyToItsHost) {
    // The server refuses a wrong token with 401 and serves a request without one. "127.0.0.1:P" and
    // "localhost:P" are one server but two hosts to the client: the token goes to the listed one only
    // (MAST_API_TOKEN must never reach IRSA or any other archive).
    HttpConfig h = quick();
    h.bearerToken = "wrong-secret-token";
    h.maxAttempts = 1;
    const std::string port = base_->substr(base_->rfind(':') + 1);
    const std::string listed = "http://127.0.0.1:" + port, other = "http://localhost:" + port;
    h.tokenHosts = {archive::urlHost(listed)};
    HttpClient http(h);
    const auto p = product();
    const std::string path = p.url.substr(base_->size());
    try {
        http.download(listed + path, dir_ / "a.fits", p.size);
        FAIL() << "the token was not sent to its host";
    } catch (const HttpError& e) {
        EXPECT_EQ(e.status(), 401) << e.what();
        EXPECT_EQ(std::string(e.what()).find("wrong-secret-token"), std::string::npos) << e.what();
    }
    EXPECT_THROW(archive::MastClient(http, {listed}).observations(10, 10, 0, 1, {}), HttpError);
    // Another host: no Authorization header at all, so the server serves it.
    EXPECT_EQ(http.download(other + path, dir_ / "b.fits", p.size).bytes, p.size);
    EXPECT_NO_THROW(archive::MastClient(http, {other}).observations(10, 10, 0, 1, {}));
    // No host listed: the token goes nowhere.
    h.tokenHosts.clear();
    HttpClient none(h);
    EXPECT_EQ(none.download(listed + path, dir_ / "c.fits", p.size).bytes, p.size);
}

TEST_F(RemoteArchive, ZtfImagesFromIrsa) {
    HttpClient http(quick());
    archive::IrsaClient irsa(http, {*base_});
    const auto& t = sim_->targets.at(1);
    const auto found = irsa.ztfImages(t.raDeg, t.decDeg, *t.discMjd - 400, *t.discMjd + 400);
    int refs = 0, scis = 0;
    for (const auto& o : found) (o.coadd ? refs : scis)++;
    EXPECT_EQ(refs, 1);
    EXPECT_EQ(scis, 2);
    archive::QueryConfig c;
    c.minOverlap = 0.3;
    const auto plan = archive::pairTarget(t, found, c);
    ASSERT_EQ(plan.status, archive::PlanStatus::Paired) << plan.reason;
    archive::ProductCache cache(dir_ / "cache");
    for (const auto& o : plan.observations) {
        const auto f = cache.fetch(o.products.at(0).product, http);
        EXPECT_EQ(archive::verifyFitsFile(f.path), "");
    }
}

TEST_F(RemoteArchive, UnreachableArchiveNamesTheUrl) {
    HttpConfig h = quick();
    h.maxAttempts = 2;
    HttpClient http(h);
    archive::MastClient mast(http, {"http://127.0.0.1:9"});  // discard port: nothing listens
    try {
        mast.observations(10, 10, 0, 1, {});
        FAIL() << "no error";
    } catch (const HttpError& e) {
        EXPECT_EQ(e.status(), 0);
        EXPECT_NE(std::string(e.what()).find("http://127.0.0.1:9/api/v0/invoke"), std::string::npos) << e.what();
    }
}

}  // namespace
}  // namespace astrid
