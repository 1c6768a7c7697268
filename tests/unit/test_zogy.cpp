// ZOGY against its own theory on synthetic pairs whose truth is known exactly: different PSFs,
// noise levels and flux scales; S_corr ~ N(0, 1) where nothing changed; a transient at the
// significance alpha sqrt(F_S) and with flux S / F_S; astrometric noise; tiles; masked pixels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <vector>

#include "astrid/core/error.hpp"
#include "astrid/diff/zogy.hpp"
#include "astrid/sim/render.hpp"

using namespace astrid;

namespace {
constexpr int kSize = 512;
constexpr double kSigmaN = 10.0, kSigmaR = 6.0, kFr = 1.3;
const sim::MoffatPsf kPsfN{3.4, 3.0, 0.05, 30.0};
const sim::MoffatPsf kPsfR{2.6, 3.5, 0.02, 100.0};

Image<double> stamp(const sim::MoffatPsf& p, int half = 20) {
    Image<double> s(2 * half + 1, 2 * half + 1, 0.0);
    sim::PsfRenderer(p).add(s, half, half, 1.0);
    double sum = 0;
    for (double v : s.pixels()) sum += v;
    for (double& v : s.pixels()) v /= sum;
    return s;
}

struct Star {
    double x, y, flux;
};

std::vector<Star> starField(std::uint64_t seed, int n) {
    sim::Rng rng(seed);
    std::vector<Star> stars;
    for (int i = 0; i < n; ++i)
        stars.push_back({rng.uniform(5, kSize - 6), rng.uniform(5, kSize - 6), 200.0 * std::pow(10.0, 2.0 * rng.uniform())});
    return stars;
}

struct Pair {
    Image<float> n, r, vn, vr;
    Image<std::uint16_t> mask;
};

/// N = stars (x) P_n + noise(sigma_n); R = F_r stars (x) P_r + noise(sigma_r), plus extras in N.
Pair makePair(std::uint64_t seed, const std::vector<Star>& stars, const std::vector<Star>& onlyInN = {},
              double shiftRx = 0.0) {
    Image<double> n(kSize, kSize, 0.0), r(kSize, kSize, 0.0);
    const sim::PsfRenderer pn(kPsfN), pr(kPsfR);
    for (const Star& s : stars) {
        pn.add(n, s.x, s.y, s.flux);
        pr.add(r, s.x + shiftRx, s.y, kFr * s.flux);
    }
    for (const Star& s : onlyInN) pn.add(n, s.x, s.y, s.flux);
    sim::Rng rng(seed);
    Pair p{Image<float>(kSize, kSize), Image<float>(kSize, kSize), Image<float>(kSize, kSize, kSigmaN * kSigmaN),
           Image<float>(kSize, kSize, kSigmaR * kSigmaR), Image<std::uint16_t>(kSize, kSize, 0)};
    for (std::size_t i = 0; i < n.size(); ++i) {
        p.n.data()[i] = static_cast<float>(n.data()[i] + kSigmaN * rng.normal());
        p.r.data()[i] = static_cast<float>(r.data()[i] + kSigmaR * rng.normal());
    }
    return p;
}

/// ZOGY's input for a pair: its planes, the true PSFs, the true flux ratio.
diff::ZogyInput inputFor(const Pair& p) {
    diff::ZogyInput in;
    in.science = &p.n;
    in.reference = &p.r;
    in.scienceVariance = &p.vn;
    in.referenceVariance = &p.vr;
    const Image<double> sn = stamp(kPsfN), sr = stamp(kPsfR);
    in.sciencePsf = [sn](double, double) { return sn; };
    in.referencePsf = [sr](double, double) { return sr; };
    in.fluxRatio = kFr;
    return in;
}

diff::ZogyResult run(const Pair& p, diff::ZogyConfig cfg = {}) {
    diff::ZogyInput in = inputFor(p);
    in.mask = &p.mask;
    return diff::zogy(in, cfg);
}

/// N and R without noise (the stars, plus a 5000 ADU transient at (256, 256) in N and `offsetN` added
/// to every pixel of N), and ZOGY run on them assuming the nominal noise levels.
diff::ZogyResult runNoiseless(const std::vector<Star>& stars, double offsetN, Pair& p) {
    Image<double> n(kSize, kSize, 0.0), r(kSize, kSize, 0.0);
    const sim::PsfRenderer pn(kPsfN), pr(kPsfR);
    for (const Star& st : stars) pn.add(n, st.x, st.y, st.flux), pr.add(r, st.x, st.y, kFr * st.flux);
    pn.add(n, 256.0, 256.0, 5000.0);
    for (std::size_t i = 0; i < n.size(); ++i) {
        p.n.data()[i] = static_cast<float>(n.data()[i] + offsetN);
        p.r.data()[i] = static_cast<float>(r.data()[i]);
    }
    diff::ZogyInput in = inputFor(p);
    in.sigmaScience = kSigmaN;  // the noise the weights assume; the images themselves are noiseless
    in.sigmaReference = kSigmaR;
    return diff::zogy(in);
}

struct Stats {
    double mean = 0, sd = 0;
    int n = 0, above5 = 0;
};
Stats stats(const diff::ZogyResult& z) {
    Stats s;
    double sum = 0, sum2 = 0;
    for (int y = 0; y < kSize; ++y)
        for (int x = 0; x < kSize; ++x) {
            if (z.mask(x, y)) continue;
            const double v = z.scorr(x, y);
            if (!std::isfinite(v)) continue;
            sum += v, sum2 += v * v, ++s.n;
        }
    s.mean = sum / s.n;
    s.sd = std::sqrt(sum2 / s.n - s.mean * s.mean);
    // Local maxima above 5 sigma (either sign): spurious detections.
    for (int y = 1; y < kSize - 1; ++y)
        for (int x = 1; x < kSize - 1; ++x) {
            if (z.mask(x, y)) continue;
            const double v = std::fabs(z.scorr(x, y));
            if (v < 5.0) continue;
            bool peak = true;
            for (int j = -1; j <= 1; ++j)
                for (int i = -1; i <= 1; ++i)
                    if ((i || j) && std::fabs(z.scorr(x + i, y + j)) > v) peak = false;
            s.above5 += peak;
        }
    return s;
}
}  // namespace

TEST(Zogy, ScorrIsStandardNormalWhereNothingChanged) {
    const auto stars = starField(1, 300);
    const auto z = run(makePair(2, stars));
    const Stats s = stats(z);
    std::printf("S_corr: mean %.4f sd %.4f, %d peaks > 5 sigma on %d^2\n", s.mean, s.sd, s.above5, kSize);
    // S_corr is correlated over a PSF area (~30 px): its image mean scatters by ~0.01.
    EXPECT_NEAR(s.mean, 0.0, 0.05);
    EXPECT_NEAR(s.sd, 1.0, 0.05);  // issue #3: within 5% of 1
    EXPECT_LT(s.above5, 2) << "spurious >5 sigma peaks on " << kSize << "^2";
    EXPECT_GT(s.n, kSize * kSize / 2);
    // D / F_D has white noise of standard deviation 1 / F_D.
    double sum2 = 0;
    int n = 0;
    for (int y = 100; y < 400; ++y)
        for (int x = 100; x < 400; ++x) sum2 += z.diff(x, y) * z.diff(x, y), ++n;
    EXPECT_NEAR(std::sqrt(sum2 / n) * z.fD, 1.0, 0.05);
    EXPECT_NEAR(z.fD, kFr / std::sqrt(kSigmaN * kSigmaN * kFr * kFr + kSigmaR * kSigmaR), 1e-9);
}

TEST(Zogy, TransientAtTheTheoreticalSignificanceAndFlux) {
    const auto stars = starField(3, 200);
    // Transients in N only: significance alpha sqrt(F_S) for background-limited noise (ZOGY eq 41).
    std::vector<Star> transients = {{150.3, 200.6, 0}, {380.7, 90.2, 0}, {260.5, 420.4, 0}};
    double fS = 0;
    {
        const auto z0 = run(makePair(4, stars));
        fS = z0.fS;
    }
    const double targetSnr = 40.0;
    const double alpha = targetSnr / std::sqrt(fS);
    for (auto& t : transients) t.flux = alpha;
    // Average over noise realisations so the comparison is to ~1/sqrt(n) of a sigma.
    double snrSum = 0, fluxSum = 0;
    int count = 0;
    for (std::uint64_t seed = 10; seed < 14; ++seed) {
        const auto z = run(makePair(seed, stars, transients));
        for (const auto& t : transients) {
            const int x = static_cast<int>(std::lround(t.x)), y = static_cast<int>(std::lround(t.y));
            // The peak of S_corr near the source (sub-pixel position: take the local maximum).
            double best = -1e9, bestS = 0;
            for (int j = -1; j <= 1; ++j)
                for (int i = -1; i <= 1; ++i)
                    if (z.scorr(x + i, y + j) > best) best = z.scorr(x + i, y + j), bestS = z.score(x + i, y + j);
            snrSum += best;
            fluxSum += bestS / z.fS;
            ++count;
        }
    }
    std::printf("significance %.3f of theory, flux S/F_S %.4f of truth\n", snrSum / count / targetSnr,
                fluxSum / count / alpha);
    // Peak picking on a sub-pixel source loses a little; the estimators are at the pixel grid.
    EXPECT_NEAR(snrSum / count / targetSnr, 1.0, 0.10) << "issue #3: significance within 10% of theory";
    EXPECT_NEAR(fluxSum / count / alpha, 1.0, 0.03) << "issue #3: flux from S/F_S within 3%";
}

TEST(Zogy, NoiselessTransientFluxInDAndS) {
    // Without noise the estimators are exact up to the PSF model: a transient at a pixel centre has
    // S / F_S = alpha, and D / F_D carries alpha x P_D (unit sum).
    const auto stars = starField(12, 100);
    Pair clean = makePair(13, stars);
    const auto z = runNoiseless(stars, 0.0, clean);
    double ap = 0;
    for (int j = -25; j <= 25; ++j)
        for (int i = -25; i <= 25; ++i) ap += z.diff(256 + i, 256 + j);
    std::printf("noiseless: S/F_S %.5f, D/F_D aperture %.5f of the true flux\n", z.score(256, 256) / z.fS / 5000.0,
                ap / 5000.0);
    EXPECT_NEAR(z.score(256, 256) / z.fS / 5000.0, 1.0, 0.01);
    EXPECT_NEAR(ap / 5000.0, 1.0, 0.01);
    double sum = 0;
    for (double v : z.psfD.pixels()) sum += v;
    EXPECT_NEAR(sum, 1.0, 0.01);
}

// Two background estimates never agree exactly: a constant left in N becomes a constant in D that
// every PSF fit on D adds to its flux (offset x sum P / sum P^2) and that shifts S_corr. ZOGY removes
// the median of D per tile (ZogyConfig::removeOffset).
TEST(Zogy, ADifferentialBackgroundIsRemoved) {
    const auto stars = starField(14, 200);
    const double offset = 0.3 * kSigmaN;
    Pair p = makePair(15, stars);
    for (float& v : p.n.pixels()) v += static_cast<float>(offset);
    diff::ZogyConfig keep;
    keep.removeOffset = false;
    const auto z = run(p), zKeep = run(p, keep);
    const Stats s = stats(z), sKeep = stats(zKeep);
    std::printf("N + %.2f ADU: removed %.3f ADU; S_corr mean %.4f sd %.4f (left in: mean %.4f sd %.4f)\n", offset,
                z.offset, s.mean, s.sd, sKeep.mean, sKeep.sd);
    EXPECT_NEAR(z.offset, offset, 0.05 * kSigmaN);
    EXPECT_NEAR(s.mean, 0.0, 0.05);
    EXPECT_NEAR(s.sd, 1.0, 0.05);
    EXPECT_GT(sKeep.mean, 0.5);
    EXPECT_EQ(zKeep.offset, 0.0);

    // Noiseless, with a transient: D / F_D sums to its flux again.
    const auto zc = runNoiseless(stars, offset, p);
    double ap = 0;
    for (int j = -25; j <= 25; ++j)
        for (int i = -25; i <= 25; ++i) ap += zc.diff(256 + i, 256 + j);
    std::printf("noiseless + offset: D/F_D aperture %.5f, S/F_S %.5f of the true flux\n", ap / 5000.0,
                zc.score(256, 256) / zc.fS / 5000.0);
    EXPECT_NEAR(ap / 5000.0, 1.0, 0.01);
    EXPECT_NEAR(zc.score(256, 256) / zc.fS / 5000.0, 1.0, 0.01);
}

TEST(Zogy, AstrometricNoiseTermSuppressesMisalignedStars) {
    const auto stars = starField(5, 150);
    const Pair p = makePair(6, stars, {}, 0.08);  // the reference is off by 0.08 px in x
    const Stats plain = stats(run(p));
    diff::ZogyConfig cfg;
    cfg.astrometricSigmaXPx = 0.08;
    cfg.astrometricSigmaYPx = 0.08;
    const Stats corrected = stats(run(p, cfg));
    std::printf("0.08 px misalignment: %d peaks > 5 sigma without, %d with the astrometric term\n", plain.above5,
                corrected.above5);
    EXPECT_GT(plain.above5, 5) << "misaligned bright stars should leave dipoles without the term";
    EXPECT_LT(corrected.above5, plain.above5 / 4);
    EXPECT_LT(corrected.above5, 3);
}

TEST(Zogy, TilesAgreeWithTheWholeImage) {
    const auto stars = starField(7, 200);
    const Pair p = makePair(8, stars, {{300.2, 310.7, 3000.0}});
    // Tiling alone: each tile's own differential background (removeOffset) differs by its noise.
    diff::ZogyConfig whole;
    whole.tilePx = 0;
    whole.removeOffset = false;
    diff::ZogyConfig tiles = whole;
    tiles.tilePx = 200;  // 3 x 3 tiles of ~171 px with overlap
    const auto a = run(p, whole), b = run(p, tiles);
    EXPECT_EQ(b.tiles, 9);
    double maxDiff = 0;
    for (int y = 40; y < kSize - 40; ++y)
        for (int x = 40; x < kSize - 40; ++x) maxDiff = std::max(maxDiff, std::fabs(double(a.scorr(x, y)) - b.scorr(x, y)));
    std::printf("tiles vs whole image: max |delta S_corr| %.2g\n", maxDiff);
    EXPECT_LT(maxDiff, 0.02);
}

TEST(Zogy, MaskedSaturatedPixelsDoNotRing) {
    const auto stars = starField(9, 150);
    Pair p = makePair(10, stars);
    // A saturated, bleeding star in N only: 1e7 ADU in a 5 x 40 column, masked.
    for (int y = 230; y < 270; ++y)
        for (int x = 250; x < 255; ++x) {
            p.n(x, y) = 1e7f;
            p.mask(x, y) = bits(MaskBit::Saturated);
        }
    const auto z = run(p);
    const Stats s = stats(z);
    EXPECT_NEAR(s.sd, 1.0, 0.05);
    EXPECT_LT(s.above5, 2);
    EXPECT_TRUE(std::isnan(z.scorr(252, 250)));
    EXPECT_TRUE(z.mask(252 + 5, 250) & bits(MaskBit::Edge));  // the kernel footprint is flagged
    EXPECT_FALSE(z.mask(100, 100) & bits(MaskBit::Edge));
}

TEST(Zogy, RejectsInconsistentInput) {
    Pair p = makePair(11, {});
    diff::ZogyInput in;
    in.science = &p.n;
    in.reference = &p.r;
    in.scienceVariance = &p.vn;
    in.referenceVariance = &p.vr;
    EXPECT_THROW(diff::zogy(in), DataError);  // no PSFs
    const Image<double> even(4, 4, 1.0);
    in.sciencePsf = [even](double, double) { return even; };
    in.referencePsf = [even](double, double) { return even; };
    EXPECT_THROW(diff::zogy(in), DataError);  // even stamp
    EXPECT_EQ(diff::goodFftSize(1031), 1152);  // 2^7 * 3^2
    EXPECT_EQ(diff::goodFftSize(1024), 1024);
}

// The variance map of D / F_D (keepDiffVariance) against the scatter of D over noise realisations:
// 1 / F_D^2 on the background, and larger by the stars' own noise on a bright star, both within the
// sampling error of 60 realisations.
TEST(Zogy, DiffVarianceMatchesTheScatterOfD) {
    constexpr int n = 128, reps = 60;
    constexpr double gain = 1.0;  // source noise: variance = flux per pixel (ADU) on top of sigma^2
    const Image<double> sn = stamp(kPsfN), sr = stamp(kPsfR);
    Image<double> starN(n, n, 0.0), starR(n, n, 0.0);
    sim::PsfRenderer(kPsfN).add(starN, 64.0, 64.0, 2.0e5);
    sim::PsfRenderer(kPsfR).add(starR, 64.0, 64.0, kFr * 2.0e5);
    Image<float> vn(n, n), vr(n, n);
    for (std::size_t i = 0; i < vn.size(); ++i) {
        vn.data()[i] = static_cast<float>(kSigmaN * kSigmaN + starN.data()[i] / gain);
        vr.data()[i] = static_cast<float>(kSigmaR * kSigmaR + starR.data()[i] / gain);
    }
    diff::ZogyConfig cfg;
    cfg.tilePx = 0;
    cfg.keepDiffVariance = true;
    sim::Rng rng(99);
    std::vector<double> sum(static_cast<std::size_t>(n) * n, 0.0), sum2(sum.size(), 0.0);
    Image<float> predicted;
    double fD = 0;
    for (int k = 0; k < reps; ++k) {
        Image<float> a(n, n), b(n, n);
        for (std::size_t i = 0; i < a.size(); ++i) {
            a.data()[i] = static_cast<float>(starN.data()[i] + std::sqrt(vn.data()[i]) * rng.normal());
            b.data()[i] = static_cast<float>(starR.data()[i] + std::sqrt(vr.data()[i]) * rng.normal());
        }
        diff::ZogyInput in;
        in.science = &a;
        in.reference = &b;
        in.scienceVariance = &vn;
        in.referenceVariance = &vr;
        in.sciencePsf = [sn](double, double) { return sn; };
        in.referencePsf = [sr](double, double) { return sr; };
        in.fluxRatio = kFr;
        in.sigmaScience = kSigmaN;
        in.sigmaReference = kSigmaR;
        const auto z = diff::zogy(in, cfg);
        for (std::size_t i = 0; i < sum.size(); ++i) {
            sum[i] += z.diff.data()[i];
            sum2[i] += static_cast<double>(z.diff.data()[i]) * z.diff.data()[i];
        }
        predicted = z.diffVariance;
        fD = z.fD;
    }
    auto empirical = [&](int x0, int y0, int x1, int y1, double& pred) {
        double e = 0, p = 0;
        int m = 0;
        for (int y = y0; y < y1; ++y)
            for (int x = x0; x < x1; ++x) {
                const std::size_t i = static_cast<std::size_t>(y) * n + x;
                const double mean = sum[i] / reps;
                e += sum2[i] / reps - mean * mean;
                p += predicted(x, y);
                ++m;
            }
        pred = p / m;
        return e / m * reps / (reps - 1.0);
    };
    double predBg = 0, predStar = 0;
    const double bg = empirical(20, 20, 40, 40, predBg);
    const double star = empirical(62, 62, 67, 67, predStar);
    std::printf("var(D/F_D): background %.4g predicted %.4g (1/F_D^2 %.4g); star core %.4g predicted %.4g\n", bg,
                predBg, 1.0 / (fD * fD), star, predStar);
    EXPECT_NEAR(predBg * fD * fD, 1.0, 0.02);
    EXPECT_NEAR(bg / predBg, 1.0, 0.08);     // 400 px x 60 realisations, correlated neighbours
    EXPECT_GT(predStar / predBg, 3.0);       // the star's own noise dominates its core
    EXPECT_NEAR(star / predStar, 1.0, 0.15); // 25 px x 60 realisations
}
