// Registration against truth: simulated image pairs (whose truth.csv gives every star's true pixel
// position in both images), synthetic star lists with known transforms, and stars rendered exactly
// with the simulator's PSF renderer both on the reference grid (then resampled) and directly on the
// science grid.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include "astrid/core/error.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/registration/registration.hpp"
#include "astrid/sim/render.hpp"
#include "astrid/sim/simulate.hpp"
#include "astrid/wcs/sky_wcs.hpp"
#include "support/temp_root.hpp"

using namespace astrid;
using namespace astrid::registration;
namespace fs = std::filesystem;

namespace {

const fs::path& tempRoot() { return test::tempRoot("reg"); }

double dist(PixelPoint a, PixelPoint b) { return std::hypot(a.x - b.x, a.y - b.y); }

double rmsOf(const std::vector<double>& v) {
    double s = 0;
    for (double x : v) s += x * x;
    return v.empty() ? 0.0 : std::sqrt(s / static_cast<double>(v.size()));
}

// ------------------------------------------------------------------------------------------------
// Simulated pairs (reference = epoch 0, science = epoch 1), one per distortion, shared by the tests.

struct SimPair {
    sim::SimSummary summary;
    fits::ImageHdu refHdu, sciHdu;
    std::unique_ptr<wcs::SkyWcs> refWcs, sciWcs;
    // Stars in both images: true science and reference positions and fluxes.
    struct Star {
        std::string id;
        MatchPoint sci, ref;
    };
    std::vector<Star> common;
    std::vector<MatchPoint> sciOnly, refOnly;  // every star of each image (truth)
    int size = 0;
};

const SimPair& simPair(sim::Distortion d) {
    static std::map<sim::Distortion, std::unique_ptr<SimPair>> cache;
    auto& slot = cache[d];
    if (slot) return *slot;
    auto p = std::make_unique<SimPair>();
    sim::SimConfig c;
    c.outDir = (tempRoot() / ("sim_" + sim::distortionName(d))).string();
    c.targets = 1;
    c.epochs = 1;
    c.sizePx = 1024;
    c.galaxies = false;  // stars are what registration uses; galaxies only cost time here
    c.distortion = d;
    c.seed = 11;
    p->summary = sim::simulateCampaign(c);
    p->size = c.sizePx;
    for (const auto& e : p->summary.epochs) {
        auto hdu = fits::readImage((fs::path(c.outDir) / e.file).string());
        auto w = std::make_unique<wcs::SkyWcs>(wcs::SkyWcs::fromHeader(hdu.header));
        if (e.epoch == 0) p->refHdu = std::move(hdu), p->refWcs = std::move(w);
        else p->sciHdu = std::move(hdu), p->sciWcs = std::move(w);
    }
    std::map<std::string, MatchPoint> ref, sci;
    for (const sim::TruthRow& r : sim::readTruthCsv(p->summary.truthPath)) {
        if (r.kind != "star") continue;
        (r.epoch == 0 ? ref : sci)[r.id] = {r.x, r.y, r.flux};
    }
    for (const auto& [id, s] : sci) {
        p->sciOnly.push_back(s);
        if (auto it = ref.find(id); it != ref.end()) p->common.push_back({id, s, it->second});
    }
    for (const auto& [id, r] : ref) p->refOnly.push_back(r);
    slot = std::move(p);
    return *slot;
}

// A detection list from truth: stars above a flux limit, centroid noise ~ 1.5 px / S/N (a 400 ADU
// sky under a 3 px FWHM), 10% dropped, 3% spurious detections.
std::vector<MatchPoint> detections(const std::vector<MatchPoint>& truth, std::uint64_t seed, double noiseScale = 1.0,
                                   double fluxMin = 1500.0) {
    sim::Rng rng(seed);
    std::vector<MatchPoint> out;
    for (const MatchPoint& s : truth) {
        if (s.flux < fluxMin || rng.uniform() < 0.10) continue;
        const double snr = s.flux / std::sqrt(s.flux + 30.0 * 400.0);
        const double sigma = noiseScale * std::max(0.002, 1.5 / snr);
        out.push_back({s.x + sigma * rng.normal(), s.y + sigma * rng.normal(), s.flux * (1.0 + 0.3 / snr * rng.normal())});
    }
    const std::size_t spurious = out.size() * 3 / 100;
    for (std::size_t k = 0; k < spurious; ++k)
        out.push_back({rng.uniform(0.0, 1023.0), rng.uniform(0.0, 1023.0), std::exp(rng.uniform(7.0, 10.0))});
    return out;
}

// RMS over the common stars brighter than fluxMin of |map(true sci) - true ref|.
double truthRms(const SimPair& p, const PixelMap& map, double fluxMin = 0.0) {
    std::vector<double> r;
    for (const auto& s : p.common)
        if (s.sci.flux >= fluxMin) r.push_back(dist(map.apply(s.sci.x, s.sci.y), {s.ref.x, s.ref.y}));
    return rmsOf(r);
}

// The science WCS with its pointing and rotation wrong: CRVAL moved by (dRa, dDec) arcsec and the CD
// matrix rotated by rotDeg and scaled by `scale`.
wcs::SkyWcs perturbedWcs(const fits::Header& h, double dRaArcsec, double dDecArcsec, double rotDeg, double scale) {
    fits::Header m = h;
    const double dec = *h.getDouble("CRVAL2");
    m.set("CRVAL1", *h.getDouble("CRVAL1") + dRaArcsec / 3600.0 / std::cos(dec * M_PI / 180.0));
    m.set("CRVAL2", dec + dDecArcsec / 3600.0);
    const double c = std::cos(rotDeg * M_PI / 180.0), s = std::sin(rotDeg * M_PI / 180.0);
    const double a = *h.getDouble("CD1_1"), b = *h.getDouble("CD1_2"), cc = *h.getDouble("CD2_1"), d = *h.getDouble("CD2_2");
    m.set("CD1_1", scale * (c * a - s * cc));
    m.set("CD1_2", scale * (c * b - s * d));
    m.set("CD2_1", scale * (s * a + c * cc));
    m.set("CD2_2", scale * (s * b + c * d));
    return wcs::SkyWcs::fromHeader(m);
}

class SimDistortion : public ::testing::TestWithParam<sim::Distortion> {};

std::string distortionLabel(const ::testing::TestParamInfo<sim::Distortion>& info) {
    return sim::distortionName(info.param);
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// PolyTransform

TEST(PolyTransform, ConventionsOfTheFactories) {
    // Counter-clockwise from +x towards +y.
    const PixelPoint r = PolyTransform::similarity(2.0, 90.0, 1.0, -1.0).apply(1.0, 0.0);
    EXPECT_NEAR(r.x, 1.0, 1e-12);
    EXPECT_NEAR(r.y, 1.0, 1e-12);
    const PixelPoint m = PolyTransform::similarity(1.0, 0.0, 0.0, 0.0, Parity::Mirrored).apply(3.0, 2.0);
    EXPECT_NEAR(m.x, 3.0, 1e-12);
    EXPECT_NEAR(m.y, -2.0, 1e-12);
    const PixelPoint a = PolyTransform::affine({1, 2, 3, 4, 5, 6}).apply(10.0, 100.0);
    EXPECT_DOUBLE_EQ(a.x, 1 + 20 + 300);
    EXPECT_DOUBLE_EQ(a.y, 4 + 50 + 600);
    const auto j = PolyTransform::affine({1, 2, 3, 4, 5, 6}).jacobian(7.0, 8.0);
    EXPECT_DOUBLE_EQ(j[0], 2);
    EXPECT_DOUBLE_EQ(j[1], 3);
    EXPECT_DOUBLE_EQ(j[2], 5);
    EXPECT_DOUBLE_EQ(j[3], 6);
    EXPECT_THROW(PolyTransform::identity(4), DataError);
    EXPECT_THROW(PolyTransform::identity(0), DataError);
}

TEST(PolyTransform, FitRecoversACubicAndRejectsDegenerateInput) {
    PolyTransform::Coefficients ax{}, ay{};
    ax = {3.0, 1.0, 0.01, 2e-3, -1e-3, 5e-4, 1e-4, -2e-4, 3e-4, 1e-4};
    ay = {-2.0, -0.02, 1.0, -1e-3, 2e-3, 1e-3, -1e-4, 2e-4, 1e-4, -3e-4};
    const PolyTransform truth = PolyTransform::fromCoefficients(3, 512.0, 512.0, 512.0, ax, ay);
    sim::Rng rng(3);
    std::vector<PixelPoint> from, to;
    for (int k = 0; k < 200; ++k) {
        from.push_back({rng.uniform(0, 1024), rng.uniform(0, 1024)});
        to.push_back(truth.apply(from.back()));
    }
    const PolyTransform fit = PolyTransform::fit(from, to, 3);
    for (int k = 0; k < 50; ++k) {
        const double x = rng.uniform(0, 1024), y = rng.uniform(0, 1024);
        EXPECT_LT(dist(fit.apply(x, y), truth.apply(x, y)), 1e-8);
        const auto jf = fit.jacobian(x, y), jt = truth.jacobian(x, y);
        for (int i = 0; i < 4; ++i) EXPECT_NEAR(jf[static_cast<std::size_t>(i)], jt[static_cast<std::size_t>(i)], 1e-10);
    }
    // Collinear points cannot fix an affine transform; too few points cannot fix a cubic.
    std::vector<PixelPoint> line{{0, 0}, {1, 1}, {2, 2}, {3, 3}, {4, 4}};
    EXPECT_THROW(PolyTransform::fit(line, line, 1), DataError);
    EXPECT_THROW(PolyTransform::fit(std::span(from).first(9), std::span(to).first(9), 3), DataError);
    EXPECT_THROW(PolyTransform::fit(std::span(from).first(9), std::span(to).first(8), 1), DataError);
}

// ------------------------------------------------------------------------------------------------
// PixelMap

TEST_P(SimDistortion, WcsPixelMapInterpolatesTheExactMapping) {
    const SimPair& p = simPair(GetParam());
    const PixelMap map = PixelMap::fromWcs(*p.sciWcs, *p.refWcs, p.size, p.size);
    EXPECT_EQ(map.gridSpacingPx(), 32);
    EXPECT_LT(map.gridErrorPx(), 1e-4);
    // Dense random points against exact sci pixel -> sky -> ref pixel.
    sim::Rng rng(5);
    std::vector<double> x(4000), y(4000), ra(4000), dec(4000), xe(4000), ye(4000);
    for (std::size_t k = 0; k < x.size(); ++k) x[k] = rng.uniform(-0.5, p.size - 0.5), y[k] = rng.uniform(-0.5, p.size - 0.5);
    p.sciWcs->pixelToSky(x, y, ra, dec);
    p.refWcs->skyToPixel(ra, dec, xe, ye);
    double worst = 0;
    for (std::size_t k = 0; k < x.size(); ++k) worst = std::max(worst, dist(map.apply(x[k], y[k]), {xe[k], ye[k]}));
    EXPECT_LT(worst, 1e-4) << "interpolation error of the 32 px grid";
    // The truth positions of the simulator come from the same WCSs.
    EXPECT_LT(truthRms(p, map), 1e-4);
    // The jacobian matches finite differences of the map, and the row evaluator matches apply().
    for (int k = 0; k < 20; ++k) {
        const double px = rng.uniform(0, 1023), py = rng.uniform(0, 1023), h = 0.5;
        const auto j = map.jacobian(px, py);
        const PixelPoint xp = map.apply(px + h, py), xm = map.apply(px - h, py), yp = map.apply(px, py + h),
                         ym = map.apply(px, py - h);
        EXPECT_NEAR(j[0], (xp.x - xm.x) / (2 * h), 1e-7);
        EXPECT_NEAR(j[1], (yp.x - ym.x) / (2 * h), 1e-7);
        EXPECT_NEAR(j[2], (xp.y - xm.y) / (2 * h), 1e-7);
        EXPECT_NEAR(j[3], (yp.y - ym.y) / (2 * h), 1e-7);
    }
    PixelMap::RowEvaluator rows(map, 0, p.size);
    std::vector<double> xr(static_cast<std::size_t>(p.size)), yr(xr.size()), det(xr.size());
    for (int row : {0, 17, 500, 1023}) {
        rows.evaluate(row, xr, yr, det);
        for (int col : {0, 1, 33, 700, 1023}) {
            const auto c = static_cast<std::size_t>(col);
            EXPECT_LT(dist({xr[c], yr[c]}, map.apply(col, row)), 1e-9);
            EXPECT_NEAR(det[c], map.jacobianDeterminant(col, row), 1e-8);
        }
    }
}

TEST(PixelMap, CorrectionComposesAfterTheBase) {
    const PolyTransform base = PolyTransform::similarity(1.01, 12.0, 30.0, -20.0);
    PolyTransform::Coefficients ax{}, ay{};
    ax = {0.5, 1.001, 0.002, 1e-3, 0, -1e-3, 2e-4, 0, 0, 1e-4};
    ay = {-0.3, -0.001, 0.999, 0, 1e-3, 0, 0, 1e-4, -2e-4, 0};
    const PolyTransform corr = PolyTransform::fromCoefficients(3, 500.0, 500.0, 500.0, ax, ay);
    const PixelMap map = PixelMap::fromTransform(base).withCorrection(corr);
    EXPECT_FALSE(map.hasWcsBase());
    PixelMap::RowEvaluator rows(map, 3, 700);
    std::vector<double> xr(700), yr(700), det(700);
    rows.evaluate(321.5, xr, yr, det);
    for (int col : {3, 4, 100, 401, 702}) {
        const PixelPoint want = corr.apply(base.apply(col, 321.5));
        EXPECT_LT(dist(map.apply(col, 321.5), want), 1e-9);
        EXPECT_LT(dist(map.applyBase(col, 321.5), base.apply(col, 321.5)), 1e-12);
        const auto c = static_cast<std::size_t>(col - 3);
        EXPECT_LT(dist({xr[c], yr[c]}, want), 1e-8) << "row evaluation is exact for a cubic along x";
        EXPECT_NEAR(det[c], map.jacobianDeterminant(col, 321.5), 1e-6);
    }
    // The identity map.
    EXPECT_LT(dist(PixelMap().apply(12.5, -3.25), {12.5, -3.25}), 1e-15);
}

// ------------------------------------------------------------------------------------------------
// Matching through the WCS guess

TEST_P(SimDistortion, WcsGuessAndMatchingRecoverTheTrueMapping) {
    const SimPair& p = simPair(GetParam());
    // A science WCS 4-5 px off in pointing, 0.02 deg in rotation and 3e-4 in scale: the correction
    // must absorb it.
    const wcs::SkyWcs wrong = perturbedWcs(p.sciHdu.header, 1.8, -1.3, 0.02, 1.0003);
    const PixelMap guess = PixelMap::fromWcs(wrong, *p.refWcs, p.size, p.size);
    ASSERT_GT(truthRms(p, guess), 3.0) << "the guess must be off by more than the search radius";

    const auto sci = detections(p.sciOnly, 21), ref = detections(p.refOnly, 22);
    const MatchResult r = matchStars(sci, ref, guess);
    EXPECT_EQ(r.method, MatchMethod::Guess);
    EXPECT_EQ(r.order, 1);
    EXPECT_GT(std::hypot(r.offsetXPx, r.offsetYPx), 3.0) << "the offset search found the pointing error";
    // Both lists keep 90% of the stars above 1500 ADU.
    const auto both = std::count_if(p.common.begin(), p.common.end(),
                                    [](const SimPair::Star& s) { return s.sci.flux >= 1500 && s.ref.flux >= 1500; });
    EXPECT_GT(r.nMatched, 0.95 * 0.81 * static_cast<double>(both));
    EXPECT_GT(r.nUsed, 0.95 * r.nMatched);
    // Issue acceptance: against truth, the bright stars' residual rms <= 0.05 px.
    EXPECT_LE(truthRms(p, r.map, 20000.0), 0.05);
    EXPECT_LE(truthRms(p, r.map), 0.02) << "all common stars, faint ones included";
    // Reported rms: the brightest 50 have centroid noise ~0.005 px per axis and list.
    EXPECT_LE(r.rmsPx, 0.05);
    EXPECT_GT(r.rmsAllPx, r.rmsPx) << "faint stars scatter more";

    // Noiseless truth lists: the residual is the model error only.
    const MatchResult exact = matchStars(p.sciOnly, p.refOnly, guess);
    EXPECT_LE(exact.rmsPx, 0.01);
    EXPECT_LE(truthRms(p, exact.map), 0.01);

    // Five times the centroid noise: the fit still recovers the true mapping.
    const MatchResult noisy = matchStars(detections(p.sciOnly, 23, 5.0), detections(p.refOnly, 24, 5.0), guess);
    EXPECT_LE(truthRms(p, noisy.map), 0.03);
    EXPECT_GT(noisy.rmsAllPx, 3 * r.rmsAllPx);

    // The photometric ratio of the truth fluxes is exactly the zero-point difference.
    std::vector<MatchedPair> truthPairs;
    for (const auto& s : p.common) truthPairs.push_back({s.sci, s.ref});
    const double zpRef = p.summary.epochs[0].zeroPoint, zpSci = p.summary.epochs[1].zeroPoint;
    EXPECT_NEAR(fluxRatio(truthPairs).ratio, std::pow(10.0, 0.4 * (zpRef - zpSci)), 1e-9);
}

INSTANTIATE_TEST_SUITE_P(Registration, SimDistortion,
                         ::testing::Values(sim::Distortion::None, sim::Distortion::Sip, sim::Distortion::Tpv),
                         distortionLabel);

namespace {
// A simple detector for the simulated images: local maxima above 10 sigma that are not single
// columns or pixels (hot columns, cosmic rays) and not saturated, centroided with an iterated
// Gaussian-windowed first moment (SExtractor's XWIN), flux in a 6 px aperture.
std::vector<MatchPoint> findStars(const Image<float>& img, double saturation, double fwhm) {
    const int w = img.width(), h = img.height();
    std::vector<float> sample;
    for (std::size_t k = 0; k < img.size(); k += 7) sample.push_back(img.data()[k]);
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(sample.size() / 2), sample.end());
    const double bg = sample[sample.size() / 2];
    for (float& v : sample) v = static_cast<float>(std::fabs(v - bg));
    std::nth_element(sample.begin(), sample.begin() + static_cast<std::ptrdiff_t>(sample.size() / 2), sample.end());
    const double sigma = 1.4826 * sample[sample.size() / 2];
    const double sw = fwhm / 2.3548;
    std::vector<MatchPoint> out;
    for (int y = 8; y < h - 8; ++y)
        for (int x = 8; x < w - 8; ++x) {
            const double v = img(x, y);
            if (v < bg + 10 * sigma || v > 0.7 * saturation) continue;
            bool isMax = true;
            for (int dy = -2; dy <= 2 && isMax; ++dy)
                for (int dx = -2; dx <= 2; ++dx)
                    if ((dx || dy) && img(x + dx, y + dy) >= v) isMax = false;
            if (!isMax) continue;
            const double lim = bg + 0.25 * (v - bg);
            if (img(x - 1, y) < lim || img(x + 1, y) < lim || img(x, y - 1) < lim || img(x, y + 1) < lim) continue;
            double cx = x, cy = y;
            for (int it = 0; it < 20; ++it) {
                double sx = 0, sy = 0, s = 0;
                for (int dy = -7; dy <= 7; ++dy)
                    for (int dx = -7; dx <= 7; ++dx) {
                        const int px = x + dx, py = y + dy;
                        const double rx = px - cx, ry = py - cy;
                        const double wgt = std::exp(-(rx * rx + ry * ry) / (2 * sw * sw)) * (img(px, py) - bg);
                        sx += wgt * rx, sy += wgt * ry, s += wgt;
                    }
                if (!(s > 0)) break;
                const double ddx = 2 * sx / s, ddy = 2 * sy / s;
                cx += ddx, cy += ddy;
                if (std::hypot(ddx, ddy) < 1e-5 || std::hypot(cx - x, cy - y) > 2) break;
            }
            if (std::hypot(cx - x, cy - y) > 1.5) continue;
            double f = 0;
            for (int dy = -6; dy <= 6; ++dy)
                for (int dx = -6; dx <= 6; ++dx)
                    if (dx * dx + dy * dy <= 36) f += img(x + dx, y + dy) - bg;
            out.push_back({cx, cy, f});
        }
    return out;
}
}  // namespace

TEST(Matching, DetectedStarsOfSimulatedImagesMeetTheAcceptance) {
    const SimPair& p = simPair(sim::Distortion::Sip);
    const auto& e0 = p.summary.epochs[0];
    const auto& e1 = p.summary.epochs[1];
    const auto ref = findStars(p.refHdu.image, e0.saturation, e0.fwhmPx);
    const auto sci = findStars(p.sciHdu.image, e1.saturation, e1.fwhmPx);
    ASSERT_GT(ref.size(), 250u);
    ASSERT_GT(sci.size(), 250u);
    const PixelMap guess = PixelMap::fromWcs(*p.sciWcs, *p.refWcs, p.size, p.size);
    const MatchResult r = matchStarLists(sci, ref, &guess);
    EXPECT_EQ(r.method, MatchMethod::Guess);
    EXPECT_GT(r.nUsed, 0.8 * static_cast<double>(std::min(sci.size(), ref.size())));
    // Measured centroids: the rms of the bright pairs, and the fitted map against truth.
    EXPECT_LE(r.rmsPx, 0.05);
    EXPECT_LE(truthRms(p, r.map, 20000.0), 0.05);
    // Without any WCS the pattern matcher gets the same mapping.
    MatchConfig cubic;
    cubic.correctionOrder = 3;  // two pointings of one distorted camera differ by ~0.1 px non-affinely
    const MatchResult pr = matchPatterns(sci, ref, cubic);
    EXPECT_EQ(pr.method, MatchMethod::Pattern);
    EXPECT_EQ(pr.order, 3);
    EXPECT_LE(truthRms(p, pr.map, 20000.0), 0.05);
}

// ------------------------------------------------------------------------------------------------
// Pattern matching

TEST_P(SimDistortion, PatternMatchingWithoutWcsRecoversTheMapping) {
    const SimPair& p = simPair(GetParam());
    MatchConfig c;
    // TAN pairs differ by an affine map; a distorted camera at two pointings needs the cubic.
    c.correctionOrder = GetParam() == sim::Distortion::None ? 1 : 3;
    const MatchResult r = matchPatterns(detections(p.sciOnly, 31), detections(p.refOnly, 32), c);
    EXPECT_EQ(r.method, MatchMethod::Pattern);
    EXPECT_GE(r.nPatternMatches, c.minPatternMatches);
    EXPECT_LE(truthRms(p, r.map, 20000.0), 0.05);
    EXPECT_LE(truthRms(p, r.map), 0.03);
}

namespace {
// Star fields related by a known transform `t` (science -> reference): stars scattered over a large
// sky area, each list keeping those on its own 1024^2 image, with centroid noise.
struct SyntheticLists {
    std::vector<MatchPoint> sci, ref;
};
SyntheticLists syntheticLists(const PolyTransform& t, std::uint64_t seed, int nStars = 4000) {
    sim::Rng rng(seed);
    SyntheticLists s;
    for (int k = 0; k < nStars; ++k) {
        const double x = rng.uniform(-1200, 2200), y = rng.uniform(-1200, 2200);
        const double flux = 1000.0 * std::pow(rng.uniform(0.001, 1.0), -1.5);
        const PixelPoint q = t.apply(x, y);
        auto inside = [](double u, double v) { return u >= 0 && v >= 0 && u < 1024 && v < 1024; };
        if (inside(x, y)) s.sci.push_back({x + 0.05 * rng.normal(), y + 0.05 * rng.normal(), flux * (1 + 0.02 * rng.normal())});
        if (inside(q.x, q.y)) s.ref.push_back({q.x + 0.05 * rng.normal(), q.y + 0.05 * rng.normal(), 1.3 * flux * (1 + 0.02 * rng.normal())});
    }
    return s;
}

// A similarity (science -> reference) that takes the science image centre to `target`.
PolyTransform centredSimilarity(double scale, double rotDeg, PixelPoint target, Parity parity = Parity::Preserved) {
    const PixelPoint c = PolyTransform::similarity(scale, rotDeg, 0.0, 0.0, parity).apply(511.5, 511.5);
    return PolyTransform::similarity(scale, rotDeg, target.x - c.x, target.y - c.y, parity);
}

double worstOverOverlap(const PixelMap& map, const PolyTransform& t) {
    double worst = 0;
    for (int y = 0; y < 1024; y += 64)
        for (int x = 0; x < 1024; x += 64) {
            const PixelPoint q = t.apply(x, y);
            if (q.x < 0 || q.y < 0 || q.x >= 1024 || q.y >= 1024) continue;
            worst = std::max(worst, dist(map.apply(x, y), q));
        }
    return worst;
}
}  // namespace

TEST(PatternMatching, LargeRotationOffsetAndScale) {
    // 30 deg, 2% scale, the science centre 200 px (x) and 120 px (y) from the reference centre.
    const PolyTransform t = centredSimilarity(1.02, 30.0, {711.5, 391.5});
    const SyntheticLists s = syntheticLists(t, 41);
    const MatchResult r = matchPatterns(s.sci, s.ref);
    EXPECT_EQ(r.method, MatchMethod::Pattern);
    EXPECT_GT(r.nUsed, 150);
    EXPECT_LT(worstOverOverlap(r.map, t), 0.03);
    EXPECT_NEAR(r.rmsAllPx, 0.05 * 2.0, 0.02) << "two lists with 0.05 px per axis";
    // The same lists through a useless guess: matchStarLists falls back to patterns.
    const PixelMap wrongGuess = PixelMap::fromTransform(PolyTransform::similarity(1.0, 0.0, 400.0, 0.0));
    EXPECT_THROW(matchStars(s.sci, s.ref, wrongGuess), DataError);
    const MatchResult f = matchStarLists(s.sci, s.ref, &wrongGuess);
    EXPECT_EQ(f.method, MatchMethod::Pattern);
    EXPECT_LT(worstOverOverlap(f.map, t), 0.03);
}

TEST(PatternMatching, MirroredFieldsMatchOnlyWhenAllowed) {
    const PolyTransform t = centredSimilarity(0.99, -75.0, {411.5, 611.5}, Parity::Mirrored);
    const SyntheticLists s = syntheticLists(t, 43);
    const MatchResult r = matchPatterns(s.sci, s.ref);
    EXPECT_LT(worstOverOverlap(r.map, t), 0.03);
    const auto j = r.map.jacobian(500, 500);
    EXPECT_LT(j[0] * j[3] - j[1] * j[2], 0.0) << "a mirrored map has a negative determinant";
    MatchConfig noMirror;
    noMirror.mirroring = Mirroring::Forbidden;
    EXPECT_THROW(matchPatterns(s.sci, s.ref, noMirror), DataError);
}

TEST(PatternMatching, UnrelatedOrTooShortListsFailCleanly) {
    const SyntheticLists a = syntheticLists(PolyTransform::identity(), 51, 1500);
    const SyntheticLists b = syntheticLists(PolyTransform::identity(), 52, 1500);
    try {
        (void)matchPatterns(a.sci, b.ref);
        FAIL() << "unrelated lists matched";
    } catch (const DataError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("pattern matching failed"), std::string::npos) << what;
        EXPECT_NE(what.find(std::to_string(a.sci.size()) + " science"), std::string::npos) << what;
    }
    const std::vector<MatchPoint> two{{10, 10, 100}, {50, 70, 90}};
    EXPECT_THROW(matchPatterns(two, a.ref), DataError);
    EXPECT_THROW(matchStars(two, a.ref, PixelMap()), DataError);
    // A scale outside the allowed range is not found.
    const PolyTransform big = centredSimilarity(1.5, 10.0, {511.5, 511.5});
    const SyntheticLists s = syntheticLists(big, 53);
    EXPECT_THROW(matchPatterns(s.sci, s.ref), DataError);
    MatchConfig wide;
    wide.patternScale = 1.5;
    // Science positions carry 1.5x their noise into reference pixels; fewer stars overlap.
    EXPECT_LT(worstOverOverlap(matchPatterns(s.sci, s.ref, wide).map, big), 0.08);
}

// ------------------------------------------------------------------------------------------------
// Resampling

namespace {
struct StarMeasure {
    double x = 0, y = 0, flux = 0;
};
// First moments and sum inside a circular aperture (no background: the images are noiseless).
StarMeasure measure(const Image<float>& img, double x, double y, double radius) {
    StarMeasure m;
    double sx = 0, sy = 0, s = 0;
    const int r = static_cast<int>(std::ceil(radius));
    for (int py = static_cast<int>(std::lround(y)) - r; py <= static_cast<int>(std::lround(y)) + r; ++py)
        for (int px = static_cast<int>(std::lround(x)) - r; px <= static_cast<int>(std::lround(x)) + r; ++px) {
            if (px < 0 || py < 0 || px >= img.width() || py >= img.height()) continue;
            if ((px - x) * (px - x) + (py - y) * (py - y) > radius * radius) continue;
            const double v = img(px, py);
            sx += v * px, sy += v * py, s += v;
        }
    m.flux = s;
    m.x = sx / s;
    m.y = sy / s;
    return m;
}

// Two TAN WCSs 0.5"/px: the reference rotated by rotDeg, scaled by `scale` (ref px per sci px) and
// shifted by a few px.
struct WcsPair {
    wcs::SkyWcs sci, ref;
};
WcsPair tanPair(double rotDeg, double scale) {
    const double s = 0.5 / 3600.0;
    const double r = rotDeg * M_PI / 180.0;
    const double sr = s / scale;  // reference pixels are smaller when scale > 1
    return {wcs::SkyWcs::tan({150.0, 2.0}, {200.0, 210.0}, {-s, 0.0, 0.0, s}),
            wcs::SkyWcs::tan({150.0004, 1.9993}, {215.3, 198.6},
                             {-sr * std::cos(r), sr * std::sin(r), sr * std::sin(r), sr * std::cos(r)})};
}

PixelPoint exactMap(const WcsPair& w, double x, double y) {
    const wcs::SkyPoint sky = w.sci.pixelToSky(x, y);
    return w.ref.skyToPixel(sky.raDeg, sky.decDeg);
}

MaskedImage blankReference(int w, int h, float variance = 1.0f) {
    MaskedImage m(w, h);
    std::fill(m.variance.data(), m.variance.data() + m.variance.size(), variance);
    return m;
}
}  // namespace

TEST(Resample, StarsMatchDirectRenderingInCentroidAndFlux) {
    const WcsPair w = tanPair(0.7, 1.004);
    const int n = 432, spacing = 48;
    const PixelMap map = PixelMap::fromWcs(w.sci, w.ref, n, n);
    const sim::PsfRenderer psf(sim::MoffatPsf{3.0, 3.5, 0.0, 0.0});
    const double radius = std::min(psf.radiusPx() + 4.0, spacing / 2.0 - 1.0);
    MaskedImage ref = blankReference(n + 40, n + 40);
    Image<float> direct(n, n, 0.0f);
    sim::Rng rng(61);
    std::vector<PixelPoint> truth;
    for (int j = 1; j < n / spacing; ++j)
        for (int i = 1; i < n / spacing; ++i) {
            const double x = i * spacing + rng.uniform(-0.5, 0.5), y = j * spacing + rng.uniform(-0.5, 0.5);
            truth.push_back({x, y});
            const PixelPoint q = exactMap(w, x, y);
            psf.add(ref.image, q.x, q.y, 1e5);
            psf.add(direct, x, y, 1e5);
        }
    const MaskedImage out = resample(ref, map, n, n);
    std::vector<double> dpos, dflux;
    for (const PixelPoint& t : truth) {
        const StarMeasure a = measure(out.image, t.x, t.y, radius), b = measure(direct, t.x, t.y, radius);
        dpos.push_back(std::hypot(a.x - b.x, a.y - b.y));
        dflux.push_back(a.flux / b.flux - 1.0);
    }
    const double worstFlux = std::max(-*std::min_element(dflux.begin(), dflux.end()), *std::max_element(dflux.begin(), dflux.end()));
    // Measured: centroid rms 1e-4 px, flux 6e-5 (plain normalised Lanczos3: 0.02 px rms).
    EXPECT_LE(rmsOf(dpos), 0.001) << "centroid rms (px)";
    EXPECT_LE(*std::max_element(dpos.begin(), dpos.end()), 0.003);
    EXPECT_LE(worstFlux, 5e-4) << "flux";
    for (const PixelPoint& t : truth)
        for (int dy = -10; dy <= 10; ++dy)
            for (int dx = -10; dx <= 10; ++dx)
                ASSERT_EQ(out.mask(static_cast<int>(t.x) + dx, static_cast<int>(t.y) + dy), 0);
}

TEST(Resample, ConservesFluxUnderAScaleChange) {
    for (const double scale : {1.02, 0.98}) {
        for (const Parity parity : {Parity::Preserved, Parity::Mirrored}) {
            // Reference pixels per science pixel = scale: a science pixel covers scale^2 of them.
            const PolyTransform t = PolyTransform::similarity(scale, 5.0, 10.3, -6.2, parity);
            const PixelMap map = PixelMap::fromTransform(t);
            const int n = 300;
            const sim::PsfRenderer psf(sim::MoffatPsf{3.0, 3.5, 0.0, 0.0});
            MaskedImage ref = blankReference(2 * n, 2 * n);
            std::vector<PixelPoint> truth;
            for (int j = 1; j < 6; ++j)
                for (int i = 1; i < 6; ++i) {
                    const double x = i * 50 + 0.37 * j, y = j * 50 + 0.21 * i;
                    truth.push_back({x, y});
                    const PixelPoint q = t.apply(x, y);
                    // Shift into the reference image for the mirrored case (negative y).
                    psf.add(ref.image, q.x, q.y + (parity == Parity::Mirrored ? n : 0), 2e5);
                }
            const PixelMap placed = parity == Parity::Mirrored
                                        ? map.withCorrection(PolyTransform::affine({0, 1, 0, static_cast<double>(n), 0, 1}))
                                        : map;
            const MaskedImage out = resample(ref, placed, n, n);
            EXPECT_NEAR(std::fabs(placed.jacobianDeterminant(100, 100)), scale * scale, 1e-12);
            for (const PixelPoint& p : truth) {
                const StarMeasure m = measure(out.image, p.x, p.y, 22.0);
                EXPECT_NEAR(m.flux / 2e5, 1.0, 1e-3) << "scale " << scale;
                EXPECT_LT(std::hypot(m.x - p.x, m.y - p.y), 0.005);
            }
            // Without flux conservation the total scales by 1 / scale^2.
            ResampleConfig sb;
            sb.flux = FluxScaling::SurfaceBrightness;
            const MaskedImage plain = resample(ref, placed, n, n, sb);
            EXPECT_NEAR(measure(plain.image, truth[0].x, truth[0].y, 22.0).flux / 2e5, 1.0 / (scale * scale), 1e-3);
        }
    }
}

TEST(Resample, IntegerShiftCopiesPixels) {
    MaskedImage ref = blankReference(64, 48);
    sim::Rng rng(71);
    for (std::size_t k = 0; k < ref.image.size(); ++k) {
        ref.image.data()[k] = static_cast<float>(rng.normal());
        ref.variance.data()[k] = static_cast<float>(1.0 + rng.uniform());
    }
    const PixelMap shift = PixelMap::fromTransform(PolyTransform::affine({5, 1, 0, -3, 0, 1}));
    const MaskedImage out = resample(ref, shift, 50, 40);
    for (int y = 10; y < 40; ++y)
        for (int x = 0; x < 50; ++x) {
            ASSERT_EQ(out.image(x, y), ref.image(x + 5, y - 3));
            ASSERT_EQ(out.variance(x, y), ref.variance(x + 5, y - 3));
            ASSERT_EQ(out.mask(x, y), 0);
        }
    // Into an existing output (reused buffers): the same pixels, every plane overwritten.
    MaskedImage into(50, 40);
    std::fill(into.mask.data(), into.mask.data() + into.mask.size(), std::uint16_t{0xffff});
    resampleInto(ref, shift, into);
    EXPECT_TRUE(std::equal(into.image.pixels().begin(), into.image.pixels().end(), out.image.pixels().begin()));
    EXPECT_TRUE(std::equal(into.mask.pixels().begin(), into.mask.pixels().end(), out.mask.pixels().begin()));
    EXPECT_THROW(resampleInto(ref, shift, ref), DataError);
}

TEST(Resample, VariancePredictsTheNoiseOfResampledPixels) {
    const int n = 520;
    MaskedImage ref = blankReference(n, n, 4.0f);
    sim::Rng rng(81);
    for (std::size_t k = 0; k < ref.image.size(); ++k) ref.image.data()[k] = static_cast<float>(2.0 * rng.normal());
    // A rotation and a 1% scale change sweep all sub-pixel phases (so all per-pixel variances).
    const PixelMap map = PixelMap::fromTransform(PolyTransform::similarity(1.01, 17.0, 60.0, -40.0));
    const MaskedImage out = resample(ref, map, 400, 400);
    std::vector<std::pair<double, double>> px;  // (predicted variance, value^2)
    for (int y = 0; y < 400; ++y)
        for (int x = 0; x < 400; ++x)
            if (out.mask(x, y) == 0) px.emplace_back(out.variance(x, y), static_cast<double>(out.image(x, y)) * out.image(x, y));
    ASSERT_GT(px.size(), 100000u);
    std::sort(px.begin(), px.end());
    // Compare in three bins of predicted variance: the prediction must track the phase dependence.
    const std::size_t third = px.size() / 3;
    double lowPred = 0, highPred = 0;
    for (int b = 0; b < 3; ++b) {
        double pred = 0, emp = 0;
        for (std::size_t k = b * third; k < (b + 1) * third; ++k) pred += px[k].first, emp += px[k].second;
        pred /= static_cast<double>(third);
        emp /= static_cast<double>(third);
        EXPECT_NEAR(emp / pred, 1.0, 0.03) << "bin " << b << ": predicted " << pred << ", measured " << emp;
        if (b == 0) lowPred = pred;
        if (b == 2) highPred = pred;
    }
    EXPECT_GT(highPred / lowPred, 1.3) << "Lanczos lowers the variance most at half-pixel phases";
    EXPECT_LT(highPred, 4.0 * 1.0201 * 1.0201 * 1.01) << "never above the input (x det^2)";
}

TEST(Resample, NoisePowerVarianceIsTheLocalNoiseLevelAndStaysPositive) {
    MaskedImage ref = blankReference(200, 200, 4.0f);
    // A bright star core in the variance plane: 1e4 over a background of 4.
    for (int y = 99; y <= 101; ++y)
        for (int x = 99; x <= 101; ++x) ref.variance(x, y) = 1e4f;
    const PixelMap map = PixelMap::fromTransform(PolyTransform::similarity(1.01, 17.0, 30.0, -20.0));
    ResampleConfig np;
    np.variance = VarianceResampling::NoisePower;
    const MaskedImage noise = resample(ref, map, 150, 150, np);
    const MaskedImage exact = resample(ref, map, 150, 150);
    const double det = 1.01 * 1.01;
    double minNoise = HUGE_VAL, lo = HUGE_VAL, hi = 0;
    for (int y = 0; y < 150; ++y)
        for (int x = 0; x < 150; ++x) {
            if (noise.mask(x, y)) continue;
            minNoise = std::min(minNoise, static_cast<double>(noise.variance(x, y)));
            const PixelPoint q = map.apply(x, y);
            if (std::hypot(q.x - 100, q.y - 100) > 6) {
                // Away from the core: the input level per science pixel, whatever the phase.
                EXPECT_NEAR(noise.variance(x, y), 4.0 * det, 1e-4 * 4.0);
                lo = std::min(lo, static_cast<double>(exact.variance(x, y)));
                hi = std::max(hi, static_cast<double>(exact.variance(x, y)));
            }
        }
    EXPECT_GT(minNoise, 4.0 * det * 0.999) << "never below the background level, never negative";
    // The per-pixel (Propagate) variance is lower and phase dependent.
    EXPECT_LT(lo, 0.65 * 4.0 * det * det);
    EXPECT_NEAR(hi, 4.0 * det * det, 0.01);
}

TEST(Resample, MasksPropagateAndOutsideIsNoData) {
    MaskedImage ref = blankReference(200, 120);
    std::fill(ref.image.data(), ref.image.data() + ref.image.size(), 10.0f);
    for (int y = 0; y < 120; ++y) ref.mask(100, y) = bits(MaskBit::Bad);
    ref.mask(50, 60) = bits(MaskBit::Saturated);
    ref.image(150, 30) = std::nanf("");
    const PixelMap shift = PixelMap::fromTransform(PolyTransform::affine({0.3, 1, 0, 0.4, 0, 1}));
    const MaskedImage out = resample(ref, shift, 200, 120);
    // The bad column at reference x = 100 lands at science x = 99.7.
    for (int y = 5; y < 115; ++y) {
        EXPECT_TRUE(out.mask(99, y) & bits(MaskBit::Bad)) << y;
        EXPECT_TRUE(out.mask(100, y) & bits(MaskBit::Bad)) << y;
        EXPECT_FALSE(out.mask(90, y) & bits(MaskBit::Bad)) << y;
        EXPECT_FALSE(out.mask(110, y) & bits(MaskBit::Bad)) << y;
    }
    EXPECT_TRUE(out.mask(50, 60) & bits(MaskBit::Saturated));
    EXPECT_TRUE(out.mask(49, 59) & bits(MaskBit::Saturated));
    EXPECT_EQ(out.mask(40, 60), 0);
    // The NaN pixel: NoData around it, value 0, infinite variance; clean pixels stay exact.
    EXPECT_TRUE(out.mask(150, 30) & bits(MaskBit::NoData));
    EXPECT_EQ(out.image(150, 30), 0.0f);
    EXPECT_TRUE(std::isinf(out.variance(150, 30)));
    EXPECT_NEAR(out.image(140, 30), 10.0f, 1e-4);
    EXPECT_EQ(out.mask(140, 30), 0);

    // Shifted 150.3 px: science x >= 50 maps beyond the reference's last pixel centre + 0.5.
    const MaskedImage off = resample(ref, PixelMap::fromTransform(PolyTransform::affine({150.3, 1, 0, 0.5, 0, 1})), 80, 120);
    for (int y = 10; y < 110; ++y) {
        for (int x = 50; x < 80; ++x) {
            EXPECT_EQ(off.mask(x, y), bits(MaskBit::NoData));
            EXPECT_EQ(off.image(x, y), 0.0f);
            EXPECT_TRUE(std::isinf(off.variance(x, y)));
        }
        EXPECT_TRUE(off.mask(49, y) & bits(MaskBit::Edge)) << "footprint partly outside";
        EXPECT_FALSE(off.mask(49, y) & bits(MaskBit::NoData));
        EXPECT_NEAR(off.image(49, y), 10.0f, 1e-4) << "renormalised over the inside taps";
        EXPECT_EQ(off.mask(20, y), 0);
    }
    // Rows too: science y = 119.5 + 0.5 falls outside.
    EXPECT_EQ(off.mask(20, 119), bits(MaskBit::NoData));
    EXPECT_THROW(resample(ref, shift, 0, 10), DataError);
    MaskedImage broken = ref;
    broken.variance = Image<float>(10, 10);
    EXPECT_THROW(resample(broken, shift, 10, 10), DataError);
}

TEST(Resample, Lanczos3WeightsAreNormalisedAndInterpolating) {
    for (double phase : {0.0, 0.125, 0.5, 0.9, 1.0}) {
        const auto w = lanczos3Weights(phase);
        EXPECT_NEAR(std::accumulate(w.begin(), w.end(), 0.0), 1.0, 1e-15);
        // First moment: the weights reproduce a linear ramp, so they do not move centroids.
        double m = 0;
        for (int k = 0; k < 6; ++k) m += w[static_cast<std::size_t>(k)] * (k - 2);
        EXPECT_NEAR(m, phase, 1e-14) << phase;
        // Mirror symmetry: phase p at offset k equals phase 1 - p at offset 1 - k.
        const auto v = lanczos3Weights(1.0 - phase);
        for (std::size_t i = 0; i < 6; ++i) EXPECT_NEAR(w[i], v[5 - i], 1e-14);
    }
    const auto w0 = lanczos3Weights(0.0);
    EXPECT_DOUBLE_EQ(w0[2], 1.0);
    EXPECT_EQ(w0[1], 0.0);
    EXPECT_EQ(w0[3], 0.0);
    // Still Lanczos3 in shape: the half-pixel weights within 2% of the plain kernel's.
    const auto h = lanczos3Weights(0.5);
    EXPECT_NEAR(h[2], 0.6079, 0.012);
    EXPECT_NEAR(h[1], -0.1351, 0.003);
}

// ------------------------------------------------------------------------------------------------
// Flux ratio

TEST(FluxRatio, RecoversAnInjectedRatioDespiteOutliers) {
    sim::Rng rng(91);
    const double truth = 1.37;
    std::vector<MatchedPair> pairs;
    int outliers = 0;
    for (int k = 0; k < 400; ++k) {
        const double f = std::exp(rng.uniform(std::log(2e3), std::log(2e6)));
        const double es = std::sqrt(f / 1.5 + 30 * 400.0), er = std::sqrt(truth * f / 1.5 + 30 * 400.0);
        MatchedPair p{{0, 0, f + es * rng.normal()}, {0, 0, truth * f + er * rng.normal()}};
        if (rng.uniform() < 0.2) {
            // Blends, saturation, variables: 0.3-0.75 or 1.3-3 times off.
            p.ref.flux *= rng.uniform() < 0.5 ? rng.uniform(0.3, 0.75) : rng.uniform(1.3, 3.0);
            ++outliers;
        }
        pairs.push_back(p);
    }
    ASSERT_GT(outliers, 60);
    const FluxRatio r = fluxRatio(pairs);
    EXPECT_NEAR(r.ratio / truth, 1.0, 0.005);
    EXPECT_GT(r.error, 0.0);
    EXPECT_LT(r.error / r.ratio, 0.005);
    EXPECT_LT(std::fabs(r.ratio - truth), 4 * r.error + 1e-4) << "the error is honest";
    EXPECT_GT(r.nUsed, 60);
    EXPECT_GE(r.nRejected, 10);
    EXPECT_EQ(r.nUsed + r.nRejected, 100);

    // All outliers one-sided (e.g. blends in a deeper reference) still do not pull it.
    for (MatchedPair& p : pairs)
        if (p.ref.flux / p.sci.flux < 0.8 * truth) p.ref.flux *= 4.0;
    EXPECT_NEAR(fluxRatio(pairs).ratio / truth, 1.0, 0.005);

    EXPECT_THROW(fluxRatio({}), DataError);
    EXPECT_THROW(fluxRatio({{{0, 0, 1}, {0, 0, -1}}, {{0, 0, 0}, {0, 0, 1}}}), DataError);
}
