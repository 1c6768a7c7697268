// Per-pixel variance: the CCD noise model, or a given variance plane made safe to use.
#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "astrid/background/background.hpp"
#include "astrid/core/error.hpp"
#include "detail.hpp"

namespace astrid::background {
namespace {

std::string dims(int w, int h) { return std::to_string(w) + "x" + std::to_string(h); }

void requireSize(const char* what, int w, int h, int iw, int ih) {
    if (w != iw || h != ih)
        throw DataError(std::string("varianceMap: ") + what + " is " + dims(w, h) + " but the image is " +
                        dims(iw, ih));
}

// 1 / gain for the source term when the gain is unknown, from the global background: solves
// rms^2 = level u + rn^2 u^2 (u = 1 / g) for u, in the form that stays accurate when rn -> 0
// (u = rms^2 / level). 0 (no source term) when the level is not positive.
double inverseEffectiveGain(double level, double rms, double readNoiseElectrons) {
    if (!(level > 0.0) || !(rms > 0.0)) return 0.0;
    const bool known = std::isfinite(readNoiseElectrons) && readNoiseElectrons > 0.0;
    const double rn2 = known ? readNoiseElectrons * readNoiseElectrons : 0.0;
    const double r2 = rms * rms;
    return 2.0 * r2 / (level + std::sqrt(level * level + 4.0 * rn2 * r2));
}

// One row of each model; see detail::forEach8 for why these are written this way.
[[gnu::noinline]]
void knownGainRow(const float* __restrict I, const float* __restrict B, float* __restrict V, std::size_t n, float invG,
                  float readVar) {
    detail::forEach8(n, [&](std::size_t i) { V[i] = detail::maxf(I[i], detail::maxf(B[i], 0.0f)) * invG + readVar; });
}

[[gnu::noinline]]
void unknownGainRow(const float* __restrict I, const float* __restrict B, const float* __restrict R,
                    float* __restrict V, std::size_t n, float invG) {
    detail::forEach8(n, [&](std::size_t i) { V[i] = R[i] * R[i] + detail::maxf(I[i] - B[i], 0.0f) * invG; });
}

// +inf where the pixel is not finite (NaN would leak through std::max either way) or masked.
[[gnu::noinline]]
void infiniteWhereBad(const float* __restrict I, const std::uint16_t* __restrict M, float* __restrict V, std::size_t n,
                      std::uint16_t infiniteMask) {
    const float inf = std::numeric_limits<float>::infinity();
    detail::forEach8(n, [&](std::size_t i) {
        const float v = V[i];
        V[i] = detail::finite(I[i]) ? v : inf;
    });
    if (M == nullptr) return;
    detail::forEach8(n, [&](std::size_t i) {
        const float v = V[i];
        V[i] = (M[i] & infiniteMask) != 0 ? inf : v;
    });
}

// Read noise (ADU) implied by the background when the header has none: rms^2 = level / g + rn^2, the
// part of the measured noise that the sky's Poisson noise does not explain (0 when it explains all).
double readNoiseFromBackground(double level, double rms, double gain) {
    return std::sqrt(std::max(0.0, rms * rms - std::max(level, 0.0) / gain));
}

}  // namespace

void varianceMap(const Image<float>& image, const BackgroundMap& bkg, double gainElectronsPerAdu,
                 double readNoiseElectrons, const Image<std::uint16_t>* mask, std::uint16_t infiniteMask,
                 Image<float>& var) {
    const int w = image.width(), h = image.height();
    requireSize("background level", bkg.level.width(), bkg.level.height(), w, h);
    requireSize("background rms", bkg.rms.width(), bkg.rms.height(), w, h);
    const bool useMask = mask != nullptr && !mask->empty();
    if (useMask) requireSize("mask", mask->width(), mask->height(), w, h);
    const bool knownGain = std::isfinite(gainElectronsPerAdu) && gainElectronsPerAdu > 0.0;
    if (readNoiseElectrons < 0.0)
        throw DataError("varianceMap: negative read noise " + std::to_string(readNoiseElectrons) + " e-");

    if (&var == &image || &var == &bkg.level || &var == &bkg.rms)
        throw DataError("varianceMap: the output must not be one of the inputs");
    if (var.width() != w || var.height() != h) var = Image<float>(w, h, Uninitialized{});
    const std::size_t W = static_cast<std::size_t>(w);
    const std::uint16_t* M = useMask ? mask->data() : nullptr;
    if (knownGain) {
        // (B + max(I - B, 0)) / g + (rn / g)^2 = max(I, B) / g + (rn / g)^2, with B >= 0.
        const auto invG = static_cast<float>(1.0 / gainElectronsPerAdu);
        const double rnAdu = std::isfinite(readNoiseElectrons)
                                 ? readNoiseElectrons / gainElectronsPerAdu
                                 : readNoiseFromBackground(bkg.globalLevel, bkg.globalRms, gainElectronsPerAdu);
        const auto readVar = static_cast<float>(rnAdu * rnAdu);
        // A sky-subtracted (or rescaled) image has lost the sky level the gain model needs: the real
        // DECam files give level -2 ADU and RMS 52 ADU with GAIN 4.15, where the model would say
        // 2.8 ADU. When the measured sky noise exceeds the model by half again, the measured RMS map
        // carries the sky term and the gain only the source term.
        const double modelSkyVar = std::max(bkg.globalLevel, 0.0) / gainElectronsPerAdu + rnAdu * rnAdu;
        const bool skyFromRms = bkg.globalRms * bkg.globalRms > 1.5 * modelSkyVar;
        for (int y = 0; y < h; ++y) {
            const std::size_t row = static_cast<std::size_t>(y) * W;
            if (skyFromRms)
                unknownGainRow(image.data() + row, bkg.level.data() + row, bkg.rms.data() + row, var.data() + row, W, invG);
            else
                knownGainRow(image.data() + row, bkg.level.data() + row, var.data() + row, W, invG, readVar);
            infiniteWhereBad(image.data() + row, M ? M + row : nullptr, var.data() + row, W, infiniteMask);
        }
    } else {
        const auto invG = static_cast<float>(inverseEffectiveGain(bkg.globalLevel, bkg.globalRms, readNoiseElectrons));
        for (int y = 0; y < h; ++y) {
            const std::size_t row = static_cast<std::size_t>(y) * W;
            unknownGainRow(image.data() + row, bkg.level.data() + row, bkg.rms.data() + row, var.data() + row, W, invG);
            infiniteWhereBad(image.data() + row, M ? M + row : nullptr, var.data() + row, W, infiniteMask);
        }
    }
}

Image<float> varianceMap(const Image<float>& image, const BackgroundMap& bkg, double gainElectronsPerAdu,
                         double readNoiseElectrons, const Image<std::uint16_t>* mask, std::uint16_t infiniteMask) {
    Image<float> var;
    varianceMap(image, bkg, gainElectronsPerAdu, readNoiseElectrons, mask, infiniteMask, var);
    return var;
}

std::size_t sanitizeVariance(Image<float>& variance, Image<std::uint16_t>& mask, std::uint16_t infiniteMask) {
    if (variance.empty()) throw DataError("sanitizeVariance: empty variance plane");
    if (mask.empty()) mask = Image<std::uint16_t>(variance.width(), variance.height(), 0);
    if (mask.width() != variance.width() || mask.height() != variance.height())
        throw DataError("sanitizeVariance: mask is " + dims(mask.width(), mask.height()) + " but the variance is " +
                        dims(variance.width(), variance.height()));
    const float inf = std::numeric_limits<float>::infinity();
    const std::uint16_t noData = bits(MaskBit::NoData);
    float* V = variance.data();
    std::uint16_t* M = mask.data();
    std::size_t infinite = 0;
    for (std::size_t i = 0; i < variance.size(); ++i) {
        const float v = V[i];
        if (!(std::isfinite(v) && v > 0.0f)) {
            M[i] = static_cast<std::uint16_t>(M[i] | noData);
            V[i] = inf;
            ++infinite;
        } else if (M[i] & infiniteMask) {
            V[i] = inf;
            ++infinite;
        }
    }
    return infinite;
}

}  // namespace astrid::background
