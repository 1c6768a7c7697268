// Magnitudes, zero points and the ensemble normalisation (calibration.hpp).
#include "astrid/photometry/calibration.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numbers>

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "detail.hpp"

namespace astrid::photometry {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

void checkClip(double sigma, int iterations, int minStars, const char* what) {
    if (!(sigma > 0.0)) throw ConfigError(fmt::format("{}: clipSigma must be > 0", what), "clipSigma");
    if (iterations < 0) throw ConfigError(fmt::format("{}: clipIterations must be >= 0", what), "clipIterations");
    if (minStars < 1) throw ConfigError(fmt::format("{}: minStars must be >= 1", what), "minStars");
}
}  // namespace

Magnitude toMagnitude(double flux, double fluxErr, double zeroPoint, double zeroPointErr, const MagnitudeConfig& c) {
    if (!(c.detectionSigma > 0.0)) throw ConfigError("magnitude: detectionSigma must be > 0", "detectionSigma");
    if (!(c.upperLimitSigma > 0.0)) throw ConfigError("magnitude: upperLimitSigma must be > 0", "upperLimitSigma");
    Magnitude m;
    if (!std::isfinite(flux) || !std::isfinite(fluxErr) || !(fluxErr > 0.0) || !std::isfinite(zeroPoint) ||
        !std::isfinite(zeroPointErr)) {
        m.mag = m.magErr = m.snr = kNaN;
        m.flags = bits(PhotFlag::InvalidInput);
        return m;
    }
    m.snr = flux / fluxErr;
    if (m.snr >= c.detectionSigma) {
        m.mag = zeroPoint - 2.5 * std::log10(flux);
        const double e = kMagPerLnFlux * fluxErr / flux;
        m.magErr = std::sqrt(e * e + zeroPointErr * zeroPointErr);
    } else {
        m.mag = zeroPoint - 2.5 * std::log10(c.upperLimitSigma * fluxErr);
        m.magErr = kNaN;
        m.flags = bits(PhotFlag::UpperLimit);
    }
    return m;
}

ZeroPointResult zeroPointFromMagnitudes(std::span<const double> flux, std::span<const double> fluxErr,
                                        std::span<const double> refMag, std::span<const double> refMagErr,
                                        const ZeroPointConfig& c) {
    checkClip(c.clipSigma, c.clipIterations, c.minStars, "zero point");
    const std::size_t n = flux.size();
    if (fluxErr.size() != n || refMag.size() != n || (!refMagErr.empty() && refMagErr.size() != n))
        throw DataError(fmt::format("zero point: {} fluxes, {} errors, {} reference magnitudes, {} their errors", n,
                                    fluxErr.size(), refMag.size(), refMagErr.size()));
    ZeroPointResult res;
    res.used.assign(n, 0);
    std::vector<double> zp, var;
    std::vector<std::size_t> star;
    for (std::size_t i = 0; i < n; ++i) {
        const double f = flux[i], e = fluxErr[i], m = refMag[i], me = refMagErr.empty() ? 0.0 : refMagErr[i];
        if (!std::isfinite(f) || !std::isfinite(e) || !std::isfinite(m) || !std::isfinite(me) || !(f > 0.0) ||
            !(e > 0.0) || f / e < c.minSnr) {
            ++res.nInvalid;
            continue;
        }
        const double em = kMagPerLnFlux * e / f;
        zp.push_back(m + 2.5 * std::log10(f));
        var.push_back(em * em + me * me);
        star.push_back(i);
    }
    // The floor (0.1 mmag) only matters when the MAD collapses (identical or noiseless values).
    const auto kept = detail::madClip(zp, c.clipSigma, c.clipIterations, 1e-4);
    res.nUsed = static_cast<int>(kept.size());
    res.nClipped = static_cast<int>(zp.size() - kept.size());
    if (res.nUsed < c.minStars) res.flags |= bits(PhotFlag::TooFewStars);
    if (kept.empty()) {
        res.zeroPoint = res.zeroPointErr = res.scatter = kNaN;
        return res;
    }
    double sw = 0, swz = 0;
    std::vector<double> keptZp;
    for (std::size_t k : kept) {
        const double wgt = 1.0 / var[k];
        sw += wgt;
        swz += wgt * zp[k];
        keptZp.push_back(zp[k]);
        res.used[star[k]] = 1;
    }
    const double mean = swz / sw;
    double chi2 = 0;
    for (std::size_t k : kept) chi2 += (zp[k] - mean) * (zp[k] - mean) / var[k];
    const double birge = kept.size() > 1 ? std::sqrt(chi2 / static_cast<double>(kept.size() - 1)) : 1.0;
    res.zeroPoint = mean;
    res.zeroPointErr = std::sqrt(1.0 / sw) * std::max(1.0, birge);
    std::vector<double> scratch;
    std::vector<double> sorted = keptZp;
    res.scatter = detail::madSigma(keptZp, detail::medianInPlace(sorted), scratch);
    return res;
}

ZeroPointResult zeroPointFromFluxes(std::span<const double> flux, std::span<const double> fluxErr,
                                    std::span<const double> refFlux, std::span<const double> refFluxErr,
                                    double refZeroPoint, const ZeroPointConfig& c) {
    const std::size_t n = refFlux.size();
    if (!refFluxErr.empty() && refFluxErr.size() != n)
        throw DataError(fmt::format("zero point: {} reference fluxes, {} errors", n, refFluxErr.size()));
    if (!std::isfinite(refZeroPoint)) throw DataError("zero point: reference zero point is not finite");
    std::vector<double> mag(n), magErr(n);
    for (std::size_t i = 0; i < n; ++i) {
        const double f = refFlux[i], e = refFluxErr.empty() ? 0.0 : refFluxErr[i];
        const bool ok = std::isfinite(f) && f > 0.0 && std::isfinite(e) && e >= 0.0 &&
                        (refFluxErr.empty() || (e > 0.0 && f / e >= c.minSnr));
        mag[i] = ok ? refZeroPoint - 2.5 * std::log10(f) : kNaN;  // NaN: not used
        magErr[i] = ok ? kMagPerLnFlux * e / f : kNaN;
    }
    return zeroPointFromMagnitudes(flux, fluxErr, mag, magErr, c);
}

EnsembleResult ensembleNormalization(const FluxMatrix& fm, const EnsembleConfig& c) {
    checkClip(c.clipSigma, c.clipIterations, c.minStars, "ensemble");
    if (c.minStars < 2) throw ConfigError("ensemble: minStars must be >= 2 (the error needs a scatter)", "minStars");
    if (c.minEpochsPerStar < 1) throw ConfigError("ensemble: minEpochsPerStar must be >= 1", "minEpochsPerStar");
    if (c.passes < 1) throw ConfigError("ensemble: passes must be >= 1", "passes");
    if (fm.nStars < 0 || fm.nEpochs < 0)
        throw DataError(fmt::format("ensemble: negative matrix size {}x{}", fm.nStars, fm.nEpochs));
    const std::size_t nS = static_cast<std::size_t>(fm.nStars), nE = static_cast<std::size_t>(fm.nEpochs);
    if (fm.flux.size() != nS * nE || (!fm.fluxErr.empty() && fm.fluxErr.size() != nS * nE))
        throw DataError(fmt::format("ensemble: {} stars x {} epochs but {} fluxes and {} errors", nS, nE,
                                    fm.flux.size(), fm.fluxErr.size()));

    // Which measurements may be used at all.
    std::vector<std::uint8_t> valid(nS * nE, 0);
    for (std::size_t q = 0; q < nS * nE; ++q) {
        const double f = fm.flux[q];
        bool ok = std::isfinite(f) && f > 0.0;
        if (ok && !fm.fluxErr.empty()) {
            const double e = fm.fluxErr[q];
            ok = std::isfinite(e) && e > 0.0 && f / e >= c.minSnr;
        }
        valid[q] = ok ? 1 : 0;
    }

    EnsembleResult res;
    res.correction.assign(nE, 1.0);
    res.correctionErr.assign(nE, 0.0);
    res.nStarsUsed.assign(nE, 0);
    res.epochFlags.assign(nE, 0);
    res.baseline.assign(nS, kNaN);
    res.starScatter.assign(nS, kNaN);
    res.starFlags.assign(nS, 0);

    std::vector<double> sample, ratios;
    for (int pass = 0; pass < c.passes; ++pass) {
        // Baselines from the fluxes corrected by the previous pass (c = 1 in the first).
        for (std::size_t i = 0; i < nS; ++i) {
            sample.clear();
            for (std::size_t k = 0; k < nE; ++k)
                if (valid[i * nE + k] && std::isfinite(res.correction[k]))
                    sample.push_back(fm.flux[i * nE + k] / res.correction[k]);
            const bool ok = static_cast<int>(sample.size()) >= c.minEpochsPerStar;
            res.baseline[i] = ok ? detail::medianInPlace(sample) : kNaN;
            res.starFlags[i] = ok ? 0u : bits(PhotFlag::NoBaseline);
        }
        // Per-epoch corrections.
        std::vector<double> next(nE), nextErr(nE);
        for (std::size_t k = 0; k < nE; ++k) {
            ratios.clear();
            for (std::size_t i = 0; i < nS; ++i)
                if (valid[i * nE + k] && std::isfinite(res.baseline[i]) && res.baseline[i] > 0.0)
                    ratios.push_back(fm.flux[i * nE + k] / res.baseline[i]);
            const auto kept = detail::madClip(ratios, c.clipSigma, c.clipIterations, 1e-6);
            res.nStarsUsed[k] = static_cast<int>(kept.size());
            res.epochFlags[k] = static_cast<int>(kept.size()) < c.minStars ? bits(PhotFlag::TooFewStars) : 0u;
            if (kept.empty()) {
                next[k] = nextErr[k] = kNaN;
                continue;
            }
            sample.clear();
            for (std::size_t q : kept) sample.push_back(ratios[q]);
            const double med = detail::medianInPlace(sample);
            double ss = 0.0;
            for (double r : sample) ss += (r - med) * (r - med);
            const double n = static_cast<double>(sample.size());
            const double sd = sample.size() > 1 ? std::sqrt(ss / (n - 1.0)) : kNaN;
            next[k] = med;
            nextErr[k] = std::sqrt(std::numbers::pi / 2.0) * sd / std::sqrt(n);
        }
        res.correction = next;
        res.correctionErr = nextErr;
    }
    // Variability index per star, against the final corrections and baselines.
    std::vector<double> scratch;
    for (std::size_t i = 0; i < nS; ++i) {
        if (!std::isfinite(res.baseline[i])) continue;
        sample.clear();
        for (std::size_t k = 0; k < nE; ++k)
            if (valid[i * nE + k] && std::isfinite(res.correction[k]))
                sample.push_back(fm.flux[i * nE + k] / (res.correction[k] * res.baseline[i]));
        if (sample.empty()) continue;
        std::vector<double> tmp = sample;
        res.starScatter[i] = detail::madSigma(sample, detail::medianInPlace(tmp), scratch);
    }
    return res;
}

NormalizedFlux normalizeFlux(double flux, double fluxErr, double correction, double correctionErr) noexcept {
    NormalizedFlux out;
    out.flux = flux / correction;
    const double a = fluxErr / correction, b = flux * correctionErr / (correction * correction);
    out.fluxErr = std::sqrt(a * a + b * b);
    return out;
}

}  // namespace astrid::photometry
