// Star finding and the PSF model against known truth: the simulator's images and truth.csv, and
// images rendered here with sim::PsfRenderer (the exact pixel-integrated Moffat the simulator uses),
// where the PSF can be made to vary across the field or to be something other than a Moffat.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <numeric>
#include <sstream>
#include <string>
#include <vector>

#include "astrid/core/error.hpp"
#include "astrid/core/image.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/psf/psf_model.hpp"
#include "astrid/psf/stars.hpp"
#include "astrid/sim/render.hpp"
#include "astrid/sim/simulate.hpp"
#include "support/temp_root.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {

const fs::path& tempRoot() { return test::tempRoot("psf"); }

// What the pipeline hands to the psf module: background-subtracted image, variance, mask.
struct Planes {
    Image<float> image, variance;
    Image<std::uint16_t> mask;
};

// Grows the pixels of `bit` by `r` pixels (square), in place.
void growMask(Image<std::uint16_t>& mask, std::uint16_t bit, int r) {
    const Image<std::uint16_t> src = mask;
    for (int y = 0; y < mask.height(); ++y)
        for (int x = 0; x < mask.width(); ++x) {
            if (!(src(x, y) & bit)) continue;
            for (int yy = std::max(0, y - r); yy <= std::min(mask.height() - 1, y + r); ++yy)
                for (int xx = std::max(0, x - r); xx <= std::min(mask.width() - 1, x + r); ++xx) mask(xx, yy) |= bit;
        }
}

// Planes from a simulated image: the true sky subtracted, the noise model's variance, saturated
// pixels grown by 2 px, NaN, and the camera's bad columns (a real pipeline has a bad-pixel mask).
Planes planesFromSim(const sim::SimSummary& s, std::size_t epochIndex) {
    const sim::SimEpochTruth& t = s.epochs[epochIndex];
    const fits::ImageHdu hdu = fits::readImage((fs::path(s.archiveDir).parent_path() / t.file).string());
    const Image<float>& raw = hdu.image;
    const int n = raw.width();
    Planes p{Image<float>(n, n, 0.0f), Image<float>(n, n, 0.0f), Image<std::uint16_t>(n, n, 0)};
    const float sat = static_cast<float>(t.saturation);
    const double rnAdu = t.readNoise / t.gain;
    for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
            const float v = raw(x, y);
            if (!std::isfinite(v)) {
                p.mask(x, y) |= bits(MaskBit::NoData);
                p.image(x, y) = v;
                p.variance(x, y) = std::numeric_limits<float>::infinity();
                continue;
            }
            const double sky = t.skyAt(x, y, n);
            const double signal = v - sky;
            p.image(x, y) = static_cast<float>(signal);
            p.variance(x, y) = static_cast<float>((sky + std::max(signal, 0.0)) / t.gain + rnAdu * rnAdu);
            if (v >= sat) p.mask(x, y) |= bits(MaskBit::Saturated);
        }
    growMask(p.mask, bits(MaskBit::Saturated), 2);
    std::istringstream cols(t.badColumns);
    std::string item;
    while (cols >> item) {
        int x = 0, y0 = 0, y1 = 0;
        char kind[8] = {};
        if (std::sscanf(item.c_str(), "%d:%d-%d:%7s", &x, &y0, &y1, kind) == 4)
            for (int y = std::max(y0, 0); y <= std::min(y1, n - 1); ++y) p.mask(x, y) |= bits(MaskBit::Bad);
    }
    return p;
}

sim::SimSummary simulate(const std::string& name, int size, std::uint64_t seed,
                         void (*tweak)(sim::SimConfig&) = nullptr) {
    sim::SimConfig c;
    c.outDir = (tempRoot() / name).string();
    c.targets = 1;
    c.epochs = 1;
    c.sizePx = size;
    c.seed = seed;
    if (tweak) tweak(c);
    return sim::simulateCampaign(c);
}

// A custom scene: point sources with per-source PSFs, sky-limited noise from the same model.
struct Source {
    double x, y, flux;
    int psf;  // index into the renderer list
};
struct Scene {
    int size = 512;
    double sky = 300.0, gain = 1.5, readNoise = 5.0;
    double saturation = 0.0;  // > 0: clip (sky + signal) here and mask as the pipeline would
    bool noise = true;
    std::uint64_t seed = 1;
};

Planes renderScene(const Scene& sc, const std::vector<Source>& sources,
                   const std::vector<std::unique_ptr<sim::PsfRenderer>>& psfs,
                   const std::vector<double>& weights = {}) {
    const int n = sc.size;
    Image<double> model(n, n, 0.0);
    for (const Source& s : sources) {
        if (weights.empty()) {
            psfs[static_cast<std::size_t>(s.psf)]->add(model, s.x, s.y, s.flux);
        } else {
            // A composite PSF: every renderer with its weight.
            for (std::size_t k = 0; k < psfs.size(); ++k) psfs[k]->add(model, s.x, s.y, s.flux * weights[k]);
        }
    }
    Planes p{Image<float>(n, n, 0.0f), Image<float>(n, n, 0.0f), Image<std::uint16_t>(n, n, 0)};
    sim::Rng rng(sc.seed);
    const double rnAdu = sc.readNoise / sc.gain;
    for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) {
            const double expect = model(x, y);
            const double var = (sc.sky + std::max(expect, 0.0)) / sc.gain + rnAdu * rnAdu;
            double v = expect + (sc.noise ? std::sqrt(var) * rng.normal() : 0.0);
            if (sc.saturation > 0.0 && v + sc.sky >= sc.saturation) {
                v = sc.saturation - sc.sky;
                p.mask(x, y) |= bits(MaskBit::Saturated);
            }
            p.image(x, y) = static_cast<float>(v);
            p.variance(x, y) = static_cast<float>((sc.sky + std::max(v, 0.0)) / sc.gain + rnAdu * rnAdu);
        }
    growMask(p.mask, bits(MaskBit::Saturated), 2);
    return p;
}

// Flux giving roughly this S/N for a sky-limited star of this FWHM.
double fluxForSnr(double snr, double fwhm, const Scene& sc) {
    const double noisePerPx = std::sqrt(sc.sky / sc.gain + std::pow(sc.readNoise / sc.gain, 2));
    const double area = 3.14159 * std::pow(2.0 * fwhm, 2);
    return snr * noisePerPx * std::sqrt(area) * 1.2;
}

// The exact pixel-integrated PSF on a stamp, normalised to unit sum inside it.
Image<double> truthStamp(const std::vector<sim::MoffatPsf>& parts, const std::vector<double>& weights, int h,
                         double dx = 0.0, double dy = 0.0) {
    Image<double> t(2 * h + 1, 2 * h + 1, 0.0);
    for (std::size_t k = 0; k < parts.size(); ++k) sim::PsfRenderer(parts[k]).add(t, h + dx, h + dy, weights[k]);
    double s = 0.0;
    for (double v : t.pixels()) s += v;
    for (double& v : t.pixels()) v /= s;
    return t;
}

// The PSF-fit flux (sky-limited weights) of a unit-flux star with the true profile, fitted with
// `model`: sum(truth model) / sum(model^2). 1 for a perfect model; a model broader than the truth
// gives more than 1.
double fitBias(const Image<double>& truth, const Image<double>& model) {
    double tm = 0.0, mm = 0.0;
    for (std::size_t q = 0; q < model.size(); ++q) {
        tm += truth.data()[q] * model.data()[q];
        mm += model.data()[q] * model.data()[q];
    }
    return tm / mm;
}

double absResidual(const Image<double>& a, const Image<double>& b) {
    double s = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) s += std::abs(a.data()[i] - b.data()[i]);
    return s;
}

void centroidOf(const Image<double>& s, double& x, double& y) {
    double s0 = 0, sx = 0, sy = 0;
    for (int j = 0; j < s.height(); ++j)
        for (int i = 0; i < s.width(); ++i) {
            s0 += s(i, j);
            sx += s(i, j) * i;
            sy += s(i, j) * j;
        }
    x = sx / s0;
    y = sy / s0;
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? NAN : (v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]));
}

// A jittered grid of stars with S/N spread log-uniformly over [snrLo, snrHi].
std::vector<Source> starGrid(const Scene& sc, double spacing, double snrLo, double snrHi, double fwhm,
                             std::uint64_t seed, int psf = 0) {
    std::vector<Source> out;
    sim::Rng rng(seed);
    for (double y = spacing / 2 + 10; y < sc.size - 10; y += spacing)
        for (double x = spacing / 2 + 10; x < sc.size - 10; x += spacing) {
            const double snr = snrLo * std::pow(snrHi / snrLo, rng.uniform());
            out.push_back({x + rng.uniform(-5, 5), y + rng.uniform(-5, 5), fluxForSnr(snr, fwhm, sc), psf});
        }
    return out;
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Star finder on a realistic simulated image (galaxies, cosmic rays, bad columns, saturated stars).

TEST(FindStars, CentroidsAndFluxesMatchSimulatorTruth) {
    const sim::SimSummary s = simulate("centroids", 1024, 13);
    const sim::SimEpochTruth& t = s.epochs[0];
    const Planes p = planesFromSim(s, 0);
    const psf::StarFinderResult res = psf::findStarsDetailed(p.image, p.variance, p.mask);
    ASSERT_GT(res.stars.size(), 500u);
    EXPECT_NEAR(res.fwhmPx / t.fwhmPx, 1.0, 0.25);  // Gaussian-equivalent, not the Moffat FWHM

    std::vector<sim::TruthRow> all;
    for (const sim::TruthRow& r : sim::readTruthCsv(s.truthPath))
        if (r.target == t.targetName && r.epoch == t.epoch) all.push_back(r);
    const sim::PsfRenderer truePsf(sim::MoffatPsf{t.fwhmPx, t.beta, t.ellipticity, t.positionAngleDeg});
    Image<double> unit(41, 41, 0.0);
    truePsf.add(unit, 20, 20, 1.0);
    const double peakFraction = unit(20, 20);

    std::vector<double> dx, dy, ratio;
    int saturatedTruth = 0, saturatedFlagged = 0;
    const int n = 1024;
    for (const sim::TruthRow& r : all) {
        if (r.kind != "star") continue;
        if (r.x < 20 || r.y < 20 || r.x > n - 21 || r.y > n - 21) continue;
        // The nearest detection.
        const psf::Star* best = nullptr;
        double bestD = 1e9;
        for (const psf::Star& st : res.stars) {
            const double d = std::hypot(st.x - r.x, st.y - r.y);
            if (d < bestD) {
                bestD = d;
                best = &st;
            }
        }
        if (r.flux * peakFraction + t.skyAt(r.x, r.y, n) > 1.05 * t.saturation) {
            ++saturatedTruth;
            if (best && bestD < 3.0 && best->has(psf::StarFlag::Saturated)) ++saturatedFlagged;
            else std::cout << "unflagged saturated " << r.x << " " << r.y << " " << r.flux << " best " << (best ? bestD : -1) << " flags " << (best ? best->flags : 0) << "\n";
            continue;
        }
        if (!best || bestD > 1.0 || best->snr < 100.0) continue;
        if ((best->flags & psf::kAstrometryRejectFlags) != 0) continue;
        // Isolated in truth: nothing brighter than 1% of it within 4 FWHM (undetected neighbours bias
        // any centroid, and that is not the finder's error).
        bool isolated = true;
        for (const sim::TruthRow& o : all)
            if (&o != &r && o.flux > 0.01 * r.flux && std::hypot(o.x - r.x, o.y - r.y) < 4.0 * t.fwhmPx) isolated = false;
        if (!isolated) continue;
        dx.push_back(best->x - r.x);
        dy.push_back(best->y - r.y);
        ratio.push_back(best->flux / r.flux);
    }
    ASSERT_GE(dx.size(), 30u);
    double ss = 0.0;
    for (std::size_t i = 0; i < dx.size(); ++i) ss += dx[i] * dx[i] + dy[i] * dy[i];
    const double rms = std::sqrt(ss / static_cast<double>(dx.size()));  // 2-D: sqrt(<dx^2 + dy^2>)
    const double medRatio = median(ratio);
    std::vector<double> dev;
    for (double v : ratio) dev.push_back(std::abs(v - medRatio));
    const double scatter = 1.4826 * median(dev);
    std::cout << "[ measured ] " << dx.size() << " isolated S/N>100 stars: centroid RMS " << rms
              << " px, flux/true median " << medRatio << " robust scatter " << scatter << ", aperture correction "
              << res.apertureCorrection << " from " << res.apertureCorrectionStars << " stars; saturated "
              << saturatedFlagged << "/" << saturatedTruth << " flagged\n";
    EXPECT_LE(rms, 0.02);
    EXPECT_NEAR(medRatio, 1.0, 0.02);
    EXPECT_LT(scatter, 0.02);
    EXPECT_GT(saturatedTruth, 0);
    EXPECT_EQ(saturatedFlagged, saturatedTruth);
}

// ---------------------------------------------------------------------------------------------------
// PSF FWHM and stamp against the simulator's truth for several FWHM / beta / ellipticity.

struct PsfCase {
    double fwhm, beta, ell;
    std::uint64_t seed;
};
class PsfTruth : public ::testing::TestWithParam<PsfCase> {};

TEST_P(PsfTruth, FwhmAndStampMatchSimulator) {
    const PsfCase pc = GetParam();
    static PsfCase current;
    current = pc;
    const sim::SimSummary s = simulate("truth" + std::to_string(pc.seed), 512, pc.seed, [](sim::SimConfig& c) {
        c.fwhmMinPx = c.fwhmMaxPx = current.fwhm;
        c.betaMin = c.betaMax = current.beta;
        c.ellipticityMax = current.ell;
        c.starsPerMegapixel = 5000;  // more PSF stars on a small image
    });
    const sim::SimEpochTruth& t = s.epochs[0];
    const Planes p = planesFromSim(s, 0);
    const std::vector<psf::Star> stars = psf::findStars(p.image, p.variance, p.mask);
    const psf::PsfModel model = psf::buildPsf(p.image, p.variance, p.mask, stars);
    const int h = model.halfSize();
    const Image<double> stamp = model.stampAt(255.5, 255.5);
    const Image<double> truth =
        truthStamp({sim::MoffatPsf{t.fwhmPx, t.beta, t.ellipticity, t.positionAngleDeg}}, {1.0}, h);
    const double resid = absResidual(stamp, truth);
    const double bias = fitBias(truth, stamp);
    const psf::MoffatShape shape = model.shapeAt(255.5, 255.5);
    std::cout << "[ measured ] fwhm " << t.fwhmPx << " beta " << t.beta << " ell " << t.ellipticity << ": model "
              << psf::kindName(model.kind()) << " from " << model.starsUsed() << " stars, fwhm " << model.fwhmPx()
              << " (" << 100.0 * (model.fwhmPx() / t.fwhmPx - 1.0) << "%), beta " << shape.beta << ", ell "
              << shape.ellipticity << ", half-max fwhm " << model.halfMaxFwhmPx() << ", sum|stamp-truth| "
              << resid << ", PSF-fit flux of a true star " << bias << "\n";
    EXPECT_NE(model.kind(), psf::PsfModel::Kind::Moffat);
    EXPECT_NEAR(model.fwhmPx() / t.fwhmPx, 1.0, 0.05);
    EXPECT_LT(resid, 0.025);
    EXPECT_NEAR(shape.ellipticity, t.ellipticity, 0.04);
    EXPECT_NEAR(bias, 1.0, 0.01);
}

// A crowded field of bright stars: the neighbours' wings beyond their masks broaden the stack unless
// their modelled light is subtracted (PsfConfig::subtractNeighbours). Noiseless, so that what is left
// is the method's own error.
TEST(BuildPsf, NeighboursAreSubtractedInACrowdedField) {
    const sim::SimSummary s = simulate("crowded", 512, 25, [](sim::SimConfig& c) {
        c.fwhmMinPx = c.fwhmMaxPx = 3.4;
        c.betaMin = c.betaMax = 3.2;
        c.ellipticityMax = 0.12;
        c.starsPerMegapixel = 5000;
        c.starMagFaint = 17.0;  // every star detected: no confusion below the threshold
        c.noise = false;
        c.defects = false;
        c.galaxies = false;
    });
    const sim::SimEpochTruth& t = s.epochs[0];
    const Planes p = planesFromSim(s, 0);
    const std::vector<psf::Star> stars = psf::findStars(p.image, p.variance, p.mask);
    psf::PsfConfig plain;
    plain.subtractNeighbours = false;
    const psf::PsfModel with = psf::buildPsf(p.image, p.variance, p.mask, stars);
    const psf::PsfModel without = psf::buildPsf(p.image, p.variance, p.mask, stars, plain);
    const int h = with.halfSize();
    const Image<double> truth = truthStamp({sim::MoffatPsf{t.fwhmPx, t.beta, t.ellipticity, t.positionAngleDeg}}, {1.0}, h);
    const double bWith = fitBias(truth, with.stampAt(255.5, 255.5));
    const double bWithout = fitBias(truth, without.stampAt(255.5, 255.5));
    std::cout << "[ measured ] " << stars.size() << " stars on 512^2, PSF from " << with.starsUsed()
              << ": PSF-fit flux of a true star " << bWith << " with neighbours subtracted, " << bWithout
              << " without; fwhm " << with.fwhmPx() << " / " << without.fwhmPx() << " (true " << t.fwhmPx << ")\n";
    EXPECT_NEAR(bWith, 1.0, 0.003);
    EXPECT_LT(std::abs(bWith - 1.0), std::abs(bWithout - 1.0));
}

INSTANTIATE_TEST_SUITE_P(Seeing, PsfTruth,
                         ::testing::Values(PsfCase{2.6, 2.6, 0.02, 21}, PsfCase{3.4, 3.2, 0.12, 22},
                                           PsfCase{4.4, 4.0, 0.08, 23}, PsfCase{3.0, 2.5, 0.25, 24}));

// ---------------------------------------------------------------------------------------------------
// A PSF that is not a Moffat (core + elliptical halo with twisted isophotes): the residual tables
// must capture what the analytic part cannot.

TEST(BuildPsf, NonMoffatPsfIsCapturedByTheTables) {
    Scene sc;
    sc.size = 640;
    sc.seed = 5;
    const std::vector<sim::MoffatPsf> parts = {{2.6, 5.0, 0.05, -20.0}, {5.5, 2.5, 0.3, 40.0}};
    const std::vector<double> weights = {0.7, 0.3};
    std::vector<std::unique_ptr<sim::PsfRenderer>> psfs;
    for (const auto& m : parts) psfs.push_back(std::make_unique<sim::PsfRenderer>(m));
    const std::vector<Source> src = starGrid(sc, 36, 60, 1500, 3.2, 99);
    const Planes p = renderScene(sc, src, psfs, weights);
    const std::vector<psf::Star> stars = psf::findStars(p.image, p.variance, p.mask);
    psf::PsfConfig cfg;
    cfg.maxSpatialOrder = 0;
    const psf::PsfModel model = psf::buildPsf(p.image, p.variance, p.mask, stars, cfg);
    ASSERT_EQ(model.kind(), psf::PsfModel::Kind::Empirical);
    const int h = model.halfSize();
    const Image<double> truth = truthStamp(parts, weights, h);
    const double resid = absResidual(model.stampAt(320, 320), truth);
    const psf::PsfModel moffatOnly = psf::PsfModel::analytic(model.moffat(), h);
    const double residMoffat = absResidual(moffatOnly.stampAt(320, 320), truth);
    std::cout << "[ measured ] core+halo PSF from " << model.starsUsed() << " stars: sum|stamp-truth| " << resid
              << " (its Moffat part alone " << residMoffat << ")\n";
    EXPECT_LT(resid, 0.03);
    EXPECT_LT(resid, 0.6 * residMoffat);
    // Sub-pixel shifted stamps: the exact Moffat part plus Lanczos-shifted tables, still the truth.
    for (auto [dx, dy] : {std::pair{0.0, 0.0}, std::pair{0.37, -0.21}, std::pair{-0.5, 0.5}}) {
        const Image<double> s = model.stampAt(320, 320, dx, dy);
        double cx = 0, cy = 0;
        centroidOf(s, cx, cy);
        EXPECT_NEAR(cx, h + dx, 0.02);
        EXPECT_NEAR(cy, h + dy, 0.02);
        EXPECT_LT(absResidual(s, truthStamp(parts, weights, h, dx, dy)), 0.03) << dx << "," << dy;
    }
}

// ---------------------------------------------------------------------------------------------------
// Spatial variation: FWHM 2.5 px at the left edge to 4 px at the right.

TEST(BuildPsf, SpatiallyVaryingPsfFollowsTheField) {
    Scene sc;
    sc.size = 1024;
    sc.seed = 8;
    auto fwhmAtX = [&](double x) { return 2.5 + 1.5 * x / (sc.size - 1); };
    std::vector<std::unique_ptr<sim::PsfRenderer>> psfs;
    for (int k = 0; k <= 30; ++k) psfs.push_back(std::make_unique<sim::PsfRenderer>(sim::MoffatPsf{2.5 + 0.05 * k, 3.0, 0.05, 30.0}));
    std::vector<Source> src = starGrid(sc, 40, 60, 1500, 3.2, 17);
    for (Source& s : src) s.psf = static_cast<int>(std::lround((fwhmAtX(s.x) - 2.5) / 0.05));
    const Planes p = renderScene(sc, src, psfs);
    const std::vector<psf::Star> stars = psf::findStars(p.image, p.variance, p.mask);
    const psf::PsfModel varying = psf::buildPsf(p.image, p.variance, p.mask, stars);
    psf::PsfConfig constCfg;
    constCfg.maxSpatialOrder = 0;
    const psf::PsfModel constant = psf::buildPsf(p.image, p.variance, p.mask, stars, constCfg);
    ASSERT_EQ(varying.kind(), psf::PsfModel::Kind::EmpiricalVarying);
    EXPECT_EQ(varying.spatialOrder(), 2);
    ASSERT_EQ(constant.kind(), psf::PsfModel::Kind::Empirical);
    const double yc = 511.5;
    for (double x : {0.1 * 1023, 0.5 * 1023, 0.9 * 1023}) {
        const double truth = fwhmAtX(x);
        const double v = varying.fwhmAt(x, yc), c = constant.fwhmAt(x, yc);
        std::cout << "[ measured ] x " << x << ": true fwhm " << truth << ", varying " << v << " ("
                  << 100.0 * (v / truth - 1.0) << "%), constant " << c << " (" << 100.0 * (c / truth - 1.0) << "%)\n";
        EXPECT_NEAR(v / truth, 1.0, 0.05) << "x = " << x;
        if (x != 0.5 * 1023) {
            EXPECT_LT(std::abs(v - truth), 0.5 * std::abs(c - truth)) << "x = " << x;
        }
    }
    // The varying stamp at the left edge matches the truth there better than the constant one does.
    const int h = varying.halfSize();
    const Image<double> truthLeft = truthStamp({sim::MoffatPsf{fwhmAtX(102.3), 3.0, 0.05, 30.0}}, {1.0}, h);
    EXPECT_LT(absResidual(varying.stampAt(102.3, yc), truthLeft), absResidual(constant.stampAt(102.3, yc), truthLeft));
}

// ---------------------------------------------------------------------------------------------------
// Fallbacks.

TEST(BuildPsf, FewStarsFallBackToMoffat) {
    Scene sc;
    sc.size = 256;
    sc.seed = 3;
    std::vector<std::unique_ptr<sim::PsfRenderer>> psfs;
    psfs.push_back(std::make_unique<sim::PsfRenderer>(sim::MoffatPsf{3.2, 3.0, 0.1, 60.0}));
    const std::vector<Source> src = {{60.3, 70.8, fluxForSnr(150, 3.2, sc), 0},
                                     {180.6, 60.1, fluxForSnr(300, 3.2, sc), 0},
                                     {120.2, 190.4, fluxForSnr(80, 3.2, sc), 0},
                                     {200.9, 200.5, fluxForSnr(200, 3.2, sc), 0}};
    const Planes p = renderScene(sc, src, psfs);
    const std::vector<psf::Star> stars = psf::findStars(p.image, p.variance, p.mask);
    const psf::PsfModel model = psf::buildPsf(p.image, p.variance, p.mask, stars);
    std::cout << "[ measured ] 4 stars: " << psf::kindName(model.kind()) << " fwhm " << model.fwhmPx() << " (true 3.2)\n";
    EXPECT_EQ(model.kind(), psf::PsfModel::Kind::Moffat);
    EXPECT_EQ(model.starsUsed(), 4);
    EXPECT_NEAR(model.fwhmPx() / 3.2, 1.0, 0.10);
    EXPECT_NEAR(model.moffat().ellipticity, 0.1, 0.08);
}

TEST(BuildPsf, NoUsableStarsThrowsWithCounts) {
    Scene sc;
    sc.size = 128;
    std::vector<std::unique_ptr<sim::PsfRenderer>> psfs;
    psfs.push_back(std::make_unique<sim::PsfRenderer>(sim::MoffatPsf{3.0, 3.0, 0.0, 0.0}));
    const Planes empty = renderScene(sc, {}, psfs);
    const std::vector<psf::Star> none = psf::findStars(empty.image, empty.variance, empty.mask);
    try {
        (void)psf::buildPsf(empty.image, empty.variance, empty.mask, none);
        FAIL() << "expected DataError";
    } catch (const DataError& e) {
        EXPECT_NE(std::string(e.what()).find("too few stars for a PSF: " + std::to_string(none.size()) + " found, 0 usable"),
                  std::string::npos)
            << e.what();
    }
    // Only saturated stars: found, but none usable.
    sc.saturation = 20000.0;
    const Planes sat = renderScene(sc, {{40.2, 40.7, 5e6, 0}, {90.5, 80.1, 3e6, 0}}, psfs);
    const std::vector<psf::Star> found = psf::findStars(sat.image, sat.variance, sat.mask);
    ASSERT_FALSE(found.empty());
    try {
        (void)psf::buildPsf(sat.image, sat.variance, sat.mask, found);
        FAIL() << "expected DataError";
    } catch (const DataError& e) {
        EXPECT_NE(std::string(e.what()).find(std::to_string(found.size()) + " found, 0 usable"), std::string::npos)
            << e.what();
    }
}

// ---------------------------------------------------------------------------------------------------
// Flags: saturated stars are flagged and never used; blended pairs are flagged.

TEST(BuildPsf, SaturatedStarsAreFlaggedAndNotUsed) {
    Scene sc;
    sc.size = 512;
    sc.seed = 12;
    sc.saturation = 30000.0;
    std::vector<std::unique_ptr<sim::PsfRenderer>> psfs;
    psfs.push_back(std::make_unique<sim::PsfRenderer>(sim::MoffatPsf{3.0, 3.0, 0.05, 0.0}));
    std::vector<Source> src = starGrid(sc, 40, 60, 800, 3.0, 4);
    // Every fifth star saturates heavily.
    std::vector<std::pair<double, double>> saturated;
    for (std::size_t i = 0; i < src.size(); i += 5) {
        src[i].flux = 3e6;
        saturated.emplace_back(src[i].x, src[i].y);
    }
    Planes p = renderScene(sc, src, psfs);
    // As the background module delivers it: masked pixels have +inf variance.
    Planes infVar = p;
    for (int y = 0; y < sc.size; ++y)
        for (int x = 0; x < sc.size; ++x)
            if (infVar.mask(x, y)) infVar.variance(x, y) = INFINITY;
    for (const Planes* planes : {&p, &infVar}) {
        const std::vector<psf::Star> found = psf::findStars(planes->image, planes->variance, planes->mask);
        for (const auto& [x, y] : saturated) {
            int near = 0;
            for (const psf::Star& s : found)
                if (std::hypot(s.x - x, s.y - y) < 4.0) {
                    ++near;
                    EXPECT_TRUE(s.has(psf::StarFlag::Saturated)) << "star at " << x << "," << y;
                    EXPECT_LT(std::hypot(s.x - x, s.y - y), 0.5) << "star at " << x << "," << y;
                }
            EXPECT_EQ(near, 1) << "a saturated star must be one detection, at " << x << "," << y;
        }
    }
    const std::vector<psf::Star> stars = psf::findStars(p.image, p.variance, p.mask);
    const psf::PsfModel model = psf::buildPsf(p.image, p.variance, p.mask, stars);
    ASSERT_GT(model.starsUsed(), 20);
    for (std::size_t i : model.starIndices()) {
        EXPECT_FALSE(stars[i].has(psf::StarFlag::Saturated));
        for (const auto& [x, y] : saturated) EXPECT_GT(std::hypot(stars[i].x - x, stars[i].y - y), 10.0);
    }
    EXPECT_NEAR(model.fwhmPx() / 3.0, 1.0, 0.05);
}

TEST(FindStars, BlendedPairsAreFlagged) {
    Scene sc;
    sc.size = 400;
    sc.seed = 6;
    const double fwhm = 3.0;
    std::vector<std::unique_ptr<sim::PsfRenderer>> psfs;
    psfs.push_back(std::make_unique<sim::PsfRenderer>(sim::MoffatPsf{fwhm, 3.0, 0.0, 0.0}));
    std::vector<Source> src;
    std::vector<std::pair<double, double>> pairs, singles;
    const double f = fluxForSnr(300, fwhm, sc);
    for (int k = 0; k < 4; ++k) {
        const double x = 60.3 + 90 * k, y = 80.6;
        // Separations 2 and 2.5 FWHM, flux ratios 1 and 0.4.
        const double sep = (k % 2 ? 2.5 : 2.0) * fwhm;
        src.push_back({x, y, f, 0});
        src.push_back({x + sep, y + 0.3, f * (k < 2 ? 1.0 : 0.4), 0});
        pairs.emplace_back(x, y);
        pairs.emplace_back(x + sep, y + 0.3);
        singles.emplace_back(x + 0.2, 260.4);
        src.push_back({x + 0.2, 260.4, f, 0});
    }
    const Planes p = renderScene(sc, src, psfs);
    const std::vector<psf::Star> stars = psf::findStars(p.image, p.variance, p.mask);
    auto nearest = [&](double x, double y) -> const psf::Star* {
        const psf::Star* best = nullptr;
        for (const psf::Star& s : stars)
            if (std::hypot(s.x - x, s.y - y) < 1.0) best = &s;
        return best;
    };
    for (const auto& [x, y] : pairs) {
        const psf::Star* s = nearest(x, y);
        ASSERT_NE(s, nullptr) << "pair member at " << x << "," << y << " not detected separately";
        EXPECT_TRUE(s->has(psf::StarFlag::Blended)) << x << "," << y;
    }
    for (const auto& [x, y] : singles) {
        const psf::Star* s = nearest(x, y);
        ASSERT_NE(s, nullptr);
        EXPECT_FALSE(s->has(psf::StarFlag::Blended)) << x << "," << y;
        EXPECT_EQ(s->flags, 0u) << x << "," << y;
    }
}

// A background left in the image (here +4 ADU everywhere): Check flags the faint stars it matters for,
// Subtract removes it from the fluxes.
TEST(FindStars, LocalSkyCheckAndSubtract) {
    Scene sc;
    sc.size = 400;
    sc.seed = 21;
    std::vector<std::unique_ptr<sim::PsfRenderer>> psfs;
    psfs.push_back(std::make_unique<sim::PsfRenderer>(sim::MoffatPsf{3.0, 3.5, 0.0, 0.0}));
    const std::vector<Source> src = starGrid(sc, 50, 15, 400, 3.0, 2);
    Planes p = renderScene(sc, src, psfs);
    for (float& v : p.image.pixels()) v += 4.0f;
    auto ratios = [&](const std::vector<psf::Star>& stars, double snrMax, int& flagged) {
        std::vector<double> r;
        flagged = 0;
        for (const Source& s : src)
            for (const psf::Star& st : stars)
                if (std::hypot(st.x - s.x, st.y - s.y) < 1.0 && fluxForSnr(snrMax, 3.0, sc) > s.flux) {
                    r.push_back(st.flux / s.flux);
                    flagged += st.has(psf::StarFlag::SkyResidual) ? 1 : 0;
                }
        return median(r);
    };
    int flaggedCheck = 0, flaggedSub = 0;
    const double check = ratios(psf::findStars(p.image, p.variance, p.mask), 40, flaggedCheck);
    psf::StarFinderConfig sub;
    sub.localSky = psf::LocalSky::Subtract;
    const double subtracted = ratios(psf::findStars(p.image, p.variance, p.mask, sub), 40, flaggedSub);
    std::cout << "[ measured ] S/N < 40 stars on a +4 ADU pedestal: flux/true " << check << " (check, " << flaggedCheck
              << " flagged), " << subtracted << " (subtract)\n";
    EXPECT_GT(check, 1.05);
    EXPECT_GT(flaggedCheck, 5);
    EXPECT_NEAR(subtracted, 1.0, 0.03);
}

// ---------------------------------------------------------------------------------------------------
// Stamp conventions and input checks.

TEST(PsfModel, StampsAreUnitSumAndCentred) {
    const psf::PsfModel m = psf::PsfModel::analytic({3.0, 3.0, 0.2, 25.0}, 12, 100, 100);
    EXPECT_EQ(m.kind(), psf::PsfModel::Kind::Moffat);
    EXPECT_DOUBLE_EQ(m.fwhmPx(), 3.0);
    for (auto [dx, dy] : {std::pair{0.0, 0.0}, std::pair{0.3, -0.45}, std::pair{-0.5, 0.5}}) {
        const Image<double> s = m.stampAt(50, 50, dx, dy);
        ASSERT_EQ(s.width(), 25);
        double sum = 0.0, minV = 1.0;
        for (double v : s.pixels()) {
            sum += v;
            minV = std::min(minV, v);
        }
        EXPECT_NEAR(sum, 1.0, 1e-12);
        EXPECT_GE(minV, 0.0);
        double cx = 0, cy = 0;
        centroidOf(s, cx, cy);
        EXPECT_NEAR(cx, 12 + dx, 0.01);
        EXPECT_NEAR(cy, 12 + dy, 0.01);
        // The analytic stamp is the simulator's pixel-integrated Moffat.
        const Image<double> truth = truthStamp({sim::MoffatPsf{3.0, 3.0, 0.2, 25.0}}, {1.0}, 12, dx, dy);
        EXPECT_LT(absResidual(s, truth), 0.01);
    }
    EXPECT_THROW((void)psf::PsfModel::analytic({0.0, 3.0, 0.0, 0.0}, 10), DataError);
    EXPECT_THROW((void)m.stampAt(0, 0, NAN, 0), DataError);
    // Half-max FWHM includes the pixel: larger than the Moffat FWHM, by a few percent at 3 px.
    const double hm = m.halfMaxFwhmPx();
    EXPECT_GT(hm, 3.0);
    EXPECT_LT(hm, 3.3);
}

TEST(FindStars, RejectsMismatchedPlanesAndBadConfig) {
    const Image<float> img(64, 64, 0.0f), var(64, 32, 1.0f);
    const Image<std::uint16_t> mask;
    EXPECT_THROW((void)psf::findStars(img, var, mask), DataError);
    const Image<float> var2(64, 64, 1.0f);
    EXPECT_TRUE(psf::findStars(img, var2, mask).empty());
    psf::StarFinderConfig bad;
    bad.thresholdSigma = -1;
    EXPECT_THROW((void)psf::findStars(img, var2, mask, bad), ConfigError);
    psf::PsfConfig pbad;
    pbad.maxSpatialOrder = 3;
    EXPECT_THROW((void)psf::buildPsf(img, var2, mask, {}, pbad), ConfigError);
}

// Degenerate inputs must give empty results or DataError, never a crash or a hang (run under ASan/UBSan).
TEST(FindStars, DegenerateInputsAreHandled) {
    const Image<std::uint16_t> noMask;
    {
        const Image<float> nanImg(64, 64, NAN), var(64, 64, 1.0f);
        EXPECT_TRUE(psf::findStars(nanImg, var, noMask).empty());
    }
    {
        Image<float> img(64, 64, 0.0f);
        img(30, 30) = 1000.0f;
        const Image<float> infVar(64, 64, INFINITY), nanVar(64, 64, NAN), negVar(64, 64, -1.0f);
        EXPECT_TRUE(psf::findStars(img, infVar, noMask).empty());
        EXPECT_TRUE(psf::findStars(img, nanVar, noMask).empty());
        EXPECT_TRUE(psf::findStars(img, negVar, noMask).empty());
        Image<std::uint16_t> allBad(64, 64, bits(MaskBit::Bad));
        EXPECT_TRUE(psf::findStars(img, Image<float>(64, 64, 1.0f), allBad).empty());
    }
    {
        // Tiny images, a single hot pixel, a source in a corner, absurd values.
        for (int n : {1, 7, 8, 9, 12}) {
            Image<float> img(n, n, 0.0f), var(n, n, 1.0f);
            img(n - 1, n - 1) = 500.0f;
            img(0, 0) = 3e38f;
            const std::vector<psf::Star> s = psf::findStars(img, var, noMask);
            for (const psf::Star& st : s) EXPECT_TRUE(std::isfinite(st.x) && std::isfinite(st.y));
        }
    }
    {
        // Saturated pixels that are NaN (a pipeline may blank them) and a star touching the edge.
        Scene sc;
        sc.size = 96;
        std::vector<std::unique_ptr<sim::PsfRenderer>> psfs;
        psfs.push_back(std::make_unique<sim::PsfRenderer>(sim::MoffatPsf{3.0, 3.0, 0.0, 0.0}));
        sc.saturation = 20000.0;
        Planes p = renderScene(sc, {{48.3, 47.6, 5e6, 0}, {1.2, 60.4, 2e5, 0}, {70.2, 20.9, 2e5, 0}}, psfs);
        for (int y = 0; y < sc.size; ++y)
            for (int x = 0; x < sc.size; ++x)
                if (p.image(x, y) >= 20000.0f - 300.0f) p.image(x, y) = NAN;
        const std::vector<psf::Star> stars = psf::findStars(p.image, p.variance, p.mask);
        bool edge = false;
        for (const psf::Star& s : stars) {
            EXPECT_TRUE(std::isfinite(s.x) && std::isfinite(s.y));
            if (s.x < 5) edge = edge || s.has(psf::StarFlag::Edge);
        }
        EXPECT_TRUE(edge);
        // A star list with junk in it: junk is ignored, not trusted.
        std::vector<psf::Star> junk = stars;
        junk.push_back({NAN, 10.0, 1e5, 10.0, 100.0, 3.0, 1e4, 0.0, 0, 0.0, 100.0});
        junk.push_back({50.0, INFINITY, 1e5, 10.0, 100.0, 3.0, 1e4, 0.0, 0, 0.0, 100.0});
        junk.push_back({20.0, 20.0, 1e5, 10.0, 100.0, NAN, 1e4, 0.0, 0, 0.0, 100.0});
        try {
            const psf::PsfModel m = psf::buildPsf(p.image, p.variance, p.mask, junk);
            EXPECT_TRUE(std::isfinite(m.fwhmPx()));
            for (std::size_t i : m.starIndices()) EXPECT_LT(i, stars.size());
        } catch (const DataError&) {
            // acceptable: only one clean star
        }
    }
}

