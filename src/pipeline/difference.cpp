#include "astrid/pipeline/difference.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <sstream>

#include <fmt/format.h>

#include "astrid/core/angle.hpp"
#include "astrid/core/log.hpp"
#include "detail.hpp"

namespace astrid::pipeline {
namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double headerNumber(const fits::Header& h, std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
        try {
            if (auto v = h.getDouble(k)) return *v;
        } catch (const FitsError&) {
            // A malformed optional key is treated as absent (the load stage already read the required ones).
        }
    }
    return std::numeric_limits<double>::quiet_NaN();
}

/// Cosmic rays and hot pixels: no astronomical source is sharper than the PSF. A pixel is flagged
/// when its excess over the mean of its 4 neighbours (a discrete Laplacian) is significant
/// (> threshold x its noise) and a larger fraction of its value than any point source can show
/// (the PSF's own centre-minus-neighbours fraction, with a margin): the idea of L.A.Cosmic (van Dokkum
/// 2001) in its simplest form. Flagged pixels and their 8 neighbours get CosmicRay and +inf variance.
/// On a simulated 1k pair, cosmic rays were 190 of the 222 peaks above 5 sigma in S_corr.
int maskCosmicRays(MaskedImage& m, const psf::PsfModel& model, const PrepareConfig& cfg) {
    const Image<double> stamp = model.stampAt(0.5 * (m.width() - 1), 0.5 * (m.height() - 1));
    const int h = stamp.width() / 2;
    const double centre = stamp(h, h);
    const double neighbours = 0.25 * (stamp(h - 1, h) + stamp(h + 1, h) + stamp(h, h - 1) + stamp(h, h + 1));
    const double psfSharpness = 1.0 - neighbours / centre;  // the sharpest a point source gets
    const double limit = std::min(0.95, psfSharpness + cfg.cosmicRayMargin);
    const int W = m.width(), H = m.height();
    std::vector<std::pair<int, int>> hits;
    // excess > t sqrt(1.25 var) as excess^2 > t^2 1.25 var (excess > 0 there): no square root, and the
    // cheap sharpness test first, which almost every pixel fails.
    const float t2 = static_cast<float>(cfg.cosmicRayThresholdSigma * cfg.cosmicRayThresholdSigma * 1.25);
    const float flimit = static_cast<float>(limit);
    std::vector<std::uint8_t> flags(static_cast<std::size_t>(W), 0);
    for (int y = 1; y < H - 1; ++y) {
        const float* row = &m.image(0, y);
        const float* up = &m.image(0, y - 1);
        const float* down = &m.image(0, y + 1);
        const float* var = &m.variance(0, y);
        const std::uint16_t* mask = &m.mask(0, y);
        const std::uint16_t* maskUp = &m.mask(0, y - 1);
        const std::uint16_t* maskDown = &m.mask(0, y + 1);
        // Branch-free into a row of flags (the compiler vectorises it), then a scan for the rare hits:
        // on sky noise each test alone passes often and unpredictably.
        for (int x = 1; x < W - 1; ++x) {
            const float v = row[x], q = var[x];
            const float excess = v - 0.25f * (row[x - 1] + row[x + 1] + up[x] + down[x]);
            flags[static_cast<std::size_t>(x)] =
                // A masked neighbour (a bad column's low values) would fake the Laplacian excess: the
                // photometry campaign found 5-px-wide CosmicRay strips beside every bad column.
                static_cast<std::uint8_t>((excess > flimit * v) & (v > 0.0f) &
                                          ((mask[x] | mask[x - 1] | mask[x + 1] | maskUp[x] | maskDown[x]) == 0) & (q > 0.0f) &
                                          (q < std::numeric_limits<float>::infinity()) & (excess * excess > t2 * q));
        }
        for (int x = 1; x < W - 1; ++x)
            if (flags[static_cast<std::size_t>(x)]) hits.emplace_back(x, y);
    }
    for (const auto& [x, y] : hits)
        for (int j = std::max(0, y - 1); j <= std::min(H - 1, y + 1); ++j)
            for (int i = std::max(0, x - 1); i <= std::min(W - 1, x + 1); ++i) {
                m.mask(i, j) = static_cast<std::uint16_t>(m.mask(i, j) | bits(MaskBit::CosmicRay));
                m.variance(i, j) = std::numeric_limits<float>::infinity();
            }
    return static_cast<int>(hits.size());
}

/// The reference's stars carried onto the science grid through the registration map, for the
/// registered reference's PSF: positions by Newton inversion of the map (sci -> ref), fluxes as they
/// are (resampling conserves flux), FWHMs in science pixels. The registered image is the reference
/// itself, resampled: detecting and measuring its 20k stars again (0.4 s on a 4k image) would find
/// the same stars at these positions, up to the registration error (a few mpx on simulated pairs),
/// which is below the centroid error of the original detection. Stars that land outside the grid or
/// whose inversion does not converge are flagged Edge.
psf::StarFinderResult carryStars(const psf::StarFinderResult& ref, const registration::PixelMap& map, int W, int H) {
    psf::StarFinderResult out = ref;
    const double cx = 0.5 * (W - 1), cy = 0.5 * (H - 1);
    const auto c = map.apply(cx, cy);
    const auto jc = map.jacobian(cx, cy);
    const double detC = jc[0] * jc[3] - jc[1] * jc[2];
    const double lengthScale = std::abs(detC) > 0.0 ? 1.0 / std::sqrt(std::abs(detC)) : 1.0;  // sci px per ref px
    auto solve = [](const std::array<double, 4>& j, double dx, double dy, double& sx, double& sy) {
        const double det = j[0] * j[3] - j[1] * j[2];
        if (!(std::abs(det) > 1e-12)) return false;
        sx = (j[3] * dx - j[1] * dy) / det;
        sy = (-j[2] * dx + j[0] * dy) / det;
        return true;
    };
    for (psf::Star& st : out.stars) {
        double x = cx, y = cy, sx = 0, sy = 0;
        bool ok = solve(jc, st.x - c.x, st.y - c.y, sx, sy);
        x += sx, y += sy;
        for (int it = 0; ok && it < 10; ++it) {
            const auto q = map.apply(x, y);
            ok = solve(map.jacobian(x, y), st.x - q.x, st.y - q.y, sx, sy);
            x += sx, y += sy;
            if (std::hypot(sx, sy) < 1e-6) break;
        }
        const auto back = map.apply(x, y);
        ok = ok && std::hypot(back.x - st.x, back.y - st.y) < 1e-3;
        st.x = x;
        st.y = y;
        st.fwhmPx *= lengthScale;
        if (!ok || !(x >= 0.0 && y >= 0.0 && x <= W - 1.0 && y <= H - 1.0)) st.flags |= psf::bits(psf::StarFlag::Edge);
    }
    out.fwhmPx *= lengthScale;
    out.windowSigmaPx *= lengthScale;
    out.apertureRadiusPx *= lengthScale;
    return out;
}

psf::PsfModel modelPsf(const MaskedImage& m, const psf::StarFinderResult& stars, const PrepareConfig& cfg,
                       const std::string& label) {
    try {
        return psf::buildPsf(m.image, m.variance, m.mask, stars.stars, cfg.psf);
    } catch (const Error& e) {
        throw StageError(Stage::Psf, label + ": " + e.what());
    }
}
}  // namespace

long interpolateDefects(MaskedImage& m, int maxRun) {
    if (maxRun <= 0) return 0;
    constexpr float kInterpolationError = 0.3f;
    const std::uint16_t defect = bits(MaskBit::Bad) | bits(MaskBit::CosmicRay);
    const std::uint16_t other = static_cast<std::uint16_t>(~defect);
    const int W = m.width(), H = m.height();
    long filled = 0;
    for (int y = 0; y < H; ++y) {
        float* v = &m.image(0, y);
        float* q = &m.variance(0, y);
        std::uint16_t* k = &m.mask(0, y);
        auto usable = [&](int x) {
            return k[x] == 0 && std::isfinite(v[x]) && q[x] > 0.0f && q[x] < std::numeric_limits<float>::infinity();
        };
        for (int x = 0; x < W; ++x) {
            if (!(k[x] & defect)) continue;
            int end = x;  // one past the run of pixels carrying a defect bit
            while (end < W && (k[end] & defect)) ++end;
            const int a = x - 1, b = end;
            bool ok = a >= 0 && b < W && end - x <= maxRun && usable(a) && usable(b);
            for (int i = x; ok && i < end; ++i) ok = (k[i] & other) == 0;
            if (ok) {
                for (int i = x; i < end; ++i) {
                    const float t = static_cast<float>(i - a) / static_cast<float>(b - a);
                    v[i] = v[a] + t * (v[b] - v[a]);
                    // A line misses whatever peaks inside the gap: a star's core on a bad column is
                    // underestimated by up to ~30% of its value (FWHM 2.5 px, column through the
                    // peak). That possible error goes into the variance, so ZOGY's S_corr does not
                    // take such a residual for a source.
                    const float err = kInterpolationError * std::max(v[i], 0.0f);
                    q[i] = q[a] + t * (q[b] - q[a]) + err * err;
                    k[i] = bits(MaskBit::Interpolated);
                }
                filled += end - x;
            }
            x = end - 1;
        }
    }
    return filled;
}

PreparedImage prepareImage(fits::ImagePlanes planes, const PrepareConfig& cfg) {
    PreparedImage p;
    p.label = planes.science.path + (planes.science.hdu > 0 ? "[" + std::to_string(planes.science.hdu) + "]" : "");
    p.header = std::move(planes.science.header);
    const Image<float>& image = planes.science.image;
    auto t0 = Clock::now();
    try {
        background::MaskConfig maskCfg = cfg.mask;
        if (std::isnan(maskCfg.saturationAdu)) maskCfg.saturationAdu = headerNumber(p.header, {"SATURATE", "SATURATA"});
        p.pixels.mask = background::buildMask(image, maskCfg, planes.mask.empty() ? nullptr : &planes.mask);
        const auto bkg = background::estimateBackground(image, p.pixels.mask, cfg.background);
        p.backgroundLevel = bkg.globalLevel;
        p.backgroundRms = bkg.globalRms;
        if (!planes.variance.empty()) {
            p.pixels.variance = std::move(planes.variance);
            background::sanitizeVariance(p.pixels.variance, p.pixels.mask);
        } else {
            p.pixels.variance = background::varianceMap(image, bkg, headerNumber(p.header, {"GAIN", "EGAIN", "GAINA"}),
                                                        headerNumber(p.header, {"RDNOISE", "READNOIS", "RDNOISEA"}),
                                                        &p.pixels.mask);
        }
        p.pixels.image = std::move(planes.science.image);
        float* px = p.pixels.image.data();
        const float* level = bkg.level.data();
        for (std::size_t i = 0; i < p.pixels.image.size(); ++i) px[i] -= level[i];
    } catch (const StageError&) {
        throw;
    } catch (const Error& e) {
        throw StageError(Stage::Background, p.label + ": " + e.what());
    }
    p.backgroundS = since(t0);
    t0 = Clock::now();
    try {
        p.stars = psf::findStarsDetailed(p.pixels.image, p.pixels.variance, p.pixels.mask, cfg.stars);
    } catch (const Error& e) {
        throw StageError(Stage::Psf, p.label + ": " + e.what());
    }
    const double starsS = since(t0);
    const auto tPsf = Clock::now();
    p.psf = modelPsf(p.pixels, p.stars, cfg, p.label);
    const double psfS = since(tPsf);
    const auto tCr = Clock::now();
    p.cosmicRays = maskCosmicRays(p.pixels, *p.psf, cfg);
    p.interpolatedPixels = interpolateDefects(p.pixels, cfg.interpolateMaxRun);
    p.psfS = since(t0);
    log::get("astrid.pipeline")
        ->debug("{}: background {:.3f} s; stars {:.3f} s, PSF {:.3f} s, cosmic rays {:.3f} s", p.label, p.backgroundS,
                starsS, psfS, since(tCr));
    try {
        p.wcs.emplace(wcs::SkyWcs::fromHeader(p.header));
    } catch (const WcsError&) {
        // No usable WCS: registration falls back to asterism matching.
    }
    return p;
}

double robustScorrStd(const diff::ZogyResult& z) {
    const std::size_t n = z.scorr.size();
    const std::size_t stride = std::max<std::size_t>(1, n / (1u << 20));
    std::vector<float> v;
    v.reserve(n / stride + 1);
    for (std::size_t i = 0; i < n; i += stride)
        if (z.mask.data()[i] == 0 && std::isfinite(z.scorr.data()[i])) v.push_back(z.scorr.data()[i]);
    if (v.size() < 16) return std::numeric_limits<double>::quiet_NaN();
    auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    const float med = *mid;
    for (float& x : v) x = std::fabs(x - med);
    std::nth_element(v.begin(), mid, v.end());
    return 1.4826 * *mid;
}

DifferenceImages differenceImages(const PreparedImage& science, const PreparedImage& reference,
                                  const DifferenceConfig& cfg, const PrepareConfig& prepare, DifferenceRun& run) {
    const auto tStart = Clock::now();
    DifferenceImages d = registerReference(science, reference, cfg, prepare, run);
    subtractRegistered(science, d, cfg, run);
    run.wallS = since(tStart);
    return d;
}

DifferenceImages registerReference(const PreparedImage& science, const PreparedImage& reference,
                                   const DifferenceConfig& cfg, const PrepareConfig& prepare, DifferenceRun& run) {
    const int W = science.pixels.width(), H = science.pixels.height();
    DifferenceImages d;
    run.fwhmSciencePx = science.psf ? science.psf->fwhmPx() : 0.0;
    run.psfStarsScience = science.psf ? science.psf->starsUsed() : 0;
    run.detectionThreshold = cfg.detectionThreshold;

    // Registration: the WCS guess refined by matched stars; asterism matching when it fails; the
    // WCSs alone when stars give no consistent fit (quality flag).
    auto t0 = Clock::now();
    try {
        detail::Placement placed = detail::registerOnto(science, reference, W, H, cfg.match, "astrid.pipeline");
        d.match = std::move(placed.match);
        if (placed.wcsOnly) run.quality |= static_cast<std::uint32_t>(DiffQuality::WcsOnly);
        // The photometric scale from PSF-fit fluxes of the matched stars in both images.
        d.ratio = detail::measureFluxRatio(science, reference, d.match.pairs, cfg.fluxRatio);
    } catch (const Error& e) {
        throw StageError(Stage::Registration, science.label + " onto " + reference.label + ": " + e.what());
    }
    run.matchedStars = d.match.nUsed;
    // The registration error of bright stars: the 2-D residual RMS of the brightest 20 used pairs
    // (the matcher's own rmsPx spans 50, which in a 512 px field reaches stars whose centroid noise
    // dominates). WCS only: the same over the stars paired within 1 px through the WCSs, a lower bound
    // (larger offsets are not paired). It used to be left NaN there, so a WCS missing the field's
    // distortion gave neither LargeAstrometricRms nor ZOGY's astrometric noise term (test_bad_pairs:
    // a 2.5 px SIP distortion stripped from the science header, WCS only: 41 spurious |S_corr| > 5
    // peaks on a 512 px pair; now RMS 0.51 px, flagged, no peak).
    {
        double sum2 = 0.0;
        const std::size_t n = std::min<std::size_t>(20, d.match.pairs.size());
        for (std::size_t i = 0; i < n; ++i) {
            const auto& p = d.match.pairs[i];
            const auto q = d.match.map.apply(p.sci.x, p.sci.y);
            sum2 += (p.ref.x - q.x) * (p.ref.x - q.x) + (p.ref.y - q.y) * (p.ref.y - q.y);
        }
        run.astrometricRmsPx =
            n > 0 ? std::sqrt(sum2 / static_cast<double>(n)) : std::numeric_limits<double>::quiet_NaN();
    }
    if (run.astrometricRmsPx > cfg.maxAstrometricRmsPx)
        run.quality |= static_cast<std::uint32_t>(DiffQuality::LargeAstrometricRms);
    run.fluxRatio = d.ratio.ratio;
    run.fluxRatioErr = d.ratio.error;
    run.fluxRatioStars = d.ratio.nUsed;
    if (d.match.method == registration::MatchMethod::Pattern) run.quality |= static_cast<std::uint32_t>(DiffQuality::PatternMatched);
    if (d.match.nUsed < cfg.minMatchedStars) run.quality |= static_cast<std::uint32_t>(DiffQuality::FewMatchedStars);

    const double matchS = since(t0);
    const auto tResample = Clock::now();
    try {
        // ZOGY models white noise: the variance it needs is the local noise power, which Lanczos
        // interpolation preserves at the spatial frequencies that matter (the PSF's), not the
        // per-pixel variance of interpolated values (lowered by the kernel's sum of squared weights).
        registration::ResampleConfig rc = cfg.resample;
        rc.variance = registration::VarianceResampling::NoisePower;
        d.registeredReference = registration::resample(reference.pixels, d.match.map, W, H, rc);
    } catch (const Error& e) {
        throw StageError(Stage::Registration, reference.label + ": resampling failed: " + e.what());
    }
    const double resampleS = since(tResample);
    const auto tRegPsf = Clock::now();
    // The registered reference's PSF, measured on the registered image itself (it carries the
    // resampling's smoothing and the map's rotation/scale) at the reference's stars carried through
    // the map.
    d.registeredReferenceStars = carryStars(reference.stars, d.match.map, W, H);
    const psf::StarFinderResult& regStars = d.registeredReferenceStars;
    d.registeredReferencePsf = modelPsf(d.registeredReference, regStars, prepare, reference.label + " (registered)");
    run.fwhmReferencePx = d.registeredReferencePsf->fwhmPx();
    run.psfStarsReference = d.registeredReferencePsf->starsUsed();
    if ((science.psf && science.psf->kind() == psf::PsfModel::Kind::Moffat) ||
        d.registeredReferencePsf->kind() == psf::PsfModel::Kind::Moffat)
        run.quality |= static_cast<std::uint32_t>(DiffQuality::PsfFallback);
    run.registrationS = since(t0);
    log::get("astrid.pipeline")
        ->debug("{}: registration {:.3f} s: matching and flux ratio {:.3f} s, resampling {:.3f} s, registered "
                "reference's stars and PSF {:.3f} s",
                science.label, run.registrationS, matchS, resampleS, since(tRegPsf));
    return d;
}

void subtractRegistered(const PreparedImage& science, DifferenceImages& d, const DifferenceConfig& cfg,
                        DifferenceRun& run) {
    if (!science.psf || !d.registeredReferencePsf || d.registeredReference.image.empty())
        throw StageError(Stage::Internal, science.label + ": subtractRegistered before registerReference");
    // ZOGY on the combined mask.
    const auto t0 = Clock::now();
    Image<std::uint16_t> mask = science.pixels.mask;
    for (std::size_t i = 0; i < mask.size(); ++i) mask.data()[i] |= d.registeredReference.mask.data()[i];
    diff::ZogyConfig zc = cfg.zogy;
    if (zc.astrometricSigmaXPx <= 0.0 && zc.astrometricSigmaYPx <= 0.0 && std::isfinite(run.astrometricRmsPx))
        zc.astrometricSigmaXPx = zc.astrometricSigmaYPx = run.astrometricRmsPx / std::sqrt(2.0);  // per axis
    diff::ZogyInput in;
    in.science = &science.pixels.image;
    in.reference = &d.registeredReference.image;
    in.scienceVariance = &science.pixels.variance;
    in.referenceVariance = &d.registeredReference.variance;
    const psf::PsfModel& psfN = *science.psf;
    const psf::PsfModel& psfR = *d.registeredReferencePsf;
    in.sciencePsf = [&psfN](double x, double y) { return psfN.stampAt(x, y); };
    in.referencePsf = [&psfR](double x, double y) { return psfR.stampAt(x, y); };
    in.fluxRatio = d.ratio.ratio;
    try {
        d.zogy = diff::zogy(in, zc, std::move(mask));
    } catch (const Error& e) {
        throw StageError(Stage::Difference, science.label + ": " + e.what());
    }
    run.zogyS = since(t0);
    log::get("astrid.pipeline")
        ->debug("{}: ZOGY {} tiles of {}x{}: kernels {:.3f} s, load {:.3f} s, transforms {:.3f} s, output {:.3f} s, "
                "edge mask {:.3f} s",
                science.label, d.zogy.tiles, d.zogy.fftWidth, d.zogy.fftHeight, d.zogy.timing.kernelsS,
                d.zogy.timing.loadS, d.zogy.timing.transformsS, d.zogy.timing.outputS, d.zogy.timing.maskS);
    run.noiseLevel = 1.0 / d.zogy.fD;
    run.sigmaScience = d.zogy.sigmaScience;
    run.sigmaReference = d.zogy.sigmaReference;
    run.fD = d.zogy.fD;
    run.fS = d.zogy.fS;
    run.scorrStd = robustScorrStd(d.zogy);
    if (!(std::fabs(run.scorrStd - 1.0) <= 0.1)) run.quality |= static_cast<std::uint32_t>(DiffQuality::ScorrWide);
    run.parameters = fmt::format("tile={};overlap={};astrometric_sigma_px={:.4f};psf_sci={};psf_ref={};match={};order={}",
                                 zc.tilePx, d.zogy.overlapPx, zc.astrometricSigmaXPx, psf::kindName(psfN.kind()),
                                 psf::kindName(psfR.kind()),
                                 d.match.method == registration::MatchMethod::Pattern ? "pattern" : "wcs",
                                 d.match.order);
}

void writeDifferenceFits(const std::string& prefix, const PreparedImage& science, const DifferenceImages& d,
                         const DifferenceRun& run) {
    fits::Header h;
    if (science.wcs) h = science.wcs->toHeader();
    h.set("BUNIT", "ADU", "science flux scale");
    h.set("ZOGY_FD", run.fD, "ZOGY F_D (eq 15)");
    h.set("ZOGY_FS", run.fS, "ZOGY F_S (eq 42): flux = S / F_S");
    h.set("FLXRATIO", run.fluxRatio, "reference flux per unit science flux");
    h.set("ASTRMS", run.astrometricRmsPx, "[px] matched-star residual RMS");
    h.set("NOISE", run.noiseLevel, "[ADU] std of D / F_D");
    h.set("SCORRSTD", run.scorrStd, "robust std of S_corr");
    for (const char* key : {"DATE-OBS", "MJD-OBS", "FILTER", "EXPTIME", "OBJECT"})
        if (auto v = science.header.getString(key)) h.set(key, *v);
    // The mask bits (core/image.hpp MaskBit: masked pixels are NaN, Edge marks pixels within a P_D
    // half-size of them or of the border) as a MASK extension of both files.
    fits::Header mh;
    mh.set("EXTNAME", "MASK");
    mh.set("COMMENT", "astrid MaskBit: 1 Bad 2 Saturated 4 NoData 8 Edge 16 CosmicRay 32 Interpolated");
    {
        auto f = fits::FitsFile::create(prefix + "diff.fits");
        fits::Header hd = h;
        hd.set("IMAGETYP", "D/F_D", "ZOGY proper difference in science ADU");
        f.writeImage(d.zogy.diff, hd);
        f.writeImage(d.zogy.mask, mh);
        f.close();
    }
    {
        auto f = fits::FitsFile::create(prefix + "scorr.fits");
        fits::Header hs = h;
        hs.set("IMAGETYP", "S_corr", "ZOGY corrected score, sigma units");
        hs.set("BUNIT", "sigma");
        f.writeImage(d.zogy.scorr, hs);
        f.writeImage(d.zogy.mask, mh);
        f.close();
    }
    auto writePsf = [](const std::string& path, const psf::PsfModel& m, double x, double y) {
        auto f = fits::FitsFile::create(path);
        fits::Header hp;
        hp.set("PSFKIND", std::string(psf::kindName(m.kind())));
        hp.set("FWHM", m.fwhmPx(), "[px]");
        hp.set("NSTARS", m.starsUsed());
        f.writeImage(m.stampAt(x, y), hp);
        f.close();
    };
    const double cx = 0.5 * (science.pixels.width() - 1), cy = 0.5 * (science.pixels.height() - 1);
    if (science.psf) writePsf(prefix + "psf_sci.fits", *science.psf, cx, cy);
    if (d.registeredReferencePsf) writePsf(prefix + "psf_ref.fits", *d.registeredReferencePsf, cx, cy);
}

}  // namespace astrid::pipeline
