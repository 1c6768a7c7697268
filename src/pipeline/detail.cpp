#include "detail.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include <fmt/format.h>

#include "astrid/core/angle.hpp"
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

/// Fraction of a W x H grid that `map` places on a refW x refH image (33 x 33 points, corners
/// included). Points the map cannot place (NaN) count as outside.
double coveredFraction(const registration::PixelMap& map, int W, int H, int refW, int refH) {
    constexpr int n = 33;
    int inside = 0;
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i) {
            const auto q = map.apply((W - 1) * i / (n - 1.0), (H - 1) * j / (n - 1.0));
            inside += q.x >= -0.5 && q.y >= -0.5 && q.x <= refW - 0.5 && q.y <= refH - 0.5;
        }
    return inside / static_cast<double>(n * n);
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
        // Images of two different fields end here too (no star pattern in common): without this
        // check they went on to a reference resampled entirely outside its pixels, and the epoch
        // failed on a misleading cause (test_bad_pairs: "flux ratio failed: 0 usable pairs" for a
        // reference 1 degree away).
        if (coveredFraction(*guess, width, height, moving.pixels.width(), moving.pixels.height()) == 0.0) {
            const auto a = grid.wcs->pixelToSky(0.5 * (width - 1), 0.5 * (height - 1));
            const auto b = moving.wcs->pixelToSky(0.5 * (moving.pixels.width() - 1), 0.5 * (moving.pixels.height() - 1));
            throw DataError(fmt::format("no overlap (image centres {:.3f} deg apart by their WCSs; no star pattern in common)",
                                        angularSeparationDeg(a.raDeg, a.decDeg, b.raDeg, b.decDeg)));
        }
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

double crossConvolvedFlux(const MaskedImage& m, const psf::PsfModel& ownPsf, double x, double y,
                          const psf::PsfModel& otherPsf, double otherX, double otherY, int hs, double& snr) {
    constexpr double nan = std::numeric_limits<double>::quiet_NaN();
    snr = nan;
    if (!std::isfinite(x) || !std::isfinite(y)) return nan;
    const int cx = static_cast<int>(std::lround(x)), cy = static_cast<int>(std::lround(y));
    const Image<double> other = otherPsf.stampAt(otherX, otherY);           // centred
    const Image<double> own = ownPsf.stampAt(x, y, x - cx, y - cy);         // at the star
    // The convolving PSF is cut at 2 FWHM (a beta-3 Moffat keeps ~96% of its light there): the data
    // and the model are convolved with the same cut kernel, so the fit stays exact, while a footprint
    // of the full 4-FWHM stamp would lose most stars of a crowded field to a masked pixel nearby.
    const int ho = std::min(other.width() / 2, static_cast<int>(std::ceil(2.0 * otherPsf.fwhmPx())));
    const int hoFull = other.width() / 2, hi = own.width() / 2;
    const int reach = hs + ho;
    if (cx - reach < 0 || cy - reach < 0 || cx + reach >= m.width() || cy + reach >= m.height()) return nan;
    for (int j = -reach; j <= reach; ++j)
        for (int i = -reach; i <= reach; ++i) {
            const int px = cx + i, py = cy + j;
            if ((m.mask(px, py) & background::kInfiniteVarianceMask) != 0 || !std::isfinite(m.image(px, py))) return nan;
        }
    // The plain PSF fit's S/N (what ranks the pair).
    double pd = 0.0, pp = 0.0;
    for (int j = -hi; j <= hi; ++j)
        for (int i = -hi; i <= hi; ++i) {
            const int px = cx + i, py = cy + j;
            if (px < 0 || py < 0 || px >= m.width() || py >= m.height() || m.mask(px, py) != 0) continue;
            const double v = m.variance(px, py);
            if (!(v > 0.0) || !std::isfinite(v)) continue;
            pd += own(i + hi, j + hi) * m.image(px, py) / v;
            pp += own(i + hi, j + hi) * own(i + hi, j + hi) / v;
        }
    if (pp > 0.0) snr = pd / std::sqrt(pp);
    // Convolved image and model over the stamp, then the least-squares fit data = a model + b.
    const int n = (2 * hs + 1) * (2 * hs + 1);
    double sk = 0.0, sd = 0.0, skk = 0.0, skd = 0.0;
    for (int j = -hs; j <= hs; ++j)
        for (int i = -hs; i <= hs; ++i) {
            double d = 0.0, k = 0.0;
            for (int qj = -ho; qj <= ho; ++qj)
                for (int qi = -ho; qi <= ho; ++qi) {
                    const double w = other(qi + hoFull, qj + hoFull);
                    d += w * m.image(cx + i - qi, cy + j - qj);
                    const int si = i - qi, sj = j - qj;
                    if (si >= -hi && si <= hi && sj >= -hi && sj <= hi) k += w * own(si + hi, sj + hi);
                }
            sk += k, sd += d, skk += k * k, skd += k * d;
        }
    const double den = n * skk - sk * sk;
    return den > 0.0 ? (n * skd - sk * sd) / den : nan;
}

registration::FluxRatio measureFluxRatio(const PreparedImage& grid, const PreparedImage& moving,
                                         const std::vector<registration::MatchedPair>& pairs,
                                         const registration::FluxRatioConfig& config, double minSnr,
                                         std::size_t maxPairs) {
    // The stamp spans the common PSF's core: its FWHM (Gaussian-quadrature sum), at least 3 px.
    const double fwhm = std::hypot(grid.psf->fwhmPx(), moving.psf->fwhmPx());
    const int hs = std::max(3, static_cast<int>(std::ceil(fwhm)));
    // The brightest pairs first (by the star finders' fluxes), as fluxRatio ranks them.
    std::vector<const registration::MatchedPair*> order;
    for (const auto& p : pairs) order.push_back(&p);
    std::stable_sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
        return a->sci.flux * a->ref.flux > b->sci.flux * b->ref.flux;
    });
    std::vector<registration::MatchedPair> measured, bright;
    for (std::size_t i = 0; i < order.size() && measured.size() < maxPairs; ++i) {
        registration::MatchedPair p = *order[i];
        double snrGrid = 0.0, snrMoving = 0.0;
        p.sci.flux = crossConvolvedFlux(grid.pixels, *grid.psf, p.sci.x, p.sci.y, *moving.psf, p.ref.x, p.ref.y, hs, snrGrid);
        p.ref.flux = crossConvolvedFlux(moving.pixels, *moving.psf, p.ref.x, p.ref.y, *grid.psf, p.sci.x, p.sci.y, hs,
                                        snrMoving);
        if (!std::isfinite(p.sci.flux) || !std::isfinite(p.ref.flux)) continue;
        measured.push_back(p);
        if (snrGrid >= minSnr && snrMoving >= minSnr) bright.push_back(p);
    }
    log::get("astrid.pipeline")->debug("{} / {}: flux ratio from {} pairs: {} measured, {} with S/N >= {}", grid.label,
                                       moving.label, pairs.size(), measured.size(), bright.size(), minSnr);
    if (static_cast<int>(measured.size()) < config.minPairs) {
        // Too few stars with a clean footprint for the cross-convolution (small images, masks near
        // every star): plain PSF fits, each image with its own PSF, which need only the PSF stamp.
        measured.clear();
        for (std::size_t i = 0; i < order.size() && measured.size() < maxPairs; ++i) {
            registration::MatchedPair p = *order[i];
            p.sci.flux = psfFlux(grid.pixels, *grid.psf, p.sci.x, p.sci.y);
            p.ref.flux = psfFlux(moving.pixels, *moving.psf, p.ref.x, p.ref.y);
            if (std::isfinite(p.sci.flux) && std::isfinite(p.ref.flux)) measured.push_back(p);
        }
        log::get("astrid.pipeline")->debug("{} / {}: plain PSF fits instead ({} pairs)", grid.label, moving.label,
                                           measured.size());
        return registration::fluxRatio(measured, config);
    }
    return registration::fluxRatio(static_cast<int>(bright.size()) >= config.minPairs ? bright : measured, config);
}

}  // namespace astrid::pipeline::detail
