// Selection of reference and science epochs.
#include <algorithm>
#include <cmath>
#include <map>
#include <sstream>

#include "astrid/pipeline/pipeline.hpp"

namespace astrid::pipeline {
using archive::ObsStatus;
using archive::Observation;
using archive::Role;

std::string selectObservations(const catalog::Target& target, std::vector<Observation>& obs,
                               const SelectionConfig& c) {
    if (!target.discMjd) return "target has no discovery date: reference and science windows are undefined";
    const double disc = *target.discMjd;
    struct Group {
        std::vector<std::size_t> refs, scis;
    };
    std::map<std::pair<std::string, std::string>, Group> groups;  // (mission, filter) -> candidates
    int outside = 0, wrongFilter = 0;
    for (std::size_t i = 0; i < obs.size(); ++i) {
        Observation& o = obs[i];
        if (o.status == ObsStatus::Invalid) continue;
        o.role = Role::Unassigned;
        o.status = ObsStatus::NotSelected;
        if (!c.filter.empty() && o.filterBand != c.filter) {
            o.statusReason = "filter " + o.filterBand + " is not the job's filter " + c.filter;
            ++wrongFilter;
            continue;
        }
        if (std::isnan(o.mjd)) {
            o.statusReason = "no observation date (MJD-OBS/DATE-OBS)";
            continue;
        }
        auto& g = groups[{o.mission, o.filterBand}];
        if (o.mjd >= disc - c.daysBefore && o.mjd <= disc - c.refMarginDays)
            g.refs.push_back(i);
        else if (o.mjd >= disc && o.mjd <= disc + c.daysAfter)
            g.scis.push_back(i);
        else {
            o.statusReason = "outside the reference and science date windows";
            ++outside;
        }
    }
    // The (mission, filter) group with the most science epochs that also has a reference wins:
    // cross-mission or cross-filter pairs give unusable differences.
    const Group* best = nullptr;
    const Group* bestAny = nullptr;
    for (const auto& [key, g] : groups) {
        if (!bestAny || g.scis.size() + g.refs.size() > bestAny->scis.size() + bestAny->refs.size()) bestAny = &g;
        if (g.refs.empty() && c.requireBoth) continue;
        if (g.scis.empty() && c.requireBoth) continue;
        if (!best || g.scis.size() > best->scis.size()) best = &g;
    }
    if (!best) {
        std::ostringstream why;
        std::size_t nRef = 0, nSci = 0;
        for (const auto& [key, g] : groups) nRef += g.refs.size(), nSci += g.scis.size();
        why << "no usable reference/science pair: " << obs.size() << " observation(s) listed, " << nRef
            << " in the reference window, " << nSci << " in the science window";
        if (outside) why << ", " << outside << " outside both windows";
        if (wrongFilter) why << ", " << wrongFilter << " in another filter";
        if (nRef && nSci) why << "; references and science epochs differ in mission or filter";
        if (!bestAny && !c.requireBoth) return {};
        return why.str();
    }
    std::vector<std::size_t> refs = best->refs, scis = best->scis;
    // Best seeing first for references (ties: most recent); earliest first for science epochs.
    std::sort(refs.begin(), refs.end(), [&](std::size_t a, std::size_t b) {
        const double sa = std::isnan(obs[a].seeingArcsec) ? 1e9 : obs[a].seeingArcsec;
        const double sb = std::isnan(obs[b].seeingArcsec) ? 1e9 : obs[b].seeingArcsec;
        return sa != sb ? sa < sb : obs[a].mjd > obs[b].mjd;
    });
    std::sort(scis.begin(), scis.end(), [&](std::size_t a, std::size_t b) { return obs[a].mjd < obs[b].mjd; });
    for (std::size_t k = 0; k < refs.size(); ++k) {
        Observation& o = obs[refs[k]];
        if (static_cast<int>(k) < c.maxReference) {
            o.role = Role::Reference;
            o.status = ObsStatus::Used;
        } else
            o.statusReason = "beyond max_reference (" + std::to_string(c.maxReference) + ")";
    }
    for (std::size_t k = 0; k < scis.size(); ++k) {
        Observation& o = obs[scis[k]];
        if (static_cast<int>(k) < c.maxScience) {
            o.role = Role::Science;
            o.status = ObsStatus::Used;
        } else
            o.statusReason = "beyond max_science (" + std::to_string(c.maxScience) + ")";
    }
    for (auto& [key, g] : groups) {
        if (&g == best) continue;
        for (std::size_t i : g.refs) obs[i].statusReason = "mission/filter differs from the selected pair";
        for (std::size_t i : g.scis) obs[i].statusReason = "mission/filter differs from the selected pair";
    }
    return {};
}

}  // namespace astrid::pipeline
