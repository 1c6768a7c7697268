// Matching through a guess map, the robust correction fit, and the guess-or-pattern dispatcher.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "astrid/core/log.hpp"
#include "astrid/registration/match.hpp"
#include "detail.hpp"

namespace astrid::registration {

namespace detail {

PointGrid::PointGrid(std::span<const PixelPoint> points, double cellPx) : points_(points) {
    double xmin = HUGE_VAL, ymin = HUGE_VAL, xmax = -HUGE_VAL, ymax = -HUGE_VAL;
    for (const PixelPoint& p : points) {
        if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
        xmin = std::min(xmin, p.x), xmax = std::max(xmax, p.x);
        ymin = std::min(ymin, p.y), ymax = std::max(ymax, p.y);
    }
    if (!(xmin <= xmax)) return;  // no finite point: every query finds nothing
    cell_ = std::max(cellPx, 1e-3);
    // Bound the cell count (a few per point) so that scattered outliers cannot blow up memory.
    const double maxCells = 4.0 * static_cast<double>(points.size()) + 16.0;
    while (((xmax - xmin) / cell_ + 1.0) * ((ymax - ymin) / cell_ + 1.0) > maxCells) cell_ *= 2.0;
    x0_ = xmin;
    y0_ = ymin;
    nx_ = static_cast<int>((xmax - xmin) / cell_) + 1;
    ny_ = static_cast<int>((ymax - ymin) / cell_) + 1;
    const std::size_t nc = static_cast<std::size_t>(nx_) * static_cast<std::size_t>(ny_);
    std::vector<int> cellOf(points.size(), -1);
    start_.assign(nc + 1, 0);
    for (std::size_t k = 0; k < points.size(); ++k) {
        const PixelPoint& p = points[k];
        if (!std::isfinite(p.x) || !std::isfinite(p.y)) continue;
        const int c = cellIndex(p.y, y0_, ny_) * nx_ + cellIndex(p.x, x0_, nx_);
        cellOf[k] = c;
        ++start_[static_cast<std::size_t>(c) + 1];
    }
    std::partial_sum(start_.begin(), start_.end(), start_.begin());
    items_.resize(static_cast<std::size_t>(start_.back()));
    std::vector<int> fill(start_.begin(), start_.end() - 1);
    for (std::size_t k = 0; k < points.size(); ++k)
        if (cellOf[k] >= 0) items_[static_cast<std::size_t>(fill[static_cast<std::size_t>(cellOf[k])]++)] = static_cast<int>(k);
}

int PointGrid::nearest(double x, double y, double radius, double* d2) const {
    int best = -1;
    double bestD2 = radius * radius;
    forEachNear(x, y, radius, [&](int k) {
        const PixelPoint& p = points_[static_cast<std::size_t>(k)];
        const double dd = (p.x - x) * (p.x - x) + (p.y - y) * (p.y - y);
        if (dd <= bestD2) {
            bestD2 = dd;
            best = k;
        }
    });
    if (d2) *d2 = bestD2;
    return best;
}

SortedStars sortedByFlux(const std::vector<MatchPoint>& stars) {
    SortedStars s;
    s.stars.reserve(stars.size());
    for (const MatchPoint& p : stars)
        if (std::isfinite(p.x) && std::isfinite(p.y)) s.stars.push_back(p);
    auto key = [](const MatchPoint& p) { return std::isfinite(p.flux) ? p.flux : -HUGE_VAL; };
    std::stable_sort(s.stars.begin(), s.stars.end(),
                     [&](const MatchPoint& a, const MatchPoint& b) { return key(a) > key(b); });
    s.xy.reserve(s.stars.size());
    for (const MatchPoint& p : s.stars) s.xy.push_back({p.x, p.y});
    return s;
}

bool fitSimilarity(std::span<const PixelPoint> from, std::span<const PixelPoint> to, Parity parity, PolyTransform& out) {
    // Complex least squares w = a z + b with z = x + i y (x - i y when mirrored), w = x' + i y'.
    const std::size_t n = std::min(from.size(), to.size());
    if (n < 2) return false;
    const double m = parity == Parity::Mirrored ? -1.0 : 1.0;
    double zx = 0, zy = 0, wx = 0, wy = 0;
    for (std::size_t i = 0; i < n; ++i) {
        zx += from[i].x, zy += m * from[i].y;
        wx += to[i].x, wy += to[i].y;
    }
    zx /= static_cast<double>(n), zy /= static_cast<double>(n), wx /= static_cast<double>(n), wy /= static_cast<double>(n);
    double num_r = 0, num_i = 0, den = 0;
    for (std::size_t i = 0; i < n; ++i) {
        const double dzx = from[i].x - zx, dzy = m * from[i].y - zy;
        const double dwx = to[i].x - wx, dwy = to[i].y - wy;
        // (dw) * conj(dz)
        num_r += dwx * dzx + dwy * dzy;
        num_i += dwy * dzx - dwx * dzy;
        den += dzx * dzx + dzy * dzy;
    }
    if (!(den > 1e-12) || !std::isfinite(num_r) || !std::isfinite(num_i)) return false;
    const double ar = num_r / den, ai = num_i / den;
    const double br = wx - (ar * zx - ai * zy), bi = wy - (ai * zx + ar * zy);
    // w = a z + b with z = x + i m y: x' = ar x - ai m y + br, y' = ai x + ar m y + bi.
    out = PolyTransform::affine({br, ar, -ai * m, bi, ai, ar * m});
    return true;
}

}  // namespace detail

namespace {

using detail::PointGrid;

void validate(const MatchConfig& c) {
    auto bad = [](const char* what) { throw DataError(std::string("MatchConfig: ") + what); };
    if (!(c.searchRadiusPx > 0.0)) bad("searchRadiusPx must be > 0");
    if (!(c.offsetSearchPx >= 0.0) || c.offsetSearchPx > 1000.0) bad("offsetSearchPx must be in [0, 1000]");
    if (c.correctionOrder < 1 || c.correctionOrder > PolyTransform::kMaxOrder) bad("correctionOrder must be 1..3");
    if (!(c.clipSigma > 0.0) || c.clipIterations < 0) bad("clipSigma must be > 0 and clipIterations >= 0");
    if (c.minMatches < 3) bad("minMatches must be >= 3");
    if (c.rmsBrightest < 1 || !(c.maxRmsPx > 0.0)) bad("rmsBrightest must be >= 1 and maxRmsPx > 0");
    if (c.patternStars < 3 || c.patternVerifyStars < 3) bad("patternStars and patternVerifyStars must be >= 3");
    if (!(c.patternTolerance > 0.0) || !(c.patternRadiusPx > 0.0) || !(c.patternMinSidePx >= 0.0))
        bad("patternTolerance and patternRadiusPx must be > 0, patternMinSidePx >= 0");
    if (!(c.patternScale > 0.0) || !(c.patternScaleTolerance >= 0.0)) bad("patternScale must be > 0, its tolerance >= 0");
    if (c.minPatternMatches < 3) bad("minPatternMatches must be >= 3");
}

// Shift of the predicted positions that most bright stars agree on: a 2-D histogram (1 px bins) of
// every bright science-reference offset within `radius`, smoothed 3x3; the peak must stand out from
// chance coincidences. Returns false (no shift) when nothing does.
bool findOffset(const std::vector<PixelPoint>& predicted, const PointGrid& refGrid,
                const std::vector<PixelPoint>& refXy, double radius, double& ox, double& oy) {
    const int r = static_cast<int>(std::ceil(radius));
    const int side = 2 * r + 1;
    std::vector<int> hist(static_cast<std::size_t>(side) * static_cast<std::size_t>(side), 0);
    long total = 0;
    for (const PixelPoint& p : predicted)
        refGrid.forEachNear(p.x, p.y, radius, [&](int k) {
            const double dx = refXy[static_cast<std::size_t>(k)].x - p.x, dy = refXy[static_cast<std::size_t>(k)].y - p.y;
            if (dx * dx + dy * dy > radius * radius) return;
            const int i = static_cast<int>(std::lround(dx)) + r, j = static_cast<int>(std::lround(dy)) + r;
            ++hist[static_cast<std::size_t>(j * side + i)];
            ++total;
        });
    int best = -1, bi = 0, bj = 0;
    for (int j = 1; j < side - 1; ++j)
        for (int i = 1; i < side - 1; ++i) {
            int s = 0;
            for (int dj = -1; dj <= 1; ++dj)
                for (int di = -1; di <= 1; ++di) s += hist[static_cast<std::size_t>((j + dj) * side + i + di)];
            if (s > best) best = s, bi = i, bj = j;
        }
    // Chance level: offsets spread over the disc's area; a real shift gathers a good fraction of the
    // bright stars in one 3x3 box.
    const double chance = 9.0 * static_cast<double>(total) / (3.14159 * radius * radius);
    if (best < 5 || best < 5.0 * chance + 3.0) return false;
    // Refine: mean offset of the pairs in the peak box.
    double sx = 0, sy = 0;
    int n = 0;
    const double cx = bi - r, cy = bj - r;
    for (const PixelPoint& p : predicted)
        refGrid.forEachNear(p.x + cx, p.y + cy, 1.5, [&](int k) {
            const double dx = refXy[static_cast<std::size_t>(k)].x - p.x, dy = refXy[static_cast<std::size_t>(k)].y - p.y;
            if (std::fabs(dx - cx) <= 1.5 && std::fabs(dy - cy) <= 1.5) sx += dx, sy += dy, ++n;
        });
    if (n == 0) return false;
    ox = sx / n;
    oy = sy / n;
    return true;
}

struct Pairing {
    std::vector<int> sci, ref;  // parallel: sci index <-> ref index (into the sorted lists)
};

// Nearest reference star within `radius` of each prediction; a reference star claimed by several
// science stars goes to the closest one.
Pairing pairUp(const std::vector<PixelPoint>& predicted, const PointGrid& refGrid, std::size_t nRef, double radius) {
    std::vector<int> owner(nRef, -1);
    std::vector<double> ownerD2(nRef, HUGE_VAL);
    for (std::size_t i = 0; i < predicted.size(); ++i) {
        double d2 = 0;
        const int j = refGrid.nearest(predicted[i].x, predicted[i].y, radius, &d2);
        if (j < 0) continue;
        if (d2 < ownerD2[static_cast<std::size_t>(j)]) {
            ownerD2[static_cast<std::size_t>(j)] = d2;
            owner[static_cast<std::size_t>(j)] = static_cast<int>(i);
        }
    }
    Pairing p;
    for (std::size_t j = 0; j < nRef; ++j)
        if (owner[j] >= 0) p.sci.push_back(owner[j]), p.ref.push_back(static_cast<int>(j));
    // Science order (= brightness order) makes the output and the rms subset deterministic.
    std::vector<std::size_t> idx(p.sci.size());
    std::iota(idx.begin(), idx.end(), std::size_t{0});
    std::sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return p.sci[a] < p.sci[b]; });
    Pairing s;
    for (std::size_t k : idx) s.sci.push_back(p.sci[k]), s.ref.push_back(p.ref[k]);
    return s;
}

struct Fit {
    PolyTransform correction;
    int order = 1;
    std::vector<char> used;     // per pair
    std::vector<double> resid;  // per pair, 2-D residual (ref px)
};

// Iteratively clipped, weighted least squares of base(sci) -> ref over the pairs.
//
// Centroid errors grow steeply towards faint stars, so one global scatter would both under-weight
// the bright stars and clip the faint ones wholesale (a clipped heavy-tailed distribution keeps
// shrinking). Instead the pairs are split by brightness into up to 8 bins of >= 40 pairs; each bin's
// robust scatter (median residual / sqrt(2 ln 2)) sets both the clip limit and the weight
// 1 / sigma^2 of its pairs (a bin of saturated stars with poor centroids simply weighs little).
Fit robustFit(const Pairing& pairs, const std::vector<PixelPoint>& base, const std::vector<PixelPoint>& refXy,
              const MatchConfig& config, int nSci, int nRef) {
    const std::size_t n = pairs.sci.size();
    Fit f;
    f.order = config.correctionOrder;
    while (f.order > 1 && n < 3 * static_cast<std::size_t>(PolyTransform::terms(f.order))) --f.order;
    auto fail = [&](const std::string& why) {
        throw DataError(fmt::format("star matching failed: {} ({} science stars, {} reference stars, {} paired "
                                    "within {:.3g} px, minimum {})",
                                    why, nSci, nRef, n, config.searchRadiusPx, config.minMatches));
    };
    if (n < static_cast<std::size_t>(config.minMatches)) fail("too few pairs");
    // Pairs come in science brightness order, so equal-count bins are brightness bins.
    const std::size_t nBins = std::clamp<std::size_t>(n / 40, 1, 8);
    std::vector<std::size_t> bin(n);
    for (std::size_t k = 0; k < n; ++k) bin[k] = k * nBins / n;
    std::vector<double> sigma(nBins, 1.0);
    f.used.assign(n, 1);
    f.resid.assign(n, 0.0);
    std::vector<PixelPoint> from, to;
    std::vector<double> weight;
    for (int iter = 0;; ++iter) {
        from.clear();
        to.clear();
        weight.clear();
        for (std::size_t k = 0; k < n; ++k)
            if (f.used[k]) {
                from.push_back(base[static_cast<std::size_t>(pairs.sci[k])]);
                to.push_back(refXy[static_cast<std::size_t>(pairs.ref[k])]);
                weight.push_back(1.0 / (sigma[bin[k]] * sigma[bin[k]]));
            }
        if (from.size() < static_cast<std::size_t>(config.minMatches)) fail(fmt::format("only {} pairs survive clipping", from.size()));
        try {
            f.correction = PolyTransform::fit(from, to, f.order, weight);
        } catch (const DataError& e) {
            fail(e.what());
        }
        std::vector<std::vector<double>> binResid(nBins);
        std::vector<double> allResid;
        for (std::size_t k = 0; k < n; ++k) {
            const PixelPoint b = base[static_cast<std::size_t>(pairs.sci[k])];
            const PixelPoint q = f.correction.apply(b.x, b.y);
            const PixelPoint r = refXy[static_cast<std::size_t>(pairs.ref[k])];
            f.resid[k] = std::hypot(q.x - r.x, q.y - r.y);
            if (f.used[k]) binResid[bin[k]].push_back(f.resid[k]), allResid.push_back(f.resid[k]);
        }
        if (iter >= config.clipIterations) break;
        // The median 2-D residual of a circular Gaussian is sigma sqrt(2 ln 2); the floor keeps
        // noiseless inputs (truth positions) from clipping on rounding differences. A bin left with
        // too few pairs falls back to the scatter of all of them.
        constexpr double kMedianToSigma = 1.0 / 1.1774100225154747;
        const double global = std::max(detail::median(allResid) * kMedianToSigma, 1e-4);
        for (std::size_t b = 0; b < nBins; ++b)
            sigma[b] = binResid[b].size() >= 5 ? std::max(detail::median(binResid[b]) * kMedianToSigma, 1e-4) : global;
        bool changed = false;
        for (std::size_t k = 0; k < n; ++k) {
            const char u = f.resid[k] <= config.clipSigma * sigma[bin[k]] ? 1 : 0;
            changed |= u != f.used[k];
            f.used[k] = u;
        }
        // The weights changed with sigma even when the membership did not: refit once more.
        if (!changed && iter > 0) break;
    }
    return f;
}

double rms(const std::vector<double>& r) {
    if (r.empty()) return 0.0;
    double s = 0;
    for (double v : r) s += v * v;
    return std::sqrt(s / static_cast<double>(r.size()));
}

}  // namespace

MatchResult matchStars(const std::vector<MatchPoint>& sciStars, const std::vector<MatchPoint>& refStars,
                       const PixelMap& guess, const MatchConfig& config) {
    validate(config);
    const detail::SortedStars sci = detail::sortedByFlux(sciStars), ref = detail::sortedByFlux(refStars);
    const int nSci = static_cast<int>(sci.stars.size()), nRef = static_cast<int>(ref.stars.size());
    if (nSci < config.minMatches || nRef < config.minMatches)
        throw DataError(fmt::format("star matching failed: too few stars ({} science, {} reference with finite "
                                    "positions; minimum {})",
                                    nSci, nRef, config.minMatches));
    const PointGrid refGrid(ref.xy, config.searchRadiusPx);

    std::vector<PixelPoint> base(sci.xy.size()), predicted(sci.xy.size());
    for (std::size_t i = 0; i < sci.xy.size(); ++i) {
        base[i] = guess.applyBase(sci.xy[i].x, sci.xy[i].y);
        predicted[i] = guess.apply(sci.xy[i].x, sci.xy[i].y);
    }

    MatchResult res;
    res.nScience = nSci;
    res.nReference = nRef;
    if (config.offsetSearchPx > config.searchRadiusPx) {
        // Only the bright stars vote: they are in both lists, and fewer of them means fewer chance
        // coincidences in the histogram.
        const std::size_t nb = std::min<std::size_t>(predicted.size(), 200);
        const std::vector<PixelPoint> bright(predicted.begin(), predicted.begin() + static_cast<std::ptrdiff_t>(nb));
        const std::size_t nr = std::min<std::size_t>(ref.xy.size(), 400);
        const std::vector<PixelPoint> refBright(ref.xy.begin(), ref.xy.begin() + static_cast<std::ptrdiff_t>(nr));
        const PointGrid brightGrid(refBright, config.offsetSearchPx / 2);
        double ox = 0, oy = 0;
        if (findOffset(bright, brightGrid, refBright, config.offsetSearchPx, ox, oy) &&
            std::hypot(ox, oy) > 0.5 * config.searchRadiusPx) {
            res.offsetXPx = ox;
            res.offsetYPx = oy;
            for (PixelPoint& p : predicted) p.x += ox, p.y += oy;
        }
    }

    if (config.offsetSearchPx > config.searchRadiusPx) {
        // Coarse pass: a guess whose error varies across the field by more than the search radius
        // (a scale error of 0.3% is 6 px at the edge of a 4k image) would pair only a strip of the
        // stars correctly. The brightest stars, few enough that a chance neighbour within a wider
        // radius is rare (~3%), first fix an affine correction.
        const double rc = 0.5 * config.offsetSearchPx;
        double xmin = HUGE_VAL, xmax = -HUGE_VAL, ymin = HUGE_VAL, ymax = -HUGE_VAL;
        for (const PixelPoint& q : ref.xy)
            xmin = std::min(xmin, q.x), xmax = std::max(xmax, q.x), ymin = std::min(ymin, q.y), ymax = std::max(ymax, q.y);
        const double sparse = 0.03 * (xmax - xmin) * (ymax - ymin) / (3.14159265 * rc * rc);
        const std::size_t mb = std::min(ref.xy.size(), static_cast<std::size_t>(std::clamp(sparse, 30.0, 2000.0)));
        const std::size_t nb = std::min(predicted.size(), mb);
        const std::vector<PixelPoint> predBright(predicted.begin(), predicted.begin() + static_cast<std::ptrdiff_t>(nb));
        const std::vector<PixelPoint> refBright(ref.xy.begin(), ref.xy.begin() + static_cast<std::ptrdiff_t>(mb));
        const PointGrid brightGrid(refBright, rc);
        const Pairing coarse = pairUp(predBright, brightGrid, mb, rc);
        if (coarse.sci.size() >= static_cast<std::size_t>(std::max(config.minMatches, 10))) {
            MatchConfig affine = config;
            affine.correctionOrder = 1;
            try {
                const Fit c = robustFit(coarse, base, ref.xy, affine, nSci, nRef);
                for (std::size_t i = 0; i < base.size(); ++i) predicted[i] = c.correction.apply(base[i].x, base[i].y);
            } catch (const DataError&) {
                // No consistent bright pairs: the fine passes work from the guess as it is.
            }
        }
    }

    // Fine passes over all stars: pair, fit, and pair again through the fitted map (stars first
    // predicted just outside the radius come in, chance pairs go) until the pairs stop changing.
    Pairing pairs;
    Fit fit;
    for (int pass = 0; pass < 4; ++pass) {
        if (pass > 0)
            for (std::size_t i = 0; i < base.size(); ++i) predicted[i] = fit.correction.apply(base[i].x, base[i].y);
        Pairing next = pairUp(predicted, refGrid, ref.xy.size(), config.searchRadiusPx);
        const bool same = pass > 0 && next.sci == pairs.sci && next.ref == pairs.ref;
        pairs = std::move(next);
        if (same) break;
        fit = robustFit(pairs, base, ref.xy, config, nSci, nRef);
    }

    res.map = guess.withCorrection(fit.correction);
    res.order = fit.order;
    res.nMatched = static_cast<int>(pairs.sci.size());
    std::vector<double> all, bright;
    for (std::size_t k = 0; k < pairs.sci.size(); ++k) {
        if (!fit.used[k]) continue;
        all.push_back(fit.resid[k]);
        if (static_cast<int>(bright.size()) < config.rmsBrightest) bright.push_back(fit.resid[k]);
        res.pairs.push_back({sci.stars[static_cast<std::size_t>(pairs.sci[k])], ref.stars[static_cast<std::size_t>(pairs.ref[k])]});
    }
    res.nUsed = static_cast<int>(all.size());
    res.rmsAllPx = rms(all);
    res.rmsPx = rms(bright);
    if (!(res.rmsPx <= config.maxRmsPx))
        throw DataError(fmt::format("star matching failed: the {} pairs are not one consistent transform (rms of the "
                                    "brightest {:.3g} px > {:.3g} px; {} science, {} reference stars)",
                                    res.nUsed, res.rmsPx, config.maxRmsPx, nSci, nRef));
    return res;
}

MatchResult matchStarLists(const std::vector<MatchPoint>& sciStars, const std::vector<MatchPoint>& refStars,
                           const PixelMap* guess, const MatchConfig& config) {
    auto logger = log::get("astrid.registration");
    if (guess) {
        try {
            return matchStars(sciStars, refStars, *guess, config);
        } catch (const DataError& e) {
            logger->debug("matching through the guess failed ({}); trying pattern matching", e.what());
        }
        try {
            return matchPatterns(sciStars, refStars, *guess, config);
        } catch (const DataError& e) {
            logger->debug("pattern matching on the guess's base failed ({}); trying without it", e.what());
        }
    }
    return matchPatterns(sciStars, refStars, config);
}

}  // namespace astrid::registration
