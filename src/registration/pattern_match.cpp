// Pattern (asterism) matching: triangles of bright stars compared through similarity invariants.
//
// Each triangle is described by its sides sorted L0 >= L1 >= L2 and the invariants (L1/L0, L2/L0),
// which do not change under translation, rotation, scaling or mirroring. The vertex opposite each
// sorted side gives the vertex correspondence, and the sign of the triangle's orientation tells
// whether the pair is mirrored. Rather than voting on star correspondences (Groth 1986), every
// candidate pair of similar triangles proposes a similarity transform that is scored directly by how
// many bright science stars it places on reference stars (a RANSAC-like hypothesis test): the true
// transform places most of the stars in the overlap, a chance one 3 (its own triangle) plus noise.
#include <algorithm>
#include <cmath>
#include <string>

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "astrid/registration/match.hpp"
#include "detail.hpp"

namespace astrid::registration {

namespace {

struct Triangle {
    double r1 = 0, r2 = 0;  // L1/L0, L2/L0
    double l0 = 0;          // longest side (px)
    int v[3] = {0, 0, 0};   // vertex opposite L0, L1, L2
    bool ccw = true;        // orientation of v0 -> v1 -> v2
};

std::vector<Triangle> triangles(const std::vector<PixelPoint>& p, double minSide) {
    std::vector<Triangle> out;
    const int n = static_cast<int>(p.size());
    auto dist = [&](int a, int b) {
        return std::hypot(p[static_cast<std::size_t>(a)].x - p[static_cast<std::size_t>(b)].x,
                          p[static_cast<std::size_t>(a)].y - p[static_cast<std::size_t>(b)].y);
    };
    for (int i = 0; i < n; ++i)
        for (int j = i + 1; j < n; ++j)
            for (int k = j + 1; k < n; ++k) {
                // Side opposite each vertex.
                std::array<std::pair<double, int>, 3> s{{{dist(j, k), i}, {dist(i, k), j}, {dist(i, j), k}}};
                std::sort(s.begin(), s.end(), [](const auto& a, const auto& b) { return a.first > b.first; });
                if (s[2].first < minSide) continue;
                Triangle t;
                t.l0 = s[0].first;
                t.r1 = s[1].first / t.l0;
                t.r2 = s[2].first / t.l0;
                for (int q = 0; q < 3; ++q) t.v[q] = s[static_cast<std::size_t>(q)].second;
                const PixelPoint a = p[static_cast<std::size_t>(t.v[0])], b = p[static_cast<std::size_t>(t.v[1])],
                                 c = p[static_cast<std::size_t>(t.v[2])];
                t.ccw = (b.x - a.x) * (c.y - a.y) - (b.y - a.y) * (c.x - a.x) > 0.0;
                out.push_back(t);
            }
    return out;
}

struct Candidate {
    PolyTransform transform;
    Parity parity = Parity::Preserved;
    int score = 0;
    double vertexRms = HUGE_VAL;
};

// How many of `from` the transform places within `radius` of a star of `refGrid`.
int score(const PolyTransform& t, const std::vector<PixelPoint>& from, const detail::PointGrid& refGrid, double radius) {
    int n = 0;
    for (const PixelPoint& p : from) {
        const PixelPoint q = t.apply(p.x, p.y);
        if (refGrid.nearest(q.x, q.y, radius) >= 0) ++n;
    }
    return n;
}

MatchResult matchPatternsImpl(const std::vector<MatchPoint>& sciStars, const std::vector<MatchPoint>& refStars,
                              const PixelMap* base, const MatchConfig& config) {
    // Validation of the config happens in matchStars; the pattern fields are checked here too
    // because they are used before it.
    if (config.patternStars < 3 || config.patternVerifyStars < 3 || !(config.patternTolerance > 0.0) ||
        !(config.patternRadiusPx > 0.0) || !(config.patternScale > 0.0) || !(config.patternScaleTolerance >= 0.0) ||
        config.minPatternMatches < 3)
        throw DataError("MatchConfig: invalid pattern-matching parameters");
    detail::SortedStars sci = detail::sortedByFlux(sciStars);
    const detail::SortedStars ref = detail::sortedByFlux(refStars);
    // Work in the base's output frame when there is one: the remaining error is then close to a
    // similarity even for distorted images.
    if (base)
        for (PixelPoint& p : sci.xy) p = base->applyBase(p.x, p.y);

    const auto nTri = static_cast<std::size_t>(config.patternStars);
    const auto nVer = static_cast<std::size_t>(config.patternVerifyStars);
    const std::vector<PixelPoint> sciTriPts(sci.xy.begin(), sci.xy.begin() + static_cast<std::ptrdiff_t>(std::min(nTri, sci.xy.size())));
    const std::vector<PixelPoint> refTriPts(ref.xy.begin(), ref.xy.begin() + static_cast<std::ptrdiff_t>(std::min(nTri, ref.xy.size())));
    const std::vector<PixelPoint> sciVer(sci.xy.begin(), sci.xy.begin() + static_cast<std::ptrdiff_t>(std::min(nVer, sci.xy.size())));
    const std::vector<PixelPoint> refVer(ref.xy.begin(), ref.xy.begin() + static_cast<std::ptrdiff_t>(std::min(nVer, ref.xy.size())));
    const std::size_t minStars = static_cast<std::size_t>(std::max(3, config.minPatternMatches));
    if (sci.xy.size() < minStars || ref.xy.size() < minStars)
        throw DataError(fmt::format("pattern matching failed: too few stars ({} science, {} reference; minimum {})",
                                    sci.xy.size(), ref.xy.size(), minStars));

    const std::vector<Triangle> sciTri = triangles(sciTriPts, config.patternMinSidePx);
    const std::vector<Triangle> refTri = triangles(refTriPts, config.patternMinSidePx);

    // Reference triangles indexed by their invariants.
    std::vector<PixelPoint> refInv(refTri.size());
    for (std::size_t k = 0; k < refTri.size(); ++k) refInv[k] = {refTri[k].r1, refTri[k].r2};
    const detail::PointGrid invGrid(refInv, config.patternTolerance);
    const detail::PointGrid refVerGrid(refVer, config.patternRadiusPx);

    const double tol = config.patternTolerance;
    const double sMin = config.patternScale * (1.0 - config.patternScaleTolerance);
    const double sMax = config.patternScale * (1.0 + config.patternScaleTolerance);
    // Chance coincidences: a wrong transform scatters the scored stars over the reference field, each
    // landing within the radius of some reference star with probability density x area. Its own
    // triangle always scores 3; the threshold sits ~6 sigma (Poisson) above chance, so that trying
    // thousands of candidates does not let one through.
    double xmin = HUGE_VAL, xmax = -HUGE_VAL, ymin = HUGE_VAL, ymax = -HUGE_VAL;
    for (const PixelPoint& q : refVer) xmin = std::min(xmin, q.x), xmax = std::max(xmax, q.x), ymin = std::min(ymin, q.y), ymax = std::max(ymax, q.y);
    const double refArea = std::max((xmax - xmin) * (ymax - ymin), 1.0);
    const double chance = static_cast<double>(sciVer.size()) * static_cast<double>(refVer.size()) * 3.14159265 *
                          config.patternRadiusPx * config.patternRadiusPx / refArea;
    const int needed = std::max(config.minPatternMatches, static_cast<int>(std::ceil(3.0 + 2.0 * chance + 6.0 * std::sqrt(chance))));
    // A score this high cannot be chance: stop searching (most of the possible overlap matched).
    const int goodEnough = std::max(needed * 3,
                                     static_cast<int>(0.5 * static_cast<double>(std::min(sciVer.size(), refVer.size()))));
    Candidate best;
    long nCandidates = 0;
    for (const Triangle& t : sciTri) {
        bool done = false;
        invGrid.forEachNear(t.r1, t.r2, tol, [&](int k) {
            if (done) return;
            const Triangle& u = refTri[static_cast<std::size_t>(k)];
            if (std::fabs(u.r1 - t.r1) > tol || std::fabs(u.r2 - t.r2) > tol) return;
            const double s = u.l0 / t.l0;
            if (s < sMin || s > sMax) return;
            const Parity parity = u.ccw == t.ccw ? Parity::Preserved : Parity::Mirrored;
            if (parity == Parity::Mirrored && config.mirroring == Mirroring::Forbidden) return;
            std::array<PixelPoint, 3> from{}, to{};
            for (int q = 0; q < 3; ++q) {
                from[static_cast<std::size_t>(q)] = sciTriPts[static_cast<std::size_t>(t.v[q])];
                to[static_cast<std::size_t>(q)] = refTriPts[static_cast<std::size_t>(u.v[q])];
            }
            PolyTransform tr;
            if (!detail::fitSimilarity(from, to, parity, tr)) return;
            double vr = 0;
            for (std::size_t q = 0; q < 3; ++q) {
                const PixelPoint m = tr.apply(from[q]);
                vr += (m.x - to[q].x) * (m.x - to[q].x) + (m.y - to[q].y) * (m.y - to[q].y);
            }
            vr = std::sqrt(vr / 3.0);
            if (vr > config.patternRadiusPx) return;
            ++nCandidates;
            const int sc = score(tr, sciVer, refVerGrid, config.patternRadiusPx);
            if (sc > best.score || (sc == best.score && vr < best.vertexRms)) best = {tr, parity, sc, vr};
            if (best.score >= goodEnough) done = true;
        });
        if (done) break;
    }
    if (best.score < needed)
        throw DataError(fmt::format(
            "pattern matching failed: no consistent transform; the best of {} candidate triangle pairs places {} of "
            "{} bright science stars on reference stars (needed {}: minPatternMatches {}, chance level {:.1f}); {} "
            "science and {} reference stars, {} and {} triangles, scale {:.3g} +- {:.0f}%",
            nCandidates, best.score, sciVer.size(), needed, config.minPatternMatches, chance, sci.xy.size(),
            ref.xy.size(), sciTri.size(), refTri.size(), config.patternScale, 100.0 * config.patternScaleTolerance));

    // Refine the similarity on all the bright pairs it explains.
    PolyTransform sim = best.transform;
    for (int iter = 0; iter < 3; ++iter) {
        std::vector<PixelPoint> from, to;
        for (const PixelPoint& p : sciVer) {
            const PixelPoint q = sim.apply(p.x, p.y);
            const int k = refVerGrid.nearest(q.x, q.y, config.patternRadiusPx);
            if (k < 0) continue;
            from.push_back(p);
            to.push_back(refVer[static_cast<std::size_t>(k)]);
        }
        PolyTransform refined;
        if (from.size() < 3 || !detail::fitSimilarity(from, to, best.parity, refined)) break;
        sim = refined;
    }

    // The similarity becomes the guess that matchStars refines with the configured order.
    const PixelMap guess = base ? base->withCorrection(sim) : PixelMap::fromTransform(sim);
    MatchResult res = matchStars(sciStars, refStars, guess, config);
    res.method = MatchMethod::Pattern;
    res.nPatternMatches = best.score;
    return res;
}

}  // namespace

MatchResult matchPatterns(const std::vector<MatchPoint>& sciStars, const std::vector<MatchPoint>& refStars,
                          const MatchConfig& config) {
    return matchPatternsImpl(sciStars, refStars, nullptr, config);
}

MatchResult matchPatterns(const std::vector<MatchPoint>& sciStars, const std::vector<MatchPoint>& refStars,
                          const PixelMap& base, const MatchConfig& config) {
    return matchPatternsImpl(sciStars, refStars, &base, config);
}

}  // namespace astrid::registration
