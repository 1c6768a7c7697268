// The simulator is the ground truth of every later test, so these tests check it against truth computed
// independently: analytic Moffat integrals, the files' own WCS headers, the noise model's prediction.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <numbers>
#include <optional>
#include <set>
#include <sstream>

#include "astrid/catalog/catalog.hpp"
#include "astrid/core/angle.hpp"
#include "astrid/core/time.hpp"
#include "astrid/core/error.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/sim/render.hpp"
#include "astrid/sim/simulate.hpp"
#include "astrid/wcs/sky_wcs.hpp"
#include "support/temp_root.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
constexpr double kPi = std::numbers::pi;

const fs::path& tempRoot() { return test::tempRoot("sim"); }

std::string readBytes(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

sim::SimConfig smallConfig(const std::string& name, std::uint64_t seed = 7) {
    sim::SimConfig c;
    c.outDir = (tempRoot() / name).string();
    c.targets = 2;
    c.epochs = 2;
    c.sizePx = 256;
    c.seed = seed;
    return c;
}

// The untruncated analytic elliptical Moffat of unit flux (independent of render.cpp).
double moffat(const sim::MoffatPsf& p, double dx, double dy) {
    const double alpha = p.fwhmPx / (2.0 * std::sqrt(std::pow(2.0, 1.0 / p.beta) - 1.0));
    const double a = alpha / std::sqrt(1.0 - p.ellipticity), b = alpha * std::sqrt(1.0 - p.ellipticity);
    const double c = std::cos(p.positionAngleDeg * kPi / 180), s = std::sin(p.positionAngleDeg * kPi / 180);
    const double xp = c * dx + s * dy, yp = -s * dx + c * dy;
    return (p.beta - 1.0) / (kPi * a * b) * std::pow(1.0 + xp * xp / (a * a) + yp * yp / (b * b), -p.beta);
}

double sum(const Image<float>& img) {
    double s = 0;
    for (float v : img.pixels()) s += v;
    return s;
}

// Half-maximum width of a sampled 1-D profile (offset, value), sorted by offset, peak near 0.
double halfMaxWidth(std::vector<std::pair<double, double>> prof) {
    std::sort(prof.begin(), prof.end());
    double peak = 0;
    for (auto& [o, v] : prof) peak = std::max(peak, v);
    const double half = 0.5 * peak;
    double left = 0, right = 0;
    for (std::size_t i = 1; i < prof.size(); ++i) {
        const auto [o0, v0] = prof[i - 1];
        const auto [o1, v1] = prof[i];
        if (v0 < half && v1 >= half && o1 < 0) left = o0 + (half - v0) / (v1 - v0) * (o1 - o0);
        if (v0 >= half && v1 < half && o0 > 0) right = o0 + (v0 - half) / (v0 - v1) * (o1 - o0);
    }
    return right - left;
}
}  // namespace

// ------------------------------------------------------------------------------------------------
// Rendering

TEST(SimRender, PointSourceTotalFluxIsExact) {
    for (const sim::MoffatPsf psf : {sim::MoffatPsf{2.5, 2.5, 0.1, 30.0}, sim::MoffatPsf{4.5, 4.0, 0.0, 0.0},
                                     sim::MoffatPsf{3.3, 2.5, 0.05, -70.0}}) {
        Image<float> img(160, 160, 0.0f);
        const double flux = 123456.0;
        sim::renderPointSource(img, 80.37, 79.81, flux, psf);
        EXPECT_NEAR(sum(img) / flux, 1.0, 2e-4) << "fwhm " << psf.fwhmPx;  // spec: 0.2%; we get float rounding
        // Centroid exact (the profile is point-symmetric).
        double sx = 0, sy = 0, s = 0;
        for (int y = 0; y < img.height(); ++y)
            for (int x = 0; x < img.width(); ++x) sx += img(x, y) * x, sy += img(x, y) * y, s += img(x, y);
        EXPECT_NEAR(sx / s, 80.37, 2e-3);
        EXPECT_NEAR(sy / s, 79.81, 2e-3);
    }
}

TEST(SimRender, TruncationKeepsTheMoffatCoreAndWingsWithinBudget) {
    const sim::MoffatPsf p{3.0, 2.5, 0.08, 25.0};
    const sim::PsfRenderer r(p);
    // The renormalised core sits above the untruncated Moffat by the lost wing flux (< 0.2%).
    const double ratio = r.density(0.0, 0.0) / moffat(p, 0.0, 0.0);
    EXPECT_GT(ratio, 1.0);
    EXPECT_LT(ratio, 1.001);
    EXPECT_NEAR(r.density(1.3, -0.7) / moffat(p, 1.3, -0.7), ratio, 1e-9);
    // Zero beyond the support radius.
    EXPECT_EQ(r.density(r.radiusPx() + 0.01, 0.0), 0.0);
    // The radius follows the documented criterion: the untruncated wing outside holds 5e-4 of the flux.
    const double alphaMajor = sim::moffatAlpha(3.0, 2.5) / std::sqrt(1.0 - 0.08);
    const double rho = std::sqrt(std::pow(5e-4, -1.0 / 1.5) - 1.0);
    EXPECT_EQ(r.radiusPx(), static_cast<int>(std::ceil(alphaMajor * rho)));
}

TEST(SimRender, PixelValuesMatchBruteForceIntegration) {
    const sim::MoffatPsf p{2.6, 2.8, 0.09, 40.0};
    const sim::PsfRenderer r(p);
    Image<double> img(41, 41, 0.0);
    const double x0 = 20.23, y0 = 19.61, flux = 1.0;
    r.add(img, x0, y0, flux);
    // Independent: integrate the (tapered, renormalised) density over each pixel with 40x40 samples.
    double peak = 0, worst = 0;
    for (int y = 16; y <= 24; ++y)
        for (int x = 16; x <= 24; ++x) {
            double acc = 0;
            const int s = 40;
            for (int j = 0; j < s; ++j)
                for (int i = 0; i < s; ++i)
                    acc += r.density(x - 0.5 + (i + 0.5) / s - x0, y - 0.5 + (j + 0.5) / s - y0);
            acc /= s * s;
            peak = std::max(peak, acc);
            worst = std::max(worst, std::fabs(acc - img(x, y)));
        }
    EXPECT_LT(worst / peak, 1e-3) << "worst " << worst << " peak " << peak;
}

TEST(SimRender, FwhmMatchesRequest) {
    // Intrinsic profile: half maximum exactly at fwhm / 2 along both axes' geometric mean.
    {
        const sim::PsfRenderer r(sim::MoffatPsf{3.2, 3.0, 0.0, 0.0});
        EXPECT_NEAR(r.density(1.6, 0.0) / r.density(0.0, 0.0), 0.5, 1e-9);
    }
    // Measured on noiseless renders: a star stepped through 16 sub-pixel phases samples the
    // pixel-integrated profile every 1/16 px along x.
    for (const double fwhm : {2.5, 3.5, 8.0}) {
        const sim::MoffatPsf p{fwhm, 3.0, 0.0, 0.0};
        const sim::PsfRenderer r(p);
        std::vector<std::pair<double, double>> prof;
        for (int k = 0; k < 16; ++k) {
            Image<float> img(64, 64, 0.0f);
            const double x0 = 32.0 + k / 16.0;
            r.add(img, x0, 32.0, 1.0);
            for (int x = 16; x < 48; ++x) prof.emplace_back(x - x0, img(x, 32));
        }
        const double measured = halfMaxWidth(prof);
        // Expected: the analytic Moffat integrated over a 1x1 pixel, by brute force, as a function of
        // the x offset (y offset 0).
        std::vector<std::pair<double, double>> expect;
        for (double d = -2.0 * fwhm; d <= 2.0 * fwhm; d += 1.0 / 64) {
            double acc = 0;
            const int s = 32;
            for (int j = 0; j < s; ++j)
                for (int i = 0; i < s; ++i) acc += moffat(p, d - 0.5 + (i + 0.5) / s, -0.5 + (j + 0.5) / s);
            expect.emplace_back(d, acc);
        }
        const double expected = halfMaxWidth(expect);
        EXPECT_NEAR(measured / expected, 1.0, 5e-3) << "fwhm " << fwhm;
        // Against the request: the pixel adds ~1/12 px^2 of variance, so a wide PSF measures as asked.
        if (fwhm >= 8.0) {
            EXPECT_NEAR(measured / fwhm, 1.0, 0.02);
        }
        EXPECT_GT(measured, fwhm);
        EXPECT_NEAR(measured * measured - fwhm * fwhm, 0.6, 0.35) << "pixel broadening of fwhm " << fwhm;
    }
}

TEST(SimRender, GalaxyMatchesSumOfPointSourcesAndConservesFlux) {
    const sim::PsfRenderer psf(sim::MoffatPsf{3.0, 3.0, 0.05, 10.0});
    sim::SersicGalaxy g;
    g.x = 60.3;
    g.y = 58.8;
    g.flux = 5e4;
    g.sersicIndex = 1.0;
    g.halfLightRadius = 3.0;  // px, identity jacobian
    g.axisRatio = 0.6;
    g.positionAngleDeg = 30.0;
    Image<double> fast(120, 120, 0.0);
    sim::renderGalaxy(fast, g, psf);
    double total = 0;
    for (double v : fast.pixels()) total += v;
    EXPECT_NEAR(total / g.flux, 1.0, 1e-6);

    // Independent path: the same profile (identical truncation) as a grid of point sources, each
    // rendered with the PSF renderer, i.e. galaxy (x) PSF integrated over pixels by quadrature.
    const double bn = sim::sersicB(1.0);
    const double sPa = std::sin(30.0 * kPi / 180), cPa = std::cos(30.0 * kPi / 180);
    auto profile = [&](double dx, double dy) {
        const double major = dx * sPa + dy * cPa, minor = dx * cPa - dy * sPa;
        const double rho = std::hypot(major / 3.0, minor / (0.6 * 3.0));
        if (rho >= 6.0) return 0.0;
        double v = std::exp(-bn * rho);
        if (rho > 5.0) v *= 0.5 * (1.0 + std::cos(kPi * (rho - 5.0)));
        return v;
    };
    const double h = 0.125;
    std::vector<std::array<double, 3>> pts;
    double norm = 0;
    for (double dy = -18.0 + h / 2; dy < 18.0; dy += h)
        for (double dx = -18.0 + h / 2; dx < 18.0; dx += h) {
            const double v = profile(dx, dy);
            if (v > 0) pts.push_back({dx, dy, v}), norm += v;
        }
    Image<double> slow(120, 120, 0.0);
    for (const auto& pt : pts) psf.add(slow, g.x + pt[0], g.y + pt[1], g.flux * pt[2] / norm);
    double peak = 0, worst = 0;
    for (int y = 0; y < 120; ++y)
        for (int x = 0; x < 120; ++x) {
            peak = std::max(peak, slow(x, y));
            worst = std::max(worst, std::fabs(slow(x, y) - fast(x, y)));
        }
    EXPECT_LT(worst / peak, 2e-3) << "worst " << worst << " peak " << peak;
}

TEST(SimRender, GalaxyOrientationFollowsTheJacobian) {
    const sim::PsfRenderer psf(sim::MoffatPsf{2.5, 3.0, 0.0, 0.0});
    auto render = [&](std::array<double, 4> jac, double paDeg, double re) {
        sim::SersicGalaxy g;
        g.x = 50.2;
        g.y = 49.7;
        g.flux = 1e4;
        g.halfLightRadius = re;  // frame units
        g.axisRatio = 0.4;
        g.positionAngleDeg = paDeg;  // from the frame's second axis ("north") towards the first ("east")
        g.jacobian = jac;
        Image<double> img(100, 100, 0.0);
        sim::renderGalaxy(img, g, psf);
        return img;
    };
    // PA 0 with the identity: the major axis along +y (moments within 10 px, where the galaxy dominates).
    {
        const auto img = render({1, 0, 0, 1}, 0.0, 2.0);
        double xx = 0, yy = 0;
        for (int y = 40; y <= 60; ++y)
            for (int x = 40; x <= 60; ++x)
                if (std::hypot(x - 50.2, y - 49.7) <= 10)
                    xx += img(x, y) * (x - 50.2) * (x - 50.2), yy += img(x, y) * (y - 49.7) * (y - 49.7);
        EXPECT_GT(yy, 1.5 * xx);
    }
    // Frames related by a linear map give the same pixels as the identity frame with the mapped shape:
    // parity flip (east = -x): PA p -> -p; rotation by +30 deg: PA p -> p + 30; scale 0.5: r_e -> 2 r_e.
    auto maxDiff = [](const Image<double>& a, const Image<double>& b) {
        double d = 0, peak = 0;
        for (std::size_t i = 0; i < a.size(); ++i)
            d = std::max(d, std::fabs(a.data()[i] - b.data()[i])), peak = std::max(peak, a.data()[i]);
        return d / peak;
    };
    const double c30 = std::cos(kPi / 6), s30 = std::sin(kPi / 6);
    EXPECT_LT(maxDiff(render({-1, 0, 0, 1}, 30.0, 2.0), render({1, 0, 0, 1}, -30.0, 2.0)), 1e-9);
    EXPECT_LT(maxDiff(render({c30, -s30, s30, c30}, 20.0, 2.0), render({1, 0, 0, 1}, 50.0, 2.0)), 1e-9);
    EXPECT_LT(maxDiff(render({0.5, 0, 0, 0.5}, 20.0, 1.0), render({1, 0, 0, 1}, 20.0, 2.0)), 1e-9);
    // And different orientations really differ.
    EXPECT_GT(maxDiff(render({c30, -s30, s30, c30}, 20.0, 2.0), render({1, 0, 0, 1}, -10.0, 2.0)), 0.05);
}

TEST(SimRender, RngIsDeterministicAndPoissonHasTheRightMoments) {
    sim::Rng a(sim::streamSeed(5, 1, 2, 3)), b(sim::streamSeed(5, 1, 2, 3)), c(sim::streamSeed(5, 1, 2, 4));
    EXPECT_EQ(a.uniform(), b.uniform());
    EXPECT_NE(a.uniform(), c.uniform());
    for (const double mean : {3.0, 40.0, 400.0}) {
        sim::Rng r(99);
        double s = 0, s2 = 0, s3 = 0;
        const int n = 100000;
        std::vector<double> v(n);
        for (int i = 0; i < n; ++i) v[static_cast<std::size_t>(i)] = r.poisson(mean), s += v[static_cast<std::size_t>(i)];
        const double m = s / n;
        for (double x : v) s2 += (x - m) * (x - m), s3 += (x - m) * (x - m) * (x - m);
        const double var = s2 / n, skew = s3 / n / std::pow(var, 1.5);
        EXPECT_NEAR(m / mean, 1.0, 0.01) << mean;
        EXPECT_NEAR(var / mean, 1.0, 0.03) << mean;
        EXPECT_NEAR(skew, 1.0 / std::sqrt(mean), 0.05) << mean;
    }
}

// ------------------------------------------------------------------------------------------------
// Campaign

class SimCampaign : public ::testing::Test {
protected:
    static void SetUpTestSuite() {
        config_ = new sim::SimConfig(smallConfig("main"));
        summary_ = new sim::SimSummary(sim::simulateCampaign(*config_));
    }
    static void TearDownTestSuite() {
        delete summary_;
        delete config_;
    }
    static sim::SimConfig* config_;
    static sim::SimSummary* summary_;
};
sim::SimConfig* SimCampaign::config_ = nullptr;
sim::SimSummary* SimCampaign::summary_ = nullptr;

TEST_F(SimCampaign, WritesTheLayoutAndACatalogThatReadsBack) {
    const fs::path out(config_->outDir);
    EXPECT_TRUE(fs::exists(out / "catalog.txt"));
    EXPECT_TRUE(fs::exists(out / "truth.csv"));
    EXPECT_TRUE(fs::exists(out / "epochs.csv"));
    ASSERT_EQ(summary_->targets.size(), 2u);
    ASSERT_EQ(summary_->epochs.size(), 2u * 3u);
    for (const auto& e : summary_->epochs) {
        EXPECT_TRUE(fs::exists(out / e.file)) << e.file;
        EXPECT_EQ(e.file, "archive/" + e.targetName + "/" + e.targetName + "_e" + std::to_string(e.epoch) + ".fits");
    }
    const auto report = catalog::readCatalog(summary_->catalogPath);
    EXPECT_EQ(report.format, catalog::CatalogFormat::Sai);
    ASSERT_EQ(report.targets.size(), 2u);
    EXPECT_TRUE(report.rejected.empty());
    bool nearEquator = false;
    for (std::size_t i = 0; i < 2; ++i) {
        const auto& a = report.targets[i];
        const auto& b = summary_->targets[i];
        EXPECT_EQ(a.name, b.name);
        EXPECT_EQ(a.id, b.id);
        EXPECT_EQ(a.line, b.line);
        EXPECT_NEAR(a.raDeg, b.raDeg, 1e-10);  // positions are quantised to the SAI precision
        EXPECT_NEAR(a.decDeg, b.decDeg, 1e-10);
        EXPECT_EQ(a.discMjd, b.discMjd);
        EXPECT_EQ(a.maxMjd, b.maxMjd);
        EXPECT_EQ(a.type, b.type);
        nearEquator = nearEquator || std::fabs(a.decDeg) < 10.0;
        EXPECT_LT(std::fabs(a.decDeg), 70.0);
        const int year = civilFromMjd(*a.discMjd).year;
        EXPECT_TRUE(year == 2021 || year == 2022);
        EXPECT_EQ(a.name.substr(0, 4), std::to_string(year));
    }
    EXPECT_TRUE(nearEquator);

    // The job file: exactly the documented keys; its windows select every epoch.
    const std::string job = readBytes(summary_->jobPath);
    const std::string head = "# astrid job file written by `astrid simulate` (seed 7)\ncatalog = catalog.txt\narchive = "
                             "archive\noutput = campaign.h5\ndays_before = " +
                             std::to_string(summary_->jobDaysBefore) + "\ndays_after = " +
                             std::to_string(summary_->jobDaysAfter) + "\n";
    EXPECT_EQ(job.substr(0, head.size()), head);
    const auto pos = job.find("\nmin_overlap = ");
    ASSERT_NE(pos, std::string::npos) << job;
    const double minOverlap = std::stod(job.substr(pos + 15));
    EXPECT_GT(minOverlap, 0.0);
    EXPECT_LE(minOverlap, 0.85);
    // The written min_overlap admits every simulated reference/science pair.
    for (const auto& t : summary_->targets) {
        std::optional<wcs::SkyWcs> ref;
        for (const auto& e : summary_->epochs) {
            if (e.targetName != t.name) continue;
            const auto w = wcs::SkyWcs::fromHeader(fits::readImage(summary_->archiveDir + "/../" + e.file).header);
            if (e.epoch == 0) {
                ref = w;
                continue;
            }
            ASSERT_TRUE(ref);
            const int n = 256;  // smallConfig().sizePx
            EXPECT_GE(wcs::footprintOverlap(w, n, n, *ref, n, n), minOverlap) << e.file;
        }
    }
    for (const auto& e : summary_->epochs) {
        const auto& t = *std::find_if(summary_->targets.begin(), summary_->targets.end(),
                                      [&](const catalog::Target& x) { return x.name == e.targetName; });
        const double dt = e.mjd - *t.discMjd;
        if (e.epoch == 0) {
            EXPECT_EQ(e.role, "reference");
            EXPECT_LT(dt, -100.0 + 1.0);
            EXPECT_GT(dt, -summary_->jobDaysBefore);
            EXPECT_EQ(e.transientFlux, 0.0);
            EXPECT_TRUE(std::isinf(e.transientMag));
        } else {
            EXPECT_EQ(e.role, "science");
            EXPECT_GT(dt, 0.0);
            EXPECT_LT(dt, summary_->jobDaysAfter);
            EXPECT_GT(e.transientFlux, 0.0);
            EXPECT_GE(e.transientMag, config_->transientPeakMagMin - 1e-9);
            EXPECT_NEAR(e.transientMag, e.zeroPoint - 2.5 * std::log10(e.transientFlux), 1e-9);
        }
    }
}

TEST_F(SimCampaign, HeadersCarryEveryKeyAndTheTruth) {
    for (const auto& e : summary_->epochs) {
        const auto hdu = fits::readImage((fs::path(config_->outDir) / e.file).string());
        EXPECT_EQ(hdu.image.width(), 256);
        EXPECT_EQ(hdu.image.height(), 256);
        const auto& h = hdu.header;
        for (const char* key : {"DATE-OBS", "MJD-OBS", "EXPTIME", "FILTER", "GAIN", "RDNOISE", "SATURATE", "AIRMASS",
                                "SEEING", "FWHM", "TELESCOP", "INSTRUME", "OBJECT", "BUNIT", "TRUEFWHM", "TRUEBETA",
                                "TRUEELL", "TRUEPA", "TRUEZP", "TRUESKY", "SIMSEED", "CTYPE1", "CTYPE2", "CRVAL1",
                                "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2", "RADESYS"})
            EXPECT_TRUE(h.contains(key)) << key << " missing in " << e.file;
        EXPECT_EQ(h.requireString("TELESCOP"), "SIMULATED");
        EXPECT_EQ(h.requireString("INSTRUME"), "astrid-sim");
        EXPECT_EQ(h.requireString("OBJECT"), e.targetName);
        EXPECT_EQ(h.requireString("BUNIT"), "ADU");
        EXPECT_EQ(h.requireString("FILTER"), "r");
        EXPECT_EQ(h.requireDouble("GAIN"), e.gain);
        EXPECT_EQ(h.requireDouble("RDNOISE"), e.readNoise);
        EXPECT_EQ(h.requireDouble("SATURATE"), e.saturation);
        EXPECT_EQ(h.requireDouble("TRUEFWHM"), e.fwhmPx);
        EXPECT_EQ(h.requireDouble("FWHM"), e.fwhmPx);
        EXPECT_EQ(h.requireDouble("TRUEBETA"), e.beta);
        EXPECT_EQ(h.requireDouble("TRUEZP"), e.zeroPoint);
        EXPECT_EQ(h.requireDouble("TRUESKY"), e.skyLevel);
        EXPECT_EQ(*h.getInt("SIMSEED"), 7);
        EXPECT_GE(h.requireDouble("AIRMASS"), 1.0);
        EXPECT_NEAR(h.requireDouble("SEEING"), e.fwhmPx * 0.5, 0.01);
        EXPECT_NEAR(h.requireDouble("MJD-OBS"), e.mjd, 1e-8);
        EXPECT_NEAR(*parseIsoDateToMjd(h.requireString("DATE-OBS")), e.mjd, 1e-6);
        // Ranges of the conditions.
        EXPECT_GE(e.fwhmPx, 2.5);
        EXPECT_LE(e.fwhmPx, 4.5);
        EXPECT_GE(e.beta, 2.5);
        EXPECT_LE(e.beta, 4.0);
        EXPECT_LE(e.ellipticity, 0.1);
        EXPECT_GE(e.skyLevel, 200.0);
        EXPECT_LE(e.skyLevel, 600.0);
        // Saturation is a hard clip.
        float mx = 0;
        for (float v : hdu.image.pixels()) {
            ASSERT_TRUE(std::isfinite(v));
            mx = std::max(mx, v);
        }
        EXPECT_EQ(mx, e.saturation) << "the brightest stars saturate";
    }
}

TEST_F(SimCampaign, TruthPositionsAreTheHeadersWcsAndPointingsAreInRange) {
    const auto rows = sim::readTruthCsv(summary_->truthPath);
    EXPECT_EQ(rows.size(), summary_->truthRows);
    const double centre = 0.5 * (256 - 1), maxOff = std::min(40.0, 0.15 * 256);
    for (const auto& e : summary_->epochs) {
        const auto hdu = fits::readImage((fs::path(config_->outDir) / e.file).string());
        const auto w = wcs::SkyWcs::fromHeader(hdu.header);
        std::map<std::string, int> kinds;
        double worst = 0;
        for (const auto& r : rows) {
            if (r.target != e.targetName || r.epoch != e.epoch) continue;
            ++kinds[r.kind];
            EXPECT_EQ(r.role, e.role);
            EXPECT_EQ(r.mjd, std::round(e.mjd * 1e8) / 1e8);
            if (r.kind == "cosmic_ray") continue;
            const auto p = w.skyToPixel(r.ra, r.dec);
            worst = std::max({worst, std::fabs(p.x - r.x), std::fabs(p.y - r.y)});
            if (r.flux > 0) {
                EXPECT_NEAR(r.magnitude, e.zeroPoint - 2.5 * std::log10(r.flux), 1e-5);
            }
        }
        EXPECT_LT(worst, 1e-6) << e.file;
        EXPECT_GT(kinds["star"], 50) << e.file;  // a few thousand per megapixel
        EXPECT_GE(kinds["galaxy"], 2) << e.file;
        EXPECT_EQ(kinds["transient"], 1) << e.file;
        EXPECT_GE(kinds["cosmic_ray"], 1) << e.file;
        // The transient sits 0.5-2" from its host's centre.
        const sim::TruthRow *sn = nullptr, *host = nullptr;
        for (const auto& r : rows)
            if (r.target == e.targetName && r.epoch == e.epoch) {
                if (r.id == "sn") sn = &r;
                if (r.id == "host") host = &r;
            }
        ASSERT_TRUE(sn && host);
        const double sep = angularSeparationDeg(sn->ra, sn->dec, host->ra, host->dec) * 3600.0;
        EXPECT_GE(sep, 0.5 - 1e-6);
        EXPECT_LE(sep, 2.0 + 1e-6);

        // Pointing and WCS truth.
        EXPECT_LE(std::fabs(e.offsetXPx), maxOff + 1e-6);
        EXPECT_LE(std::fabs(e.offsetYPx), maxOff + 1e-6);
        EXPECT_LE(std::fabs(e.rotationDeg), 1.0);
        EXPECT_LE(std::fabs(e.scaleFactor - 1.0), 0.005);
        EXPECT_NEAR(std::hypot(e.crpixX - centre, e.crpixY - centre), 0.0, 5.0);  // near the centre
        const double s = 0.5 / 3600.0 * e.scaleFactor, r = e.rotationDeg * kPi / 180;
        EXPECT_NEAR(e.cd11, -s * std::cos(r), 1e-15);
        EXPECT_NEAR(e.cd12, s * std::sin(r), 1e-15);
        EXPECT_NEAR(e.cd21, s * std::sin(r), 1e-15);
        EXPECT_NEAR(e.cd22, s * std::cos(r), 1e-15);
        const auto& tgt = *std::find_if(summary_->targets.begin(), summary_->targets.end(),
                                        [&](const catalog::Target& x) { return x.name == e.targetName; });
        const auto tp = w.skyToPixel(tgt.raDeg, tgt.decDeg);
        EXPECT_NEAR(tp.x, e.targetX, 1e-6);
        EXPECT_NEAR(tp.x - centre, e.offsetXPx, 1e-6);
        EXPECT_NEAR(tp.y - centre, e.offsetYPx, 1e-6);
        EXPECT_TRUE(wcs::footprintContains(w, 256, 256, {tgt.raDeg, tgt.decDeg}, 0.3 * 256)) << "target well inside";
        EXPECT_NEAR(w.pixelScaleArcsec(tp.x, tp.y), 0.5 * e.scaleFactor, 1e-6);
    }
}

TEST_F(SimCampaign, StarsKeepTheirSkyPositionAcrossEpochs) {
    // The same star id has the same ra/dec in every epoch of a target and lands on its WCS pixel.
    const auto rows = sim::readTruthCsv(summary_->truthPath);
    std::map<std::string, std::pair<double, double>> first;
    std::size_t repeated = 0;
    for (const auto& r : rows) {
        if (r.kind != "star" && r.kind != "galaxy") continue;
        const std::string key = r.target + "/" + r.id;
        auto [it, inserted] = first.emplace(key, std::pair{r.ra, r.dec});
        if (!inserted) {
            ++repeated;
            EXPECT_EQ(it->second.first, r.ra);
            EXPECT_EQ(it->second.second, r.dec);
        }
    }
    EXPECT_GT(repeated, 100u);
}

TEST(SimCampaignFiles, DeterministicPerSeed) {
    auto a = smallConfig("detA", 11), b = smallConfig("detB", 11), c = smallConfig("detC", 12);
    for (auto* cfg : {&a, &b, &c}) {
        cfg->targets = 1;
        cfg->epochs = 1;
        cfg->sizePx = 192;
    }
    const auto sa = sim::simulateCampaign(a);
    sim::simulateCampaign(b);
    sim::simulateCampaign(c);
    for (const char* f : {"catalog.txt", "truth.csv", "epochs.csv", "campaign.ini"})
        EXPECT_EQ(readBytes(fs::path(a.outDir) / f), readBytes(fs::path(b.outDir) / f)) << f;
    for (const auto& e : sa.epochs) {
        const std::string fa = readBytes(fs::path(a.outDir) / e.file);
        EXPECT_GT(fa.size(), 192u * 192u * 4u);
        EXPECT_EQ(fa, readBytes(fs::path(b.outDir) / e.file)) << e.file;
    }
    // Another seed: another campaign (the file names may differ with the discovery year).
    EXPECT_NE(readBytes(fs::path(a.outDir) / "truth.csv"), readBytes(fs::path(c.outDir) / "truth.csv"));
    const auto ia = fits::readImage((fs::path(a.outDir) / sa.epochs[0].file).string());
    const auto sc = sim::readTruthCsv((fs::path(c.outDir) / "truth.csv").string());
    const auto ic = fits::readImage((fs::path(c.outDir) / "archive" / sc.front().target /
                                     (sc.front().target + "_e0.fits")).string());
    EXPECT_FALSE(std::equal(ia.image.pixels().begin(), ia.image.pixels().end(), ic.image.pixels().begin()));
}

TEST(SimCampaignFiles, NoiseMatchesTheDetectorModel) {
    // The reference is a 4-exposure mean (referenceDepth): its header and truth carry the effective
    // gain and read noise, and its noise must follow them like a single exposure's follows its own.
    auto noisy = smallConfig("noisy", 21), clean = smallConfig("clean", 21), shallow = smallConfig("shallow", 21);
    for (auto* cfg : {&noisy, &clean, &shallow}) {
        cfg->targets = 1;
        cfg->epochs = 1;
        cfg->sizePx = 256;
        cfg->referenceDepth = 4;
    }
    clean.noise = false;
    shallow.referenceDepth = 1;
    const auto sn = sim::simulateCampaign(noisy);
    sim::simulateCampaign(clean);
    const auto ss = sim::simulateCampaign(shallow);
    EXPECT_DOUBLE_EQ(sn.epochs[0].gain, 4.0 * ss.epochs[0].gain);
    EXPECT_DOUBLE_EQ(sn.epochs[0].readNoise, 2.0 * ss.epochs[0].readNoise);
    EXPECT_EQ(sn.epochs[0].saturation, ss.epochs[0].saturation);
    EXPECT_EQ(sn.epochs[1].gain, ss.epochs[1].gain);
    EXPECT_EQ(fits::readImage((fs::path(noisy.outDir) / sn.epochs[0].file).string()).header.getInt("NCOMBINE").value_or(0), 4);
    const auto rows = sim::readTruthCsv(sn.truthPath);
    for (const auto& e : sn.epochs) {
        const auto a = fits::readImage((fs::path(noisy.outDir) / e.file).string()).image;
        const auto m = fits::readImage((fs::path(clean.outDir) / e.file).string()).image;
        const int n = a.width();
        // Pixels the model cannot predict: bad columns, cosmic rays, near saturation.
        Image<std::uint8_t> skip(n, n, 0);
        std::istringstream cols(e.badColumns);
        std::string tok;
        int nCols = 0;
        while (cols >> tok) {
            const int x = std::stoi(tok.substr(0, tok.find(':')));
            for (int y = 0; y < n; ++y) skip(x, y) = 1;
            ++nCols;
        }
        EXPECT_GE(nCols, 2);
        EXPECT_LE(nCols, 3);
        for (const auto& r : rows)
            if (r.kind == "cosmic_ray" && r.epoch == e.epoch)
                for (int dy = -3; dy <= 3; ++dy)
                    for (int dx = -3; dx <= 3; ++dx) {
                        const int x = static_cast<int>(std::lround(r.x)) + dx, y = static_cast<int>(std::lround(r.y)) + dy;
                        if (x >= 0 && y >= 0 && x < n && y < n) skip(x, y) = 1;
                    }
        auto sigma = [&](double model) { return std::sqrt(model * e.gain + e.readNoise * e.readNoise) / e.gain; };
        double s = 0, s2 = 0;
        long count = 0;
        for (int y = 0; y < n; ++y)
            for (int x = 0; x < n; ++x) {
                if (skip(x, y) || m(x, y) > e.saturation - 10 * sigma(m(x, y))) continue;
                const double z = (a(x, y) - m(x, y)) / sigma(m(x, y));
                s += z, s2 += z * z, ++count;
            }
        const double mean = s / count, sd = std::sqrt(s2 / count - mean * mean);
        EXPECT_NEAR(mean, 0.0, 0.02) << e.file;
        EXPECT_NEAR(sd, 1.0, 0.02) << e.file;

        // The spec's check: a source-free sky box (model within 1 ADU of the sky) has the predicted std.
        const int box = 24;
        double bestContam = 1e30;
        int bx = -1, by = -1;
        for (int y0 = 4; y0 + box < n - 4; y0 += 8)
            for (int x0 = 4; x0 + box < n - 4; x0 += 8) {
                double contam = 0;
                bool bad = false;
                for (int y = y0; y < y0 + box; ++y)
                    for (int x = x0; x < x0 + box; ++x) {
                        bad = bad || skip(x, y);
                        contam = std::max(contam, m(x, y) - e.skyAt(x, y, n));
                    }
                if (!bad && contam < bestContam) bestContam = contam, bx = x0, by = y0;
            }
        ASSERT_GE(bx, 0);
        EXPECT_LT(bestContam, 1.0) << "no source-free sky box";
        double t = 0, t2 = 0;
        for (int y = by; y < by + box; ++y)
            for (int x = bx; x < bx + box; ++x) {
                const double d = a(x, y) - e.skyAt(x, y, n);
                t += d, t2 += d * d;
            }
        const double k = box * box, mu = t / k, sdBox = std::sqrt(t2 / k - mu * mu);
        const double sky = e.skyAt(bx + box / 2.0, by + box / 2.0, n);
        EXPECT_NEAR(sdBox / (std::sqrt(sky * e.gain + e.readNoise * e.readNoise) / e.gain), 1.0, 0.05) << e.file;
        EXPECT_NEAR(mu, 0.0, 4.0 * sdBox / box) << e.file;
    }
}

TEST(SimCampaignFiles, IsolatedSourcesHaveTheirTruthFluxInTheImage) {
    // A sparse field, noiseless and without defects, so that stars and the transient are isolated:
    // the image minus the true sky, summed over the PSF support, is the truth flux.
    auto c = smallConfig("flux", 5);
    c.targets = 1;
    c.epochs = 2;
    c.noise = false;
    c.defects = false;
    c.galaxies = false;
    c.starsPerMegapixel = 15;
    c.minSaturatedStars = 0;
    const auto s = sim::simulateCampaign(c);
    const auto rows = sim::readTruthCsv(s.truthPath);
    int checked = 0, transients = 0;
    for (const auto& e : s.epochs) {
        const auto img = fits::readImage((fs::path(c.outDir) / e.file).string()).image;
        const sim::PsfRenderer psf(sim::MoffatPsf{e.fwhmPx, e.beta, e.ellipticity, e.positionAngleDeg});
        const int R = psf.radiusPx(), n = img.width();
        for (const auto& r : rows) {
            if (r.epoch != e.epoch || r.flux <= 0 || (r.kind != "star" && r.kind != "transient")) continue;
            if (r.x < R + 1 || r.y < R + 1 || r.x > n - R - 2 || r.y > n - R - 2) continue;
            if (r.flux > 0.3 * e.saturation * e.fwhmPx * e.fwhmPx) continue;  // keep the peak unsaturated
            bool isolated = true;
            for (const auto& o : rows)
                if (o.epoch == e.epoch && &o != &r && o.flux > 0 && std::hypot(o.x - r.x, o.y - r.y) < 2 * R + 4)
                    isolated = false;
            if (!isolated) continue;
            const int x0 = static_cast<int>(std::floor(r.x)), y0 = static_cast<int>(std::floor(r.y));
            double f = 0;
            for (int y = y0 - R; y <= y0 + R + 1; ++y)
                for (int x = x0 - R; x <= x0 + R + 1; ++x) f += img(x, y) - e.skyAt(x, y, n);
            EXPECT_NEAR(f / r.flux, 1.0, 0.002) << e.file << " " << r.id << " flux " << r.flux;
            ++checked;
            transients += r.kind == "transient";
        }
    }
    EXPECT_GE(checked, 3);
    EXPECT_EQ(transients, 2);  // both science epochs
}

TEST(SimCampaignFiles, SipAndTpvDistortionsAreRealHeadersAndConsistentTruth) {
    for (const auto d : {sim::Distortion::Sip, sim::Distortion::Tpv}) {
        auto c = smallConfig(d == sim::Distortion::Sip ? "sip" : "tpv", 3);
        c.targets = 1;
        c.epochs = 1;
        c.sizePx = 192;
        c.galaxies = false;
        c.distortion = d;
        c.distortionPx = 3.0;
        const auto s = sim::simulateCampaign(c);
        const auto rows = sim::readTruthCsv(s.truthPath);
        for (const auto& e : s.epochs) {
            EXPECT_EQ(e.distortion, sim::distortionName(d));
            const auto hdu = fits::readImage((fs::path(c.outDir) / e.file).string());
            const auto& h = hdu.header;
            if (d == sim::Distortion::Sip) {
                EXPECT_EQ(h.requireString("CTYPE1"), "RA---TAN-SIP");
                for (const char* k : {"A_ORDER", "B_ORDER", "A_3_0", "B_0_3", "AP_ORDER", "AP_1_0", "BP_0_1"})
                    EXPECT_TRUE(h.contains(k)) << k;
            } else {
                EXPECT_EQ(h.requireString("CTYPE1"), "RA---TPV");
                for (const char* k : {"PV1_1", "PV1_7", "PV2_1", "PV2_7", "PV2_10"}) EXPECT_TRUE(h.contains(k)) << k;
            }
            const auto w = wcs::SkyWcs::fromHeader(h);
            EXPECT_EQ(w.projection(), d == sim::Distortion::Sip ? "TAN-SIP" : "TPV");
            // The distortion is real: the corners move by ~distortionPx against a plain TAN with the same
            // linear part.
            const auto tan = wcs::SkyWcs::tan({e.crvalRa, e.crvalDec}, {e.crpixX, e.crpixY}, {e.cd11, e.cd12, e.cd21, e.cd22});
            const auto sky = w.pixelToSky(0.0, 0.0);
            const auto lin = tan.skyToPixel(sky.raDeg, sky.decDeg);
            const double moved = std::hypot(lin.x, lin.y);
            EXPECT_GT(moved, 1.0);
            EXPECT_LT(moved, 6.0);
            double worst = 0, worstFwd = 0;
            for (const auto& r : rows) {
                if (r.epoch != e.epoch || r.kind == "cosmic_ray") continue;
                const auto p = w.skyToPixel(r.ra, r.dec);
                worst = std::max({worst, std::fabs(p.x - r.x), std::fabs(p.y - r.y)});
                // wcslib's iterative inverse agrees with the forward polynomial.
                const auto q = w.pixelToSky(r.x, r.y);
                worstFwd = std::max(worstFwd, angularSeparationDeg(q.raDeg, q.decDeg, r.ra, r.dec) * 3600.0 / 0.5);
            }
            EXPECT_LT(worst, 1e-6);
            EXPECT_LT(worstFwd, 1e-6);
            EXPECT_LE(std::fabs(e.offsetXPx), std::min(40.0, 0.15 * 192) + 1e-6);
        }
    }
}

TEST(SimCampaignFiles, RerunWithFewerEpochsLeavesNoStaleFiles) {
    auto c = smallConfig("rerun", 9);
    c.targets = 1;
    c.epochs = 3;
    c.sizePx = 128;
    const auto first = sim::simulateCampaign(c);
    c.epochs = 1;
    const auto second = sim::simulateCampaign(c);
    const fs::path dir = fs::path(c.outDir) / "archive" / second.targets[0].name;
    std::set<std::string> files;
    for (const auto& entry : fs::directory_iterator(dir)) files.insert(entry.path().filename().string());
    EXPECT_EQ(files, (std::set<std::string>{second.targets[0].name + "_e0.fits", second.targets[0].name + "_e1.fits"}));
    // The first epochs of a target do not depend on how many epochs follow.
    EXPECT_EQ(first.epochs[1].mjd, second.epochs[1].mjd);
}

TEST(SimCampaignFiles, InvalidConfigThrowsConfigError) {
    auto c = smallConfig("bad");
    c.epochs = 0;
    EXPECT_THROW(sim::simulateCampaign(c), ConfigError);
    c = smallConfig("bad");
    c.sizePx = 32;
    EXPECT_THROW(sim::simulateCampaign(c), ConfigError);
    c = smallConfig("bad");
    c.betaMin = 1.2;
    EXPECT_THROW(sim::simulateCampaign(c), ConfigError);
    EXPECT_THROW(sim::parseDistortion("zpn"), ConfigError);
    EXPECT_EQ(sim::parseDistortion("SIP"), sim::Distortion::Sip);
    EXPECT_THROW(sim::PsfRenderer(sim::MoffatPsf{0.0, 3.0}), DataError);
}
