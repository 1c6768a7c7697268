#include "astrid/output/merge.hpp"

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"
#include "astrid/output/reader.hpp"
#include "astrid/output/run_file.hpp"
#include "astrid/output/schema.hpp"

namespace astrid::output {
namespace fs = std::filesystem;

namespace {

/// "key = value" lines (comments and blank lines skipped) of a stored configuration.
std::map<std::string, std::string> keyValues(const std::string& text) {
    std::map<std::string, std::string> out;
    for (auto line : text::split(text, '\n')) {
        const auto t = text::trim(line);
        const auto eq = t.find('=');
        if (t.empty() || t.front() == '#' || eq == std::string_view::npos) continue;
        out[std::string(text::trim(t.substr(0, eq)))] = std::string(text::trim(t.substr(eq + 1)));
    }
    return out;
}

std::optional<std::size_t> parseCount(std::string_view s) {
    s = text::trim(s);
    std::size_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return v;
}

struct Slice {
    std::string path;
    std::size_t index = 0, count = 0;
    std::string config;
    std::map<std::string, std::string> keys;  ///< those that must agree between slices
    std::string startUtc, endUtc;
    int nRanks = 0;
    double wallS = 0;
    std::int64_t ok = 0, failed = 0, skipped = 0;
};

Slice describe(const std::string& path, const MergeOptions& options) {
    if (fs::is_directory(path))
        throw DataError(path + ": is a directory, not a run file (a `<output>.journal`? give the .h5 files)");
    if (!fs::is_regular_file(path)) throw DataError(path + ": no such file");
    const RunReader r(path);
    Slice s;
    s.path = path;
    const auto schema = r.numberAttribute("schema_version");
    if (!schema || static_cast<int>(*schema) != kSchemaVersion)
        throw DataError(path + ": schema version " + (schema ? std::to_string(static_cast<int>(*schema)) : "(none)") +
                        ", this astrid reads and writes version " + std::to_string(kSchemaVersion) +
                        ": merge with the astrid that wrote it");
    const std::string status = r.stringAttribute("status").value_or("");
    if (status != "complete")
        throw DataError(path + ": the run is not complete (status attribute '" + status +
                        "'): run its job again (same job file and slice) to finish it, then merge");
    s.config = r.stringAttribute("config").value_or("");
    s.keys = keyValues(s.config);
    const auto slice = s.keys.find("slice");
    if (slice == s.keys.end())
        throw DataError(path + ": its configuration has no `slice = i/N` key: not the output of a job-array slice");
    const auto slash = slice->second.find('/');
    const auto i = parseCount(std::string_view(slice->second).substr(0, slash));
    const auto n = slash == std::string::npos ? std::nullopt : parseCount(std::string_view(slice->second).substr(slash + 1));
    if (!i || !n || *n == 0 || *i >= *n) throw DataError(path + ": bad slice '" + slice->second + "' in its configuration");
    s.index = *i;
    s.count = *n;
    // What may differ: the slice, the output and the default difference directory that follows it,
    // and keys that do not shape results.
    const std::string output = s.keys.count("output") ? s.keys["output"] : "";
    if (s.keys.count("difference_dir") && s.keys["difference_dir"] == output + ".diff") s.keys.erase("difference_dir");
    s.keys.erase("slice");
    s.keys.erase("output");
    for (const auto& k : options.ignoredKeys) s.keys.erase(k);
    s.startUtc = r.stringAttribute("start_utc").value_or("");
    s.endUtc = r.stringAttribute("end_utc").value_or("");
    s.nRanks = static_cast<int>(r.numberAttribute("n_ranks").value_or(0));
    s.wallS = r.numberAttribute("wall_s").value_or(0);
    s.ok = static_cast<std::int64_t>(r.numberAttribute("targets_ok").value_or(-1));
    s.failed = static_cast<std::int64_t>(r.numberAttribute("targets_failed").value_or(-1));
    s.skipped = static_cast<std::int64_t>(r.numberAttribute("targets_skipped").value_or(-1));
    return s;
}

std::string differences(const std::map<std::string, std::string>& a, const std::map<std::string, std::string>& b) {
    std::set<std::string> keys;
    for (const auto& kv : a) keys.insert(kv.first);
    for (const auto& kv : b) keys.insert(kv.first);
    auto show = [](const std::map<std::string, std::string>& m, const std::string& k) {
        const auto it = m.find(k);
        return it == m.end() ? std::string("(absent)") : "'" + it->second + "'";
    };
    std::string out;
    for (const auto& k : keys) {
        const auto ia = a.find(k), ib = b.find(k);
        if (ia != a.end() && ib != b.end() && ia->second == ib->second) continue;
        out += (out.empty() ? "" : "; ") + k + ": " + show(a, k) + " vs " + show(b, k);
    }
    return out;
}

bool sameIssue(const CatalogIssueRow& a, const CatalogIssueRow& b) {
    return a.line == b.line && a.targetId == b.targetId && a.kind == b.kind && a.name == b.name &&
           a.category == b.category && a.detail == b.detail;
}

/// The first slice's configuration as the merged file's: no `slice`, `output` the merged file.
std::string mergedConfig(const std::string& config, const std::string& outputPath, std::size_t nSlices) {
    std::ostringstream o;
    bool first = true;
    for (auto line : text::split(config, '\n')) {
        const auto t = text::trim(line);
        if (t.empty()) continue;
        const auto key = text::trim(t.substr(0, t.find('=')));
        if (t.front() != '#' && key == "slice") continue;
        if (t.front() != '#' && key == "output")
            o << "output = " << outputPath << "\n";
        else
            o << t << "\n";
        if (first) o << "# merged by astrid merge from " << nSlices << " slice(s); merged_from names them\n";
        first = false;
    }
    return o.str();
}

/// Removes the temporary output unless released.
struct RemoveOnFailure {
    fs::path path;
    bool armed = true;
    ~RemoveOnFailure() {
        if (!armed) return;
        std::error_code ec;
        fs::remove(path, ec);
    }
};

}  // namespace

MergeSummary mergeSlices(const std::vector<std::string>& inputs, const std::string& outputPath,
                         const MergeOptions& options) {
    if (inputs.empty()) throw DataError("astrid merge: no slice files given");
    std::vector<Slice> slices;
    for (const auto& path : inputs) slices.push_back(describe(path, options));
    std::sort(slices.begin(), slices.end(), [](const Slice& a, const Slice& b) { return a.index < b.index; });

    const Slice& ref = slices.front();
    MergeSummary summary;
    summary.sliceCount = ref.count;
    for (std::size_t k = 0; k < slices.size(); ++k) {
        const Slice& s = slices[k];
        if (s.count != ref.count)
            throw DataError(s.path + ": slice " + std::to_string(s.index) + "/" + std::to_string(s.count) +
                            " belongs to another job array than " + ref.path + " (slice " + std::to_string(ref.index) +
                            "/" + std::to_string(ref.count) + ")");
        if (k > 0 && s.index == slices[k - 1].index)
            throw DataError(s.path + " and " + slices[k - 1].path + " are the same slice " + std::to_string(s.index) +
                            "/" + std::to_string(s.count));
        const std::string diff = differences(ref.keys, s.keys);
        if (!diff.empty())
            throw DataError(s.path + " and " + ref.path + " were run with different configurations (" + diff +
                            "): they are not slices of one campaign");
        summary.merged.push_back(s.index);
    }
    for (std::size_t i = 0, k = 0; i < ref.count; ++i) {
        if (k < slices.size() && slices[k].index == i) ++k;
        else summary.missing.push_back(i);
    }
    if (!summary.missing.empty() && !options.allowMissing) {
        std::string list;
        for (std::size_t m = 0; m < summary.missing.size() && m < 20; ++m)
            list += (m ? ", " : "") + std::to_string(summary.missing[m]);
        if (summary.missing.size() > 20) list += ", ...";
        throw DataError("astrid merge: " + std::to_string(summary.missing.size()) + " of the " +
                        std::to_string(ref.count) + " slices are missing (" + list +
                        "); give them all, or --allow-missing to merge a partial campaign");
    }

    const fs::path out = fs::absolute(outputPath).lexically_normal();
    for (const auto& s : slices) {
        std::error_code ec;
        if (fs::exists(out) && fs::equivalent(out, s.path, ec))
            throw DataError(outputPath + ": the output is one of the slices");
    }
    if (fs::exists(out) && !options.overwrite)
        throw DataError(outputPath + ": exists already (--overwrite replaces it)");

    RunMetadata meta;
    std::string mergedFrom;
    meta.configText = mergedConfig(ref.config, out.string(), slices.size());
    meta.commandLine = options.commandLine;
    meta.startUtc = ref.startUtc;
    for (const auto& s : slices) {
        meta.startUtc = std::min(meta.startUtc, s.startUtc);
        meta.nRanks = std::max(meta.nRanks, s.nRanks);
        mergedFrom += fs::absolute(s.path).lexically_normal().string() + "\n";
    }
    RunEnd end;
    end.status = "complete";
    // /training: every slice has it with the same layout, or none has it.
    std::optional<training::TripletLayout> layout;
    for (std::size_t k = 0; k < slices.size(); ++k) {
        const auto info = RunReader(slices[k].path).trainingInfo();
        if (k == 0 && info) layout = info->layout;
        const bool same = info && layout && info->layout.planesAttribute() == layout->planesAttribute() &&
                          info->layout.width == layout->width && info->layout.height == layout->height;
        if (info.has_value() != layout.has_value() || (info && !same))
            throw DataError(slices[k].path + " and " + slices[0].path +
                            " differ in their /training (present in one only, or another triplet layout)");
    }
    meta.training = layout;

    const fs::path tmp = out.string() + ".merging";
    RemoveOnFailure guard{tmp};
    RunFile file = RunFile::create(tmp.string(), meta);
    file.setRootAttribute("merged_from", mergedFrom);
    std::map<std::int64_t, std::string> targetOwner;  // target id -> slice file
    std::vector<CatalogIssueRow> issues;
    for (std::size_t k = 0; k < slices.size(); ++k) {
        const Slice& s = slices[k];
        const RunReader r(s.path);
        const auto targets = r.targets();
        std::int64_t ok = 0, failed = 0, skipped = 0;
        for (const auto& t : targets) {
            const auto [it, inserted] = targetOwner.emplace(t.targetId, s.path);
            if (!inserted)
                throw DataError("target " + std::to_string(t.targetId) + " (" + getText(t.name) + ") is in both " +
                                it->second + " and " + s.path + ": the slices overlap");
            (t.status == 0 ? ok : t.status == 1 ? failed : skipped) += 1;
        }
        if (ok != s.ok || failed != s.failed || skipped != s.skipped)
            throw DataError(s.path + ": /targets holds " + std::to_string(ok) + " ok, " + std::to_string(failed) +
                            " failed, " + std::to_string(skipped) + " skipped rows but its end attributes say " +
                            std::to_string(s.ok) + ", " + std::to_string(s.failed) + ", " + std::to_string(s.skipped) +
                            ": the file is damaged");
        auto sliceIssues = r.catalogIssues();
        if (k == 0) {
            issues = std::move(sliceIssues);
            file.appendCatalogIssues(issues, 0, issues.size());
        } else if (sliceIssues.size() != issues.size() ||
                   !std::equal(issues.begin(), issues.end(), sliceIssues.begin(), sameIssue)) {
            throw DataError(s.path + " and " + ref.path +
                            " list different catalog issues: the catalog changed between the slices' runs");
        }
        file.appendTargets(targets, 0, targets.size());
        const auto observations = r.observations();
        file.appendObservations(observations, 0, observations.size());
        const auto differenceRuns = r.differenceRuns();
        file.appendDifferenceRuns(differenceRuns, 0, differenceRuns.size());
        const auto candidates = r.candidates();
        file.appendCandidates(candidates, 0, candidates.size());
        const auto forced = r.forcedPhotometry();
        file.appendForcedPhotometry(forced, 0, forced.size());
        const auto injections = r.injections();
        file.appendInjections(injections, 0, injections.size());
        if (layout) {  // triplets in blocks, so memory stays bounded whatever the slice's size
            const std::uint64_t n = r.trainingInfo()->count;
            for (std::uint64_t start = 0; start < n; start += 1024) {
                const auto batch = r.readTraining(start, 1024);
                file.appendTraining(batch, 0, batch.size());
            }
            summary.triplets += n;
        }
        summary.targetsOk += ok;
        summary.targetsFailed += failed;
        summary.targetsSkipped += skipped;
        summary.observations += observations.size();
        summary.differenceRuns += differenceRuns.size();
        summary.candidates += candidates.size();
        summary.forcedPhotometry += forced.size();
        summary.injections += injections.size();
        end.endUtc = std::max(end.endUtc, s.endUtc);
        end.wallS += s.wallS;
    }
    summary.catalogIssues = issues.size();
    end.targetsOk = summary.targetsOk;
    end.targetsFailed = summary.targetsFailed;
    end.targetsSkipped = summary.targetsSkipped;
    file.finish(end);
    std::error_code ec;
    fs::rename(tmp, out, ec);
    if (ec) throw IoError(out.string() + ": cannot rename " + tmp.string() + " into place: " + ec.message());
    guard.armed = false;
    return summary;
}

}  // namespace astrid::output
