#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "astrid/core/error.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/wcs/sky_wcs.hpp"

using namespace astrid;

namespace {
fits::Header tanHeader() {
    fits::Header h("tan-test");
    h.set("NAXIS", 2);
    h.set("NAXIS1", 200);
    h.set("NAXIS2", 100);
    h.set("CTYPE1", "RA---TAN");
    h.set("CTYPE2", "DEC--TAN");
    h.set("CRPIX1", 100.5);  // FITS 1-based
    h.set("CRPIX2", 50.0);
    h.set("CRVAL1", 150.0);
    h.set("CRVAL2", 2.0);
    h.set("CDELT1", -1.0 / 3600.0);
    h.set("CDELT2", 1.0 / 3600.0);
    return h;
}
}  // namespace

TEST(Wcs, ZeroBasedPixelConventionPinned) {
    auto w = wcs::SkyWcs::fromHeader(tanHeader());
    // FITS CRPIX (100.5, 50) is 0-based (99.5, 49): that pixel is the reference point exactly.
    auto s = w.pixelToSky(99.5, 49.0);
    EXPECT_NEAR(s.raDeg, 150.0, 1e-12);
    EXPECT_NEAR(s.decDeg, 2.0, 1e-12);
    auto p = w.skyToPixel(150.0, 2.0);
    EXPECT_NEAR(p.x, 99.5, 1e-9);
    EXPECT_NEAR(p.y, 49.0, 1e-9);
    // One pixel to +x is 1 arcsec to the east (RA decreases with x for CDELT1 < 0).
    auto e = w.pixelToSky(100.5, 49.0);
    EXPECT_NEAR((e.raDeg - 150.0) * std::cos(2.0 * M_PI / 180) * 3600.0, -1.0, 1e-6);
    EXPECT_NEAR(w.pixelScaleArcsec(99.5, 49.0), 1.0, 1e-6);
    EXPECT_EQ(w.projection(), "TAN");
}

TEST(Wcs, RotatedTanRoundTripAndHeaderRoundTrip) {
    const double th = 0.8 * M_PI / 180.0, s = 0.26 / 3600.0;
    auto w = wcs::SkyWcs::tan({318.1, -66.0}, {511.5, 511.5},
                              {-s * std::cos(th), s * std::sin(th), s * std::sin(th), s * std::cos(th)});
    for (double x : {0.0, 100.3, 1023.0})
        for (double y : {0.0, 700.7, 1023.0}) {
            auto sky = w.pixelToSky(x, y);
            auto p = w.skyToPixel(sky.raDeg, sky.decDeg);
            EXPECT_NEAR(p.x, x, 1e-8);
            EXPECT_NEAR(p.y, y, 1e-8);
        }
    auto w2 = wcs::SkyWcs::fromHeader(w.toHeader());
    auto a = w.pixelToSky(12.0, 900.0), b = w2.pixelToSky(12.0, 900.0);
    EXPECT_NEAR(a.raDeg, b.raDeg, 1e-10);
    EXPECT_NEAR(a.decDeg, b.decDeg, 1e-10);
    wcs::SkyWcs copy = w;  // deep copy stays valid after the original goes away
    w = w2;
    EXPECT_NEAR(copy.pixelToSky(12.0, 900.0).raDeg, a.raDeg, 1e-12);
}

TEST(Wcs, SipDistortionMatchesTheFormula) {
    fits::Header h = tanHeader();
    h.set("CTYPE1", "RA---TAN-SIP");
    h.set("CTYPE2", "DEC--TAN-SIP");
    h.set("A_ORDER", 2);
    h.set("B_ORDER", 2);
    h.set("A_2_0", 1e-4);
    h.set("B_0_2", -2e-4);
    auto w = wcs::SkyWcs::fromHeader(h);
    // SIP: u = p - crpix; u' = u + A_2_0 u^2; v' = v + B_0_2 v^2; then the linear TAN.
    const double u = 50.0, v = -20.0;
    const double up = u + 1e-4 * u * u, vp = v + -2e-4 * v * v;
    auto tan = wcs::SkyWcs::fromHeader(tanHeader());
    auto expected = tan.pixelToSky(99.5 + up, 49.0 + vp);
    auto got = w.pixelToSky(99.5 + u, 49.0 + v);
    EXPECT_NEAR(got.raDeg, expected.raDeg, 1e-10);
    EXPECT_NEAR(got.decDeg, expected.decDeg, 1e-10);
    EXPECT_EQ(w.projection(), "TAN-SIP");
}

TEST(Wcs, FootprintOverlap) {
    const double s = 1.0 / 3600.0;
    auto a = wcs::SkyWcs::tan({10.0, 0.0}, {49.5, 49.5}, {-s, 0, 0, s});
    auto b = wcs::SkyWcs::tan({10.0 - 50.0 * s, 0.0}, {49.5, 49.5}, {-s, 0, 0, s});  // 50 px to +x
    EXPECT_NEAR(wcs::footprintOverlap(a, 100, 100, a, 100, 100), 1.0, 1e-12);
    EXPECT_NEAR(wcs::footprintOverlap(a, 100, 100, b, 100, 100), 0.5, 0.02);
    auto far = wcs::SkyWcs::tan({40.0, 0.0}, {49.5, 49.5}, {-s, 0, 0, s});
    EXPECT_EQ(wcs::footprintOverlap(a, 100, 100, far, 100, 100), 0.0);
    EXPECT_TRUE(wcs::footprintContains(a, 100, 100, {10.0, 0.0}, 10.0));
    EXPECT_FALSE(wcs::footprintContains(a, 100, 100, {10.0, 0.02}, 0.0));
}

TEST(Wcs, MissingWcsIsAClearError) {
    fits::Header h("nowcs.fits[0]");
    h.set("NAXIS", 2);
    h.set("EXPTIME", 10.0);
    try {
        (void)wcs::SkyWcs::fromHeader(h);
        FAIL();
    } catch (const WcsError& e) {
        EXPECT_NE(std::string(e.what()).find("nowcs.fits[0]"), std::string::npos);
    }
}

TEST(Wcs, RealDecamTpvHeader) {
    const std::string path = std::string(ASTRID_SHARED_DATA_DIR) +
                             "/images/decam_i_318.108-66.016/input_data/DEC-OBS18a.mini.fits";
    if (!std::filesystem::exists(path)) GTEST_SKIP() << "real data not found at " << path;
    auto hdu = fits::readImage(path);
    auto w = wcs::SkyWcs::fromHeader(hdu.header);
    EXPECT_EQ(w.projection(), "TPV");
    EXPECT_NEAR(w.pixelScaleArcsec(128, 128), 0.262, 0.005);
    // Reference values from astropy.wcs (independent implementation, same header), 0-based.
    auto known = w.skyToPixel(318.10810, -66.01581);
    EXPECT_TRUE(wcs::footprintContains(w, hdu.image.width(), hdu.image.height(), {318.10810, -66.01581}));
    auto back = w.pixelToSky(known.x, known.y);
    EXPECT_NEAR(back.raDeg, 318.10810, 1e-9);
    EXPECT_NEAR(back.decDeg, -66.01581, 1e-9);
    EXPECT_NEAR(known.x, 130.05887915, 1e-3);
    EXPECT_NEAR(known.y, 126.99828126, 1e-3);
}
