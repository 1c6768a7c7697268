// processTarget() on small hand-made archives: every bad-input case fails one target with the
// stage and a reason naming the file; good targets pass with the right epochs selected.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "astrid/archive/archive.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/pipeline/pipeline.hpp"
#include "astrid/wcs/sky_wcs.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
constexpr double kDisc = 59000.0;
constexpr double kRa = 150.0, kDec = -5.0;

struct Epoch {
    double mjd;
    std::string filter = "r";
    double raOffsetPx = 0.0;
    bool wcs = true;
    bool nan = false;
    std::string exptime = "60";
};

class PipelineTest : public ::testing::Test {
protected:
    fs::path root;
    void SetUp() override {
        root = fs::temp_directory_path() /
               ("astrid_pipe_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::remove_all(root);
        fs::create_directories(root);
    }
    void TearDown() override { fs::remove_all(root); }

    catalog::Target target(const std::string& name, std::optional<double> disc = kDisc) {
        catalog::Target t;
        t.id = 7;
        t.name = name;
        t.raDeg = kRa;
        t.decDeg = kDec;
        t.discMjd = disc;
        return t;
    }

    std::string write(const std::string& name, int index, const Epoch& e) {
        fs::create_directories(root / name);
        const std::string path = (root / name / (name + "_" + std::to_string(index) + ".fits")).string();
        Image<float> img(64, 64, 100.0f);
        if (e.nan)
            for (float& v : img.pixels()) v = std::numeric_limits<float>::quiet_NaN();
        fits::Header h;
        if (e.wcs) {
            const double s = 1.0 / 3600.0;
            h = wcs::SkyWcs::tan({kRa - e.raOffsetPx * s / std::cos(kDec * M_PI / 180), kDec}, {31.5, 31.5},
                                 {-s, 0, 0, s})
                    .toHeader();
        }
        h.set("MJD-OBS", e.mjd);
        h.set("FILTER", e.filter);
        if (e.exptime == "60")
            h.set("EXPTIME", 60.0);
        else if (!e.exptime.empty())
            h.set("EXPTIME", e.exptime);
        h.set("AIRMASS", 1.2);
        h.set("SEEING", 1.1);
        h.set("INSTRUME", "testcam");
        auto f = fits::FitsFile::create(path);
        f.writeImage(img, h);
        return path;
    }

    // These tests are about selection and validation on flat images without stars: no differencing.
    pipeline::TargetResult run(const catalog::Target& t, pipeline::PipelineConfig cfg = {}) {
        cfg.differenceOutput.enabled = false;
        archive::LocalArchive a(root);
        return pipeline::processTarget(t, a, cfg);
    }
};
}  // namespace

TEST_F(PipelineTest, SelectsReferenceAndScienceEpochsByTheRules) {
    write("good", 0, {kDisc - 100});                 // reference
    write("good", 1, {kDisc - 50});                  // second reference candidate: beyond max_reference
    write("good", 2, {kDisc + 5});                   // science
    write("good", 3, {kDisc + 12});                  // science
    write("good", 4, {kDisc + 9, "g"});              // other filter
    write("good", 5, {kDisc + 900});                 // outside the windows
    pipeline::PipelineConfig cfg;
    cfg.select.daysBefore = 365;
    cfg.select.daysAfter = 365;
    auto r = run(target("good"), cfg);
    ASSERT_EQ(r.status, pipeline::TargetStatus::Ok) << r.failReason;
    EXPECT_EQ(r.nEpochs, 2);
    ASSERT_EQ(r.observations.size(), 6u);
    int refs = 0, scis = 0;
    for (const auto& o : r.observations) {
        refs += o.role == archive::Role::Reference && o.status == archive::ObsStatus::Used;
        scis += o.role == archive::Role::Science && o.status == archive::ObsStatus::Used;
        EXPECT_EQ(o.targetId, 7);
        EXPECT_GT(o.exposureTimeS, 0);
        EXPECT_NEAR(o.pixelScaleArcsec, 1.0, 1e-6);
    }
    EXPECT_EQ(refs, 1);
    EXPECT_EQ(scis, 2);
    EXPECT_NE(r.observations[4].statusReason.find("filter"), std::string::npos);
    EXPECT_NE(r.observations[5].statusReason.find("outside"), std::string::npos);
    EXPECT_NE(r.observations[0].statusReason.find("max_reference"), std::string::npos);
}

TEST_F(PipelineTest, TruncatedFileFailsTheTargetNamingTheFile) {
    write("trunc", 0, {kDisc - 100});
    const std::string bad = write("trunc", 1, {kDisc + 5});
    fs::resize_file(bad, 2880 + 100);
    auto r = run(target("trunc"));
    EXPECT_EQ(r.status, pipeline::TargetStatus::Failed);
    EXPECT_EQ(r.failStage, pipeline::Stage::Load);
    EXPECT_NE(r.failReason.find(bad), std::string::npos) << r.failReason;
}

TEST_F(PipelineTest, NanImageFailsValidation) {
    write("nan", 0, {kDisc - 100});
    const std::string bad = write("nan", 1, {kDisc + 5, "r", 0, true, true});
    auto r = run(target("nan"));
    EXPECT_EQ(r.status, pipeline::TargetStatus::Failed);
    EXPECT_EQ(r.failStage, pipeline::Stage::Validate);
    EXPECT_NE(r.failReason.find("NaN"), std::string::npos) << r.failReason;
    EXPECT_NE(r.failReason.find(bad), std::string::npos);
}

TEST_F(PipelineTest, MissingWcsFailsValidation) {
    write("nowcs", 0, {kDisc - 100, "r", 0, false});
    write("nowcs", 1, {kDisc + 5});
    auto r = run(target("nowcs"));
    EXPECT_EQ(r.status, pipeline::TargetStatus::Failed);
    EXPECT_EQ(r.failStage, pipeline::Stage::Validate);
    EXPECT_NE(r.failReason.find("WCS"), std::string::npos) << r.failReason;
    EXPECT_NE(r.failReason.find("nowcs_0.fits"), std::string::npos);
}

TEST_F(PipelineTest, GarbageAndMissingHeaderValues) {
    write("garbage", 0, {kDisc - 100});
    write("garbage", 1, {kDisc + 5, "r", 0, true, false, "thirty"});
    auto r = run(target("garbage"));
    EXPECT_EQ(r.status, pipeline::TargetStatus::Failed);
    EXPECT_EQ(r.failStage, pipeline::Stage::Load);
    EXPECT_NE(r.failReason.find("EXPTIME"), std::string::npos) << r.failReason;
    EXPECT_NE(r.failReason.find("garbage_1.fits"), std::string::npos);

    write("noexp", 0, {kDisc - 100});
    write("noexp", 1, {kDisc + 5, "r", 0, true, false, ""});
    r = run(target("noexp"));
    EXPECT_EQ(r.status, pipeline::TargetStatus::Failed);
    EXPECT_EQ(r.failStage, pipeline::Stage::Validate);
    EXPECT_NE(r.failReason.find("exposure"), std::string::npos) << r.failReason;
}

TEST_F(PipelineTest, TargetOffTheImageAndPoorOverlap) {
    write("off", 0, {kDisc - 100});
    write("off", 1, {kDisc + 5, "r", 200.0});  // 200 px away: the target is not on it
    auto r = run(target("off"));
    EXPECT_EQ(r.status, pipeline::TargetStatus::Failed);
    EXPECT_NE(r.failReason.find("not on the image"), std::string::npos) << r.failReason;

    write("overlap", 0, {kDisc - 100});
    write("overlap", 1, {kDisc + 5, "r", 20.0});  // 20 of 64 px shifted: ~69% overlap
    r = run(target("overlap"));
    EXPECT_EQ(r.status, pipeline::TargetStatus::Failed);
    EXPECT_NE(r.failReason.find("min_overlap"), std::string::npos) << r.failReason;
    pipeline::PipelineConfig lenient;
    lenient.select.minOverlap = 0.5;  // run() turns differencing off
    EXPECT_EQ(run(target("overlap"), lenient).status, pipeline::TargetStatus::Ok);
}

TEST_F(PipelineTest, NoObservationsAndNoDiscoveryDate) {
    auto r = run(target("absent"));
    EXPECT_EQ(r.status, pipeline::TargetStatus::Failed);
    EXPECT_EQ(r.failStage, pipeline::Stage::Archive);
    EXPECT_NE(r.failReason.find("absent"), std::string::npos);

    write("undated", 0, {kDisc - 100});
    write("undated", 1, {kDisc + 5});
    r = run(target("undated", std::nullopt));
    EXPECT_EQ(r.failStage, pipeline::Stage::Select);
    EXPECT_NE(r.failReason.find("discovery date"), std::string::npos);

    write("noref", 0, {kDisc + 3});
    r = run(target("noref"));
    EXPECT_EQ(r.failStage, pipeline::Stage::Select);
    EXPECT_NE(r.failReason.find("0 in the reference window"), std::string::npos) << r.failReason;
}

TEST(Selection, CrossFilterPairsAreRefused) {
    catalog::Target t;
    t.discMjd = 100.0;
    std::vector<archive::Observation> obs(2);
    obs[0].mjd = 50.0;
    obs[0].filterBand = "g";
    obs[1].mjd = 110.0;
    obs[1].filterBand = "r";
    const std::string why = pipeline::selectObservations(t, obs, {});
    EXPECT_NE(why.find("differ in mission or filter"), std::string::npos) << why;
}
