#include "astrid/registration/flux_ratio.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "detail.hpp"

namespace astrid::registration {

FluxRatio fluxRatio(const std::vector<MatchedPair>& pairs, const FluxRatioConfig& config) {
    if (config.brightestPairs < 0 || !(config.clipSigma > 0.0) || config.maxIterations < 0 || config.minPairs < 1)
        throw DataError("FluxRatioConfig: brightestPairs >= 0, clipSigma > 0, maxIterations >= 0, minPairs >= 1");
    struct Entry {
        double brightness, logRatio;
    };
    std::vector<Entry> e;
    for (const MatchedPair& p : pairs) {
        const double s = p.sci.flux, r = p.ref.flux;
        if (!(s > 0.0) || !(r > 0.0) || !std::isfinite(s) || !std::isfinite(r)) continue;
        e.push_back({std::sqrt(s) * std::sqrt(r), std::log(r / s)});
    }
    std::sort(e.begin(), e.end(), [](const Entry& a, const Entry& b) { return a.brightness > b.brightness; });
    if (config.brightestPairs > 0 && e.size() > static_cast<std::size_t>(config.brightestPairs))
        e.resize(static_cast<std::size_t>(config.brightestPairs));
    const int nCand = static_cast<int>(e.size());
    auto fail = [&](int used) {
        throw DataError(fmt::format("flux ratio failed: {} usable pairs (of {} given, {} with positive fluxes among the "
                                    "brightest); minimum {}",
                                    used, pairs.size(), nCand, config.minPairs));
    };
    if (nCand < config.minPairs) fail(nCand);

    std::vector<double> all(e.size());
    for (std::size_t k = 0; k < e.size(); ++k) all[k] = e[k].logRatio;
    std::vector<char> keep(all.size(), 1);
    for (int iter = 0; iter < config.maxIterations; ++iter) {
        std::vector<double> kept;
        for (std::size_t k = 0; k < all.size(); ++k)
            if (keep[k]) kept.push_back(all[k]);
        const double med = detail::median(kept);
        std::vector<double> dev(kept.size());
        for (std::size_t k = 0; k < kept.size(); ++k) dev[k] = std::fabs(kept[k] - med);
        // A floor on the scale: identical ratios (noiseless data) must not clip on rounding.
        const double sigma = std::max(1.4826 * detail::median(dev), 1e-9);
        bool changed = false;
        for (std::size_t k = 0; k < all.size(); ++k) {
            const char u = std::fabs(all[k] - med) <= config.clipSigma * sigma ? 1 : 0;
            changed |= u != keep[k];
            keep[k] = u;
        }
        if (!changed) break;
    }
    std::vector<double> kept;
    for (std::size_t k = 0; k < all.size(); ++k)
        if (keep[k]) kept.push_back(all[k]);
    const int n = static_cast<int>(kept.size());
    if (n < config.minPairs) fail(n);
    const double mean = std::accumulate(kept.begin(), kept.end(), 0.0) / n;
    double ss = 0.0;
    for (double v : kept) ss += (v - mean) * (v - mean);
    const double sd = n > 1 ? std::sqrt(ss / (n - 1)) : 0.0;
    FluxRatio r;
    r.ratio = std::exp(mean);
    r.scatter = sd;
    r.error = r.ratio * sd / std::sqrt(static_cast<double>(n));
    r.nUsed = n;
    r.nRejected = nCand - n;
    return r;
}

}  // namespace astrid::registration
