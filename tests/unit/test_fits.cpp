#include <gtest/gtest.h>

#include <fitsio.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "astrid/core/error.hpp"
#include "astrid/fits/fits_file.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
struct TempDir {
    fs::path path;
    TempDir() {
        path = fs::temp_directory_path() / ("astrid_fits_" + std::to_string(::getpid()) + "_" +
                                            ::testing::UnitTest::GetInstance()->current_test_info()->name());
        fs::create_directories(path);
    }
    ~TempDir() { fs::remove_all(path); }
    std::string operator/(const std::string& name) const { return (path / name).string(); }
};

Image<float> ramp(int w, int h) {
    Image<float> img(w, h);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) img(x, y) = static_cast<float>(x + 100 * y);
    return img;
}

// Writes an integer image with BSCALE/BZERO through plain cfitsio, as other software would.
void writeScaled(const std::string& path, int bitpix, double bscale, double bzero) {
    fitsfile* f = nullptr;
    int status = 0;
    fits_create_file(&f, ("!" + path).c_str(), &status);
    long naxes[2] = {5, 4};
    fits_create_img(f, bitpix, 2, naxes, &status);
    fits_write_key_dbl(f, "BSCALE", bscale, 12, nullptr, &status);
    fits_write_key_dbl(f, "BZERO", bzero, 12, nullptr, &status);
    fits_set_bscale(f, 1.0, 0.0, &status);  // write raw stored values
    std::vector<double> raw(20);
    for (int i = 0; i < 20; ++i) raw[static_cast<std::size_t>(i)] = i * 3 % 50;
    fits_write_img(f, TDOUBLE, 1, 20, raw.data(), &status);
    fits_close_file(f, &status);
    ASSERT_EQ(status, 0);
}
}  // namespace

TEST(Fits, RoundTripFloatImageAndHeader) {
    TempDir tmp;
    fits::Header h;
    h.set("EXPTIME", 30.0, "seconds");
    h.set("FILTER", "r");
    h.set("NCOMBINE", 3);
    h.setBool("ISREF", true);
    h.set("OBJECT", "it's quoted");
    {
        auto f = fits::FitsFile::create(tmp / "a.fits");
        f.writeImage(ramp(7, 5), h);
        f.close();
    }
    auto hdu = fits::readImage(tmp / "a.fits");
    EXPECT_EQ(hdu.hdu, 0);
    ASSERT_EQ(hdu.image.width(), 7);
    ASSERT_EQ(hdu.image.height(), 5);
    EXPECT_EQ(hdu.image(6, 4), 406.0f);
    EXPECT_DOUBLE_EQ(*hdu.header.getDouble("EXPTIME"), 30.0);
    EXPECT_EQ(*hdu.header.getString("FILTER"), "r");
    EXPECT_EQ(*hdu.header.getInt("NCOMBINE"), 3);
    EXPECT_TRUE(*hdu.header.getBool("ISREF"));
    EXPECT_EQ(*hdu.header.getString("OBJECT"), "it's quoted");
    EXPECT_FALSE(hdu.header.getDouble("AIRMASS"));
}

TEST(Fits, ZeroBasedPixelsMapToFitsOneBased) {
    TempDir tmp;
    Image<float> img(6, 4, 0.0f);
    img(3, 1) = 42.0f;
    {
        auto f = fits::FitsFile::create(tmp / "p.fits");
        f.writeImage(img);
    }
    fitsfile* f = nullptr;
    int status = 0, anynul = 0;
    fits_open_file(&f, (tmp / "p.fits").c_str(), READONLY, &status);
    long fpixel[2] = {4, 2};  // FITS 1-based (x + 1, y + 1)
    float v = 0;
    fits_read_pix(f, TFLOAT, fpixel, 1, nullptr, &v, &anynul, &status);
    fits_close_file(f, &status);
    ASSERT_EQ(status, 0);
    EXPECT_EQ(v, 42.0f);
}

TEST(Fits, EveryBitpixWithScaling) {
    TempDir tmp;
    for (int bitpix : {BYTE_IMG, SHORT_IMG, LONG_IMG, FLOAT_IMG, DOUBLE_IMG}) {
        const std::string p = tmp / ("b" + std::to_string(bitpix) + ".fits");
        writeScaled(p, bitpix, 2.5, 100.0);
        auto hdu = fits::readImage(p);
        for (int i = 0; i < 20; ++i)
            EXPECT_NEAR(hdu.image.data()[i], 2.5 * (i * 3 % 50) + 100.0, 1e-4) << "BITPIX " << bitpix;
        auto f = fits::FitsFile::open(p);
        auto d = f.readImageDouble();
        EXPECT_NEAR(d.data()[19], 2.5 * (19 * 3 % 50) + 100.0, 1e-9);
    }
}

TEST(Fits, GzipCompressedFileReadsTransparently) {
    TempDir tmp;
    {
        auto f = fits::FitsFile::create(tmp / "plain.fits");
        f.writeImage(ramp(64, 32));
    }
    ASSERT_EQ(std::system(("gzip -c " + (tmp / "plain.fits") + " > " + (tmp / "c.fits.gz")).c_str()), 0);
    auto hdu = fits::readImage(tmp / "c.fits.gz");
    EXPECT_EQ(hdu.image(63, 31), 63.0f + 3100.0f);
}

TEST(Fits, MultiExtensionByIndexAndExtname) {
    TempDir tmp;
    {
        auto f = fits::FitsFile::create(tmp / "mef.fits");
        f.writeImage(Image<float>(0, 0));  // header-only primary, as HST/JWST files have
        fits::Header sci;
        sci.set("EXTNAME", "SCI");
        f.writeImage(ramp(8, 8), sci);
        fits::Header var;
        var.set("EXTNAME", "VARIANCE");
        f.writeImage(Image<float>(8, 8, 4.0f), var);
        fits::Header mask;
        mask.set("EXTNAME", "DQ");
        Image<float> m(8, 8, 0.0f);
        m(2, 3) = 1.0f;
        f.writeImage(m, mask);
    }
    EXPECT_EQ(fits::readImage(tmp / "mef.fits").hdu, 1);  // first HDU with an image
    EXPECT_EQ(fits::readImage(tmp / "mef.fits[sci]").hdu, 1);
    EXPECT_EQ(fits::readImage(tmp / "mef.fits[2]").image(0, 0), 4.0f);
    try {
        fits::readImage(tmp / "mef.fits[WHT]");
        FAIL() << "no WHT extension";
    } catch (const FitsError& e) {
        EXPECT_NE(std::string(e.what()).find("mef.fits"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("WHT"), std::string::npos);
    }
    EXPECT_THROW(fits::readImage(tmp / "mef.fits[9]"), FitsError);
    auto planes = fits::readImagePlanes(tmp / "mef.fits[SCI]");
    EXPECT_EQ(planes.variance(5, 5), 4.0f);
    EXPECT_EQ(planes.mask(2, 3), bits(MaskBit::Bad));
    EXPECT_EQ(planes.mask(3, 2), 0);
}

TEST(Fits, ParseImageSpec) {
    auto [p1, s1] = fits::parseImageSpec("a/b.fits[SCI]");
    EXPECT_EQ(p1, "a/b.fits");
    EXPECT_EQ(s1.extname, "SCI");
    auto [p2, s2] = fits::parseImageSpec("b.fits.gz[3]");
    EXPECT_EQ(p2, "b.fits.gz");
    EXPECT_EQ(*s2.index, 3);
    auto [p3, s3] = fits::parseImageSpec("plain.fits");
    EXPECT_TRUE(s3.isDefault());
    EXPECT_EQ(p3, "plain.fits");
}

TEST(Fits, TruncatedFileFailsNamingTheFile) {
    TempDir tmp;
    {
        auto f = fits::FitsFile::create(tmp / "t.fits");
        f.writeImage(ramp(256, 256));
    }
    fs::resize_file(tmp / "t.fits", 2880 * 3);
    try {
        fits::readImage(tmp / "t.fits");
        FAIL() << "truncated file read without error";
    } catch (const FitsError& e) {
        EXPECT_EQ(e.file(), tmp / "t.fits");
        EXPECT_NE(std::string(e.what()).find("t.fits"), std::string::npos);
    }
}

TEST(Fits, GarbageFileAndGarbageHeaderValues) {
    TempDir tmp;
    {
        std::ofstream out(tmp / "g.fits", std::ios::binary);
        for (int i = 0; i < 5000; ++i) out.put(static_cast<char>((i * 7919) % 251));
    }
    EXPECT_THROW(fits::readImage(tmp / "g.fits"), FitsError);
    EXPECT_THROW(fits::readImage(tmp / "missing.fits"), FitsError);
    fits::Header h("x.fits[0]");
    h.set("EXPTIME", "thirty");
    try {
        (void)h.getDouble("EXPTIME");
        FAIL();
    } catch (const FitsError& e) {
        EXPECT_NE(std::string(e.what()).find("EXPTIME"), std::string::npos);
        EXPECT_NE(std::string(e.what()).find("x.fits[0]"), std::string::npos);
    }
    EXPECT_THROW((void)h.requireDouble("GAIN"), FitsError);
}

TEST(Fits, BlankIntegersBecomeNaN) {
    TempDir tmp;
    const std::string p = tmp / "blank.fits";
    fitsfile* f = nullptr;
    int status = 0;
    fits_create_file(&f, ("!" + p).c_str(), &status);
    long naxes[2] = {3, 1};
    fits_create_img(f, SHORT_IMG, 2, naxes, &status);
    fits_write_key_lng(f, "BLANK", -32768, nullptr, &status);
    short raw[3] = {1, -32768, 3};
    fits_write_img(f, TSHORT, 1, 3, raw, &status);
    fits_close_file(f, &status);
    ASSERT_EQ(status, 0);
    auto hdu = fits::readImage(p);
    EXPECT_EQ(hdu.image(0, 0), 1.0f);
    EXPECT_TRUE(std::isnan(hdu.image(1, 0)));
}
