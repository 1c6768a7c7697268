// Issue #3, "Bad input": pairs that cannot or should not give a clean difference, built from
// simulated 512 px pairs damaged in memory or in their FITS files. Each must end in a clear per-epoch
// failure (stage + cause + the file) or in a difference that is right where it has data, with the
// quality flags a user filters on; never a crash, never a silent garbage difference. Checked through
// prepareImage + differenceImages (what `astrid diff` runs) and, where the campaign decides, through
// processTarget (the DifferenceRun row or the target's failure is what a user sees).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <unistd.h>

#include "astrid/archive/archive.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/pipeline/difference.hpp"
#include "astrid/pipeline/pipeline.hpp"
#include "astrid/sim/render.hpp"
#include "astrid/sim/simulate.hpp"
#include "astrid/wcs/sky_wcs.hpp"

using namespace astrid;
namespace fs = std::filesystem;
using pipeline::DiffQuality;
using pipeline::Stage;
using pipeline::StageError;
using pipeline::TargetStatus;

namespace {
constexpr int kSize = 512;
const float kNan = std::numeric_limits<float>::quiet_NaN();

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
bool flagged(const pipeline::DifferenceRun& run, DiffQuality q) { return (run.quality & static_cast<std::uint32_t>(q)) != 0; }

/// A simulated campaign of 512 px images in its own temporary directory, removed at the end.
struct Campaign {
    sim::SimConfig config;
    sim::SimSummary sim;
    Campaign(const std::string& name, std::uint64_t seed, int targets, int epochs,
             const std::function<void(sim::SimConfig&)>& tweak = {}) {
        config.outDir = (fs::temp_directory_path() / ("astrid_bad_" + std::to_string(::getpid()) + "_" + name)).string();
        fs::remove_all(config.outDir);
        config.targets = targets;
        config.epochs = epochs;
        config.sizePx = kSize;
        config.seed = seed;
        if (tweak) tweak(config);
        sim = sim::simulateCampaign(config);
    }
    Campaign(const Campaign&) = delete;
    Campaign& operator=(const Campaign&) = delete;
    ~Campaign() {
        std::error_code ec;
        fs::remove_all(config.outDir, ec);
    }
    const sim::SimEpochTruth& truth(int target, int epoch) const {
        return sim.epochs[static_cast<std::size_t>(target * (config.epochs + 1) + epoch)];
    }
    std::string path(int target, int epoch) const { return config.outDir + "/" + truth(target, epoch).file; }
    fits::ImagePlanes planes(int target, int epoch) const { return fits::readImagePlanes(path(target, epoch)); }
    /// Writes `p` back over the file it was read from.
    static void rewrite(const fits::ImagePlanes& p) {
        auto f = fits::FitsFile::create(p.science.path);
        f.writeImage(p.science.image, p.science.header);
        f.close();
    }
    /// The whole per-target pipeline on the archive as it is now (differencing on).
    pipeline::TargetResult process(int target) const {
        pipeline::PipelineConfig c;
        c.select.daysBefore = sim.jobDaysBefore;
        c.select.daysAfter = sim.jobDaysAfter;
        archive::LocalArchive a(sim.archiveDir);
        return pipeline::processTarget(sim.targets[static_cast<std::size_t>(target)], a, c);
    }
};

double skySigma(const sim::SimEpochTruth& t) {
    return std::sqrt(t.skyLevel / t.gain + (t.readNoise / t.gain) * (t.readNoise / t.gain));
}

/// Replaces every pixel by the image's true sky plus its noise: no source at all.
void blankSky(Image<float>& image, const sim::SimEpochTruth& t, std::uint64_t seed) {
    sim::Rng rng(seed);
    const double sigma = skySigma(t);
    for (float& v : image.pixels()) v = static_cast<float>(t.skyLevel + sigma * rng.normal());
}

/// Local maxima (8 neighbours) of |S_corr| above `threshold` on pixels without mask bits, where
/// `where(x, y)` holds.
int countPeaks(const diff::ZogyResult& z, const std::function<bool(int, int)>& where, double threshold = 5.0) {
    int n = 0;
    for (int y = 1; y < z.scorr.height() - 1; ++y)
        for (int x = 1; x < z.scorr.width() - 1; ++x) {
            if (z.mask(x, y) != 0 || !where(x, y)) continue;
            const double v = std::fabs(z.scorr(x, y));
            if (!(v > threshold)) continue;
            bool peak = true;
            for (int j = -1; j <= 1 && peak; ++j)
                for (int i = -1; i <= 1; ++i)
                    if ((i || j) && std::fabs(z.scorr(x + i, y + j)) > v) peak = false;
            n += peak;
        }
    return n;
}
int countUnmasked(const diff::ZogyResult& z, const std::function<bool(int, int)>& where) {
    int n = 0;
    for (int y = 0; y < z.mask.height(); ++y)
        for (int x = 0; x < z.mask.width(); ++x) n += z.mask(x, y) == 0 && where(x, y);
    return n;
}

struct Difference {
    pipeline::PreparedImage science, reference;
    pipeline::DifferenceImages images;
    pipeline::DifferenceRun run;
};

Difference difference(fits::ImagePlanes sci, fits::ImagePlanes ref, const pipeline::DifferenceConfig& cfg = {}) {
    const pipeline::PrepareConfig prep;
    Difference d;
    d.reference = pipeline::prepareImage(std::move(ref), prep);
    d.science = pipeline::prepareImage(std::move(sci), prep);
    d.images = pipeline::differenceImages(d.science, d.reference, cfg, prep, d.run);
    return d;
}

/// The StageError `f` throws (a test failure when it throws something else or nothing).
template <class F>
std::optional<StageError> stageErrorOf(F&& f) {
    try {
        f();
    } catch (const StageError& e) {
        std::printf("  -> %s: %s\n", pipeline::stageName(e.stage()).c_str(), e.what());
        return e;
    } catch (const std::exception& e) {
        ADD_FAILURE() << "expected a StageError, got: " << e.what();
        return std::nullopt;
    }
    ADD_FAILURE() << "expected a StageError, nothing was thrown";
    return std::nullopt;
}
}  // namespace

// 1. No overlap. `astrid diff` on a reference 1 degree away (another field): registration fails
// saying so and naming both files (it used to fail later, on "flux ratio failed: 0 usable pairs").
// A reference whose WCS alone is 1 degree off (the pixels overlap) is rescued by asterism matching.
TEST(BadPairs, NoOverlapFailsRegistrationNamingBothFiles) {
    Campaign c("overlap", 31, 2, 1);
    const auto& sci = c.truth(0, 1);
    {
        fits::ImagePlanes ref = c.planes(1, 0);  // target 1's field ...
        ref.science.header.set("CRVAL1", sci.crvalRa);  // ... placed 1 degree north of target 0's image
        ref.science.header.set("CRVAL2", sci.crvalDec + 1.0);
        const auto e = stageErrorOf([&] { difference(c.planes(0, 1), std::move(ref)); });
        ASSERT_TRUE(e);
        EXPECT_EQ(e->stage(), Stage::Registration);
        const std::string why = e->what();
        EXPECT_TRUE(has(why, "no overlap")) << why;
        EXPECT_TRUE(has(why, c.path(0, 1))) << why;
        EXPECT_TRUE(has(why, c.path(1, 0))) << why;
        EXPECT_TRUE(has(why, "1.0")) << "the separation of the image centres: " << why;
    }
    {
        fits::ImagePlanes ref = c.planes(0, 0);
        ref.science.header.set("CRVAL2", *ref.science.header.getDouble("CRVAL2") + 1.0);
        const Difference d = difference(c.planes(0, 1), std::move(ref));
        std::printf("WCS 1 deg off, pixels overlapping: quality %u, %d matched, rms %.3f px, S_corr std %.3f\n",
                    d.run.quality, d.run.matchedStars, d.run.astrometricRmsPx, d.run.scorrStd);
        EXPECT_TRUE(flagged(d.run, DiffQuality::PatternMatched));
        EXPECT_FALSE(flagged(d.run, DiffQuality::LargeAstrometricRms));
        EXPECT_NEAR(d.run.scorrStd, 1.0, 0.1);
    }
}

// In a campaign the reference 1 degree away never reaches registration: validation finds the target
// is not on it (before the min_overlap check, which cannot see a 0% overlap with the target on both).
TEST(BadPairs, NoOverlapInACampaignFailsValidation) {
    Campaign c("overlap_run", 31, 1, 1);
    fits::ImagePlanes ref = c.planes(0, 0);
    ref.science.header.set("CRVAL2", *ref.science.header.getDouble("CRVAL2") + 1.0);
    Campaign::rewrite(ref);
    const auto r = c.process(0);
    std::printf("  -> %s: %s\n", pipeline::stageName(r.failStage).c_str(), r.failReason.c_str());
    EXPECT_EQ(r.status, TargetStatus::Failed);
    EXPECT_EQ(r.failStage, Stage::Validate);
    EXPECT_TRUE(has(r.failReason, c.path(0, 0))) << r.failReason;
    EXPECT_TRUE(has(r.failReason, "not on the image")) << r.failReason;
    EXPECT_TRUE(has(r.failReason, "1.00")) << "how far off: " << r.failReason;
    EXPECT_TRUE(r.differences.empty());
}

// 2. Too few stars for a PSF: blank sky, or two stars too faint for even the Moffat fallback (S/N ~ 10,
// detected but under 15). The Psf stage names the file, what was found and what is needed. In a
// campaign it is that epoch's row; the other epoch is differenced and the target succeeds.
TEST(BadPairs, TooFewStarsForAPsf) {
    Campaign c("stars", 32, 1, 2);
    const auto& t = c.truth(0, 1);
    {
        fits::ImagePlanes sci = c.planes(0, 1);
        blankSky(sci.science.image, t, 5);
        const auto e = stageErrorOf([&] { pipeline::prepareImage(std::move(sci), {}); });
        ASSERT_TRUE(e);
        EXPECT_EQ(e->stage(), Stage::Psf);
        EXPECT_TRUE(has(e->what(), c.path(0, 1))) << e->what();
        EXPECT_TRUE(has(e->what(), "too few stars for a PSF: 0 found")) << e->what();
        EXPECT_TRUE(has(e->what(), "need 1")) << e->what();
    }
    {
        fits::ImagePlanes sci = c.planes(0, 1);
        blankSky(sci.science.image, t, 6);
        const sim::MoffatPsf psf{t.fwhmPx, t.beta, t.ellipticity, t.positionAngleDeg};
        const double flux = 10.0 * skySigma(t) * std::sqrt(M_PI) * 2.0 * t.fwhmPx;  // S/N ~ 10 in 2 FWHM
        sim::renderPointSource(sci.science.image, 150.3, 170.6, flux, psf);
        sim::renderPointSource(sci.science.image, 340.8, 300.2, flux, psf);
        const auto e = stageErrorOf([&] { pipeline::prepareImage(std::move(sci), {}); });
        ASSERT_TRUE(e);
        EXPECT_EQ(e->stage(), Stage::Psf);
        EXPECT_TRUE(has(e->what(), c.path(0, 1))) << e->what();
        EXPECT_TRUE(has(e->what(), "2 found, 0 usable")) << e->what();
        EXPECT_TRUE(has(e->what(), "S/N >= 15")) << e->what();
    }
    {
        fits::ImagePlanes sci = c.planes(0, 2);
        blankSky(sci.science.image, c.truth(0, 2), 7);
        Campaign::rewrite(sci);
        const auto r = c.process(0);
        ASSERT_EQ(r.status, TargetStatus::Ok) << r.failReason;
        ASSERT_EQ(r.differences.size(), 2u);
        EXPECT_EQ(r.differences[0].status, TargetStatus::Ok) << r.differences[0].failReason;
        const auto& bad = r.differences[1];
        std::printf("  -> epoch 2 row: %s: %s\n", pipeline::stageName(bad.failStage).c_str(), bad.failReason.c_str());
        EXPECT_EQ(bad.status, TargetStatus::Failed);
        EXPECT_EQ(bad.failStage, Stage::Psf);
        EXPECT_TRUE(has(bad.failReason, c.path(0, 2))) << bad.failReason;
        EXPECT_TRUE(has(bad.failReason, "too few stars")) << bad.failReason;
    }
}

// 3a. A quarter of the science image NaN: the rest is differenced as if nothing happened. The block
// is NaN in D and S_corr with NoData set, S_corr is N(0, 1) on the unflagged rest, and no
// |S_corr| > 5 peak rings along the block's border. The same through processTarget (25% NaN passes
// validation's max_bad_fraction 0.5).
TEST(BadPairs, NanQuarterIsMaskedAndTheRestSubtracts) {
    Campaign c("nan", 33, 1, 1);
    const auto& t = c.truth(0, 1);
    auto inBlock = [](int x, int y) { return x >= kSize / 2 && y >= kSize / 2; };
    auto nanQuarter = [&](fits::ImagePlanes& p) {
        for (int y = 0; y < kSize; ++y)
            for (int x = 0; x < kSize; ++x)
                if (inBlock(x, y)) p.science.image(x, y) = kNan;
    };
    {
        fits::ImagePlanes sci = c.planes(0, 1);
        nanQuarter(sci);
        const Difference d = difference(std::move(sci), c.planes(0, 0));
        const auto& z = d.images.zogy;
        int notNan = 0, noData = 0;
        for (int y = 0; y < kSize; ++y)
            for (int x = 0; x < kSize; ++x)
                if (inBlock(x, y)) {
                    notNan += !std::isnan(z.diff(x, y)) || !std::isnan(z.scorr(x, y));
                    noData += (z.mask(x, y) & bits(MaskBit::NoData)) != 0;
                }
        // Within 40 px of the block, outside it, away from the transient (a real source).
        auto border = [&](int x, int y) {
            const int dx = std::max(0, kSize / 2 - x), dy = std::max(0, kSize / 2 - y);
            return !inBlock(x, y) && std::max(dx, dy) <= 40 && std::hypot(x - t.targetX, y - t.targetY) > 10;
        };
        const int borderPx = countUnmasked(z, border), borderPeaks = countPeaks(z, border);
        std::printf("quarter NaN: %d of %d block pixels NoData, %d not NaN; S_corr robust std %.3f; %d unflagged "
                    "pixels within 40 px of the block, %d |S_corr| > 5 peaks there; quality %u\n",
                    noData, kSize * kSize / 4, notNan, d.run.scorrStd, borderPx, borderPeaks, d.run.quality);
        EXPECT_EQ(notNan, 0);
        EXPECT_EQ(noData, kSize * kSize / 4);
        EXPECT_NEAR(d.run.scorrStd, 1.0, 0.1);
        EXPECT_FALSE(flagged(d.run, DiffQuality::ScorrWide));
        EXPECT_GT(borderPx, 3000) << "the border band must be mostly usable, or the peak count means nothing";
        EXPECT_EQ(borderPeaks, 0);
    }
    {
        fits::ImagePlanes sci = c.planes(0, 1);
        nanQuarter(sci);
        Campaign::rewrite(sci);
        const auto r = c.process(0);
        ASSERT_EQ(r.status, TargetStatus::Ok) << r.failReason;
        ASSERT_EQ(r.differences.size(), 1u);
        EXPECT_EQ(r.differences[0].status, TargetStatus::Ok) << r.differences[0].failReason;
        EXPECT_NEAR(r.differences[0].scorrStd, 1.0, 0.1);
    }
}

// 3b. A whole science image NaN: the Background stage says no pixel is usable (astrid diff); a
// campaign stops it at validation (max_bad_fraction).
TEST(BadPairs, AllNanImageFailsWithAReason) {
    Campaign c("allnan", 33, 1, 1);
    fits::ImagePlanes sci = c.planes(0, 1);
    for (float& v : sci.science.image.pixels()) v = kNan;
    {
        const auto e = stageErrorOf([&] { pipeline::prepareImage(sci, {}); });
        ASSERT_TRUE(e);
        EXPECT_EQ(e->stage(), Stage::Background);
        EXPECT_TRUE(has(e->what(), c.path(0, 1))) << e->what();
        EXPECT_TRUE(has(e->what(), "0 of 262144 pixels are finite")) << e->what();
    }
    Campaign::rewrite(sci);
    const auto r = c.process(0);
    std::printf("  -> %s: %s\n", pipeline::stageName(r.failStage).c_str(), r.failReason.c_str());
    EXPECT_EQ(r.status, TargetStatus::Failed);
    EXPECT_EQ(r.failStage, Stage::Validate);
    EXPECT_TRUE(has(r.failReason, c.path(0, 1))) << r.failReason;
    EXPECT_TRUE(has(r.failReason, "100% of the pixels are NaN/Inf (max_bad_fraction 0.5)")) << r.failReason;
}

// 4. A very bright star whose core is clipped at SATURATE in the science image only (the reference,
// a deeper well, records it whole). The clipped pixels are Saturated and excluded, and no ring of
// |S_corr| > 5 detections appears around it on the pixels left unflagged.
TEST(BadPairs, SaturatedCoreInTheScienceOnly) {
    Campaign c("sat", 34, 1, 1, [](sim::SimConfig& s) {
        s.starMagBright = 15.0;  // nothing else saturates: the reference can take a higher SATURATE
        s.minSaturatedStars = 0;
    });
    fits::ImagePlanes sci = c.planes(0, 1), ref = c.planes(0, 0);
    const auto& ts = c.truth(0, 1);
    const auto& tr = c.truth(0, 0);
    // The true reference / science flux ratio: the median over the same stars in both epochs.
    std::map<std::string, double> sciFlux;
    std::vector<double> ratios;
    const auto truth = sim::readTruthCsv(c.sim.truthPath);
    for (const auto& row : truth)
        if (row.kind == "star" && row.epoch == 1) sciFlux[row.id] = row.flux;
    for (const auto& row : truth)
        if (row.kind == "star" && row.epoch == 0 && sciFlux.count(row.id)) ratios.push_back(row.flux / sciFlux[row.id]);
    ASSERT_FALSE(ratios.empty());
    std::nth_element(ratios.begin(), ratios.begin() + static_cast<std::ptrdiff_t>(ratios.size() / 2), ratios.end());
    const double ratio = ratios[ratios.size() / 2];

    const double saturate = *sci.science.header.getDouble("SATURATE");
    const double sx = 140.0, sy = 380.0, flux = 2e8;  // peak ~ 100 x SATURATE
    const auto sky = wcs::SkyWcs::fromHeader(sci.science.header).pixelToSky(sx, sy);
    const auto rp = wcs::SkyWcs::fromHeader(ref.science.header).skyToPixel(sky.raDeg, sky.decDeg);
    sim::renderPointSource(sci.science.image, sx, sy, flux, {ts.fwhmPx, ts.beta, ts.ellipticity, ts.positionAngleDeg});
    sim::renderPointSource(ref.science.image, rp.x, rp.y, flux * ratio, {tr.fwhmPx, tr.beta, tr.ellipticity, tr.positionAngleDeg});
    ref.science.header.set("SATURATE", 1e9);
    float peak = 0;
    std::vector<std::pair<int, int>> clipped;
    for (int y = 0; y < kSize; ++y)
        for (int x = 0; x < kSize; ++x) {
            float& v = sci.science.image(x, y);
            peak = std::max(peak, v);
            if (v >= saturate) v = static_cast<float>(saturate), clipped.emplace_back(x, y);
        }
    const Difference d = difference(std::move(sci), std::move(ref));
    const auto& z = d.images.zogy;
    int notExcluded = 0;
    for (const auto& [x, y] : clipped)
        notExcluded += (d.science.pixels.mask(x, y) & bits(MaskBit::Saturated)) == 0 ||
                       (z.mask(x, y) & bits(MaskBit::Saturated)) == 0 || !std::isnan(z.scorr(x, y));
    auto near = [&](int x, int y) { return std::hypot(x - sx, y - sy) < 80; };
    auto elsewhere = [&](int x, int y) { return !near(x, y) && std::hypot(x - ts.targetX, y - ts.targetY) > 10; };
    const int nearPx = countUnmasked(z, near), nearPeaks = countPeaks(z, near), otherPeaks = countPeaks(z, elsewhere);
    std::printf("saturated core: peak %.0f ADU = %.0f x SATURATE, %zu pixels clipped, %d of them not excluded; "
                "%d unflagged pixels within 80 px, %d |S_corr| > 5 peaks there, %d elsewhere; S_corr std %.3f; "
                "flux ratio %.4f (truth %.4f); quality %u\n",
                peak, peak / saturate, clipped.size(), notExcluded, nearPx, nearPeaks, otherPeaks, d.run.scorrStd,
                d.run.fluxRatio, ratio, d.run.quality);
    EXPECT_GT(clipped.size(), 100u);
    EXPECT_EQ(notExcluded, 0);
    EXPECT_GT(nearPx, 5000) << "the ring around the star must be mostly usable, or the peak count means nothing";
    EXPECT_EQ(nearPeaks, 0);
    EXPECT_LT(otherPeaks, 2);
    EXPECT_NEAR(d.run.scorrStd, 1.0, 0.1);
}

// 5. A PSF wider than a ZOGY tile: FWHM ~15 px (129 px PSF stamps) on 64 px tiles. Each tile's
// transform grows by the overlap, 3 x the PSF half-size by default, so the result is the whole-image
// one. An explicit overlap narrower than the PSF gets that default too (it used to wrap the PSF
// inside an 80 px transform: S_corr off by up to 19, D by 0.20 sigma RMS).
TEST(BadPairs, PsfWiderThanAZogyTile) {
    Campaign c("wide", 35, 1, 1, [](sim::SimConfig& s) {
        s.fwhmMinPx = 15.0;
        s.fwhmMaxPx = 16.0;
    });
    Difference whole = difference(c.planes(0, 1), c.planes(0, 0));  // one tile (tilePx 1024 > 512)
    ASSERT_EQ(whole.images.zogy.tiles, 1);
    const int half = whole.science.psf->halfSize();
    std::printf("FWHM %.1f px: PSF stamp %d px, whole image: S_corr std %.3f, quality %u, %s\n", c.truth(0, 1).fwhmPx,
                2 * half + 1, whole.run.scorrStd, whole.run.quality, whole.run.parameters.c_str());
    EXPECT_GT(2 * half + 1, 64);
    // The tiling alone is compared: each tile's own differential background (removeOffset) would
    // differ from the whole image's by its noise, which on 64 px tiles of a 15 px PSF is not small.
    {
        pipeline::DifferenceConfig cfg;
        cfg.zogy.removeOffset = false;
        pipeline::subtractRegistered(whole.science, whole.images, cfg, whole.run);
    }
    for (int overlap : {0, 8}) {
        pipeline::DifferenceConfig cfg;
        cfg.zogy.tilePx = 64;
        cfg.zogy.overlapPx = overlap;
        cfg.zogy.removeOffset = false;
        pipeline::DifferenceRun run = whole.run;
        pipeline::DifferenceImages im = whole.images;
        pipeline::subtractRegistered(whole.science, im, cfg, run);
        // Over every pixel both give a value for (Edge-flagged ones included); D in units of its noise.
        double maxScorr = 0.0, maxD = 0.0, sumD2 = 0.0;
        int compared = 0;
        for (int y = 0; y < kSize; ++y)
            for (int x = 0; x < kSize; ++x) {
                const float a = im.zogy.scorr(x, y), b = whole.images.zogy.scorr(x, y);
                if (!std::isfinite(a) || !std::isfinite(b)) continue;
                ++compared;
                maxScorr = std::max(maxScorr, static_cast<double>(std::fabs(a - b)));
                const double dd = std::fabs(im.zogy.diff(x, y) - whole.images.zogy.diff(x, y)) * whole.run.fD;
                sumD2 += dd * dd;
                if (im.zogy.mask(x, y) == 0) maxD = std::max(maxD, dd);
            }
        const double rmsD = std::sqrt(sumD2 / std::max(compared, 1));
        std::printf("  tile 64, overlap %d: %d tiles, %d px transforms, overlap used %d; against the whole image over %d "
                    "pixels: max |dS_corr| %.4f, D rms %.4f sigma, max %.4f sigma unflagged; %s\n",
                    overlap, im.zogy.tiles, im.zogy.fftWidth, im.zogy.overlapPx, compared, maxScorr, rmsD, maxD,
                    run.parameters.c_str());
        EXPECT_EQ(im.zogy.tiles, 64);
        EXPECT_EQ(im.zogy.overlapPx, 3 * half);
        EXPECT_GE(im.zogy.fftWidth, 2 * half + 1);
        EXPECT_TRUE(has(run.parameters, "overlap=" + std::to_string(im.zogy.overlapPx))) << run.parameters;
        EXPECT_GT(compared, kSize * kSize / 2);
        EXPECT_LT(maxScorr, 0.01);
        EXPECT_LT(rmsD, 0.01);
        EXPECT_LT(maxD, 0.1);
    }
}

// 6. Quality flags of poor subtractions.
TEST(BadPairs, FewMatchedStarsIsFlagged) {
    Campaign c("sparse", 36, 1, 1, [](sim::SimConfig& s) {
        s.starsPerMegapixel = 100;  // ~26 stars in 512 x 512
        s.galaxies = false;
    });
    const Difference d = difference(c.planes(0, 1), c.planes(0, 0));
    std::printf("sparse field: %d matched stars, rms %.3f px, quality %u, S_corr std %.3f\n", d.run.matchedStars,
                d.run.astrometricRmsPx, d.run.quality, d.run.scorrStd);
    EXPECT_EQ(d.run.status, TargetStatus::Ok);
    EXPECT_LT(d.run.matchedStars, 20);
    EXPECT_TRUE(flagged(d.run, DiffQuality::FewMatchedStars));
}

// A SIP-distorted pair (2.5 px at the corners) whose science header lost its SIP terms: the affine
// correction cannot absorb the distortion (LargeAstrometricRms). Registered with the WCSs alone
// (star matching made to fail), the residual of the stars paired through the WCSs flags it too and
// feeds ZOGY's astrometric noise (before: RMS NaN, no flag, 41 spurious |S_corr| > 5 peaks, std 1.147).
TEST(BadPairs, PoorRegistrationIsFlagged) {
    Campaign c("distorted", 37, 1, 1, [](sim::SimConfig& s) {
        s.distortion = sim::Distortion::Sip;
        s.distortionPx = 2.5;
    });
    fits::ImagePlanes sci = c.planes(0, 1);
    std::vector<std::string> sipKeys;
    for (const auto& card : sci.science.header.cards())
        for (const char* prefix : {"A_", "B_", "AP_", "BP_"})
            if (card.key.rfind(prefix, 0) == 0) sipKeys.push_back(card.key);
    ASSERT_FALSE(sipKeys.empty());
    for (const auto& k : sipKeys) sci.science.header.erase(k);
    sci.science.header.set("CTYPE1", "RA---TAN");
    sci.science.header.set("CTYPE2", "DEC--TAN");
    auto all = [](int, int) { return true; };
    {
        const Difference d = difference(sci, c.planes(0, 0));
        std::printf("SIP stripped, star-matched: %d matched, rms %.3f px, quality %u, S_corr std %.3f, %d peaks\n",
                    d.run.matchedStars, d.run.astrometricRmsPx, d.run.quality, d.run.scorrStd,
                    countPeaks(d.images.zogy, all));
        EXPECT_GT(d.run.astrometricRmsPx, 0.1);
        EXPECT_TRUE(flagged(d.run, DiffQuality::LargeAstrometricRms));
        EXPECT_FALSE(flagged(d.run, DiffQuality::WcsOnly));
    }
    pipeline::DifferenceConfig wcsOnly;
    wcsOnly.match.minMatches = 1000000;  // star matching fails: the WCS-only fallback
    {
        const Difference d = difference(sci, c.planes(0, 0), wcsOnly);
        const int peaks = countPeaks(d.images.zogy, all);
        std::printf("SIP stripped, WCS only: rms %.3f px, quality %u, S_corr std %.3f, %d peaks\n",
                    d.run.astrometricRmsPx, d.run.quality, d.run.scorrStd, peaks);
        EXPECT_TRUE(flagged(d.run, DiffQuality::WcsOnly));
        EXPECT_GT(d.run.astrometricRmsPx, 0.1);
        EXPECT_TRUE(flagged(d.run, DiffQuality::LargeAstrometricRms));
        EXPECT_LT(peaks, 2);
    }
    {
        const Difference d = difference(c.planes(0, 1), c.planes(0, 0), wcsOnly);  // SIP kept: a good WCS
        std::printf("SIP kept, WCS only: rms %.3f px, quality %u, S_corr std %.3f, %d peaks\n",
                    d.run.astrometricRmsPx, d.run.quality, d.run.scorrStd, countPeaks(d.images.zogy, all));
        EXPECT_TRUE(flagged(d.run, DiffQuality::WcsOnly));
        EXPECT_LT(d.run.astrometricRmsPx, 0.1);
        EXPECT_FALSE(flagged(d.run, DiffQuality::LargeAstrometricRms));
        EXPECT_NEAR(d.run.scorrStd, 1.0, 0.1);
    }
}
