// Job files and command-line overrides: every key overridable, unknown keys named, paths resolved.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "app/config.hpp"
#include "astrid/core/error.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
struct Job {
    fs::path dir;
    fs::path file;
    explicit Job(const std::string& text) {
        dir = fs::temp_directory_path() / ("astrid_cfg_" + std::to_string(::getpid()) + "_" +
                                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(dir);
        file = dir / "job.ini";
        std::ofstream(file) << text;
    }
    ~Job() { fs::remove_all(dir); }
};

app::JobConfig parse(std::vector<std::string> args) {
    std::vector<const char*> argv{"run"};
    for (auto& a : args) argv.push_back(a.c_str());
    return app::parseJobConfig(static_cast<int>(argv.size()), argv.data(), nullptr, nullptr);
}
}  // namespace

TEST(Config, FileValuesPathsAndCommandLineOverrides) {
    Job job("# a job\ncatalog = cat.txt\narchive = archive\noutput = out/run.h5\ndays_before = 200\nmin_year = 2010\n");
    auto c = parse({"--config", job.file.string(), "--days_before", "150", "--max_science", "4"});
    EXPECT_EQ(c.catalog, (job.dir / "cat.txt").string());  // relative to the job file
    EXPECT_EQ(c.archive, (job.dir / "archive").string());
    EXPECT_EQ(c.output, (job.dir / "out/run.h5").string());
    EXPECT_DOUBLE_EQ(c.pipeline.select.daysBefore, 150.0);  // command line wins
    EXPECT_EQ(c.pipeline.select.maxScience, 4);
    EXPECT_EQ(*c.filter.minYear, 2010);
    auto d = parse({"--config", job.file.string(), "--output", "elsewhere.h5"});
    EXPECT_EQ(d.output, (fs::current_path() / "elsewhere.h5").string());  // relative to the cwd
    EXPECT_DOUBLE_EQ(d.pipeline.select.daysBefore, 200.0);
    EXPECT_NE(d.run.configText.find("days_before = 200"), std::string::npos);
}

TEST(Config, UnknownKeyIsNamed) {
    Job job("catalog = c.txt\narchive = a\ndays_befor = 3\n");
    try {
        parse({"--config", job.file.string()});
        FAIL() << "unknown key accepted";
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.key(), "days_befor");
        EXPECT_NE(std::string(e.what()).find(job.file.string()), std::string::npos) << e.what();
    }
    try {
        parse({"--config", job.file.string(), "--no_such_key", "1"});
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("no_such_key"), std::string::npos) << e.what();
    }
}

TEST(Config, BadValuesAndMissingThings) {
    Job bad("catalog = c.txt\narchive = a\ndays_before = soon\n");
    try {
        parse({"--config", bad.file.string()});
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("days_before"), std::string::npos) << e.what();
    }
    Job neg("catalog = c.txt\narchive = a\nmin_overlap = 1.5\n");
    EXPECT_THROW(parse({"--config", neg.file.string()}), ConfigError);
    Job nocat("archive = a\n");
    try {
        parse({"--config", nocat.file.string()});
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.key(), "catalog");
    }
    try {
        parse({"--config", "/nonexistent/job.ini"});
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_NE(std::string(e.what()).find("/nonexistent/job.ini"), std::string::npos);
    }
    Job lvl("catalog = c.txt\narchive = a\nlog_level = loud\n");
    EXPECT_THROW(parse({"--config", lvl.file.string()}), ConfigError);
}

TEST(Config, DumpedConfigReadsBackIdentically) {
    Job job("catalog = c.txt\narchive = a\ntypes = Ia, II\nfilter = r\nrequire_both = false\n");
    const auto c = parse({"--config", job.file.string(), "--checkpoint_targets", "7"});
    Job again(c.run.configText);
    const auto d = parse({"--config", again.file.string()});
    auto keysOnly = [](const std::string& text) {  // drop the comment lines naming the source file
        std::string out, line;
        std::istringstream in(text);
        while (std::getline(in, line))
            if (!line.empty() && line[0] != '#') out += line + "\n";
        return out;
    };
    EXPECT_EQ(keysOnly(app::dumpConfig(d)), keysOnly(c.run.configText));
    EXPECT_EQ(d.filter.types, (std::vector<std::string>{"Ia", "II"}));
    EXPECT_FALSE(d.pipeline.select.requireBoth);
    EXPECT_EQ(d.run.checkpointTargets, 7);
}

TEST(Config, SliceKey) {
    Job job("catalog = c.txt\narchive = a\nslice = 2/5\n");
    const auto c = parse({"--config", job.file.string()});
    ASSERT_TRUE(c.slice);
    EXPECT_EQ(c.slice->index, 2u);
    EXPECT_EQ(c.slice->count, 5u);
    EXPECT_NE(c.run.configText.find("\nslice = 2/5\n"), std::string::npos);
    EXPECT_NE(c.run.resultConfig.find("slice = 2/5"), std::string::npos);  // another slice is another campaign
    EXPECT_EQ(parse({"--config", job.file.string(), "--slice", " 0 / 1 "}).slice->count, 1u);
    EXPECT_FALSE(parse({"--catalog", "c", "--archive", "a"}).slice);
    EXPECT_EQ(app::dumpConfig(parse({"--catalog", "c", "--archive", "a"})).find("slice"), std::string::npos);
    for (const char* bad : {"5/5", "1/0", "3", "a/4", "-1/4", "1/4x", "/4", ""}) {
        try {
            parse({"--config", job.file.string(), "--slice", bad});
            FAIL() << "slice '" << bad << "' accepted";
        } catch (const ConfigError& e) {
            EXPECT_EQ(e.key(), "slice") << bad;
            EXPECT_NE(std::string(e.what()).find("i/N"), std::string::npos) << e.what();
        }
    }
}

TEST(Config, ManifestInsteadOfArchive) {
    Job job("catalog = c.txt\nmanifest = m.json\ncache = cache\nfetch_on_demand = true\nhttp_max_per_host = 2\n");
    const auto c = parse({"--config", job.file.string()});
    EXPECT_EQ(c.manifest, (job.dir / "m.json").string());
    EXPECT_EQ(c.cache, (job.dir / "cache").string());
    EXPECT_TRUE(c.archive.empty());
    EXPECT_TRUE(c.fetchOnDemand);
    EXPECT_EQ(c.httpMaxPerHost, 2);
    // The dump reads back; the cache and the download settings do not shape results (a resume may
    // change them), the manifest does.
    Job again(c.run.configText);
    EXPECT_EQ(parse({"--config", again.file.string()}).manifest, c.manifest);
    EXPECT_EQ(c.run.resultConfig.find("cache ="), std::string::npos);
    EXPECT_EQ(c.run.resultConfig.find("fetch_on_demand"), std::string::npos);
    EXPECT_NE(c.run.resultConfig.find("manifest = " + c.manifest), std::string::npos);

    Job nocache("catalog = c.txt\nmanifest = m.json\n");
    try {
        parse({"--config", nocache.file.string()});
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.key(), "cache");
    }
    Job both("catalog = c.txt\narchive = a\nmanifest = m.json\ncache = c\n");
    try {
        parse({"--config", both.file.string()});
        FAIL();
    } catch (const ConfigError& e) {
        EXPECT_EQ(e.key(), "manifest");
    }
    // A manifest on the command line replaces the job file's local archive (the simulator's jobs).
    Job local("catalog = c.txt\narchive = a\n");
    const auto r = parse({"--config", local.file.string(), "--manifest", "/x/m.json", "--cache", "/x/c"});
    EXPECT_TRUE(r.archive.empty());
    EXPECT_EQ(r.manifest, "/x/m.json");
    Job badHttp("catalog = c.txt\nmanifest = m.json\ncache = c\nhttp_attempts = 0\n");
    EXPECT_THROW(parse({"--config", badHttp.file.string()}), ConfigError);
}
