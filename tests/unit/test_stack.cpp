// Stacking exposures of one epoch (pipeline::stackImages) against known truth: exposures of one
// simulated star field rendered here with sim::PsfRenderer (the simulator's pixel-integrated Moffat)
// with their own seeing, transparency, pointing, noise and cosmic rays.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "astrid/core/error.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/pipeline/difference.hpp"
#include "astrid/pipeline/stack.hpp"
#include "astrid/sim/render.hpp"
#include "astrid/wcs/sky_wcs.hpp"
#include "support/temp_root.hpp"

using namespace astrid;

namespace {
constexpr int kSize = 256;
constexpr double kSky = 400.0, kGain = 2.0, kReadNoise = 5.0;

struct TrueStar {
    double x, y, flux;  // first-exposure pixels, first-exposure ADU
    bool bright;
};

// 16 bright stars on a 4x4 grid (apertures of 15 px never overlap) and ~60 faint ones kept 22 px
// away from them: enough for the PSF model and star matching, and bright stars whose aperture flux
// is their total flux.
const std::vector<TrueStar>& field() {
    static const std::vector<TrueStar> stars = [] {
        std::vector<TrueStar> s;
        sim::Rng rng(4242);
        for (int j = 0; j < 4; ++j)
            for (int i = 0; i < 4; ++i)
                s.push_back({50.0 + 52.0 * i + rng.uniform(-3, 3), 50.0 + 52.0 * j + rng.uniform(-3, 3),
                             std::exp(rng.uniform(std::log(3e4), std::log(3e5))), true});
        while (s.size() < 76) {
            const double x = rng.uniform(12, kSize - 13), y = rng.uniform(12, kSize - 13);
            bool clear = true;
            for (const auto& b : s)
                if (b.bright && std::hypot(b.x - x, b.y - y) < 22) clear = false;
            if (clear) s.push_back({x, y, std::exp(rng.uniform(std::log(2e3), std::log(2e4))), false});
        }
        return s;
    }();
    return stars;
}

struct Exposure {
    double fwhmPx = 3.2;
    double transparency = 1.0;     // flux multiplier relative to the first exposure
    double shiftX = 0.0, shiftY = 0.0;  // a star at first-grid (x, y) lands on (x + shiftX, y + shiftY)
    std::uint64_t seed = 1;
    std::vector<std::pair<std::pair<int, int>, double>> cosmicRays;  // pixel, ADU added
};

fits::Header headerFor(const Exposure& e) {
    fits::Header h = wcs::SkyWcs::tan({150.0, 2.0}, {127.5 + e.shiftX, 127.5 + e.shiftY},
                                      {-0.5 / 3600.0, 0.0, 0.0, 0.5 / 3600.0})
                         .toHeader();
    h.set("GAIN", kGain);
    h.set("RDNOISE", kReadNoise);
    h.set("SATURATE", 60000.0);
    h.set("EXPTIME", 60.0);
    return h;
}

/// The exposure's expectation (sky + stars) and a Poisson + read-noise realisation of it.
fits::ImagePlanes render(const Exposure& e, const std::string& name, int size = kSize) {
    const sim::PsfRenderer psf(sim::MoffatPsf{e.fwhmPx, 3.5, 0.03, 20.0});
    Image<double> expect(size, size, kSky);
    for (const TrueStar& s : field()) psf.add(expect, s.x + e.shiftX, s.y + e.shiftY, s.flux * e.transparency);
    sim::Rng rng(e.seed);
    fits::ImagePlanes p;
    p.science.path = name;
    p.science.header = headerFor(e);
    p.science.image = Image<float>(size, size);
    for (int y = 0; y < size; ++y)
        for (int x = 0; x < size; ++x)
            p.science.image(x, y) = static_cast<float>(rng.poisson(expect(x, y) * kGain) / kGain +
                                                       rng.normal() * kReadNoise / kGain);
    for (const auto& [px, adu] : e.cosmicRays) p.science.image(px.first, px.second) += static_cast<float>(adu);
    return p;
}

std::vector<pipeline::PreparedImage> prepare(const std::vector<Exposure>& exposures, const pipeline::PrepareConfig& cfg = {}) {
    std::vector<pipeline::PreparedImage> out;
    for (std::size_t k = 0; k < exposures.size(); ++k)
        out.push_back(pipeline::prepareImage(render(exposures[k], "exp" + std::to_string(k) + ".fits"), cfg));
    return out;
}

double robustStd(std::vector<double> v) {
    auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    const double med = *mid;
    for (double& x : v) x = std::fabs(x - med);
    std::nth_element(v.begin(), mid, v.end());
    return 1.4826 * *mid;
}

/// Pixels farther than 15 px from every star and 10 px from the edges.
bool skyPixel(int x, int y) {
    if (x < 10 || y < 10 || x >= kSize - 10 || y >= kSize - 10) return false;
    for (const TrueStar& s : field())
        if (std::hypot(s.x - x, s.y - y) < 15) return false;
    return true;
}

/// Aperture flux (radius r) around (x, y), background-subtracted images (no local sky).
double apertureFlux(const Image<float>& im, double x, double y, double r) {
    double sum = 0.0;
    for (int j = static_cast<int>(y - r) - 1; j <= static_cast<int>(y + r) + 1; ++j)
        for (int i = static_cast<int>(x - r) - 1; i <= static_cast<int>(x + r) + 1; ++i)
            if (std::hypot(i - x, j - y) <= r) sum += im(i, j);
    return sum;
}

std::vector<Exposure> sameGridExposures(int n) {
    std::vector<Exposure> e;
    for (int k = 0; k < n; ++k) {
        Exposure x;
        x.fwhmPx = 2.9 + 0.2 * k;
        x.seed = 100 + static_cast<std::uint64_t>(k);
        e.push_back(x);
    }
    return e;
}
}  // namespace

TEST(Stack, NoiseDropsAsSqrtNAndTheVariancePlanePredictsIt) {
    const int n = 5;
    const auto inputs = prepare(sameGridExposures(n));
    const pipeline::StackResult st = pipeline::stackImages(inputs, {});
    ASSERT_EQ(st.inputs.size(), static_cast<std::size_t>(n));
    std::vector<double> single, stacked;
    double varSum = 0.0;
    for (int y = 0; y < kSize; ++y)
        for (int x = 0; x < kSize; ++x)
            if (skyPixel(x, y) && st.pixels.mask(x, y) == 0 && inputs[0].pixels.mask(x, y) == 0) {
                single.push_back(inputs[0].pixels.image(x, y));
                stacked.push_back(st.pixels.image(x, y));
                varSum += st.pixels.variance(x, y);
            }
    ASSERT_GT(stacked.size(), 10000u);
    const double s1 = robustStd(single), sN = robustStd(stacked);
    const double predicted = std::sqrt(varSum / static_cast<double>(stacked.size()));
    std::printf("sky noise: single %.3f, stack of %d %.3f (ratio %.4f, sqrt(N) %.4f), stack VARIANCE predicts %.3f; "
                "%zu clipped values\n",
                s1, n, sN, s1 / sN, std::sqrt(n), predicted, st.clippedValues);
    EXPECT_NEAR(s1 / sN / std::sqrt(static_cast<double>(n)), 1.0, 0.03) << "noise must drop as sqrt(N)";
    EXPECT_NEAR(predicted / sN, 1.0, 0.05) << "the variance plane must describe the stack's noise";
    for (const auto& in : st.inputs) {
        EXPECT_EQ(in.placement, pipeline::StackPlacement::SameGrid) << in.label;
        EXPECT_NEAR(in.weightShare, 1.0 / n, 0.02) << in.label << ": equal exposures weigh alike";
    }
    // Equal weights, unit scales: the mean of N exposures has N times the gain.
    EXPECT_NEAR(st.gain / (n * kGain), 1.0, 0.03);
    // The clipping at 4 sigma rejects ~nothing from clean exposures whose seeing differs (2.9-3.7 px):
    // the amplitude term keeps the star cores.
    EXPECT_LT(st.clippedValues, static_cast<std::size_t>(n) * kSize * kSize / 2000);
    EXPECT_EQ(st.uncoveredPixels, 0u);
}

TEST(Stack, ConservesStarFluxAcrossSeeingTransparencyAndPointing) {
    std::vector<Exposure> e(4);
    e[0] = {3.0, 1.00, 0.0, 0.0, 11, {}};
    e[1] = {4.0, 0.85, 0.0, 0.0, 12, {}};
    e[2] = {3.4, 1.10, 6.3, -4.7, 13, {}};  // another pointing: registered and resampled
    e[3] = {3.7, 0.95, 0.0, 0.0, 14, {}};
    const auto inputs = prepare(e);
    const pipeline::StackResult st = pipeline::stackImages(inputs, {});
    EXPECT_EQ(st.inputs[1].placement, pipeline::StackPlacement::SameGrid);
    EXPECT_EQ(st.inputs[2].placement, pipeline::StackPlacement::Matched);
    EXPECT_LT(st.inputs[2].astrometricRmsPx, 0.05);
    for (std::size_t k = 1; k < e.size(); ++k) {
        EXPECT_GT(st.inputs[k].scaleStars, 5) << k;
        EXPECT_NEAR(st.inputs[k].scale * e[k].transparency, 1.0, 0.01) << "exposure " << k << ": photometric scale";
    }
    std::vector<double> ratios;
    for (const TrueStar& s : field()) {
        if (!s.bright) continue;
        const double f = apertureFlux(st.pixels.image, s.x, s.y, 15.0);
        ratios.push_back(f / s.flux);
        EXPECT_NEAR(f / s.flux, 1.0, 0.02) << "star at (" << s.x << ", " << s.y << ") flux " << s.flux;
    }
    std::sort(ratios.begin(), ratios.end());
    const double median = 0.5 * (ratios[ratios.size() / 2 - 1] + ratios[ratios.size() / 2]);
    std::printf("stack/true flux of %zu bright stars: median %.4f, range %.4f..%.4f; scales %.4f %.4f %.4f (true %.4f "
                "%.4f %.4f)\n",
                ratios.size(), median, ratios.front(), ratios.back(), st.inputs[1].scale, st.inputs[2].scale,
                st.inputs[3].scale, 1 / e[1].transparency, 1 / e[2].transparency, 1 / e[3].transparency);
    EXPECT_NEAR(median, 1.0, 0.01) << "star flux conserved within 1%";
    // The shifted exposure leaves a border the others cover: nothing uncovered, fewer inputs there.
    EXPECT_EQ(st.uncoveredPixels, 0u);
    EXPECT_EQ(st.count(kSize - 2, 2), 3);
    EXPECT_EQ(st.count(kSize / 2, kSize / 2), 4);
}

TEST(Stack, ClippingRemovesACosmicRayInOneInput) {
    auto exposures = sameGridExposures(5);
    // A track on the sky and a hit on a bright star's wing, in exposure 2 only.
    const TrueStar& star = field()[5];
    const int sx = static_cast<int>(std::lround(star.x)) + 4, sy = static_cast<int>(std::lround(star.y));
    std::vector<std::pair<int, int>> hit{{30, 140}, {31, 141}, {32, 142}, {33, 142}, {sx, sy}};
    for (const auto& p : hit) exposures[2].cosmicRays.push_back({p, 3000.0});
    // prepareImage's own cosmic-ray masking off: the stack's clipping alone must remove it.
    pipeline::PrepareConfig noCrMask;
    noCrMask.cosmicRayThresholdSigma = std::numeric_limits<double>::infinity();
    const auto inputs = prepare(exposures, noCrMask);
    auto clean = exposures;
    clean[2].cosmicRays.clear();
    const auto cleanInputs = prepare(clean, noCrMask);
    const pipeline::StackResult st = pipeline::stackImages(inputs, {});
    const pipeline::StackResult ref = pipeline::stackImages(cleanInputs, {});
    pipeline::StackConfig noClip;
    noClip.clipMinInputs = 6;  // more than there are inputs: no clipping
    const pipeline::StackResult unclipped = pipeline::stackImages(inputs, noClip);
    for (const auto& [x, y] : hit) {
        const double sigma = std::sqrt(ref.pixels.variance(x, y));
        EXPECT_LT(std::fabs(st.pixels.image(x, y) - ref.pixels.image(x, y)), 3.0 * sigma)
            << "cosmic ray at (" << x << ", " << y << ") left in the stack";
        EXPECT_GT(unclipped.pixels.image(x, y) - ref.pixels.image(x, y), 3000.0 / 5 * 0.7)
            << "without clipping the cosmic ray must show (the test would not see a failure otherwise)";
    }
    EXPECT_GE(st.inputs[2].clippedPixels, hit.size());
    // With prepareImage's cosmic-ray masking on (the default), the hits never reach the stack.
    const auto masked = prepare(exposures);
    EXPECT_GE(masked[2].cosmicRays, 3);
    const pipeline::StackResult st2 = pipeline::stackImages(masked, {});
    for (const auto& [x, y] : hit)
        EXPECT_LT(std::fabs(st2.pixels.image(x, y) - ref.pixels.image(x, y)), 3.0 * std::sqrt(ref.pixels.variance(x, y)));
}

TEST(Stack, WritesAVariancePlaneThatReadImagePlanesAndPrepareImageUse) {
    const int n = 3;
    const auto inputs = prepare(sameGridExposures(n));
    const pipeline::StackResult st = pipeline::stackImages(inputs, {});
    const std::string path = (test::tempRoot("stack") / "stack.fits").string();
    pipeline::writeStackFits(path, st);
    fits::ImagePlanes back = fits::readImagePlanes(path);
    ASSERT_FALSE(back.variance.empty()) << "VARIANCE plane not picked up";
    EXPECT_EQ(back.science.hdu, 0);
    for (std::size_t i = 0; i < st.pixels.variance.size(); i += 97) {
        ASSERT_EQ(back.variance.data()[i], st.pixels.variance.data()[i]);
        ASSERT_EQ(back.science.image.data()[i], st.pixels.image.data()[i]);
    }
    const fits::Header& h = back.science.header;
    EXPECT_EQ(h.getInt("NCOMBINE"), n);
    EXPECT_EQ(h.getString("IMCMB001"), "exp0.fits");
    EXPECT_EQ(h.getString("IMCMB003"), "exp2.fits");
    EXPECT_FALSE(h.contains("SATURATE"));
    EXPECT_NEAR(*h.getDouble("GAIN") / (n * kGain), 1.0, 0.03);
    EXPECT_EQ(h.getBool("BKGSUB"), true);
    EXPECT_NO_THROW(wcs::SkyWcs::fromHeader(h));
    auto f = fits::FitsFile::open(path);
    ASSERT_TRUE(f.findExtension("COUNT").has_value());
    // prepareImage on the stack uses the file's variance, not a gain model.
    const Image<float> written = back.variance;
    const auto again = pipeline::prepareImage(std::move(back), {});
    std::size_t same = 0, checked = 0;
    for (std::size_t i = 0; i < written.size(); ++i)
        if (again.pixels.mask.data()[i] == 0) {
            ++checked;
            same += again.pixels.variance.data()[i] == written.data()[i];
        }
    EXPECT_GT(checked, written.size() / 2);
    EXPECT_EQ(same, checked);
}

TEST(Stack, ClearErrorsNameTheInput) {
    EXPECT_THROW(pipeline::stackImages({}, {}), DataError);
    // A smaller image without a WCS cannot be placed on the first one's grid.
    auto first = pipeline::prepareImage(render(sameGridExposures(1)[0], "big.fits"), {});
    fits::ImagePlanes small = render(sameGridExposures(2)[1], "small.fits", 200);
    for (const char* key : {"CTYPE1", "CTYPE2", "CRVAL1", "CRVAL2", "CRPIX1", "CRPIX2", "CD1_1", "CD1_2", "CD2_1", "CD2_2",
                            "PC1_1", "PC1_2", "PC2_1", "PC2_2", "CDELT1", "CDELT2"})
        small.science.header.erase(key);
    auto second = pipeline::prepareImage(std::move(small), {});
    ASSERT_FALSE(second.wcs.has_value());
    std::vector<pipeline::PreparedImage> inputs;
    inputs.push_back(std::move(first));
    inputs.push_back(std::move(second));
    try {
        pipeline::stackImages(inputs, {});
        FAIL() << "expected DataError";
    } catch (const DataError& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("small.fits"), std::string::npos) << what;
        EXPECT_NE(what.find("200x200"), std::string::npos) << what;
    }
    pipeline::StackConfig bad;
    bad.clipSigma = 0.0;
    EXPECT_THROW(pipeline::stackImages(inputs, bad), ConfigError);
}
