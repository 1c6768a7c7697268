#include <gtest/gtest.h>

#include <cmath>

#include "astrid/core/angle.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/image.hpp"
#include "astrid/core/text.hpp"
#include "astrid/core/time.hpp"
#include "astrid/core/version.hpp"

using namespace astrid;

TEST(Image, RowMajorStorageWithXAsColumn) {
    Image<float> img(4, 3, 0.0f);
    img(3, 1) = 7.0f;  // x = 3 (column), y = 1 (row)
    EXPECT_EQ(img.data()[1 * 4 + 3], 7.0f);
    EXPECT_EQ(img.width(), 4);
    EXPECT_EQ(img.height(), 3);
    EXPECT_THROW(img.at(4, 0), std::out_of_range);
}

TEST(Box, Intersect) {
    Box a{0, 0, 10, 10}, b{5, -3, 20, 4};
    Box c = a.intersect(b);
    EXPECT_EQ(c.x0, 5);
    EXPECT_EQ(c.y0, 0);
    EXPECT_EQ(c.x1, 10);
    EXPECT_EQ(c.y1, 4);
    EXPECT_TRUE(a.intersect(Box{20, 20, 30, 30}).empty());
}

TEST(Time, KnownMjds) {
    EXPECT_DOUBLE_EQ(mjdFromCivil(1858, 11, 17), 0.0);
    EXPECT_DOUBLE_EQ(mjdFromCivil(2000, 1, 1, 12), 51544.5);
    EXPECT_DOUBLE_EQ(*parseIsoDateToMjd("2014-09-27"), 56927.0);
    EXPECT_NEAR(*parseIsoDateToMjd("2018-08-04T03:25:12.5"), 58334.0 + (3 * 3600 + 25 * 60 + 12.5) / 86400.0, 1e-9);
    EXPECT_FALSE(parseIsoDateToMjd("2014-02-30"));
    EXPECT_FALSE(parseIsoDateToMjd("2014-13-01"));
    EXPECT_FALSE(parseIsoDateToMjd("yesterday"));
    EXPECT_FALSE(parseIsoDateToMjd("2014-09-27junk"));
    const CivilDate c = civilFromMjd(56927.75);
    EXPECT_EQ(c.year, 2014);
    EXPECT_EQ(c.month, 9);
    EXPECT_EQ(c.day, 27);
    EXPECT_EQ(c.hour, 18);
    EXPECT_EQ(isoFromMjd(51544.5), "2000-01-01T12:00:00.000");
}

TEST(Angle, RaAndDecSexagesimal) {
    EXPECT_NEAR(*parseRa("04 08 07.13"), 15.0 * (4 + 8 / 60.0 + 7.13 / 3600.0), 1e-12);
    EXPECT_NEAR(*parseRa("04:08:07.13"), 62.0297083333, 1e-9);
    EXPECT_NEAR(*parseRa("62.5"), 62.5, 1e-12);
    EXPECT_NEAR(*parseDec("- 8 49 37.0"), -(8 + 49 / 60.0 + 37.0 / 3600.0), 1e-12);
    EXPECT_NEAR(*parseDec("+ 8 38 30.6"), 8 + 38 / 60.0 + 30.6 / 3600.0, 1e-12);
    EXPECT_NEAR(*parseDec("-56 36 45.2"), -(56 + 36 / 60.0 + 45.2 / 3600.0), 1e-12);
    EXPECT_NEAR(*parseDec("-0 30 00"), -0.5, 1e-12);  // negative zero degrees keeps its sign
    EXPECT_NEAR(*parseDec("- 0 04 47.5"), -(4 / 60.0 + 47.5 / 3600.0), 1e-12);
    EXPECT_NEAR(*parseDec("-12.25"), -12.25, 1e-12);
    std::string why;
    EXPECT_FALSE(parseRa("25 00 00", &why));
    EXPECT_NE(why.find("RA"), std::string::npos);
    EXPECT_FALSE(parseDec("+91 00 00", &why));
    EXPECT_FALSE(parseDec("10 -5 00", &why));
    EXPECT_FALSE(parseDec("10 75 00", &why));
    EXPECT_FALSE(parseDec("-", &why));
    EXPECT_FALSE(parseRa("", &why));
}

TEST(Angle, Separation) {
    EXPECT_NEAR(angularSeparationDeg(10, 20, 10, 21), 1.0, 1e-12);
    EXPECT_NEAR(angularSeparationDeg(359.999, 0, 0.001, 0), 0.002, 1e-9);
    EXPECT_NEAR(angularSeparationDeg(0, 90, 180, 89), 1.0, 1e-9);
}

TEST(Errors, CarryContext) {
    FitsError f("bad", "a.fits", 2);
    EXPECT_STREQ(f.what(), "a.fits [HDU 2]: bad");
    CatalogError c("bad row", "cat.txt", 17);
    EXPECT_STREQ(c.what(), "cat.txt:17: bad row");
    EXPECT_EQ(c.line(), 17);
    ConfigError k("unknown key", "days_befor");
    EXPECT_NE(std::string(k.what()).find("days_befor"), std::string::npos);
    const Error& base = k;
    EXPECT_NE(std::string(base.what()).find("unknown"), std::string::npos);
}

TEST(Text, SplitTrim) {
    auto f = text::split("a | |b", '|');
    ASSERT_EQ(f.size(), 3u);
    EXPECT_EQ(text::trim(f[1]), "");
    EXPECT_EQ(text::trim(f[2]), "b");
    EXPECT_FALSE(version().empty());
}
