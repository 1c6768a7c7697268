#include "astrid/output/journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"
#include "astrid/core/time.hpp"

namespace astrid::output {
namespace fs = std::filesystem;

static_assert(std::is_trivially_copyable_v<TargetRow> && std::is_trivially_copyable_v<ObservationRow> &&
                  std::is_trivially_copyable_v<DifferenceRunRow> && std::is_trivially_copyable_v<CandidateRow> &&
                  std::is_trivially_copyable_v<ForcedPhotometryRow> && std::is_trivially_copyable_v<InjectionRow>,
              "journal records are the rows' bytes");

namespace {
constexpr char kLogMagic[8] = {'A', 'S', 'T', 'R', 'I', 'D', 'J', 'L'};
constexpr int kLogVersion = 1;

std::string errnoText(int e) { return std::strerror(e); }

/// The log header: magic, format and schema version, and every row type's size (a log written by
/// another build with different row layouts is refused, not misread).
std::string logHeader() {
    std::string h(kLogMagic, sizeof kLogMagic);
    const std::uint32_t words[] = {kLogVersion,
                                   static_cast<std::uint32_t>(kSchemaVersion),
                                   sizeof(TargetRow),
                                   sizeof(ObservationRow),
                                   sizeof(DifferenceRunRow),
                                   sizeof(CandidateRow),
                                   sizeof(ForcedPhotometryRow),
                                   sizeof(InjectionRow)};
    h.append(reinterpret_cast<const char*>(words), sizeof words);
    return h;
}

template <class T>
void put(std::string& out, const std::vector<T>& v) {
    if (v.empty()) return;
    out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

/// Reads `count` rows of T from `data` at `pos` (bounds already checked by the caller's sizes).
template <class T>
void take(std::vector<T>& v, const char* data, std::size_t& pos, std::uint32_t count) {
    if (count == 0) return;  // v.data() may be null
    const std::size_t old = v.size();
    v.resize(old + count);
    std::memcpy(v.data() + old, data + pos, count * sizeof(T));
    pos += count * sizeof(T);
}

void writeAll(int fd, const char* data, std::size_t n, const fs::path& path) {
    while (n > 0) {
        const ssize_t w = ::write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            throw IoError(path.string() + ": cannot write: " + errnoText(errno));
        }
        data += w;
        n -= static_cast<std::size_t>(w);
    }
}

void fsyncPath(const fs::path& path, bool directory) {
    const int fd = ::open(path.c_str(), directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) throw IoError(path.string() + ": cannot open to sync: " + errnoText(errno));
    const int rc = ::fsync(fd);
    const int e = errno;
    ::close(fd);
    if (rc != 0) throw IoError(path.string() + ": fsync failed: " + errnoText(e));
}

std::string readFile(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError(path.string() + ": cannot open");
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

nlohmann::json parseJsonFile(const fs::path& path) {
    try {
        return nlohmann::json::parse(readFile(path));
    } catch (const nlohmann::json::exception& e) {
        throw IoError(path.string() + ": not a valid journal file (" + e.what() + ")");
    }
}

/// "key = value" lines of a configuration text, comments and blank lines skipped.
std::map<std::string, std::string> keyValues(const std::string& text) {
    std::map<std::string, std::string> out;
    for (auto line : text::split(text, '\n')) {
        line = text::trim(line);
        if (line.empty() || line.front() == '#') continue;
        const auto eq = line.find('=');
        if (eq == std::string_view::npos) continue;
        out[std::string(text::trim(line.substr(0, eq)))] = std::string(text::trim(line.substr(eq + 1)));
    }
    return out;
}
}  // namespace

// ---------------------------------------------------------------------------------------------
void RowBatch::add(std::int32_t targetIndex, const pipeline::TargetResult& r) {
    targetIndices.push_back(targetIndex);
    targets.push_back(toTargetRow(r));
    auto extend = [](auto& dst, auto&& src) { dst.insert(dst.end(), src.begin(), src.end()); };
    extend(observations, toObservationRows(r));
    extend(differenceRuns, toDifferenceRunRows(r));
    extend(candidates, toCandidateRows(r));
    extend(forcedPhotometry, toForcedPhotometryRows(r));
    extend(injections, toInjectionRows(r));
}

void RowBatch::append(RowBatch&& o) {
    auto extend = [](auto& dst, auto& src) { dst.insert(dst.end(), src.begin(), src.end()); };
    extend(targetIndices, o.targetIndices);
    extend(targets, o.targets);
    extend(observations, o.observations);
    extend(differenceRuns, o.differenceRuns);
    extend(candidates, o.candidates);
    extend(forcedPhotometry, o.forcedPhotometry);
    extend(injections, o.injections);
    o.clear();
}

void RowBatch::clear() {
    targetIndices.clear();
    targets.clear();
    observations.clear();
    differenceRuns.clear();
    candidates.clear();
    forcedPhotometry.clear();
    injections.clear();
}

namespace {
std::uint64_t fnv1a(std::string_view bytes) {
    std::uint64_t h = 1469598103934665603ull;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 1099511628211ull;
    }
    return h;
}
}  // namespace

std::string fingerprint(std::string_view bytes) {
    const std::uint64_t h = fnv1a(bytes);
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
}

std::vector<std::string> configDifferences(const std::string& before, const std::string& after) {
    const auto a = keyValues(before), b = keyValues(after);
    std::vector<std::string> out;
    auto show = [](const std::map<std::string, std::string>& m, const std::string& k) {
        auto it = m.find(k);
        return it == m.end() ? std::string("(absent)") : "'" + it->second + "'";
    };
    std::map<std::string, int> keys;
    for (const auto& [k, v] : a) keys[k] = 0;
    for (const auto& [k, v] : b) keys[k] = 0;
    for (const auto& [k, unused] : keys) {
        auto ia = a.find(k), ib = b.find(k);
        if (ia != a.end() && ib != b.end() && ia->second == ib->second) continue;
        out.push_back(k + ": " + show(a, k) + " -> " + show(b, k));
    }
    return out;
}

void writeFileAtomically(const fs::path& path, const std::string& text) {
    const fs::path tmp = path.string() + ".tmp";
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) throw IoError(tmp.string() + ": cannot create: " + errnoText(errno));
    try {
        writeAll(fd, text.data(), text.size(), tmp);
        if (::fsync(fd) != 0) throw IoError(tmp.string() + ": fsync failed: " + errnoText(errno));
    } catch (...) {
        ::close(fd);
        throw;
    }
    ::close(fd);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
        throw IoError(path.string() + ": cannot replace: " + errnoText(errno));
    fsyncPath(path.parent_path().empty() ? fs::path(".") : path.parent_path(), true);
}

// ---------------------------------------------------------------------------------------------
fs::path Journal::directoryFor(const std::string& outputPath) { return fs::path(outputPath + ".journal"); }

bool Journal::exists(const fs::path& dir) { return fs::exists(dir / "manifest.json"); }

std::string Journal::logName(int generation, int rank) {
    return "g" + std::to_string(generation) + "-r" + std::to_string(rank) + ".log";
}

Journal Journal::create(const fs::path& dir, const JournalManifest& manifest) {
    std::error_code ec;
    fs::remove_all(dir, ec);
    if (ec) throw IoError(dir.string() + ": cannot remove the old journal: " + ec.message());
    fs::create_directories(dir, ec);
    if (ec) throw IoError(dir.string() + ": cannot create the journal directory: " + ec.message());
    Journal j(dir);
    j.manifest_ = manifest;
    if (j.manifest_.createdUtc.empty()) j.manifest_.createdUtc = utcNowIso();
    const nlohmann::json m = {{"format", "astrid-journal"},
                              {"format_version", kLogVersion},
                              {"schema_version", j.manifest_.schemaVersion},
                              {"result_config", j.manifest_.resultConfig},
                              {"targets_fingerprint", j.manifest_.targetsFingerprint},
                              {"n_targets", j.manifest_.nTargets},
                              {"created_utc", j.manifest_.createdUtc}};
    writeFileAtomically(dir / "manifest.json", m.dump(2) + "\n");
    j.commitCheckpoint(-1, {}, 0, false);
    return j;
}

Journal Journal::open(const fs::path& dir) {
    Journal j(dir);
    const auto manifestPath = dir / "manifest.json", commitPath = dir / "commit.json";
    const auto m = parseJsonFile(manifestPath);
    try {
        if (m.at("format") != "astrid-journal") throw IoError(manifestPath.string() + ": not an astrid journal");
        if (m.at("format_version").get<int>() != kLogVersion)
            throw IoError(manifestPath.string() + ": journal format version " +
                          std::to_string(m.at("format_version").get<int>()) + ", this astrid reads " +
                          std::to_string(kLogVersion));
        j.manifest_.schemaVersion = m.at("schema_version");
        j.manifest_.resultConfig = m.at("result_config");
        j.manifest_.targetsFingerprint = m.at("targets_fingerprint");
        j.manifest_.nTargets = m.at("n_targets");
        j.manifest_.createdUtc = m.at("created_utc");
    } catch (const nlohmann::json::exception& e) {
        throw IoError(manifestPath.string() + ": missing or malformed field (" + e.what() + ")");
    }
    const auto c = parseJsonFile(commitPath);
    try {
        j.commit_.sequence = c.at("sequence");
        j.commit_.generation = c.at("generation");
        j.commit_.complete = c.at("complete");
        j.commit_.targetsDone = c.at("targets_done");
        for (const auto& [name, bytes] : c.at("logs").items()) j.commit_.logs[name] = bytes.get<std::uint64_t>();
    } catch (const nlohmann::json::exception& e) {
        throw IoError(commitPath.string() + ": missing or malformed field (" + e.what() + ")");
    }
    return j;
}

void Journal::commitCheckpoint(int generation, const std::map<std::string, std::uint64_t>& lengths,
                               std::int64_t targetsDone, bool complete) {
    JournalCommit next = commit_;
    if (generation >= 0) {
        ++next.sequence;
        next.generation = generation;
    }
    for (const auto& [name, bytes] : lengths)
        if (bytes > 0) next.logs[name] = bytes;
    next.targetsDone = targetsDone;
    next.complete = complete;
    nlohmann::json logs = nlohmann::json::object();
    for (const auto& [name, bytes] : next.logs) logs[name] = bytes;
    const nlohmann::json c = {{"sequence", next.sequence}, {"generation", next.generation},
                              {"complete", next.complete}, {"targets_done", next.targetsDone},
                              {"logs", logs},               {"committed_utc", utcNowIso()}};
    writeFileAtomically(dir_ / "commit.json", c.dump(2) + "\n");
    commit_ = std::move(next);
}

RowBatch Journal::readCommitted() const {
    RowBatch all;
    const std::string header = logHeader();
    for (const auto& [name, committed] : commit_.logs) {
        const fs::path path = dir_ / name;
        std::string bytes;
        {
            std::ifstream in(path, std::ios::binary);
            if (!in) throw IoError(path.string() + ": committed journal log is missing");
            bytes.resize(committed);
            in.read(bytes.data(), static_cast<std::streamsize>(committed));
            if (static_cast<std::uint64_t>(in.gcount()) != committed)
                throw IoError(path.string() + ": shorter (" + std::to_string(in.gcount()) + " bytes) than its committed " +
                              std::to_string(committed) + " bytes");
        }
        if (bytes.compare(0, header.size(), header) != 0)
            throw IoError(path.string() + ": wrong header (another astrid build or schema wrote it)");
        std::size_t pos = header.size();
        while (pos < bytes.size()) {
            auto corrupt = [&](const std::string& what) {
                return IoError(path.string() + ": committed record at byte " + std::to_string(pos) + " " + what);
            };
            std::uint64_t payload = 0, check = 0;
            if (bytes.size() - pos < 2 * sizeof(std::uint64_t)) throw corrupt("is truncated");
            std::memcpy(&payload, bytes.data() + pos, sizeof payload);
            if (bytes.size() - pos - 2 * sizeof(std::uint64_t) < payload) throw corrupt("is truncated");
            const std::string_view body(bytes.data() + pos + 2 * sizeof(std::uint64_t), payload);
            std::memcpy(&check, bytes.data() + pos + sizeof(std::uint64_t), sizeof check);
            if (fnv1a(body) != check) throw corrupt("fails its checksum");
            std::uint32_t counts[7];
            if (payload < sizeof counts) throw corrupt("is malformed");
            std::memcpy(counts, body.data(), sizeof counts);
            const std::uint64_t expect = sizeof counts + std::uint64_t{counts[0]} * sizeof(std::int32_t) +
                                         std::uint64_t{counts[1]} * sizeof(TargetRow) +
                                         std::uint64_t{counts[2]} * sizeof(ObservationRow) +
                                         std::uint64_t{counts[3]} * sizeof(DifferenceRunRow) +
                                         std::uint64_t{counts[4]} * sizeof(CandidateRow) +
                                         std::uint64_t{counts[5]} * sizeof(ForcedPhotometryRow) +
                                         std::uint64_t{counts[6]} * sizeof(InjectionRow);
            if (expect != payload) throw corrupt("has row counts that do not match its length");
            std::size_t p = sizeof counts;
            take(all.targetIndices, body.data(), p, counts[0]);
            take(all.targets, body.data(), p, counts[1]);
            take(all.observations, body.data(), p, counts[2]);
            take(all.differenceRuns, body.data(), p, counts[3]);
            take(all.candidates, body.data(), p, counts[4]);
            take(all.forcedPhotometry, body.data(), p, counts[5]);
            take(all.injections, body.data(), p, counts[6]);
            pos += 2 * sizeof(std::uint64_t) + payload;
        }
    }
    return all;
}

// ---------------------------------------------------------------------------------------------
JournalLog::JournalLog(fs::path path) : path_(std::move(path)) {
    fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw IoError(path_.string() + ": cannot open the journal log: " + errnoText(errno));
    const off_t end = ::lseek(fd_, 0, SEEK_END);
    length_ = end > 0 ? static_cast<std::uint64_t>(end) : 0;
}

JournalLog::JournalLog(JournalLog&& o) noexcept
    : path_(std::move(o.path_)), fd_(std::exchange(o.fd_, -1)), length_(o.length_) {}
JournalLog& JournalLog::operator=(JournalLog&& o) noexcept {
    if (this != &o) {
        if (fd_ >= 0) ::close(fd_);
        path_ = std::move(o.path_);
        fd_ = std::exchange(o.fd_, -1);
        length_ = o.length_;
    }
    return *this;
}
JournalLog::~JournalLog() {
    if (fd_ >= 0) ::close(fd_);
}

std::uint64_t JournalLog::append(const RowBatch& b) {
    if (b.empty()) return length_;
    std::string record;
    if (length_ == 0) record = logHeader();
    std::string body;
    const std::uint32_t counts[7] = {
        static_cast<std::uint32_t>(b.targetIndices.size()), static_cast<std::uint32_t>(b.targets.size()),
        static_cast<std::uint32_t>(b.observations.size()),  static_cast<std::uint32_t>(b.differenceRuns.size()),
        static_cast<std::uint32_t>(b.candidates.size()),    static_cast<std::uint32_t>(b.forcedPhotometry.size()),
        static_cast<std::uint32_t>(b.injections.size())};
    body.append(reinterpret_cast<const char*>(counts), sizeof counts);
    put(body, b.targetIndices);
    put(body, b.targets);
    put(body, b.observations);
    put(body, b.differenceRuns);
    put(body, b.candidates);
    put(body, b.forcedPhotometry);
    put(body, b.injections);
    const std::uint64_t payload = body.size();
    const std::uint64_t check = fnv1a(body);
    record.append(reinterpret_cast<const char*>(&payload), sizeof payload);
    record.append(reinterpret_cast<const char*>(&check), sizeof check);
    record += body;
    // A failed write leaves a torn tail beyond the committed length; the next append goes after
    // the last good length so the log stays a sequence of whole records.
    if (::lseek(fd_, static_cast<off_t>(length_), SEEK_SET) < 0)
        throw IoError(path_.string() + ": cannot seek: " + errnoText(errno));
    writeAll(fd_, record.data(), record.size(), path_);
    if (::fsync(fd_) != 0) throw IoError(path_.string() + ": fsync failed: " + errnoText(errno));
    if (length_ == 0) fsyncPath(path_.parent_path(), true);  // the new file's directory entry
    length_ += record.size();
    return length_;
}

}  // namespace astrid::output
