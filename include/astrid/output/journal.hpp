#pragma once
// The run's journal: what makes a campaign durable (docs/architecture.md, "Durability").
//
// The HDF5 file is what users read; the journal is what survives a SIGKILL. It is a directory
// beside the output, `<output>.journal/`, holding
//   manifest.json  written once when the run starts: schema, the result-shaping configuration and
//                  a fingerprint of the target list (a resume with anything else is refused);
//   g<G>-r<R>.log  one append-only log per rank R and run attempt G: a record per checkpoint with
//                  that rank's rows and the indices of the targets they finish, fsync'ed;
//   commit.json    rewritten atomically (temporary file, fsync, rename, fsync of the directory) by
//                  rank 0 after every rank's record is durable: the committed length of every log.
// Bytes beyond a log's committed length are the torn tail of an interrupted checkpoint and are
// never read. A resume reads the committed records, rebuilds the HDF5 file from them and redoes
// the targets that are not in them. Nothing here calls MPI: the runner orchestrates the ranks.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "astrid/output/schema.hpp"

namespace astrid::output {

/// Table rows of one or more finished targets, and which targets they finish.
struct RowBatch {
    std::vector<std::int32_t> targetIndices;  ///< positions in the campaign's target list
    std::vector<TargetRow> targets;
    std::vector<ObservationRow> observations;
    std::vector<DifferenceRunRow> differenceRuns;
    std::vector<CandidateRow> candidates;
    std::vector<ForcedPhotometryRow> forcedPhotometry;
    std::vector<InjectionRow> injections;

    /// The rows of one finished target (the table converters of schema.hpp).
    void add(std::int32_t targetIndex, const pipeline::TargetResult& result);
    void append(RowBatch&& other);
    bool empty() const noexcept { return targetIndices.empty(); }
    void clear();
};

/// Written when a run starts; a resume must match it.
struct JournalManifest {
    int schemaVersion = kSchemaVersion;
    /// "key = value" lines of the configuration that shapes results (not log level, checkpoint
    /// intervals, rank layout or the output path, which a resume may change).
    std::string resultConfig;
    std::string targetsFingerprint;  ///< 16 hex digits (FNV-1a 64) of the target list
    std::int64_t nTargets = 0;
    std::string createdUtc;
};

/// The committed state.
struct JournalCommit {
    std::int64_t sequence = 0;  ///< checkpoints committed so far (over every attempt)
    int generation = -1;        ///< the last run attempt that committed (-1: none yet)
    bool complete = false;      ///< every target is in the journal and the HDF5 file was finished
    std::int64_t targetsDone = 0;
    std::map<std::string, std::uint64_t> logs;  ///< log file name -> committed bytes
};

/// FNV-1a 64-bit, as 16 lowercase hex digits.
std::string fingerprint(std::string_view bytes);

/// The keys whose values differ between two "key = value" texts (keys on one side only included),
/// as "key: 'old' -> 'new'" lines; empty when they agree.
std::vector<std::string> configDifferences(const std::string& before, const std::string& after);

class Journal {
public:
    /// `<output>.journal`.
    static std::filesystem::path directoryFor(const std::string& outputPath);
    static bool exists(const std::filesystem::path& dir);

    /// Starts an empty journal in `dir` (removing an old one). Throws IoError naming the path.
    static Journal create(const std::filesystem::path& dir, const JournalManifest& manifest);
    /// Opens an existing journal; throws IoError naming the file when it is unreadable or corrupt.
    static Journal open(const std::filesystem::path& dir);

    const std::filesystem::path& directory() const noexcept { return dir_; }
    const JournalManifest& manifest() const noexcept { return manifest_; }
    const JournalCommit& commit() const noexcept { return commit_; }

    /// Every committed row. Throws IoError when a log is shorter than its committed length or a
    /// committed record fails its checksum (the journal itself was damaged).
    RowBatch readCommitted() const;

    /// Name of the log rank `rank` writes during attempt `generation`.
    static std::string logName(int generation, int rank);

    /// Records the logs' durable lengths as committed (atomic replace of commit.json).
    void commitCheckpoint(int generation, const std::map<std::string, std::uint64_t>& lengths,
                          std::int64_t targetsDone, bool complete);

private:
    explicit Journal(std::filesystem::path dir) : dir_(std::move(dir)) {}
    std::filesystem::path dir_;
    JournalManifest manifest_;
    JournalCommit commit_;
};

/// One rank's append-only log for one attempt.
class JournalLog {
public:
    /// Opens (creating) `path` for appending. Throws IoError naming it.
    explicit JournalLog(std::filesystem::path path);
    JournalLog(JournalLog&&) noexcept;
    JournalLog& operator=(JournalLog&&) noexcept;
    JournalLog(const JournalLog&) = delete;
    ~JournalLog();

    /// Appends one record and fsyncs; returns the log's length, which is then durable. An empty
    /// batch writes nothing. Throws IoError (naming the file and errno, e.g. a full disk).
    std::uint64_t append(const RowBatch& batch);
    std::uint64_t length() const noexcept { return length_; }
    const std::filesystem::path& path() const noexcept { return path_; }

private:
    std::filesystem::path path_;
    int fd_ = -1;
    std::uint64_t length_ = 0;
};

/// Writes `text` to `path` atomically and durably: temporary file, fsync, rename, fsync of the
/// directory. Throws IoError naming the path.
void writeFileAtomically(const std::filesystem::path& path, const std::string& text);

}  // namespace astrid::output
