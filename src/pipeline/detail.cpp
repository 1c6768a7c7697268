#include "detail.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include "astrid/core/log.hpp"

namespace astrid::pipeline::detail {

std::vector<registration::MatchPoint> matchPoints(const psf::StarFinderResult& r) {
    constexpr std::uint32_t reject = psf::kAstrometryRejectFlags & ~psf::bits(psf::StarFlag::Blended);
    std::vector<registration::MatchPoint> out;
    out.reserve(r.stars.size());
    for (const psf::Star& s : r.stars)
        if ((s.flags & reject) == 0 && s.flux > 0) out.push_back({s.x, s.y, s.flux});
    return out;
}

double psfFlux(const MaskedImage& m, const psf::PsfModel& model, double x, double y) {
    const int cx = static_cast<int>(std::lround(x)), cy = static_cast<int>(std::lround(y));
    const Image<double> stamp = model.stampAt(x, y, x - cx, y - cy);
    const int h = stamp.width() / 2;
    double num = 0.0, den = 0.0;
    for (int j = -h; j <= h; ++j)
        for (int i = -h; i <= h; ++i) {
            const int px = cx + i, py = cy + j;
            if (px < 0 || py < 0 || px >= m.width() || py >= m.height() || m.mask(px, py) != 0) continue;
            const double v = m.variance(px, py), d = m.image(px, py), p = stamp(i + h, j + h);
            if (!(v > 0.0) || !std::isfinite(v) || !std::isfinite(d)) continue;
            num += p * d / v;
            den += p * p / v;
        }
    return den > 0.0 ? num / den : std::numeric_limits<double>::quiet_NaN();
}

std::vector<registration::MatchedPair> pairThrough(const std::vector<registration::MatchPoint>& gridStars,
                                                   const std::vector<registration::MatchPoint>& movingStars,
                                                   const registration::PixelMap& map, double radiusPx) {
    // Moving stars sorted by x: each look-up scans only the strip |x - x_pred| < radius.
    std::vector<const registration::MatchPoint*> byX;
    byX.reserve(movingStars.size());
    for (const auto& p : movingStars) byX.push_back(&p);
    std::sort(byX.begin(), byX.end(), [](const auto* a, const auto* b) { return a->x < b->x; });
    std::vector<registration::MatchedPair> pairs;
    const double r2 = radiusPx * radiusPx;
    for (const auto& g : gridStars) {
        const auto q = map.apply(g.x, g.y);
        auto it = std::lower_bound(byX.begin(), byX.end(), q.x - radiusPx,
                                   [](const registration::MatchPoint* p, double x) { return p->x < x; });
        const registration::MatchPoint* best = nullptr;
        double bestD2 = r2;
        for (; it != byX.end() && (*it)->x <= q.x + radiusPx; ++it) {
            const double d2 = ((*it)->x - q.x) * ((*it)->x - q.x) + ((*it)->y - q.y) * ((*it)->y - q.y);
            if (d2 < bestD2) bestD2 = d2, best = *it;
        }
        if (best) pairs.push_back({g, *best});
    }
    return pairs;
}

Placement registerOnto(const PreparedImage& grid, const PreparedImage& moving, int width, int height,
                       const registration::MatchConfig& config, const std::string& logger) {
    Placement out;
    const auto gridPts = matchPoints(grid.stars), movingPts = matchPoints(moving.stars);
    std::optional<registration::PixelMap> guess;
    if (grid.wcs && moving.wcs) guess.emplace(registration::PixelMap::fromWcs(*grid.wcs, *moving.wcs, width, height));
    try {
        out.match = registration::matchStarLists(gridPts, movingPts, guess ? &*guess : nullptr, config);
    } catch (const DataError& e) {
        if (!guess) throw;
        // Crowded or sparse fields where star pairs give no consistent fit: register with the WCSs
        // alone (their own accuracy) and pair stars through them for the photometric scale only.
        log::get(logger)->warn("{}: star matching with {} failed ({}); registering with the WCSs alone", grid.label,
                               moving.label, e.what());
        out.match = registration::MatchResult{};
        out.match.map = *guess;
        out.match.method = registration::MatchMethod::Guess;
        out.match.pairs = pairThrough(gridPts, movingPts, *guess, 1.0);
        out.wcsOnly = true;
    }
    return out;
}

registration::FluxRatio measureFluxRatio(const PreparedImage& grid, const PreparedImage& moving,
                                         const std::vector<registration::MatchedPair>& pairs,
                                         const registration::FluxRatioConfig& config, std::size_t maxPairs) {
    std::vector<registration::MatchedPair> measured;
    const std::size_t n = std::min(pairs.size(), maxPairs);
    for (std::size_t i = 0; i < n; ++i) {
        registration::MatchedPair p = pairs[i];
        p.sci.flux = psfFlux(grid.pixels, *grid.psf, p.sci.x, p.sci.y);
        p.ref.flux = psfFlux(moving.pixels, *moving.psf, p.ref.x, p.ref.y);
        if (std::isfinite(p.sci.flux) && std::isfinite(p.ref.flux)) measured.push_back(p);
    }
    return registration::fluxRatio(measured, config);
}

}  // namespace astrid::pipeline::detail
