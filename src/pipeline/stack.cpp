#include "astrid/pipeline/stack.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <limits>
#include <memory>
#include <numbers>

#include <fmt/format.h>

#include "astrid/core/log.hpp"
#include "astrid/core/stats.hpp"
#include "detail.hpp"

namespace astrid::pipeline {
namespace {
constexpr const char* kLogger = "astrid.pipeline.stack";
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

double headerNumber(const fits::Header& h, std::initializer_list<const char*> keys) {
    for (const char* k : keys) {
        try {
            if (auto v = h.getDouble(k)) return *v;
        } catch (const FitsError&) {
            // A malformed optional key is treated as absent.
        }
    }
    return kNaN;
}

/// Largest distance between a pixel of the first grid and where `map` sends it, over a 16 px grid
/// and the last row and column.
double gridOffsetPx(const registration::PixelMap& map, int w, int h) {
    double worst = 0.0;
    auto visit = [&](int x, int y) {
        const auto q = map.apply(x, y);
        const double d = std::hypot(q.x - x, q.y - y);
        worst = std::isfinite(d) ? std::max(worst, d) : std::numeric_limits<double>::infinity();
    };
    for (int y = 0;; y = std::min(y + 16, h - 1)) {
        for (int x = 0;; x = std::min(x + 16, w - 1)) {
            visit(x, y);
            if (x == w - 1) break;
        }
        if (y == h - 1) break;
    }
    return worst;
}

std::string baseName(const std::string& label) { return std::filesystem::path(label).filename().string(); }

/// One input on the stack's grid: its pixels (the prepared image itself, or a resampled copy) and the
/// sky variance map that weights it, both before scaling.
struct Placed {
    const MaskedImage* pixels = nullptr;
    MaskedImage resampled;        // owned when registered
    Image<float> skyVariance;     // ADU^2 of the input, on the stack's grid
    double scale = 1.0;
};
}  // namespace

std::string placementName(StackPlacement p) {
    switch (p) {
        case StackPlacement::SameGrid: return "same grid";
        case StackPlacement::Matched: return "stars matched";
        case StackPlacement::Pattern: return "asterism matched";
        case StackPlacement::WcsOnly: return "WCS only";
    }
    return "unknown";
}

StackResult stackImages(const std::vector<PreparedImage>& inputs, const StackConfig& cfg, const PrepareConfig& prepare) {
    if (inputs.empty()) throw DataError("stack: no input images");
    if (!(cfg.clipSigma > 0.0) || !(cfg.clipAmplitudeFraction >= 0.0) || cfg.clipMinInputs < 2 ||
        !(cfg.sameGridTolerancePx >= 0.0))
        throw ConfigError("clipSigma > 0, clipAmplitudeFraction >= 0, clipMinInputs >= 2, sameGridTolerancePx >= 0",
                          "stack");
    auto log = log::get(kLogger);
    const PreparedImage& first = inputs.front();
    const int W = first.pixels.width(), H = first.pixels.height();
    const std::size_t N = inputs.size();
    for (const PreparedImage& in : inputs)
        if (!in.psf) throw DataError(in.label + ": no PSF model (prepareImage first)");

    StackResult out;
    out.inputs.resize(N);
    std::vector<Placed> placed(N);
    const auto firstStars = detail::matchPoints(first.stars);
    for (std::size_t k = 0; k < N; ++k) {
        const PreparedImage& in = inputs[k];
        StackInputInfo& info = out.inputs[k];
        Placed& p = placed[k];
        info.label = in.label;
        info.fwhmPx = in.psf->fwhmPx();
        info.astrometricRmsPx = kNaN;

        // The sky noise map that weights this input (measured on its background-subtracted pixels).
        Image<float> skyVariance;
        try {
            const auto bkg = background::estimateBackground(in.pixels.image, in.pixels.mask, prepare.background);
            info.skyRms = bkg.globalRms;
            skyVariance = bkg.rms;
            for (float& v : skyVariance.pixels()) v *= v;
        } catch (const Error& e) {
            throw StageError(Stage::Background, in.label + ": sky noise for the stack weights: " + e.what());
        }

        std::vector<registration::MatchedPair> pairs;
        if (k == 0) {
            p.pixels = &in.pixels;
            p.skyVariance = std::move(skyVariance);
            log->info("{}: first input (grid and flux scale), FWHM {:.2f} px, sky rms {:.2f}", in.label, info.fwhmPx,
                      info.skyRms);
            continue;
        }
        // Already on the first grid? Only the WCSs can say; without them the stars decide.
        const bool sameSize = in.pixels.width() == W && in.pixels.height() == H;
        if (!sameSize && !(first.wcs && in.wcs))
            throw DataError(fmt::format("{} is {}x{} px but {} is {}x{}, and without a WCS in both the stack cannot place "
                                        "it on the first image's grid",
                                        in.label, in.pixels.width(), in.pixels.height(), first.label, W, H));
        bool sameGrid = false;
        try {
            if (sameSize && first.wcs && in.wcs) {
                const auto map = registration::PixelMap::fromWcs(*first.wcs, *in.wcs, W, H);
                if (gridOffsetPx(map, W, H) <= cfg.sameGridTolerancePx) {
                    sameGrid = true;
                    pairs = detail::pairThrough(firstStars, detail::matchPoints(in.stars), map, 1.0);
                }
            }
            if (sameGrid) {
                info.placement = StackPlacement::SameGrid;
                p.pixels = &in.pixels;
                p.skyVariance = std::move(skyVariance);
            } else {
                detail::Placement reg = detail::registerOnto(first, in, W, H, cfg.match, kLogger);
                info.placement = reg.wcsOnly                                           ? StackPlacement::WcsOnly
                                 : reg.match.method == registration::MatchMethod::Pattern ? StackPlacement::Pattern
                                                                                        : StackPlacement::Matched;
                if (!reg.wcsOnly) {
                    info.matchedStars = reg.match.nUsed;
                    info.astrometricRmsPx = reg.match.rmsPx;
                }
                pairs = std::move(reg.match.pairs);
                registration::ResampleConfig rc = cfg.resample;
                rc.variance = registration::VarianceResampling::NoisePower;
                p.resampled = registration::resample(in.pixels, reg.match.map, W, H, rc);
                p.pixels = &p.resampled;
                // The sky variance map follows the pixels: flux-conserving resampling of a smooth map
                // multiplies it by |det J|, as NoisePower does for the variance plane.
                MaskedImage sky(in.pixels.width(), in.pixels.height());
                sky.image = std::move(skyVariance);
                std::fill(sky.variance.data(), sky.variance.data() + sky.variance.size(), 1.0f);
                registration::ResampleConfig skyCfg = rc;
                skyCfg.flux = registration::FluxScaling::Conserve;
                p.skyVariance = registration::resample(sky, reg.match.map, W, H, skyCfg).image;
            }
        } catch (const StageError&) {
            throw;
        } catch (const Error& e) {
            throw StageError(Stage::Registration, in.label + " onto " + first.label + ": " + e.what());
        }

        // The photometric scale to the first input.
        try {
            const auto ratio = detail::measureFluxRatio(first, in, pairs, cfg.fluxRatio);
            p.scale = 1.0 / ratio.ratio;
            info.scale = p.scale;
            info.scaleError = ratio.error / (ratio.ratio * ratio.ratio);
            info.scaleStars = ratio.nUsed;
        } catch (const DataError& e) {
            log->warn("{}: flux scale relative to {} cannot be measured ({}); using 1", in.label, first.label, e.what());
        }
        log->info("{}: {}, scale {:.4f} +- {:.4f} ({} stars), FWHM {:.2f} px, sky rms {:.2f}", in.label,
                  placementName(info.placement), info.scale, info.scaleError, info.scaleStars, info.fwhmPx, info.skyRms);
    }

    // Per pixel: clipped, weighted mean of the scaled values.
    out.pixels = MaskedImage(W, H);
    out.count = Image<std::uint16_t>(W, H, 0);
    const std::uint16_t fatal = background::kInfiniteVarianceMask;
    const std::uint16_t noData = bits(MaskBit::NoData);
    std::vector<double> y(N), v(N), w(N), scratch(N);
    std::vector<std::size_t> idx(N);
    std::vector<char> reject(N);
    std::vector<double> weightSum(N, 0.0);
    double totalWeight = 0.0;
    for (int py = 0; py < H; ++py)
        for (int px = 0; px < W; ++px) {
            std::size_t n = 0;
            std::uint16_t allBits = 0;
            for (std::size_t k = 0; k < N; ++k) {
                const MaskedImage& m = *placed[k].pixels;
                const std::uint16_t b = m.mask(px, py);
                allBits = static_cast<std::uint16_t>(allBits | b);
                const double s = placed[k].scale;
                const double value = m.image(px, py), var = m.variance(px, py), sky = placed[k].skyVariance(px, py);
                if ((b & fatal) != 0 || !std::isfinite(value) || !(var > 0.0) || !std::isfinite(var) || !(sky > 0.0) ||
                    !std::isfinite(sky))
                    continue;
                y[n] = s * value;
                v[n] = s * s * var;
                w[n] = 1.0 / (s * s * sky);
                idx[n] = k;
                ++n;
            }
            if (n >= static_cast<std::size_t>(cfg.clipMinInputs)) {
                auto median = [&](const std::vector<double>& a) {
                    std::copy(a.begin(), a.begin() + static_cast<std::ptrdiff_t>(n), scratch.begin());
                    return medianInPlace(std::span(scratch.data(), n));
                };
                const double m = median(y);
                // The median's own variance (pi / 2n of one value's for Gaussian noise) joins each value's.
                const double vMedian = std::numbers::pi / (2.0 * static_cast<double>(n)) * median(v);
                const double amp = cfg.clipAmplitudeFraction * m;
                std::size_t kept = 0;
                for (std::size_t i = 0; i < n; ++i) {
                    reject[i] = std::fabs(y[i] - m) > cfg.clipSigma * std::sqrt(v[i] + vMedian + amp * amp);
                    kept += !reject[i];
                }
                // For odd n the median value itself always passes; for even n the two middle values can
                // both fail only when they disagree wildly, and then nothing says which values are good:
                // keep them all.
                if (kept > 0 && kept < n) {
                    kept = 0;
                    for (std::size_t i = 0; i < n; ++i) {
                        if (reject[i]) {
                            ++out.inputs[idx[i]].clippedPixels;
                            ++out.clippedValues;
                            continue;
                        }
                        y[kept] = y[i], v[kept] = v[i], w[kept] = w[i], idx[kept] = idx[i];
                        ++kept;
                    }
                    n = kept;
                }
            }
            if (n == 0) {
                out.pixels.image(px, py) = 0.0f;
                out.pixels.variance(px, py) = std::numeric_limits<float>::infinity();
                out.pixels.mask(px, py) = static_cast<std::uint16_t>(allBits | noData);
                ++out.uncoveredPixels;
                continue;
            }
            double sw = 0.0, swy = 0.0, sw2v = 0.0;
            std::uint16_t soft = 0;
            for (std::size_t i = 0; i < n; ++i) {
                sw += w[i];
                swy += w[i] * y[i];
                sw2v += w[i] * w[i] * v[i];
                weightSum[idx[i]] += w[i];
                ++out.inputs[idx[i]].usedPixels;
                soft = static_cast<std::uint16_t>(soft | (placed[idx[i]].pixels->mask(px, py) & ~fatal));
            }
            totalWeight += sw;
            out.pixels.image(px, py) = static_cast<float>(swy / sw);
            out.pixels.variance(px, py) = static_cast<float>(sw2v / (sw * sw));
            out.pixels.mask(px, py) = soft;
            out.count(px, py) = static_cast<std::uint16_t>(n);
        }
    for (std::size_t k = 0; k < N; ++k) out.inputs[k].weightShare = totalWeight > 0.0 ? weightSum[k] / totalWeight : 0.0;

    // Effective gain and read noise of the weighted mean, with each input's image-wide weight
    // wbar_k = 1 / (s_k^2 sky_k^2): a source of flux F (first input's ADU) has Poisson variance
    // F s_k / g_k in scaled input k, so the mean has F sum(wbar^2 s / g) / W^2 and g_eff = W^2 / sum(wbar^2 s / g);
    // read noise (rn_k / g_k)^2 s_k^2 ADU^2 per input gives (rn_eff / g_eff)^2 = sum(wbar^2 s^2 (rn/g)^2) / W^2.
    {
        double wSum = 0.0, poisson = 0.0, read = 0.0;
        bool known = true, readKnown = true;
        for (std::size_t k = 0; k < N; ++k) {
            const double g = headerNumber(inputs[k].header, {"GAIN", "EGAIN", "GAINA"});
            const double rn = headerNumber(inputs[k].header, {"RDNOISE", "READNOIS", "RDNOISEA"});
            const double s = placed[k].scale, sky = out.inputs[k].skyRms;
            const double wbar = 1.0 / (s * s * sky * sky);
            if (!(g > 0.0) || !std::isfinite(g) || !(sky > 0.0)) known = false;
            if (!(rn >= 0.0) || !std::isfinite(rn)) readKnown = false;
            wSum += wbar;
            poisson += wbar * wbar * s / g;
            read += wbar * wbar * s * s * (rn / g) * (rn / g);
        }
        out.gain = known ? wSum * wSum / poisson : kNaN;
        out.readNoise = known && readKnown ? out.gain * std::sqrt(read) / wSum : kNaN;
    }

    // The header: the first input's, with the stack's keys.
    out.header = first.header;
    for (const char* key : {"CHECKSUM", "DATASUM", "BLANK", "SATURATE", "SATURATA", "SATURATB", "ESATUR", "GAINA", "GAINB",
                            "EGAIN", "RDNOISEA", "RDNOISEB", "READNOIS", "GAIN", "RDNOISE"})
        out.header.erase(key);
    if (std::isfinite(out.gain)) out.header.set("GAIN", out.gain, "[e-/ADU] effective gain of the weighted mean");
    if (std::isfinite(out.readNoise)) out.header.set("RDNOISE", out.readNoise, "[e-] effective read noise at GAIN");
    out.header.setBool("BKGSUB", true, "background subtracted (astrid stack)");
    out.header.set("NCOMBINE", static_cast<long long>(N), "exposures in the astrid stack");
    out.header.set("STKCLIP", cfg.clipSigma, "per-pixel clip (sigma), >= " + std::to_string(cfg.clipMinInputs) + " inputs");
    out.header.set("STKAMPF", cfg.clipAmplitudeFraction, "clip amplitude fraction (Gruen et al. 2014)");
    for (std::size_t k = 0; k < N; ++k) {
        const StackInputInfo& info = out.inputs[k];
        out.header.set(fmt::format("IMCMB{:03d}", k + 1), baseName(info.label),
                       fmt::format("x{:.5f} {}", info.scale, k == 0 ? "first" : placementName(info.placement)));
    }
    log->info("stack of {}: {} clipped values, {} uncovered pixels, effective gain {:.3f}", N, out.clippedValues,
              out.uncoveredPixels, out.gain);
    return out;
}

void writeStackFits(const std::string& path, const StackResult& stack) {
    const int W = stack.pixels.width(), H = stack.pixels.height();
    Image<float> image = stack.pixels.image;
    for (int y = 0; y < H; ++y)
        for (int x = 0; x < W; ++x)
            if (stack.count(x, y) == 0) image(x, y) = std::numeric_limits<float>::quiet_NaN();
    auto f = fits::FitsFile::create(path);
    f.writeImage(image, stack.header);
    fits::Header hv;
    hv.set("EXTNAME", "VARIANCE");
    hv.set("BUNIT", "ADU2", "variance of the primary image");
    f.writeImage(stack.pixels.variance, hv);
    fits::Header hc;
    hc.set("EXTNAME", "COUNT");
    hc.set("BUNIT", "", "inputs contributing to each pixel");
    f.writeImage(stack.count, hc);
    f.close();
}

}  // namespace astrid::pipeline
