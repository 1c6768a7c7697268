// The HDF5 writer and reader without MPI: schema, attributes, appends, CSV export, errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "astrid/core/error.hpp"
#include "astrid/output/journal.hpp"
#include "astrid/output/reader.hpp"
#include "astrid/output/run_file.hpp"
#include "astrid/report/completeness.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
pipeline::TargetResult result(std::int64_t id, pipeline::TargetStatus status) {
    pipeline::TargetResult r;
    r.target.id = id;
    r.target.name = "2021a" + std::to_string(id);
    r.target.raDeg = 10.0 + static_cast<double>(id);
    r.target.decDeg = -5.0;
    r.status = status;
    if (status == pipeline::TargetStatus::Failed) {
        r.failStage = pipeline::Stage::Load;
        r.failReason = "x.fits: truncated, \"quoted\", with a comma";
    }
    archive::Observation o;
    o.obsId = id * 10000;
    o.targetId = id;
    o.role = archive::Role::Science;
    o.filterBand = "r";
    o.mjd = 59000.5;
    o.fitsPath = "/data/" + r.target.name + ".fits";
    o.status = archive::ObsStatus::Used;
    r.observations = {o, o};
    r.observations[1].obsId += 1;
    r.observations[1].role = archive::Role::Reference;
    r.nEpochs = 1;
    r.wallSeconds = 0.25;
    return r;
}
}  // namespace

TEST(Output, WriteAndReadBackSerially) {
    const std::string path = (fs::temp_directory_path() / ("astrid_out_" + std::to_string(::getpid()) + ".h5")).string();
    {
        auto f = output::RunFile::create(path, {"catalog = x\n", "astrid run --config x.ini", "2026-01-01T00:00:00Z", 1, std::nullopt});
        std::vector<output::TargetRow> rows;
        std::vector<output::ObservationRow> obs;
        for (int i = 0; i < 3; ++i) {
            auto r = result(i, i == 1 ? pipeline::TargetStatus::Failed : pipeline::TargetStatus::Ok);
            rows.push_back(output::toTargetRow(r));
            for (auto& o : output::toObservationRows(r)) obs.push_back(o);
        }
        f.appendTargets(std::span(rows).first(2), 0, 2);  // two appends, as two checkpoints
        f.appendTargets(std::span(rows).subspan(2), 0, 1);
        f.appendObservations(obs, 0, obs.size());
        f.flush();
        f.finish({"2026-01-01T00:01:00Z", "complete", 2, 1, 0, 60.0});
    }
    output::RunReader rd(path);
    EXPECT_EQ(*rd.numberAttribute("schema_version"), output::kSchemaVersion);
    EXPECT_EQ(*rd.stringAttribute("status"), "complete");
    EXPECT_EQ(*rd.stringAttribute("config"), "catalog = x\n");
    EXPECT_EQ(*rd.numberAttribute("targets_failed"), 1);
    EXPECT_FALSE(rd.stringAttribute("astrid_version")->empty());
    auto targets = rd.targets();
    ASSERT_EQ(targets.size(), 3u);
    EXPECT_EQ(output::getText(targets[1].failStage), "load");
    EXPECT_EQ(targets[1].status, 1);
    EXPECT_EQ(output::getText(targets[2].name), "2021a2");
    EXPECT_EQ(rd.observations().size(), 6u);
    EXPECT_EQ(rd.rowCount("catalog_issues"), 0u);
    EXPECT_EQ(rd.tables(), (std::vector<std::string>{"candidates", "catalog_issues", "difference_runs", "forced_photometry",
                                                      "injections", "observations", "targets"}));
    std::ostringstream csv;
    rd.writeCsv("targets", csv);
    const std::string text = csv.str();
    EXPECT_EQ(text.substr(0, text.find('\n')),
              "target_id,name,ra,dec,disc_mjd,status,fail_stage,fail_reason,n_epochs,n_observations,wall_s,rank");
    EXPECT_NE(text.find(",failed,load,\"x.fits: truncated, \"\"quoted\"\", with a comma\""), std::string::npos) << text;
    std::ostringstream ocsv;
    rd.writeCsv("observations", ocsv);
    EXPECT_NE(ocsv.str().find(",reference,"), std::string::npos);
    EXPECT_THROW(rd.writeCsv("nope", ocsv), H5Error);
    fs::remove(path);
}

// The issue #4 products round-trip: every field of a candidate and of a forced-photometry point,
// and the CSV export expands the aperture arrays into columns.
TEST(Output, CandidatesAndForcedPhotometryRoundTrip) {
    const std::string path = (fs::temp_directory_path() / ("astrid_out_phot_" + std::to_string(::getpid()) + ".h5")).string();
    auto r = result(7, pipeline::TargetStatus::Ok);
    pipeline::CandidateRecord c;
    c.scienceObsId = 70000;
    c.index = 3;
    c.ra = 12.5, c.dec = -33.25, c.x = 101.25, c.y = 202.5;
    c.flux = 1234.5, c.fluxErr = 12.5, c.significance = -7.5, c.snr = 98.76;
    c.fwhm = 3.5, c.ellipticity = 0.125, c.positionAngle = 45.0, c.mag = 19.5, c.magErr = 0.01;
    c.isDiffPos = false, c.isDipole = true, c.nBad = 2, c.footprintPx = 40;
    c.sharpness = 0.9, c.dipoleRatio = 0.8, c.nearestRefDistPx = 1.5, c.nearestRefMag = 17.25;
    r.candidates = {c, c};
    r.candidates[1].index = 4;
    pipeline::ForcedPhotometryRecord f;
    f.scienceObsId = 70000;
    f.sourceId = 7;
    f.mjd = 59001.25;
    f.filter = "r";
    f.status = pipeline::PhotometryStatus::Done;
    f.fluxSci = 100.0, f.fluxSciErr = 10.0, f.flux = 93.0, f.fluxErr = 9.5, f.snr = 9.8;
    f.mag = 21.0, f.magErr = 0.11, f.zeroPoint = 26.0, f.normFactor = 1.01, f.fluxNorm = 92.1;
    f.apRadiusPx = {2.0, 3.0, 5.0};
    f.apFluxDiff = {50.0, 80.0, 95.0};
    f.flags = 5;
    pipeline::ForcedPhotometryRecord failed = f;
    failed.status = pipeline::PhotometryStatus::Failed;
    failed.failReason = "position off the image";
    r.forcedPhotometry = {f, failed};
    {
        auto file = output::RunFile::create(path, {"", "", "", 1, std::nullopt});
        const auto cr = output::toCandidateRows(r);
        const auto fr = output::toForcedPhotometryRows(r);
        file.appendCandidates(cr, 0, cr.size());
        file.appendForcedPhotometry(fr, 0, fr.size());
        file.finish({"", "complete", 1, 0, 0, 1.0});
    }
    output::RunReader rd(path);
    const auto cands = rd.candidates();
    ASSERT_EQ(cands.size(), 2u);
    EXPECT_EQ(cands[0].targetId, 7);
    EXPECT_EQ(cands[1].index, 4);
    EXPECT_DOUBLE_EQ(cands[0].significance, -7.5);
    EXPECT_EQ(cands[0].isDiffPos, 0);
    EXPECT_EQ(cands[0].isDipole, 1);
    EXPECT_DOUBLE_EQ(cands[0].nearestRefMag, 17.25);
    const auto phot = rd.forcedPhotometry();
    ASSERT_EQ(phot.size(), 2u);
    EXPECT_EQ(phot[0].status, 1);
    EXPECT_EQ(output::getText(phot[1].failReason), "position off the image");
    EXPECT_DOUBLE_EQ(phot[0].apFluxDiff[1], 80.0);
    EXPECT_DOUBLE_EQ(phot[0].normFactor, 1.01);
    EXPECT_EQ(output::getText(phot[0].filter), "r");
    std::ostringstream csv;
    rd.writeCsv("forced_photometry", csv);
    const std::string text = csv.str();
    EXPECT_NE(text.find("ap_radius_px_0,ap_radius_px_1,ap_radius_px_2"), std::string::npos) << text.substr(0, 400);
    EXPECT_NE(text.find(",done,"), std::string::npos);
    EXPECT_NE(text.find(",50,80,95,"), std::string::npos);
    fs::remove(path);
}

TEST(Output, LongTextIsTruncatedVisibly) {
    output::TargetRow row{};
    output::setText(row.failReason, std::string(1000, 'x'));
    const std::string back = output::getText(row.failReason);
    EXPECT_EQ(back.size(), row.failReason.size());
    EXPECT_EQ(back.substr(back.size() - 3), "...");
}

TEST(Output, UnwritableLocationIsAClearError) {
    try {
        output::RunFile::create("/nonexistent-dir/run.h5", {});
        FAIL();
    } catch (const H5Error& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/run.h5"), std::string::npos);
    }
    EXPECT_THROW(output::RunReader("/nonexistent-dir/run.h5"), H5Error);
}

// ---------------------------------------------------------------------------------------------
// The journal (durability): committed records read back exactly; bytes beyond the commit (a torn
// checkpoint) are ignored; damage inside the committed part is an error naming the file.
namespace {
fs::path journalDir(const std::string& name) {
    const fs::path d = fs::temp_directory_path() / ("astrid_journal_" + name + "_" + std::to_string(::getpid()));
    fs::remove_all(d);
    return d;
}
output::JournalManifest manifestOf(std::string config) {
    output::JournalManifest m;
    m.resultConfig = std::move(config);
    m.targetsFingerprint = output::fingerprint("targets");
    m.nTargets = 5;
    return m;
}
}  // namespace

TEST(Journal, CommittedRecordsRoundTripAndTheTornTailIsIgnored) {
    const auto dir = journalDir("roundtrip");
    auto j = output::Journal::create(dir, manifestOf("a = 1\n"));
    output::JournalLog log0(dir / output::Journal::logName(0, 0)), log1(dir / output::Journal::logName(0, 1));
    output::RowBatch b0, b1;
    b0.add(0, result(100, pipeline::TargetStatus::Ok));
    b0.add(2, result(102, pipeline::TargetStatus::Failed));
    b1.add(1, result(101, pipeline::TargetStatus::Ok));
    const auto len0 = log0.append(b0), len1 = log1.append(b1);
    j.commitCheckpoint(0, {{output::Journal::logName(0, 0), len0}, {output::Journal::logName(0, 1), len1}}, 3, false);
    // A later checkpoint that never committed: rank 0 wrote its record, then the job was killed.
    output::RowBatch late;
    late.add(3, result(103, pipeline::TargetStatus::Ok));
    EXPECT_GT(log0.append(late), len0);

    const auto reopened = output::Journal::open(dir);
    EXPECT_EQ(reopened.commit().sequence, 1);
    EXPECT_EQ(reopened.commit().generation, 0);
    EXPECT_EQ(reopened.commit().targetsDone, 3);
    EXPECT_FALSE(reopened.commit().complete);
    EXPECT_EQ(reopened.manifest().resultConfig, "a = 1\n");
    const auto rows = reopened.readCommitted();
    EXPECT_EQ(rows.targetIndices, (std::vector<std::int32_t>{0, 2, 1}));
    ASSERT_EQ(rows.targets.size(), 3u);
    EXPECT_EQ(rows.targets[1].targetId, 102);
    EXPECT_EQ(output::getText(rows.targets[1].failStage), "load");
    EXPECT_EQ(rows.observations.size(), 6u);
    fs::remove_all(dir);
}

TEST(Journal, DamageInsideTheCommittedPartIsAnErrorNamingTheLog) {
    const auto dir = journalDir("damage");
    auto j = output::Journal::create(dir, manifestOf(""));
    const auto name = output::Journal::logName(2, 0);
    std::uint64_t len = 0;
    {
        output::JournalLog log(dir / name);
        output::RowBatch b;
        b.add(0, result(100, pipeline::TargetStatus::Ok));
        len = log.append(b);
    }
    j.commitCheckpoint(2, {{name, len}}, 1, false);
    {
        std::fstream f(dir / name, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(static_cast<std::streamoff>(len - 20));
        f.put('\x7f');
    }
    try {
        (void)output::Journal::open(dir).readCommitted();
        FAIL() << "a damaged record was read";
    } catch (const IoError& e) {
        EXPECT_NE(std::string(e.what()).find(name), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("checksum"), std::string::npos) << e.what();
    }
    fs::resize_file(dir / name, len / 2);  // shorter than committed: lost data is reported, not ignored
    EXPECT_THROW((void)output::Journal::open(dir).readCommitted(), IoError);
    fs::remove_all(dir);
}

TEST(Journal, ConfigDifferencesNameTheKeys) {
    const auto d = output::configDifferences("a = 1\nb = x\n# comment\n", "b = x\na = 2\nc = 3\n");
    ASSERT_EQ(d.size(), 2u);
    EXPECT_EQ(d[0], "a: '1' -> '2'");
    EXPECT_EQ(d[1], "c: (absent) -> '3'");
    EXPECT_TRUE(output::configDifferences("a = 1\n", "a=1").empty());
    EXPECT_EQ(output::fingerprint("").size(), 16u);
    EXPECT_NE(output::fingerprint("a"), output::fingerprint("b"));
}

// Completeness from injection rows: the curve per filter and for all, and its 50% point.
TEST(Completeness, CurvesPerFilterAndTheFiftyPercentPoint) {
    std::vector<output::InjectionRow> inj;
    std::vector<output::ObservationRow> obs(2);
    obs[0].obsId = 1;
    output::setText(obs[0].filterBand, "g");
    obs[1].obsId = 2;
    output::setText(obs[1].filterBand, "r");
    for (int i = 0; i < 2000; ++i) {
        output::InjectionRow r{};
        r.scienceObsId = 1 + i % 2;
        r.snrTrue = 0.5 + 0.01 * i;  // 0.5 .. 20.5
        r.recovered = r.snrTrue >= 5.0 ? 1 : 0;
        r.mag = 25.0 - 0.001 * i;
        r.magLimit = 23.0;
        inj.push_back(r);
    }
    const auto rows = report::completeness(inj, obs);
    const auto s = report::summarize(rows, inj);
    EXPECT_EQ(s.injected, 2000);
    EXPECT_DOUBLE_EQ(s.efficiencyAtSnr8, 1.0);
    EXPECT_NEAR(s.snr50, 5.0, 0.6);  // a step at 5 between bin centres 4.5 and 5.5
    std::set<std::string> filters;
    std::int64_t allInjected = 0;
    for (const auto& r : rows) {
        filters.insert(output::getText(r.filter));
        if (output::getText(r.filter) == "all" && r.binKind == 0) {
            allInjected += r.injected;
            if (r.hi <= 5.0) {
                EXPECT_EQ(r.recovered, 0);
            }
            if (r.lo >= 5.0) {
                EXPECT_EQ(r.recovered, r.injected);
            }
            EXPECT_GT(r.efficiencyErr, 0.0);
        }
    }
    EXPECT_EQ(allInjected, 2000);
    EXPECT_EQ(filters, (std::set<std::string>{"all", "g", "r"}));
}
