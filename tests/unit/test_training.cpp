// Training sets (issue #5): the split hash, triplet assembly, the /training layout written and read
// back, FITS stamps from memory, and real ZTF alert packets (../shared/data/alerts/ztf; skipped with
// a message when absent) plus malformed ones made here with libavro.
#include <avro.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <filesystem>
#include <fstream>
#include <map>

#include "astrid/core/error.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/output/reader.hpp"
#include "astrid/output/run_file.hpp"
#include "astrid/training/split.hpp"
#include "astrid/training/triplet.hpp"
#include "astrid/training/ztf_alert.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
const fs::path kZtfDir = fs::path(ASTRID_SHARED_DATA_DIR) / "alerts" / "ztf";

fs::path tempPath(const std::string& name) { return fs::temp_directory_path() / ("astrid_training_" + name); }

std::vector<unsigned char> readBytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::vector<unsigned char>(std::istreambuf_iterator<char>(in), {});
}

// A FITS file's bytes: a w x h float image with pixel (x, y) = 100 y + x.
std::vector<unsigned char> fitsBytes(int w, int h, float nanAt = -1) {
    const fs::path p = tempPath("stamp.fits");
    Image<float> img(w, h);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) img(x, y) = static_cast<float>(100 * y + x);
    if (nanAt >= 0) img(static_cast<int>(nanAt), 0) = std::nanf("");
    {
        auto f = fits::FitsFile::create(p.string());
        f.writeImage(img);
    }
    auto bytes = readBytes(p);
    fs::remove(p);
    return bytes;
}
}  // namespace

TEST(Split, HashIsPinnedAndMatchesTheDocumentedPython) {
    // Values from the Python in docs/training.md; a change here reshuffles every published split.
    EXPECT_EQ(training::splitHash(""), 0xf52a15e9a9b5e89bULL);
    EXPECT_EQ(training::splitHash("ZTF20aafsnpp"), 0xbcb9fd5d087a725bULL);
    EXPECT_EQ(training::splitHash("SN2005cs"), 0x98812a39660bb05bULL);
    EXPECT_NEAR(training::splitUnit("ZTF20aafsnpp"), 0.7372129776126515, 1e-15);
    EXPECT_EQ(training::assignSplit("ZTF20aafsnpp"), training::Split::Train);
    EXPECT_EQ(training::assignSplit("ZTF20aafsnpp", {0.5, 0.25}), training::Split::Validation);
    EXPECT_EQ(training::assignSplit("ZTF20aafsnpp", {0.5, 0.2}), training::Split::Test);
}

TEST(Split, FractionsHoldOverManyTargetsAndBadFractionsAreRefused) {
    std::map<training::Split, int> n;
    const int kTargets = 20000;
    for (int i = 0; i < kTargets; ++i) ++n[training::assignSplit("SN" + std::to_string(2000 + i % 25) + "t" + std::to_string(i))];
    EXPECT_NEAR(n[training::Split::Train] / double(kTargets), 0.8, 0.01);
    EXPECT_NEAR(n[training::Split::Validation] / double(kTargets), 0.1, 0.008);
    EXPECT_NEAR(n[training::Split::Test] / double(kTargets), 0.1, 0.008);
    EXPECT_THROW(training::assignSplit("x", {0.9, 0.2}), ConfigError);
    EXPECT_THROW(training::assignSplit("x", {-0.1, 0.2}), ConfigError);
    EXPECT_EQ(training::splitName(training::Split::Validation), "validation");
}

TEST(TripletBuilder, CentredCutoutsPadAtEdgesAndFlagBadPixels) {
    training::TripletLayout layout;
    layout.planes = {"science", "reference", "difference"};
    layout.width = 5;
    layout.height = 5;
    Image<float> big(40, 30);
    for (int y = 0; y < 30; ++y)
        for (int x = 0; x < 40; ++x) big(x, y) = static_cast<float>(1000 * y + x);
    Image<std::uint16_t> mask(40, 30, 0);
    big(11, 21) = std::nanf("");
    mask(9, 19) = bits(MaskBit::Saturated);
    mask(10, 19) = bits(MaskBit::CosmicRay);

    training::TripletBuilder b(layout);
    b.pasteCentred(0, big, 10.2, 19.6, &mask);   // centre (10, 20): fully inside
    b.pasteCentred(1, big, 10.0, 20.0);
    b.pasteCentred(2, big, 10.0, 20.0);
    EXPECT_DOUBLE_EQ(b.coveredFraction(), 1.0);
    training::TripletMeta meta;
    meta.targetName = "t";
    const auto t = b.finish(training::Label::Real, meta);
    ASSERT_EQ(t.pixels.size(), 75u);
    ASSERT_EQ(t.mask.size(), 25u);
    EXPECT_EQ(t.pixels[2 * 5 + 2], 20010.0f);                       // frame centre = source (10, 20)
    EXPECT_EQ(t.pixels[0], 18008.0f);                               // frame (0,0) = source (8, 18)
    EXPECT_EQ(t.pixels[25 + 3 * 5 + 3], 0.0f);                      // NaN at (11, 21) -> 0 ...
    EXPECT_EQ(t.mask[3 * 5 + 3], training::maskbit::kFlagged);      // ... and flagged
    EXPECT_EQ(t.mask[1 * 5 + 1], training::maskbit::kSaturated);    // (9, 19)
    EXPECT_EQ(t.mask[1 * 5 + 2], training::maskbit::kFlagged);      // (10, 19) cosmic ray
    EXPECT_EQ(t.mask[0], 0);

    // At the corner: the two rows and columns beyond the image are outside, 0 in every plane.
    training::TripletBuilder e(layout);
    for (std::size_t p = 0; p < 3; ++p) e.pasteCentred(p, big, 0.0, 29.0);
    EXPECT_NEAR(e.coveredFraction(), 9.0 / 25.0, 1e-12);
    const auto c = e.finish(training::Label::Bogus, meta);
    EXPECT_EQ(c.mask[0], training::maskbit::kOutside);                // frame (0,0) = source (-2, 27)
    EXPECT_EQ(c.pixels[0], 0.0f);
    EXPECT_EQ(c.mask[0 * 5 + 2], 0);                                   // source (0, 27)
    EXPECT_EQ(c.pixels[0 * 5 + 2], 27000.0f);
    EXPECT_EQ(c.mask[4 * 5 + 4], training::maskbit::kOutside);        // source (2, 31)
    EXPECT_EQ(c.pixels[2 * 25 + 4 * 5 + 4], 0.0f);

    training::TripletBuilder incomplete(layout);
    incomplete.pasteCentred(0, big, 10, 10);
    EXPECT_THROW(incomplete.finish(training::Label::Real, meta), DataError);
    EXPECT_THROW(incomplete.paste(3, big, 0, 0), std::out_of_range);
    training::TripletLayout bad = layout;
    bad.planes = {"science", "science"};
    EXPECT_THROW(bad.validate(), ConfigError);
}

TEST(FitsMemory, PlainAndGzippedStampsAndGarbage) {
    const auto plain = fitsBytes(7, 5);
    const auto img = fits::FitsFile::openMemory(plain, "mem.fits").readImageFloat();
    ASSERT_EQ(img.width(), 7);
    EXPECT_EQ(img(3, 4), 403.0f);
    std::vector<unsigned char> junk(3000, 'x');
    try {
        fits::FitsFile::openMemory(junk, "packet.avro: cutoutScience");
        FAIL() << "garbage accepted";
    } catch (const FitsError& e) {
        EXPECT_NE(std::string(e.what()).find("not a FITS file"), std::string::npos) << e.what();
        EXPECT_EQ(e.file(), "packet.avro: cutoutScience");
    }
    std::vector<unsigned char> badGzip = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3, 1, 2, 3};
    EXPECT_THROW(fits::FitsFile::openMemory(badGzip, "bad.gz"), FitsError);
}

TEST(ZtfStamps, ShortStampsAlignAwayFromTheEdgeTheyWereCutAt) {
    EXPECT_EQ(training::ztfStampOffset(63, 63, 1000.0), 0);
    EXPECT_EQ(training::ztfStampOffset(50, 63, 12.0), 13);   // near the low edge: lost its low side
    EXPECT_EQ(training::ztfStampOffset(50, 63, 3060.0), 0);  // near the high edge
    EXPECT_EQ(training::ztfStampOffset(65, 63, 500.0), -1);  // larger: centred crop
}

TEST(Output, TrainingLayoutWritesAndReadsBack) {
    const fs::path path = tempPath("run.h5");
    training::TripletLayout layout;
    layout.planes = {"science", "reference", "difference", "scorr"};
    layout.width = 9;
    layout.height = 7;
    layout.split = {0.7, 0.2};
    output::RunMetadata meta;
    meta.training = layout;
    auto makeTriplet = [&](int i) {
        training::Triplet t;
        t.pixels.resize(layout.tripletPixels());
        for (std::size_t k = 0; k < t.pixels.size(); ++k) t.pixels[k] = static_cast<float>(i * 1000 + static_cast<int>(k));
        t.mask.assign(layout.planePixels(), static_cast<std::uint8_t>(i % 3));
        t.label = i % 2 ? training::Label::Real : training::Label::BlankSky;
        t.meta.targetId = 10 + i;
        t.meta.targetName = "SN" + std::to_string(i);
        t.meta.obsId = 500 + i;
        t.meta.candidateIndex = i;
        t.meta.mjd = 59000.5 + i;
        t.meta.filter = "r";
        t.meta.ra = 150.0 + i;
        t.meta.dec = -5.0;
        t.meta.labelSource = i % 2 ? training::LabelSource::InjectedFake : training::LabelSource::BlankSky;
        t.meta.injectedMag = 20.5;
        t.meta.features.snr = 7.5;
        t.meta.features.isDiffPos = 1;
        t.meta.split = training::assignSplit(t.meta.targetName, layout.split);
        return t;
    };
    {
        auto f = output::RunFile::create(path.string(), meta);
        ASSERT_TRUE(f.trainingLayout());
        output::TrainingBatch b1(layout), b2(layout);
        for (int i = 0; i < 3; ++i) b1.add(makeTriplet(i));
        for (int i = 3; i < 5; ++i) b2.add(makeTriplet(i));
        f.appendTraining(b1, 0, b1.size());
        f.appendTraining(output::TrainingBatch(layout), 0, 0);  // nothing anywhere: no-op
        f.appendTraining(b2, 0, b2.size());
        training::TripletLayout other = layout;
        other.width = 8;
        output::TrainingBatch wrong(other);
        wrong.add([&] {
            training::Triplet t;
            t.pixels.resize(other.tripletPixels());
            t.mask.resize(other.planePixels());
            return t;
        }());
        EXPECT_THROW(f.appendTraining(wrong, 0, 1), DataError);
        training::Triplet tooShort;
        EXPECT_THROW(b1.add(tooShort), DataError);
        f.finish({});
    }
    output::RunReader r(path.string());
    const auto info = r.trainingInfo();
    ASSERT_TRUE(info);
    EXPECT_EQ(info->count, 5u);
    EXPECT_EQ(info->layout.planesAttribute(), "science,reference,difference,scorr");
    EXPECT_EQ(info->layout.width, 9);
    EXPECT_EQ(info->layout.height, 7);
    EXPECT_EQ(info->layout.orientation, "north_up_east_left");
    EXPECT_DOUBLE_EQ(info->layout.split.train, 0.7);
    const auto all = r.readTraining(0, 100);
    ASSERT_EQ(all.size(), 5u);
    for (int i = 0; i < 5; ++i) {
        const auto t = makeTriplet(i);
        EXPECT_TRUE(std::equal(t.pixels.begin(), t.pixels.end(), all.triplets.begin() + i * layout.tripletPixels())) << i;
        EXPECT_EQ(all.mask[i * layout.planePixels() + 5], i % 3);
        EXPECT_EQ(all.labels[i], static_cast<std::int8_t>(t.label));
        const auto& m = all.meta[i];
        EXPECT_EQ(output::getText(m.targetName), t.meta.targetName);
        EXPECT_EQ(m.scienceObsId, 500 + i);
        EXPECT_EQ(m.candidateIndex, i);
        EXPECT_EQ(m.labelSource, static_cast<std::int8_t>(t.meta.labelSource));
        EXPECT_EQ(m.split, static_cast<std::int8_t>(t.meta.split));
        EXPECT_TRUE(std::isnan(m.score));
        EXPECT_DOUBLE_EQ(m.snr, 7.5);
        EXPECT_EQ(m.isDipole, -1);
    }
    const auto part = r.readTraining(3, 10);
    ASSERT_EQ(part.size(), 2u);
    EXPECT_EQ(part.triplets[0], 3000.0f);
    EXPECT_EQ(r.trainingMeta().size(), 5u);
    std::ostringstream csv;
    r.writeCsv(output::kTrainingMeta, csv);
    EXPECT_NE(csv.str().find("injected_fake"), std::string::npos);
    EXPECT_NE(csv.str().find("blank_sky"), std::string::npos);

    // A run file without a training layout has no /training and refuses triplets.
    const fs::path plain = tempPath("plain.h5");
    {
        auto f = output::RunFile::create(plain.string(), {});
        EXPECT_THROW(f.appendTraining(output::TrainingBatch(layout), 0, 0), H5Error);
        f.finish({});
    }
    EXPECT_FALSE(output::RunReader(plain.string()).trainingInfo());
    EXPECT_THROW(output::RunReader(plain.string()).readTraining(0, 1), H5Error);
    fs::remove(path);
    fs::remove(plain);
}

TEST(Ztf, RealAlertPacketsReadCompletely) {
    if (!fs::is_directory(kZtfDir)) GTEST_SKIP() << "no real ZTF alerts at " << kZtfDir << " (../shared/data)";
    const auto files = training::findAvroFiles({kZtfDir.string()});
    ASSERT_EQ(files.size(), 14u);
    int withDrb = 0;
    for (const std::string& path : files) {
        const auto r = training::readZtfAlertFile(path);
        ASSERT_TRUE(r.errors.empty()) << r.errors.front();
        ASSERT_EQ(r.alerts.size(), 1u) << path;
        const auto& a = r.alerts[0];
        // The kowalski and ztf-avro-alert files are named after the candid (exact, 19 digits).
        const std::string stem = fs::path(path).stem().string();
        EXPECT_NE(stem.find(std::to_string(a.candid)), std::string::npos) << path;
        EXPECT_EQ(a.objectId.substr(0, 3), "ZTF");
        for (const auto* s : {&a.science, &a.reference, &a.difference}) {
            EXPECT_EQ(s->width(), 63);
            EXPECT_EQ(s->height(), 63);
        }
        withDrb += a.candidate.drb.has_value();
        const auto t = training::ztfTriplet(a, {});
        EXPECT_EQ(t.pixels.size(), 3u * 63 * 63);
        EXPECT_EQ(t.meta.obsId, a.candid);
        EXPECT_EQ(t.meta.targetName, a.objectId);
        EXPECT_NEAR(t.meta.mjd, a.candidate.jd - 2400000.5, 1e-9);
        EXPECT_EQ(t.pixels[31 * 63 + 31], a.science(31, 31));
        EXPECT_EQ(t.pixels[2 * 63 * 63 + 10 * 63 + 40], a.difference(40, 10));
        if (a.candidate.drb) {
            EXPECT_EQ(t.meta.labelSource, training::LabelSource::ZtfDrb);
            EXPECT_DOUBLE_EQ(t.meta.score, *a.candidate.drb);
        }
    }
    EXPECT_EQ(withDrb, 13);  // the schema 3.2 packet predates drb
    const auto old = training::readZtfAlertFile((kZtfDir / "2019_01_10_739260766315010006.avro").string());
    const auto& a = old.alerts.at(0);
    EXPECT_EQ(a.schemaVersion, "3.2");
    EXPECT_EQ(a.candid, 739260766315010006LL);
    EXPECT_EQ(a.objectId, "ZTF17aaacxxf");
    EXPECT_FALSE(a.candidate.drb);
    EXPECT_GT(a.nPrevious, 0u);
    const auto t = training::ztfTriplet(a, {});  // auto: falls back to rb
    EXPECT_EQ(t.meta.labelSource, training::LabelSource::ZtfRb);
    EXPECT_EQ(t.label, training::Label::Bogus);  // rb 0.447 < 0.5
    training::ZtfImportConfig drbOnly;
    drbOnly.score = training::ZtfScore::Drb;
    try {
        training::ztfTriplet(a, drbOnly);
        FAIL() << "a packet without drb was labelled";
    } catch (const DataError& e) {
        EXPECT_NE(std::string(e.what()).find("candidate.drb"), std::string::npos) << e.what();
        EXPECT_NE(std::string(e.what()).find("2019_01_10_739260766315010006.avro"), std::string::npos) << e.what();
    }
}

TEST(Ztf, TruncatedAndForeignFilesAreErrorsNamingTheFile) {
    const fs::path notAvro = tempPath("not.avro");
    std::ofstream(notAvro) << "hello";
    auto r = training::readZtfAlertFile(notAvro.string());
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_NE(r.errors[0].find(notAvro.string()), std::string::npos) << r.errors[0];
    EXPECT_NE(r.errors[0].find("not an Avro"), std::string::npos) << r.errors[0];
    fs::remove(notAvro);
    EXPECT_THROW(training::findAvroFiles({"/nonexistent/alerts"}), IoError);
    if (!fs::is_directory(kZtfDir)) GTEST_SKIP() << "no real ZTF alerts at " << kZtfDir << " (../shared/data)";
    auto bytes = readBytes(kZtfDir / "472263571115115000.avro");
    bytes.resize(bytes.size() / 2);
    const fs::path cut = tempPath("truncated.avro");
    std::ofstream(cut, std::ios::binary).write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
    r = training::readZtfAlertFile(cut.string());
    EXPECT_TRUE(r.alerts.empty());
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_NE(r.errors[0].find(cut.string()), std::string::npos) << r.errors[0];
    fs::remove(cut);
}

namespace {
// Writes an Avro container of ZTF-like packets with libavro: a minimal alert schema; `kind` per
// record: 0 good, 1 a stamp that is not FITS, 2 candidate.ra null, 3 no cutoutTemplate.
void writePackets(const fs::path& path, const std::vector<int>& kinds) {
    const char* schemaJson = R"({"type":"record","name":"alert","namespace":"ztf","fields":[
      {"name":"schemavsn","type":"string"},{"name":"objectId","type":"string"},{"name":"candid","type":"long"},
      {"name":"candidate","type":{"type":"record","name":"candidate","fields":[
        {"name":"jd","type":"double"},{"name":"fid","type":"int"},{"name":"ra","type":["null","double"]},
        {"name":"dec","type":"double"},{"name":"magpsf","type":"float"},{"name":"sigmapsf","type":"float"},
        {"name":"isdiffpos","type":"string"},{"name":"drb","type":["null","float"]}]}},
      {"name":"cutoutScience","type":["null",{"type":"record","name":"cutout","fields":[
        {"name":"fileName","type":"string"},{"name":"stampData","type":"bytes"}]}]},
      {"name":"cutoutTemplate","type":["null","cutout"]},{"name":"cutoutDifference","type":["null","cutout"]}]})";
    avro_schema_t schema = nullptr;
    ASSERT_EQ(avro_schema_from_json_length(schemaJson, std::strlen(schemaJson), &schema), 0) << avro_strerror();
    fs::remove(path);
    avro_file_writer_t w = nullptr;
    ASSERT_EQ(avro_file_writer_create_with_codec(path.c_str(), schema, &w, "null", 1 << 20), 0) << avro_strerror();
    avro_value_iface_t* iface = avro_generic_class_from_schema(schema);
    const auto stamp = fitsBytes(63, 63, 5);
    for (std::size_t i = 0; i < kinds.size(); ++i) {
        const int kind = kinds[i];
        avro_value_t v, f, c, b;
        avro_generic_value_new(iface, &v);
        avro_value_get_by_name(&v, "schemavsn", &f, nullptr);
        avro_value_set_string(&f, "test");
        avro_value_get_by_name(&v, "objectId", &f, nullptr);
        const std::string obj = "ZTF99test" + std::to_string(i);
        avro_value_set_string(&f, obj.c_str());
        avro_value_get_by_name(&v, "candid", &f, nullptr);
        avro_value_set_long(&f, 1234567890123456789LL + static_cast<std::int64_t>(i));
        avro_value_get_by_name(&v, "candidate", &c, nullptr);
        avro_value_get_by_name(&c, "jd", &f, nullptr);
        avro_value_set_double(&f, 2459000.5);
        avro_value_get_by_name(&c, "fid", &f, nullptr);
        avro_value_set_int(&f, 2);
        avro_value_get_by_name(&c, "ra", &f, nullptr);
        if (kind == 2) {
            avro_value_set_branch(&f, 0, &b);
            avro_value_set_null(&b);
        } else {
            avro_value_set_branch(&f, 1, &b);
            avro_value_set_double(&b, 120.0);
        }
        avro_value_get_by_name(&c, "dec", &f, nullptr);
        avro_value_set_double(&f, 30.0);
        avro_value_get_by_name(&c, "magpsf", &f, nullptr);
        avro_value_set_float(&f, 19.0f);
        avro_value_get_by_name(&c, "sigmapsf", &f, nullptr);
        avro_value_set_float(&f, 0.1f);
        avro_value_get_by_name(&c, "isdiffpos", &f, nullptr);
        avro_value_set_string(&f, "t");
        avro_value_get_by_name(&c, "drb", &f, nullptr);
        avro_value_set_branch(&f, 1, &b);
        avro_value_set_float(&b, 0.9f);
        for (const char* name : {"cutoutScience", "cutoutTemplate", "cutoutDifference"}) {
            avro_value_get_by_name(&v, name, &f, nullptr);
            if (kind == 3 && std::string(name) == "cutoutTemplate") {
                avro_value_set_branch(&f, 0, &b);
                avro_value_set_null(&b);
                continue;
            }
            avro_value_set_branch(&f, 1, &b);
            avro_value_t field;
            avro_value_get_by_name(&b, "fileName", &field, nullptr);
            avro_value_set_string(&field, "stamp.fits");
            avro_value_get_by_name(&b, "stampData", &field, nullptr);
            std::vector<unsigned char> data = stamp;
            if (kind == 1 && std::string(name) == "cutoutScience") data.assign(100, 'z');
            avro_value_set_bytes(&field, data.data(), data.size());
        }
        ASSERT_EQ(avro_file_writer_append_value(w, &v), 0) << avro_strerror();
        avro_value_decref(&v);
    }
    avro_file_writer_close(w);
    avro_value_iface_decref(iface);
    avro_schema_decref(schema);
}
}  // namespace

TEST(Ztf, OneBadPacketDoesNotLoseTheOthers) {
    const fs::path path = tempPath("packets.avro");
    writePackets(path, {0, 1, 2, 0, 3});
    const auto r = training::readZtfAlertFile(path.string());
    ASSERT_EQ(r.alerts.size(), 2u);
    EXPECT_EQ(r.alerts[0].objectId, "ZTF99test0");
    EXPECT_EQ(r.alerts[1].objectId, "ZTF99test3");
    EXPECT_EQ(r.alerts[1].candid, 1234567890123456792LL);
    EXPECT_EQ(r.alerts[1].source, path.string() + " record 4");
    ASSERT_EQ(r.errors.size(), 3u);
    EXPECT_NE(r.errors[0].find(path.string() + " record 2: cutoutScience"), std::string::npos) << r.errors[0];
    EXPECT_NE(r.errors[0].find("not a FITS file"), std::string::npos) << r.errors[0];
    EXPECT_NE(r.errors[1].find("record 3: field 'candidate.ra' is missing or null"), std::string::npos) << r.errors[1];
    EXPECT_NE(r.errors[2].find("record 5: field 'cutoutTemplate' is missing or null"), std::string::npos) << r.errors[2];
    // The good packets: NaN pixel -> 0 and flagged, candidate fields, label from drb.
    const auto t = training::ztfTriplet(r.alerts[0], {});
    EXPECT_EQ(t.label, training::Label::Real);
    EXPECT_EQ(t.meta.filter, "ztf_r");
    EXPECT_EQ(t.mask[5], training::maskbit::kFlagged);
    EXPECT_EQ(t.pixels[5], 0.0f);
    EXPECT_EQ(t.pixels[63 + 5], 105.0f);
    EXPECT_NEAR(t.meta.features.snr, 10.857, 1e-3);
    fs::remove(path);
}
