#include "astrid/detect/detect.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <unordered_map>

#include "astrid/core/error.hpp"
#include "detail.hpp"

namespace astrid::detect {
namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void validate(const DetectConfig& c) {
    auto need = [](bool ok, const char* key, const std::string& why) {
        if (!ok) throw ConfigError(std::string("detect: ") + key + " " + why, key);
    };
    need(std::isfinite(c.thresholdSigma) && c.thresholdSigma > 0, "thresholdSigma", "must be > 0");
    need(std::isfinite(c.footprintSigma) && c.footprintSigma > 0 && c.footprintSigma <= c.thresholdSigma,
         "footprintSigma", "must be in (0, thresholdSigma]");
    need(c.minPixels >= 1, "minPixels", "must be >= 1");
    need(c.deblendMinProminenceSigma >= 0, "deblendMinProminenceSigma", "must be >= 0");
    need(c.deblendContrast >= 0 && c.deblendContrast < 1, "deblendContrast", "must be in [0, 1)");
    need(std::isfinite(c.dipoleDistanceFwhm), "dipoleDistanceFwhm", "must be finite");
    need(std::isfinite(c.fitRadiusFwhm) && c.fitRadiusFwhm > 0, "fitRadiusFwhm", "must be > 0");
    need(c.maxCentroidIterations >= 1, "maxCentroidIterations", "must be >= 1");
    need(c.centroidTolerancePx > 0, "centroidTolerancePx", "must be > 0");
    need(c.refSearchRadiusPx >= 0, "refSearchRadiusPx", "must be >= 0");
}

/// The nearest reference source within a radius, through a grid of cells one radius wide.
class RefIndex {
public:
    RefIndex(std::span<const KnownSource> refs, double radius) : refs_(refs), radius_(radius) {
        if (!(radius_ > 0.0)) return;
        for (std::size_t i = 0; i < refs.size(); ++i)
            if (std::isfinite(refs[i].x) && std::isfinite(refs[i].y)) cells_[key(cellOf(refs[i].x), cellOf(refs[i].y))].push_back(static_cast<int>(i));
    }
    /// Calls f(index) for every source whose cell is within one cell of (x, y)'s.
    template <class F>
    void forEachNear(double x, double y, F&& f) const {
        if (!(radius_ > 0.0)) return;
        const long cx = cellOf(x), cy = cellOf(y);
        for (long j = cy - 1; j <= cy + 1; ++j)
            for (long i = cx - 1; i <= cx + 1; ++i) {
                auto it = cells_.find(key(i, j));
                if (it == cells_.end()) continue;
                for (int k : it->second) f(k);
            }
    }
    int nearest(double x, double y, double& dist) const {
        int best = -1;
        double bestD2 = radius_ * radius_;
        if (!(radius_ > 0.0)) return best;
        const long cx = cellOf(x), cy = cellOf(y);
        for (long j = cy - 1; j <= cy + 1; ++j)
            for (long i = cx - 1; i <= cx + 1; ++i) {
                auto it = cells_.find(key(i, j));
                if (it == cells_.end()) continue;
                for (int k : it->second) {
                    const auto& r = refs_[static_cast<std::size_t>(k)];
                    const double d2 = (r.x - x) * (r.x - x) + (r.y - y) * (r.y - y);
                    if (d2 <= bestD2 && (best < 0 || d2 < bestD2 || k < best)) bestD2 = d2, best = k;
                }
            }
        dist = std::sqrt(bestD2);
        return best;
    }

private:
    long cellOf(double v) const { return static_cast<long>(std::floor(v / radius_)); }
    static long long key(long i, long j) { return (static_cast<long long>(i) << 32) ^ static_cast<long long>(j & 0xffffffffL); }
    std::span<const KnownSource> refs_;
    double radius_;
    std::unordered_map<long long, std::vector<int>> cells_;
};

/// The light that should have cancelled: the sources of both images that are the same source
/// (closer than `matchPx`) with the smaller of their two fluxes (a variable star's constant part);
/// a source of one image alone only where the other has no data at its position (off its
/// coverage), since otherwise it is what changed and its light is the signal.
std::vector<KnownSource> staticSources(std::span<const KnownSource> ref, std::span<const KnownSource> sci,
                                       const diff::ZogyResult& z, std::uint16_t noData, double matchPx) {
    const int W = z.diff.width(), H = z.diff.height();
    auto noDataAt = [&](const KnownSource& s) {
        const long x = std::lround(s.x), y = std::lround(s.y);
        return x < 0 || y < 0 || x >= W || y >= H ||
               (!z.mask.empty() && (z.mask(static_cast<int>(x), static_cast<int>(y)) & noData));
    };
    std::vector<KnownSource> out;
    const RefIndex refIndex(ref, matchPx);
    std::vector<bool> refUsed(ref.size(), false);
    for (const KnownSource& s : sci) {
        double d = 0.0;
        const int k = refIndex.nearest(s.x, s.y, d);
        if (k >= 0) {
            refUsed[static_cast<std::size_t>(k)] = true;
            out.push_back({s.x, s.y, std::min(s.flux, ref[static_cast<std::size_t>(k)].flux)});
        } else if (noDataAt(s)) {
            out.push_back(s);
        }
    }
    for (std::size_t k = 0; k < ref.size(); ++k)
        if (!refUsed[k] && noDataAt(ref[k])) out.push_back(ref[k]);
    return out;
}

/// The static sources' light (science ADU, P_D as the profile) on pixels within `reach` of
/// (px, py) that are masked or off the image (what ZOGY set to the background there), weighted as
/// a PSF fit at (px, py) weighs it: sum(L P) / sum(P^2).
double maskedLight(const diff::ZogyResult& z, const detail::PsfStamp& psf, std::span<const KnownSource> sources,
                   const RefIndex& index, int px, int py, int reach, std::uint16_t bad) {
    const int W = z.diff.width(), H = z.diff.height(), h = psf.half();
    std::vector<int> near;
    index.forEachNear(px, py, [&](int k) {
        const auto& r = sources[static_cast<std::size_t>(k)];
        if (std::fabs(r.x - px) <= reach + h && std::fabs(r.y - py) <= reach + h && r.flux > 0.0) near.push_back(k);
    });
    if (near.empty()) return 0.0;
    double light = 0.0, sumP2 = 0.0;
    for (double v : psf.stamp().pixels()) sumP2 += v * v;
    const int r2 = reach * reach;
    for (int y = py - reach; y <= py + reach; ++y)
        for (int x = px - reach; x <= px + reach; ++x) {
            if ((x - px) * (x - px) + (y - py) * (y - py) > r2) continue;
            const bool masked = x < 0 || y < 0 || x >= W || y >= H || !std::isfinite(z.scorr(x, y)) ||
                                (!z.mask.empty() && (z.mask(x, y) & bad));
            if (!masked) continue;
            double l = 0.0;
            for (int k : near) {
                const auto& r = sources[static_cast<std::size_t>(k)];
                const long i = std::lround(x - r.x) + h, j = std::lround(y - r.y) + h;
                if (i >= 0 && j >= 0 && i <= 2 * h && j <= 2 * h) l += r.flux * psf.stamp()(static_cast<int>(i), static_cast<int>(j));
            }
            light += l * psf.stamp()(x - px + h, y - py + h);
        }
    return light / sumP2;
}

int findRoot(const std::vector<int>& parent, int i) {
    while (parent[static_cast<std::size_t>(i)] != i) i = parent[static_cast<std::size_t>(i)];
    return i;
}

/// Opposite lobes closer than `maxDist` (between their refined S_corr peaks): in order of |S_corr|,
/// each unpaired peak takes the nearest unpaired one of the other sign. partner[i] = j or -1.
std::vector<int> pairDipoles(const std::vector<detail::Member>& m, double maxDist) {
    const std::size_t n = m.size();
    std::vector<int> order(n), partner(n, -1);
    for (std::size_t i = 0; i < n; ++i) order[i] = static_cast<int>(i);
    std::sort(order.begin(), order.end(), [&](int a, int b) {
        return m[static_cast<std::size_t>(a)].peak.value > m[static_cast<std::size_t>(b)].peak.value ||
               (m[static_cast<std::size_t>(a)].peak.value == m[static_cast<std::size_t>(b)].peak.value && a < b);
    });
    // Peaks sorted by y for a windowed search.
    std::vector<int> byY(order);
    std::sort(byY.begin(), byY.end(), [&](int a, int b) { return m[static_cast<std::size_t>(a)].startY < m[static_cast<std::size_t>(b)].startY; });
    std::vector<double> ys(n);
    for (std::size_t k = 0; k < n; ++k) ys[k] = m[static_cast<std::size_t>(byY[k])].startY;
    const double max2 = maxDist * maxDist;
    for (int i : order) {
        const auto& a = m[static_cast<std::size_t>(i)];
        if (partner[static_cast<std::size_t>(i)] >= 0) continue;
        int best = -1;
        double bestD2 = max2;
        for (auto k = std::lower_bound(ys.begin(), ys.end(), a.startY - maxDist) - ys.begin();
             k < static_cast<std::ptrdiff_t>(n) && ys[static_cast<std::size_t>(k)] <= a.startY + maxDist; ++k) {
            const int j = byY[static_cast<std::size_t>(k)];
            const auto& b = m[static_cast<std::size_t>(j)];
            if (j == i || b.sign == a.sign || partner[static_cast<std::size_t>(j)] >= 0) continue;
            const double d2 = (b.startX - a.startX) * (b.startX - a.startX) + (b.startY - a.startY) * (b.startY - a.startY);
            if (d2 < bestD2 || (d2 == bestD2 && best >= 0 && j < best)) bestD2 = d2, best = j;
        }
        if (best < 0) continue;
        partner[static_cast<std::size_t>(i)] = best;
        partner[static_cast<std::size_t>(best)] = i;
    }
    return partner;
}
}  // namespace

DetectionResult detectCandidates(const diff::ZogyResult& z, std::span<const KnownSource> referenceSources,
                                 std::span<const KnownSource> scienceSources, const DetectConfig& config) {
    validate(config);
    const int W = z.scorr.width(), H = z.scorr.height();
    if (z.diff.width() != W || z.diff.height() != H || (!z.mask.empty() && (z.mask.width() != W || z.mask.height() != H)))
        throw DataError("detect: S_corr, D and mask differ in size");
    if (!(z.fD > 0.0) || !(z.fS > 0.0) || !std::isfinite(z.fD) || !std::isfinite(z.fS))
        throw DataError("detect: the ZOGY result has no F_D / F_S");
    const detail::PsfStamp psf(z.psfD);  // throws DataError for a missing P_D

    DetectionResult result;
    result.psfFwhmPx = psf.fwhmPx();
    result.psfSigmaPx = psf.sigmaPx();
    const std::vector<detail::Footprint> footprints = detail::findFootprints(z.scorr, z.mask, config, result);

    const auto t0 = Clock::now();
    // Every significant peak with its start position, less those the artifact rules that need no
    // measurement catch (saturation nearby, the image border); dipole lobes paired; peaks measured
    // in groups (a footprint's peaks, joined with the footprint of a dipole partner).
    const bool drop = config.artifacts == Artifacts::Drop;
    const int satReach = detail::saturatedReach(config, psf);
    const double border = config.borderMarginFwhm * psf.fwhmPx();
    std::vector<detail::Member> members;
    std::vector<std::uint32_t> ruleFlags;
    for (std::size_t f = 0; f < footprints.size(); ++f)
        for (const auto& p : footprints[f].peaks) {
            double sx = 0, sy = 0;
            detail::peakStart(p, footprints[f].sign, z, config, sx, sy);
            std::uint32_t rule = 0;
            if (satReach > 0 && detail::nearSaturated(z, p.x, p.y, satReach, config.saturatedMaskBits)) {
                ++result.nearSaturated;
                rule |= bits(CandidateFlag::Saturated);
            }
            if (border > 0.0 && std::min({sx, sy, W - 1 - sx, H - 1 - sy}) < border) {
                ++result.atBorder;
                rule |= bits(CandidateFlag::Border);
            }
            if (rule && drop) continue;
            ruleFlags.push_back(rule);
            detail::Member m;
            m.peak = p;
            m.sign = footprints[f].sign;
            m.footprint = static_cast<int>(f);  // global index here, the group's own index below
            m.startX = sx, m.startY = sy;
            members.push_back(m);
        }
    std::vector<int> partner(members.size(), -1);
    if (config.dipoleDistanceFwhm > 0.0) partner = pairDipoles(members, config.dipoleDistanceFwhm * psf.fwhmPx());
    std::vector<int> group(footprints.size());
    for (std::size_t f = 0; f < group.size(); ++f) group[f] = static_cast<int>(f);
    for (std::size_t i = 0; i < members.size(); ++i)
        if (partner[i] >= 0) {
            members[i].fixedPosition = true;
            const int a = findRoot(group, members[i].footprint);
            const int b = findRoot(group, members[static_cast<std::size_t>(partner[i])].footprint);
            group[static_cast<std::size_t>(std::max(a, b))] = std::min(a, b);
        }
    std::vector<std::vector<int>> groups(footprints.size());
    for (std::size_t i = 0; i < members.size(); ++i)
        groups[static_cast<std::size_t>(findRoot(group, members[i].footprint))].push_back(static_cast<int>(i));
    std::vector<Candidate> measured;
    std::vector<int> candidateOf(members.size(), -1), origin;
    std::vector<detail::Member> batch;
    std::vector<const detail::Footprint*> fps;
    std::vector<int> local(footprints.size(), -1);
    for (const auto& g : groups) {
        if (g.empty()) continue;
        batch.clear();
        fps.clear();
        for (int i : g) {
            detail::Member m = members[static_cast<std::size_t>(i)];
            int& l = local[static_cast<std::size_t>(m.footprint)];
            if (l < 0) {
                l = static_cast<int>(fps.size());
                fps.push_back(&footprints[static_cast<std::size_t>(m.footprint)]);
            }
            m.footprint = l;
            batch.push_back(m);
        }
        const std::size_t first = measured.size();
        origin.clear();
        result.residualSources += detail::measureGroup(batch, fps, z, psf, config, measured, origin);
        for (std::size_t k = 0; k < origin.size(); ++k)
            if (origin[k] >= 0) candidateOf[static_cast<std::size_t>(g[static_cast<std::size_t>(origin[k])])] = static_cast<int>(first + k);
        for (const auto* f : fps) local[static_cast<std::size_t>(f - footprints.data())] = -1;
    }
    // Sources found in fit residuals have no member; members a residual source explained have no
    // candidate (never dipole lobes: their groups are not searched).
    std::vector<bool> isMember(measured.size(), false);
    for (int k : candidateOf)
        if (k >= 0) isMember[static_cast<std::size_t>(k)] = true;
    // A dipole is one candidate: the lobe of larger |S_corr| with the other's numbers.
    std::vector<Candidate>& out = result.candidates;
    out.reserve(measured.size());
    for (std::size_t i = 0; i < members.size(); ++i) {
        const int j = partner[i];
        if (candidateOf[i] < 0) continue;
        Candidate c = measured[static_cast<std::size_t>(candidateOf[i])];
        c.flags |= ruleFlags[i];
        if (j >= 0) {
            const Candidate& o = measured[static_cast<std::size_t>(candidateOf[static_cast<std::size_t>(j)])];
            const bool primary = std::fabs(c.significance) > std::fabs(o.significance) ||
                                 (std::fabs(c.significance) == std::fabs(o.significance) && static_cast<int>(i) < j);
            if (!primary) continue;
            c.flags |= CandidateFlag::Dipole;
            c.dipoleX = o.x, c.dipoleY = o.y, c.dipoleFlux = o.flux, c.dipoleSignificance = o.significance;
            const double fa = std::fabs(c.flux), fb = std::fabs(o.flux);
            c.dipoleRatio = std::max(fa, fb) > 0.0 ? std::min(fa, fb) / std::max(fa, fb) : 0.0;
            ++result.dipoles;
        }
        out.push_back(c);
    }
    for (std::size_t k = 0; k < measured.size(); ++k)
        if (!isMember[k]) out.push_back(measured[k]);
    result.sources = static_cast<int>(measured.size());
    std::sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) {
        const double sa = std::fabs(a.significance), sb = std::fabs(b.significance);
        return sa > sb || (sa == sb && (a.peakY < b.peakY || (a.peakY == b.peakY && a.peakX < b.peakX)));
    });
    // The masked-light rule, on the measured fluxes.
    const std::vector<KnownSource> statics =
        staticSources(referenceSources, scienceSources, z, config.noDataMaskBits, std::max(1.0, 0.5 * psf.fwhmPx()));
    const RefIndex staticIndex(statics, std::max(1.0, static_cast<double>(psf.half())));
    std::size_t kept = 0;
    for (Candidate& c : out) {
        c.maskedFlux = maskedLight(z, psf, statics, staticIndex, c.peakX, c.peakY, psf.half(), config.maskedLightBits);
        if (config.maskedFluxFactor > 0.0 && c.maskedFlux > 0.0 &&
            !(std::fabs(c.flux) >= config.maskedFluxFactor * c.maskedFlux)) {
            ++result.maskedLight;
            if (drop) continue;
            c.flags |= CandidateFlag::MaskedLight;
        }
        out[kept++] = c;
    }
    out.resize(kept);
    const RefIndex refs(referenceSources, config.refSearchRadiusPx);
    for (Candidate& c : out) {
        double d = 0.0;
        const int k = refs.nearest(c.x, c.y, d);
        if (k < 0) continue;
        c.nearestRefIndex = k;
        c.nearestRefDistPx = d;
        c.nearestRefFlux = referenceSources[static_cast<std::size_t>(k)].flux;
    }
    result.measureS = since(t0);
    return result;
}

int fillSkyPositions(std::vector<Candidate>& candidates,
                     const std::function<std::pair<double, double>(double x, double y)>& pixelToSky) {
    int filled = 0;
    for (Candidate& c : candidates) {
        try {
            const auto [ra, dec] = pixelToSky(c.x, c.y);
            c.raDeg = ra;
            c.decDeg = dec;
            ++filled;
        } catch (const Error&) {
            c.raDeg = c.decDeg = Candidate::nan;  // outside the projection's domain: left unset
        }
    }
    return filled;
}

}  // namespace astrid::detect
