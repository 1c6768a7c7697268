// The per-epoch stages end to end on simulated 1k pairs, against the simulator's truth: PSF FWHM,
// registration of bright stars, S_corr statistics where nothing changed, the transient's significance
// and flux, spurious peaks.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>

#include "astrid/pipeline/difference.hpp"
#include "astrid/sim/simulate.hpp"

using namespace astrid;
namespace fs = std::filesystem;

namespace {
struct Outcome {
    pipeline::DifferenceRun run;
    pipeline::DifferenceImages images;
    sim::SimSummary sim;
    double truthRmsPx = 0;   // registration map vs the true positions of bright stars
    double scorrAtTransient = 0, fluxAtTransient = 0, trueTransientFlux = 0, expectedSignificance = 0;
    int spuriousPeaks = 0;   // |S_corr| > 5 local maxima farther than 10 px from the transient
};

Outcome runPair(std::uint64_t seed) {
    sim::SimConfig c;
    c.outDir = (fs::temp_directory_path() / ("astrid_diff_test_" + std::to_string(::getpid()) + "_" + std::to_string(seed))).string();
    c.targets = 1;
    c.epochs = 1;
    c.sizePx = 1024;
    c.seed = seed;
    Outcome o;
    o.sim = sim::simulateCampaign(c);
    const auto& refTruth = o.sim.epochs[0];
    const auto& sciTruth = o.sim.epochs[1];
    const std::string dir = c.outDir + "/";
    pipeline::PrepareConfig prep;
    pipeline::DifferenceConfig cfg;
    cfg.zogy.keepScore = true;  // S / F_S is the transient's flux below
    const auto reference = pipeline::prepareImage(fits::readImagePlanes(dir + refTruth.file), prep);
    const auto science = pipeline::prepareImage(fits::readImagePlanes(dir + sciTruth.file), prep);
    o.images = pipeline::differenceImages(science, reference, cfg, prep, o.run);

    // Registration against truth: the same star's true position in both epochs.
    std::map<std::string, sim::TruthRow> ref, sci;
    for (const auto& r : sim::readTruthCsv(o.sim.truthPath)) {
        if (r.kind != "star" || r.flux < 2e5 || r.flux > 2e6) continue;  // bright, below saturation
        (r.epoch == 0 ? ref : sci)[r.id] = r;
    }
    double sum2 = 0;
    int n = 0;
    for (const auto& [id, s] : sci) {
        auto it = ref.find(id);
        if (it == ref.end() || s.x < 20 || s.y < 20 || s.x > 1003 || s.y > 1003) continue;
        const auto q = o.images.match.map.apply(s.x, s.y);
        sum2 += (q.x - it->second.x) * (q.x - it->second.x) + (q.y - it->second.y) * (q.y - it->second.y);
        ++n;
    }
    o.truthRmsPx = n ? std::sqrt(sum2 / n) : NAN;

    // The transient: S_corr and S/F_S near its true science position.
    const int tx = static_cast<int>(std::lround(sciTruth.targetX)), ty = static_cast<int>(std::lround(sciTruth.targetY));
    o.trueTransientFlux = sciTruth.transientFlux;
    const auto& z = o.images.zogy;
    double best = -1e9, bestS = 0;
    for (int j = -2; j <= 2; ++j)
        for (int i = -2; i <= 2; ++i)
            if (std::isfinite(z.scorr(tx + i, ty + j)) && z.scorr(tx + i, ty + j) > best)
                best = z.scorr(tx + i, ty + j), bestS = z.score(tx + i, ty + j);
    o.scorrAtTransient = best;
    o.fluxAtTransient = bestS / z.fS;
    o.expectedSignificance = o.trueTransientFlux * std::sqrt(z.fS);
    for (int y = 1; y < 1023; ++y)
        for (int x = 1; x < 1023; ++x) {
            if (z.mask(x, y) || std::hypot(x - tx, y - ty) < 10) continue;
            const double v = std::fabs(z.scorr(x, y));
            if (!(v > 5.0)) continue;
            bool peak = true;
            for (int j = -1; j <= 1 && peak; ++j)
                for (int i = -1; i <= 1; ++i)
                    if ((i || j) && std::fabs(z.scorr(x + i, y + j)) > v) peak = false;
            o.spuriousPeaks += peak;
        }
    fs::remove_all(c.outDir);
    std::printf("seed %llu: FWHM sci %.3f (true %.3f), bright-star map error vs truth %.4f px (%d stars), matched rms %.4f px, "
                "flux ratio %.4f, S_corr robust std %.3f, transient S_corr %.1f (background-limited theory %.1f), "
                "flux %.0f (true %.0f), spurious |S_corr|>5 peaks %d, quality %u\n",
                static_cast<unsigned long long>(seed), o.run.fwhmSciencePx, sciTruth.fwhmPx, o.truthRmsPx, n,
                o.run.astrometricRmsPx, o.run.fluxRatio, o.run.scorrStd, o.scorrAtTransient, o.expectedSignificance,
                o.fluxAtTransient, o.trueTransientFlux, o.spuriousPeaks, o.run.quality);
    return o;
}
}  // namespace

TEST(Difference, SimulatedPairsAgainstTruth) {
    for (std::uint64_t seed : {21u, 22u}) {
        const Outcome o = runPair(seed);
        const auto& sciTruth = o.sim.epochs[1];
        EXPECT_NEAR(o.run.fwhmSciencePx / sciTruth.fwhmPx, 1.0, 0.05) << "issue #3: FWHM within 5% of truth";
        EXPECT_LT(o.truthRmsPx, 0.05) << "issue #3: registration <= 0.05 px for bright stars";
        EXPECT_NEAR(o.run.scorrStd, 1.0, 0.05) << "issue #3: S_corr std within 5% of 1";
        // The first science epoch catches the transient early (S/N 7-8): its significance and flux
        // are checked against the theory within the noise (1 sigma of the flux is 1 / significance).
        EXPECT_GT(o.scorrAtTransient, 0.7 * o.expectedSignificance);
        EXPECT_GT(o.scorrAtTransient, 5.0) << "the transient must be detectable";
        EXPECT_NEAR(o.fluxAtTransient / o.trueTransientFlux, 1.0, 3.0 / o.expectedSignificance);
        EXPECT_EQ(o.run.status, pipeline::TargetStatus::Ok);
        // Issue #3: fewer than 2 spurious peaks above 5 sigma per 1k x 1k pair, bright-star residuals
        // included, on pixels without mask bits. Before cosmic-ray masking: 143-155, of which 190/222
        // (all pixels) were the simulated cosmic rays of the two images.
        EXPECT_LT(o.spuriousPeaks, 2);
    }
}

// Bad columns are interpolated over along rows; longer runs, border runs and runs holding other bits
// stay masked.
TEST(InterpolateDefects, FillsShortRunsAlongRows) {
    const int w = 12, h = 3;
    MaskedImage m(w, h);
    for (int y = 0; y < h; ++y)
        for (int x = 0; x < w; ++x) {
            m.image(x, y) = static_cast<float>(10 * x + y);  // linear along the row: interpolation is exact
            m.variance(x, y) = 4.0f;
            m.mask(x, y) = 0;
        }
    const std::uint16_t bad = bits(MaskBit::Bad), cr = bits(MaskBit::CosmicRay);
    // Row 0: a 1-px bad column at x 3 and a 2-px run (bad + cosmic ray) at x 6-7.
    m.mask(3, 0) = bad;
    m.image(3, 0) = 9999.0f;
    m.variance(3, 0) = std::numeric_limits<float>::infinity();
    m.mask(6, 0) = bad;
    m.mask(7, 0) = cr;
    // Row 1: a 3-px run (too long for maxRun 2) and a run at the border.
    for (int x = 4; x <= 6; ++x) m.mask(x, 1) = bad;
    m.mask(0, 1) = bad;
    // Row 2: a bad pixel that is also saturated, and one next to a NoData pixel.
    m.mask(2, 2) = static_cast<std::uint16_t>(bad | bits(MaskBit::Saturated));
    m.mask(8, 2) = bad;
    m.mask(9, 2) = bits(MaskBit::NoData);
    EXPECT_EQ(pipeline::interpolateDefects(m, 2), 3);
    EXPECT_EQ(m.mask(3, 0), bits(MaskBit::Interpolated));
    EXPECT_FLOAT_EQ(m.image(3, 0), 30.0f);
    EXPECT_FLOAT_EQ(m.variance(3, 0), 4.0f + 0.09f * 30.0f * 30.0f);
    EXPECT_EQ(m.mask(6, 0), bits(MaskBit::Interpolated));
    EXPECT_EQ(m.mask(7, 0), bits(MaskBit::Interpolated));
    EXPECT_FLOAT_EQ(m.image(7, 0), 70.0f);
    for (int x = 4; x <= 6; ++x) EXPECT_EQ(m.mask(x, 1), bad) << x;
    EXPECT_EQ(m.mask(0, 1), bad);
    EXPECT_EQ(m.mask(2, 2), bad | bits(MaskBit::Saturated));
    EXPECT_EQ(m.mask(8, 2), bad);
    EXPECT_EQ(pipeline::interpolateDefects(m, 0), 0);
    EXPECT_EQ(pipeline::interpolateDefects(m, 3), 3);  // row 1's run now
    EXPECT_EQ(m.mask(5, 1), bits(MaskBit::Interpolated));
}
