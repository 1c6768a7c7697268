// The completeness figure with PLplot (Debian libplplot-dev + plplot-driver-cairo): efficiency
// against true S/N and against magnitude, one curve per filter, error bars binomial.
#include <plplot/plplot.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>

#include "astrid/core/error.hpp"
#include "astrid/report/completeness.hpp"

namespace astrid::report {
namespace {
std::mutex g_plplot;  // PLplot keeps global state: one figure at a time

void panel(const std::vector<CompletenessRow>& rows, BinKind kind, const char* xlabel, const std::string& title) {
    std::map<std::string, std::vector<const CompletenessRow*>> curves;
    double xmin = 1e30, xmax = -1e30;
    for (const auto& r : rows) {
        if (r.binKind != static_cast<std::int8_t>(kind)) continue;
        const double hi = r.hi > 1e8 ? 2.0 * r.lo : r.hi;
        if (kind == BinKind::Snr && r.lo >= 30.0) continue;  // flat at 1 beyond: show the rise
        curves[output::getText(r.filter)].push_back(&r);
        xmin = std::min(xmin, r.lo);
        xmax = std::max(xmax, hi);
    }
    pladv(0);
    plvsta();
    if (curves.empty()) {
        plwind(0, 1, 0, 1);
        plcol0(1);
        plbox("bc", 0, 0, "bc", 0, 0);
        plptex(0.5, 0.5, 1, 0, 0.5, "no magnitudes (no zero point)");
        return;
    }
    plwind(xmin, xmax, 0.0, 1.05);
    plcol0(4);
    PLFLT gx[2] = {xmin, xmax}, half[2] = {0.5, 0.5}, full[2] = {0.95, 0.95};
    plline(2, gx, half);
    plline(2, gx, full);
    plcol0(1);
    plbox("bcnst", 0, 0, "bcnstv", 0, 0);
    pllab(xlabel, "efficiency (recovered / injected)", title.c_str());
    int colour = 2;
    PLFLT ly = 0.25;
    for (const auto& [filter, pts] : curves) {
        std::vector<PLFLT> x, y, lo, hi;
        for (const auto* r : pts) {
            x.push_back(0.5 * (r->lo + (r->hi > 1e8 ? 2.0 * r->lo : r->hi)));
            y.push_back(r->efficiency);
            lo.push_back(std::max(0.0, r->efficiency - r->efficiencyErr));
            hi.push_back(std::min(1.0, r->efficiency + r->efficiencyErr));
        }
        plcol0(filter == "all" ? 1 : colour);
        plwidth(filter == "all" ? 2.0 : 1.0);
        plline(static_cast<PLINT>(x.size()), x.data(), y.data());
        plpoin(static_cast<PLINT>(x.size()), x.data(), y.data(), 17);
        plerry(static_cast<PLINT>(x.size()), x.data(), lo.data(), hi.data());
        plptex(xmin + 0.72 * (xmax - xmin), ly, 1, 0, 0, filter.c_str());
        ly -= 0.06;
        if (filter != "all") colour = colour == 3 ? 5 : colour + 1;
    }
    plwidth(1.0);
}
}  // namespace

void plotCompleteness(const std::vector<CompletenessRow>& rows, const CompletenessSummary& s, const std::string& pngPath,
                      const std::string& title) {
    std::lock_guard lock(g_plplot);
    const std::string tmp = pngPath + ".tmp.png";
    plsdev("pngcairo");
    plsfnam(tmp.c_str());
    plspage(0, 0, 1400, 600, 0, 0);
    plscol0(0, 255, 255, 255);  // background
    plscol0(1, 0, 0, 0);        // axes, "all"
    plscol0(2, 31, 119, 180);
    plscol0(3, 214, 39, 40);
    plscol0(4, 170, 170, 170);  // 50% and 95% guides
    plscol0(5, 44, 160, 44);
    plssub(2, 1);
    plinit();
    char head[160];
    std::snprintf(head, sizeof head, "%lld fakes: %.1f%% found at S/N>=8, 50%% at S/N %.1f",
                  static_cast<long long>(s.injected), 100.0 * s.efficiencyAtSnr8, s.snr50);
    panel(rows, BinKind::Snr, "true S/N (PSF fit on the clean difference)", head);
    panel(rows, BinKind::Mag, "injected magnitude (reference zero point)", title + ": completeness against magnitude");
    plend();
    std::error_code ec;
    if (!std::filesystem::exists(tmp)) throw IoError(pngPath + ": PLplot wrote no figure");
    std::filesystem::rename(tmp, pngPath, ec);
    if (ec) throw IoError(pngPath + ": " + ec.message());
}

}  // namespace astrid::report
