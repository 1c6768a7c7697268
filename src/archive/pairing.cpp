// Reference/science pairing of remote observations and footprint coverage from STC-S regions.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <numbers>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "astrid/archive/query.hpp"
#include "astrid/core/text.hpp"

namespace astrid::archive {

const char* planStatusName(PlanStatus s) {
    switch (s) {
        case PlanStatus::Paired: return "paired";
        case PlanStatus::Unpaired: return "unpaired";
        case PlanStatus::Error: return "error";
    }
    return "?";
}

namespace {
struct Pt {
    double x, y;
};
using Poly = std::vector<Pt>;
constexpr double kDeg = std::numbers::pi / 180.0;

std::optional<double> number(const std::string& s) {
    char* end = nullptr;
    const double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() || *end != '\0' || !std::isfinite(v)) return std::nullopt;
    return v;
}

/// The first POLYGON or CIRCLE of an STC-S string as (ra, dec) vertices in degrees.
std::optional<std::vector<std::pair<double, double>>> parseRegion(const std::string& region) {
    std::istringstream in(region);
    std::vector<std::string> tok;
    for (std::string t; in >> t;) tok.push_back(t);
    for (std::size_t i = 0; i < tok.size(); ++i) {
        const std::string k = text::toLower(tok[i]);
        if (k != "polygon" && k != "circle") continue;
        std::size_t j = i + 1;
        while (j < tok.size() && !number(tok[j])) ++j;  // frame / reference position words
        std::vector<double> v;
        for (; j < tok.size(); ++j) {
            auto x = number(tok[j]);
            if (!x) break;
            v.push_back(*x);
        }
        std::vector<std::pair<double, double>> out;
        if (k == "polygon") {
            if (v.size() < 6 || v.size() % 2) return std::nullopt;
            for (std::size_t m = 0; m + 1 < v.size(); m += 2) out.emplace_back(v[m], v[m + 1]);
        } else {
            if (v.size() != 3 || !(v[2] > 0)) return std::nullopt;
            const double cosd = std::max(1e-6, std::cos(v[1] * kDeg));
            for (int m = 0; m < 32; ++m) {
                const double a = 2 * std::numbers::pi * m / 32;
                out.emplace_back(v[0] + v[2] * std::cos(a) / cosd, v[1] + v[2] * std::sin(a));
            }
        }
        return out;
    }
    return std::nullopt;
}

double area(const Poly& p) {
    double s = 0;
    for (std::size_t i = 0; i < p.size(); ++i) {
        const Pt& a = p[i];
        const Pt& b = p[(i + 1) % p.size()];
        s += a.x * b.y - b.x * a.y;
    }
    return 0.5 * s;
}

std::optional<Poly> project(const std::vector<std::pair<double, double>>& radec, double ra0, double dec0) {
    Poly p;
    for (auto [ra, dec] : radec) {
        const double d = dec * kDeg, d0 = dec0 * kDeg, dr = (ra - ra0) * kDeg;
        const double cosc = std::sin(d0) * std::sin(d) + std::cos(d0) * std::cos(d) * std::cos(dr);
        if (cosc <= 0.05) return std::nullopt;  // far beyond any image: no overlap
        p.push_back({std::cos(d) * std::sin(dr) / cosc, (std::cos(d0) * std::sin(d) - std::sin(d0) * std::cos(d) * std::cos(dr)) / cosc});
    }
    if (area(p) < 0) std::reverse(p.begin(), p.end());
    return p;
}

/// Sutherland-Hodgman: `subject` clipped by the convex, counter-clockwise `clip`.
Poly clipPolygon(Poly subject, const Poly& clip) {
    for (std::size_t i = 0; i < clip.size() && !subject.empty(); ++i) {
        const Pt a = clip[i], b = clip[(i + 1) % clip.size()];
        auto inside = [&](const Pt& p) { return (b.x - a.x) * (p.y - a.y) - (b.y - a.y) * (p.x - a.x) >= 0; };
        auto cross = [&](const Pt& p, const Pt& q) {
            const double a1 = b.y - a.y, b1 = a.x - b.x, c1 = a1 * a.x + b1 * a.y;
            const double a2 = q.y - p.y, b2 = p.x - q.x, c2 = a2 * p.x + b2 * p.y;
            const double det = a1 * b2 - a2 * b1;
            if (std::abs(det) < 1e-300) return p;
            return Pt{(b2 * c1 - b1 * c2) / det, (a1 * c2 - a2 * c1) / det};
        };
        Poly out;
        for (std::size_t j = 0; j < subject.size(); ++j) {
            const Pt p = subject[j], q = subject[(j + 1) % subject.size()];
            const bool pin = inside(p), qin = inside(q);
            if (pin) out.push_back(p);
            if (pin != qin) out.push_back(cross(p, q));
        }
        subject = std::move(out);
    }
    return subject;
}

bool inWindowRef(const RemoteObservation& o, double disc, const QueryConfig& c) {
    const double end = std::isnan(o.tMaxMjd) ? o.tMinMjd : o.tMaxMjd;
    if (!(end <= disc - c.refMarginDays)) return false;
    return o.coadd || o.tMinMjd >= disc - c.daysBefore;
}
bool inWindowSci(const RemoteObservation& o, double disc, const QueryConfig& c) {
    return o.tMinMjd >= disc && o.tMinMjd <= disc + c.daysAfter;
}

bool looksFits(const std::string& name) {
    std::string n = text::toLower(name);
    for (const char* z : {".gz", ".fz"})
        if (n.size() > 3 && n.ends_with(z)) n.resize(n.size() - 3);
    return n.ends_with(".fits") || n.ends_with(".fit") || n.ends_with(".fts");
}

std::string groupKey(const RemoteObservation& o) {
    return o.archive + "/" + o.collection + "/" + o.instrument + "/" + o.filter;
}

std::string listGroups(const std::vector<const RemoteObservation*>& v) {
    std::map<std::string, int> n;
    for (auto* o : v) ++n[o->collection + "/" + o->instrument + "/" + o->filter];
    std::string s;
    for (const auto& [k, c] : n) s += (s.empty() ? "" : ", ") + k + " x" + std::to_string(c);
    return s;
}
}  // namespace

std::optional<double> footprintCoverage(const std::string& a, const std::string& b) {
    const auto ra = parseRegion(a), rb = parseRegion(b);
    if (!ra || !rb) return std::nullopt;
    double x = 0, y = 0, z = 0;  // centre of a (unit-vector mean)
    for (auto [r, d] : *ra) {
        x += std::cos(d * kDeg) * std::cos(r * kDeg);
        y += std::cos(d * kDeg) * std::sin(r * kDeg);
        z += std::sin(d * kDeg);
    }
    double ra0 = std::atan2(y, x) / kDeg;
    if (ra0 < 0) ra0 += 360;
    const double dec0 = std::atan2(z, std::hypot(x, y)) / kDeg;
    const auto pa = project(*ra, ra0, dec0);
    if (!pa) return std::nullopt;
    const auto pb = project(*rb, ra0, dec0);
    if (!pb) return 0.0;
    const double full = area(*pa);
    if (!(full > 0)) return std::nullopt;
    return std::clamp(std::abs(area(clipPolygon(*pa, *pb))) / full, 0.0, 1.0);
}

TargetPlan pairTarget(const catalog::Target& target, std::vector<RemoteObservation> found, const QueryConfig& c) {
    TargetPlan plan;
    plan.target = target;
    plan.found = static_cast<int>(found.size());
    if (!target.discMjd) {
        plan.reason = "no discovery date";
        return plan;
    }
    const double disc = *target.discMjd;
    if (found.empty()) {
        plan.reason = fmt::format("no image observations within {:g} deg{} between MJD {:.1f} and {:.1f}", c.radiusDeg,
                                  c.missions.empty() ? std::string() : " in " + fmt::format("{}", fmt::join(c.missions, ",")),
                                  disc - c.daysBefore, disc + c.daysAfter);
        return plan;
    }
    // Products first: an observation without a usable science file is no observation for us.
    int noProduct = 0, unsafe = 0, wrongFilter = 0;
    std::vector<RemoteObservation> usable;
    for (auto& o : found) {
        if (!c.filter.empty() && o.filter != c.filter) {
            ++wrongFilter;
            continue;
        }
        std::vector<RemoteProduct> keep;
        for (auto& p : o.products) {
            if (!c.productTypes.empty() &&
                std::find(c.productTypes.begin(), c.productTypes.end(), p.productType) == c.productTypes.end())
                continue;
            const int level = p.calibLevel >= 0 ? p.calibLevel : o.calibLevel;
            if (!c.calibLevels.empty() && std::find(c.calibLevels.begin(), c.calibLevels.end(), level) == c.calibLevels.end())
                continue;
            if (!looksFits(p.product.filename)) continue;
            if (p.product.size > c.maxProductBytes) continue;
            try {
                checkProductName(p.product.filename, o.archive);
            } catch (const Error&) {
                ++unsafe;
                continue;
            }
            keep.push_back(std::move(p));
        }
        o.products = std::move(keep);
        if (o.products.empty()) {
            ++noProduct;
            continue;
        }
        usable.push_back(std::move(o));
    }
    std::string notes;
    if (noProduct) notes += fmt::format("{} observation(s) without a usable science product; ", noProduct);
    if (unsafe) notes += fmt::format("{} product(s) with unsafe file names refused; ", unsafe);
    if (wrongFilter) notes += fmt::format("{} observation(s) in other filters; ", wrongFilter);

    std::vector<const RemoteObservation*> refs, scis;
    for (const auto& o : usable) {
        if (inWindowRef(o, disc, c)) refs.push_back(&o);
        else if (inWindowSci(o, disc, c)) scis.push_back(&o);
    }
    auto unpaired = [&](std::string why) {
        plan.reason = notes + why;
        return plan;
    };
    const std::string refWin = fmt::format("[{:.1f}, {:.1f}]", disc - c.daysBefore, disc - c.refMarginDays);
    const std::string sciWin = fmt::format("[{:.1f}, {:.1f}]", disc, disc + c.daysAfter);
    if (refs.empty() && scis.empty())
        return unpaired(fmt::format("no usable observation in the reference window {} or the science window {} ({} found)",
                                    refWin, sciWin, plan.found));
    if (c.requireBoth && refs.empty())
        return unpaired(fmt::format("no reference epoch in MJD {} (science: {})", refWin, listGroups(scis)));
    if (c.requireBoth && scis.empty())
        return unpaired(fmt::format("no science epoch in MJD {} (references: {})", sciWin, listGroups(refs)));

    struct Choice {
        std::string key;
        std::vector<const RemoteObservation*> refs;
        std::vector<std::pair<const RemoteObservation*, double>> scis;
    };
    std::map<std::string, std::pair<std::vector<const RemoteObservation*>, std::vector<const RemoteObservation*>>> groups;
    for (auto* o : refs) groups[groupKey(*o)].first.push_back(o);
    for (auto* o : scis) groups[groupKey(*o)].second.push_back(o);
    std::optional<Choice> best;
    bool anyBoth = false;
    double bestCoverage = 0;
    for (auto& [key, g] : groups) {
        auto& [gr, gs] = g;
        Choice ch;
        ch.key = key;
        if (gr.empty() || gs.empty()) {
            if (c.requireBoth) continue;
            ch.refs.assign(gr.begin(), gr.begin() + std::min<std::size_t>(gr.size(), c.maxReference));
            for (auto* s : gs) ch.scis.emplace_back(s, RemoteObservation::kNaN);
        } else {
            anyBoth = true;
            // coverage[r][s]: unknown footprints count as covering (the run checks the real WCS).
            std::vector<std::vector<double>> cov(gr.size(), std::vector<double>(gs.size()));
            std::vector<int> covers(gr.size());
            for (std::size_t r = 0; r < gr.size(); ++r)
                for (std::size_t s = 0; s < gs.size(); ++s) {
                    const auto f = footprintCoverage(gs[s]->sRegion, gr[r]->sRegion);
                    cov[r][s] = f ? *f : RemoteObservation::kNaN;
                    if (f) bestCoverage = std::max(bestCoverage, *f);
                    covers[r] += !f || *f >= c.minOverlap;
                }
            std::vector<std::size_t> order(gr.size());
            for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
            std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
                if (covers[a] != covers[b]) return covers[a] > covers[b];
                const double ea = std::isnan(gr[a]->exposureS) ? 0 : gr[a]->exposureS;
                const double eb = std::isnan(gr[b]->exposureS) ? 0 : gr[b]->exposureS;
                if (ea != eb) return ea > eb;
                return gr[a]->tMinMjd > gr[b]->tMinMjd;
            });
            std::vector<std::size_t> chosen;
            for (std::size_t i : order)
                if (covers[i] > 0 && static_cast<int>(chosen.size()) < c.maxReference) chosen.push_back(i);
            for (std::size_t i : chosen) ch.refs.push_back(gr[i]);
            for (std::size_t s = 0; s < gs.size(); ++s) {
                double bestHere = -1;
                bool ok = false;
                for (std::size_t r : chosen) {
                    const double v = cov[r][s];
                    if (std::isnan(v) || v >= c.minOverlap) ok = true;
                    if (!std::isnan(v)) bestHere = std::max(bestHere, v);
                }
                if (ok) ch.scis.emplace_back(gs[s], bestHere < 0 ? RemoteObservation::kNaN : bestHere);
            }
        }
        std::stable_sort(ch.scis.begin(), ch.scis.end(),
                         [](const auto& a, const auto& b) { return a.first->tMinMjd < b.first->tMinMjd; });
        if (static_cast<int>(ch.scis.size()) > c.maxScience) ch.scis.resize(static_cast<std::size_t>(c.maxScience));
        if (c.requireBoth && (ch.refs.empty() || ch.scis.empty())) continue;
        if (ch.refs.empty() && ch.scis.empty()) continue;
        if (!best || ch.scis.size() > best->scis.size()) best = std::move(ch);
    }
    if (!best) {
        if (!anyBoth)
            return unpaired(fmt::format("references and science epochs exist but never in the same mission and filter "
                                        "(references: {}; science: {})",
                                        listGroups(refs), listGroups(scis)));
        return unpaired(fmt::format("no reference covers {:g}% of a science image in the same mission and filter "
                                    "(best {:.0f}%)",
                                    100 * c.minOverlap, 100 * bestCoverage));
    }
    plan.status = PlanStatus::Paired;
    plan.reason = notes.empty() ? std::string() : notes.substr(0, notes.size() - 2);
    for (auto* r : best->refs) {
        RemoteObservation o = *r;
        o.role = Role::Reference;
        plan.observations.push_back(std::move(o));
    }
    for (auto& [s, ov] : best->scis) {
        RemoteObservation o = *s;
        o.role = Role::Science;
        o.overlap = ov;
        plan.observations.push_back(std::move(o));
    }
    const auto& first = plan.observations.front();
    plan.archive = first.archive;
    plan.mission = first.collection;
    plan.instrument = first.instrument;
    plan.filter = first.filter;
    return plan;
}

}  // namespace astrid::archive
