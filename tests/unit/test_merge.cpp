// astrid merge without SLURM or MPI: slice files written with RunFile as the runner writes them,
// joined, and every refusal (incomplete, other configuration, overlap, missing, another array).
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "astrid/core/error.hpp"
#include "astrid/output/merge.hpp"
#include "astrid/output/reader.hpp"
#include "astrid/output/run_file.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
struct TempDir {
    fs::path dir;
    TempDir() {
        dir = fs::temp_directory_path() / ("astrid_merge_" + std::to_string(::getpid()) + "_" +
                                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(dir);
        fs::create_directories(dir);
    }
    ~TempDir() { fs::remove_all(dir); }
    std::string operator/(const std::string& name) const { return (dir / name).string(); }
};

std::string config(const std::string& output, const std::string& slice, const std::string& extra = "") {
    return "# astrid resolved job configuration\ncatalog = /c/cat.txt\narchive = /c/archive\noutput = " + output +
           "\n" + (slice.empty() ? "" : "slice = " + slice + "\n") + "days_after = 365\ndifference_dir = " + output +
           ".diff\ncheckpoint_seconds = 60\n" + extra;
}

/// A slice file with `ids` as targets (target id 3 fails), one observation, difference run and
/// forced-photometry row and two injections per target, candidates for even ids, and two catalog
/// issues.
void writeSlice(const std::string& path, const std::string& configText, const std::vector<std::int64_t>& ids,
                bool finish = true, const std::string& issueName = "bad1") {
    auto f = output::RunFile::create(path, {configText, "astrid run x.ini", "2026-01-0" + std::to_string(1 + ids.size() % 5) + "T00:00:00Z", 2, {}});
    std::vector<output::CatalogIssueRow> issues(2);
    for (int k = 0; k < 2; ++k) {
        issues[k] = {};
        issues[k].line = 5 + k;
        issues[k].targetId = k ? 40 : -1;
        issues[k].kind = static_cast<std::int8_t>(k);
        output::setText(issues[k].name, k ? "old1" : issueName);
        output::setText(issues[k].category, k ? "beyond limit" : "bad ra");
    }
    f.appendCatalogIssues(issues, 0, issues.size());
    std::vector<output::TargetRow> targets;
    std::vector<output::ObservationRow> obs;
    std::vector<output::DifferenceRunRow> diffs;
    std::vector<output::CandidateRow> cands;
    std::vector<output::ForcedPhotometryRow> forced;
    std::vector<output::InjectionRow> injections;
    std::int64_t ok = 0, failed = 0;
    for (auto id : ids) {
        output::TargetRow t{};
        t.targetId = id;
        output::setText(t.name, "sn" + std::to_string(id));
        t.status = id == 3 ? 1 : 0;
        (id == 3 ? failed : ok) += 1;
        targets.push_back(t);
        output::ObservationRow o{};
        o.obsId = id * 10000;
        o.targetId = id;
        obs.push_back(o);
        output::DifferenceRunRow d{};
        d.targetId = id;
        d.scienceObsId = id * 10000;
        diffs.push_back(d);
        if (id % 2 == 0) {
            output::CandidateRow c{};
            c.targetId = id;
            c.index = 0;
            cands.push_back(c);
        }
        output::ForcedPhotometryRow p{};
        p.targetId = id;
        p.flux = 100.0 + static_cast<double>(id);
        forced.push_back(p);
        for (int k = 0; k < 2; ++k) {
            output::InjectionRow j{};
            j.targetId = id;
            j.index = k;
            j.mag = 20.0 + k;
            injections.push_back(j);
        }
    }
    f.appendTargets(targets, 0, targets.size());
    f.appendObservations(obs, 0, obs.size());
    f.appendDifferenceRuns(diffs, 0, diffs.size());
    f.appendCandidates(cands, 0, cands.size());
    f.appendForcedPhotometry(forced, 0, forced.size());
    f.appendInjections(injections, 0, injections.size());
    if (finish) f.finish({"2026-01-09T00:00:00Z", "complete", ok, failed, 0, 10.0});
}

/// Three complete slices of ids 0..9 (blocks [0,3), [3,6), [6,10)), written to d/s<i>.h5.
std::vector<std::string> threeSlices(const TempDir& d) {
    const std::vector<std::vector<std::int64_t>> blocks = {{0, 1, 2}, {3, 4, 5}, {6, 7, 8, 9}};
    std::vector<std::string> paths;
    for (int i = 0; i < 3; ++i) {
        paths.push_back(d / ("s" + std::to_string(i) + ".h5"));
        writeSlice(paths.back(), config(paths.back(), std::to_string(i) + "/3"), blocks[i]);
    }
    return paths;
}

output::MergeOptions options() {
    output::MergeOptions o;
    o.ignoredKeys = {"checkpoint_seconds", "log_level"};
    o.commandLine = "astrid merge --out m.h5 ...";
    return o;
}

std::string errorOf(const std::vector<std::string>& inputs, const std::string& out,
                    const output::MergeOptions& o = options()) {
    try {
        output::mergeSlices(inputs, out, o);
    } catch (const DataError& e) {
        return e.what();
    }
    return "(no error)";
}
}  // namespace

TEST(Merge, JoinsSlicesIntoOneRunFile) {
    TempDir d;
    auto paths = threeSlices(d);
    std::reverse(paths.begin(), paths.end());  // any order
    const auto s = output::mergeSlices(paths, d / "m.h5", options());
    EXPECT_EQ(s.sliceCount, 3u);
    EXPECT_EQ(s.merged, (std::vector<std::size_t>{0, 1, 2}));
    EXPECT_TRUE(s.missing.empty());
    EXPECT_EQ(s.targetsOk, 9);
    EXPECT_EQ(s.targetsFailed, 1);
    EXPECT_FALSE(fs::exists(d / "m.h5.merging"));

    output::RunReader r(d / "m.h5");
    EXPECT_EQ(*r.stringAttribute("status"), "complete");
    EXPECT_EQ(*r.numberAttribute("targets_ok"), 9);
    EXPECT_EQ(*r.numberAttribute("targets_failed"), 1);
    EXPECT_DOUBLE_EQ(*r.numberAttribute("wall_s"), 30.0);  // the slices' wall times summed
    EXPECT_EQ(*r.numberAttribute("n_ranks"), 2);
    EXPECT_EQ(*r.stringAttribute("start_utc"), "2026-01-04T00:00:00Z");  // the earliest start
    EXPECT_EQ(*r.stringAttribute("end_utc"), "2026-01-09T00:00:00Z");
    EXPECT_EQ(*r.stringAttribute("command_line"), "astrid merge --out m.h5 ...");
    const std::string config = *r.stringAttribute("config");
    EXPECT_EQ(config.find("slice ="), std::string::npos) << config;
    EXPECT_NE(config.find("output = " + fs::absolute(d / "m.h5").string() + "\n"), std::string::npos) << config;
    EXPECT_NE(config.find("days_after = 365"), std::string::npos);
    const std::string from = *r.stringAttribute("merged_from");
    for (int i = 0; i < 3; ++i) EXPECT_NE(from.find(d / ("s" + std::to_string(i) + ".h5")), std::string::npos) << from;

    const auto targets = r.targets();
    ASSERT_EQ(targets.size(), 10u);
    for (std::size_t i = 0; i < targets.size(); ++i) EXPECT_EQ(targets[i].targetId, static_cast<std::int64_t>(i));
    EXPECT_EQ(output::getText(targets[3].name), "sn3");
    EXPECT_EQ(r.observations().size(), 10u);
    EXPECT_EQ(r.differenceRuns().size(), 10u);
    EXPECT_EQ(r.candidates().size(), 5u);
    const auto forced = r.forcedPhotometry();
    ASSERT_EQ(forced.size(), 10u);
    EXPECT_DOUBLE_EQ(forced[9].flux, 109.0);
    const auto injections = r.injections();
    ASSERT_EQ(injections.size(), 20u);
    EXPECT_EQ(injections[19].targetId, 9);
    EXPECT_EQ(s.injections, 20u);
    const auto issues = r.catalogIssues();  // once, not once per slice
    ASSERT_EQ(issues.size(), 2u);
    EXPECT_EQ(output::getText(issues[1].category), "beyond limit");
}

TEST(Merge, RefusesIncompleteSlices) {
    TempDir d;
    auto paths = threeSlices(d);
    writeSlice(paths[1], config(paths[1], "1/3"), {3, 4, 5}, /*finish=*/false);  // died: status "running"
    const std::string e = errorOf(paths, d / "m.h5");
    EXPECT_NE(e.find(paths[1]), std::string::npos) << e;
    EXPECT_NE(e.find("not complete"), std::string::npos) << e;
    EXPECT_NE(e.find("'running'"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(d / "m.h5"));
    EXPECT_FALSE(fs::exists(d / "m.h5.merging"));
}

TEST(Merge, RefusesOtherConfigurations) {
    TempDir d;
    auto paths = threeSlices(d);
    writeSlice(paths[2], config(paths[2], "2/3", "max_science = 4\n"), {6, 7, 8, 9});
    std::string e = errorOf(paths, d / "m.h5");
    EXPECT_NE(e.find("max_science: (absent) vs '4'"), std::string::npos) << e;
    EXPECT_NE(e.find(paths[2]), std::string::npos) << e;
    EXPECT_NE(e.find("different configurations"), std::string::npos) << e;
    // Keys that do not shape results may differ (a slice resumed with other checkpoint settings).
    writeSlice(paths[2], config(paths[2], "2/3", "log_level = debug\n"), {6, 7, 8, 9});
    EXPECT_EQ(errorOf(paths, d / "m.h5"), "(no error)");
    // A difference directory other than each slice's default must agree.
    writeSlice(paths[2], config(paths[2], "2/3") + "difference_dir = /elsewhere\n", {6, 7, 8, 9});
    e = errorOf(paths, d / "m2.h5");
    EXPECT_NE(e.find("difference_dir"), std::string::npos) << e;
}

TEST(Merge, RefusesMissingRepeatedForeignAndOverlappingSlices) {
    TempDir d;
    auto paths = threeSlices(d);
    std::string e = errorOf({paths[0], paths[2]}, d / "m.h5");
    EXPECT_NE(e.find("1 of the 3 slices are missing (1)"), std::string::npos) << e;
    auto o = options();
    o.allowMissing = true;
    const auto s = output::mergeSlices({paths[0], paths[2]}, d / "partial.h5", o);
    EXPECT_EQ(s.missing, (std::vector<std::size_t>{1}));
    EXPECT_EQ(output::RunReader(d / "partial.h5").targets().size(), 7u);

    e = errorOf({paths[0], paths[1], paths[1], paths[2]}, d / "m.h5");
    EXPECT_NE(e.find("are the same slice 1/3"), std::string::npos) << e;

    const std::string foreign = d / "foreign.h5";
    writeSlice(foreign, config(foreign, "1/4"), {3, 4, 5});
    e = errorOf({paths[0], foreign, paths[2]}, d / "m.h5");
    EXPECT_NE(e.find("another job array"), std::string::npos) << e;

    writeSlice(paths[1], config(paths[1], "1/3"), {2, 3, 4, 5});  // target 2 is slice 0's too
    e = errorOf(paths, d / "m.h5");
    EXPECT_NE(e.find("target 2 (sn2) is in both"), std::string::npos) << e;
    EXPECT_FALSE(fs::exists(d / "m.h5.merging"));

    const std::string plain = d / "plain.h5";
    writeSlice(plain, config(plain, ""), {0, 1});
    e = errorOf({plain}, d / "m.h5");
    EXPECT_NE(e.find("no `slice = i/N` key"), std::string::npos) << e;
}

TEST(Merge, RefusesChangedCatalogIssuesAndExistingOutputs) {
    TempDir d;
    auto paths = threeSlices(d);
    writeSlice(paths[1], config(paths[1], "1/3"), {3, 4, 5}, true, "bad2");
    std::string e = errorOf(paths, d / "m.h5");
    EXPECT_NE(e.find("different catalog issues"), std::string::npos) << e;
    writeSlice(paths[1], config(paths[1], "1/3"), {3, 4, 5});

    e = errorOf(paths, paths[0]);
    EXPECT_NE(e.find("the output is one of the slices"), std::string::npos) << e;
    output::mergeSlices(paths, d / "m.h5", options());
    e = errorOf(paths, d / "m.h5");
    EXPECT_NE(e.find("exists already"), std::string::npos) << e;
    auto o = options();
    o.overwrite = true;
    EXPECT_EQ(output::mergeSlices(paths, d / "m.h5", o).targetsOk, 9);

    e = errorOf({d / "nope.h5"}, d / "m.h5");
    EXPECT_NE(e.find("nope.h5: no such file"), std::string::npos) << e;
    EXPECT_THROW(output::mergeSlices({}, d / "m.h5", options()), DataError);
}
