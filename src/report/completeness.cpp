#include "astrid/report/completeness.hpp"

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <map>

#include "astrid/core/error.hpp"
#include "astrid/output/reader.hpp"

namespace astrid::report {
namespace {
constexpr double kNan = std::numeric_limits<double>::quiet_NaN();

const std::vector<double> kSnrEdges = {0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 50, 100, 1e9};

std::vector<double> stepEdges(double lo, double hi, double step) {
    std::vector<double> e;
    for (double v = std::floor(lo / step) * step; v < hi + step; v += step) e.push_back(v);
    return e;
}

void addCurve(std::vector<CompletenessRow>& out, const std::string& filter, BinKind kind,
              const std::vector<double>& edges, const std::vector<std::pair<double, bool>>& values) {
    if (edges.size() < 2) return;
    std::vector<std::int64_t> n(edges.size() - 1, 0), k(edges.size() - 1, 0);
    for (const auto& [v, rec] : values) {
        if (!std::isfinite(v)) continue;
        const auto it = std::upper_bound(edges.begin(), edges.end(), v);
        if (it == edges.begin() || it == edges.end()) continue;
        const auto b = static_cast<std::size_t>(it - edges.begin() - 1);
        ++n[b];
        k[b] += rec ? 1 : 0;
    }
    for (std::size_t b = 0; b < n.size(); ++b) {
        if (n[b] == 0) continue;
        CompletenessRow row{};
        output::setText(row.filter, filter);
        row.binKind = static_cast<std::int8_t>(kind);
        row.lo = edges[b];
        row.hi = edges[b + 1];
        row.injected = n[b];
        row.recovered = k[b];
        const double e = static_cast<double>(k[b]) / static_cast<double>(n[b]);
        row.efficiency = e;
        row.efficiencyErr = std::max(std::sqrt(e * (1.0 - e) / static_cast<double>(n[b])), 0.5 / static_cast<double>(n[b]));
        out.push_back(row);
    }
}

/// Where a curve (rows of one filter and kind, in bin order) first falls through 50%, linear
/// between bin centres.
double crossing50(const std::vector<CompletenessRow>& rows, BinKind kind, bool rising) {
    std::vector<std::pair<double, double>> pts;
    for (const auto& r : rows)
        if (output::getText(r.filter) == "all" && r.binKind == static_cast<std::int8_t>(kind) && r.hi < 1e8)
            pts.emplace_back(0.5 * (r.lo + r.hi), r.efficiency);
    for (std::size_t i = 1; i < pts.size(); ++i) {
        const auto [x0, e0] = pts[i - 1];
        const auto [x1, e1] = pts[i];
        if (rising ? (e0 < 0.5 && e1 >= 0.5) : (e0 >= 0.5 && e1 < 0.5))
            return x0 + (0.5 - e0) * (x1 - x0) / (e1 - e0);
    }
    return kNan;
}
}  // namespace

std::vector<CompletenessRow> completeness(const std::vector<output::InjectionRow>& injections,
                                          const std::vector<output::ObservationRow>& observations) {
    std::map<std::int64_t, std::string> filterOf;
    for (const auto& o : observations) filterOf[o.obsId] = output::getText(o.filterBand);
    std::map<std::string, std::vector<const output::InjectionRow*>> byFilter;
    for (const auto& f : injections) {
        auto it = filterOf.find(f.scienceObsId);
        byFilter[it == filterOf.end() || it->second.empty() ? "?" : it->second].push_back(&f);
        byFilter["all"].push_back(&f);
    }
    std::vector<CompletenessRow> out;
    for (const auto& [filter, rows] : byFilter) {
        std::vector<std::pair<double, bool>> snr, dmag, mag;
        double magLo = 1e9, magHi = -1e9;
        for (const auto* f : rows) {
            snr.emplace_back(f->snrTrue, f->recovered != 0);
            dmag.emplace_back(f->mag - f->magLimit, f->recovered != 0);
            mag.emplace_back(f->mag, f->recovered != 0);
            if (std::isfinite(f->mag)) magLo = std::min(magLo, f->mag), magHi = std::max(magHi, f->mag);
        }
        addCurve(out, filter, BinKind::Snr, kSnrEdges, snr);
        addCurve(out, filter, BinKind::DeltaMag, stepEdges(-3.0, 1.5, 0.25), dmag);
        if (magLo <= magHi) addCurve(out, filter, BinKind::Mag, stepEdges(magLo, magHi, 0.25), mag);
    }
    return out;
}

CompletenessSummary summarize(const std::vector<CompletenessRow>& rows,
                              const std::vector<output::InjectionRow>& injections) {
    CompletenessSummary s;
    std::int64_t k8 = 0;
    for (const auto& f : injections) {
        ++s.injected;
        s.recovered += f.recovered ? 1 : 0;
        if (f.snrTrue >= 8.0) ++s.injectedAtSnr8, k8 += f.recovered ? 1 : 0;
    }
    s.efficiencyAtSnr8 = s.injectedAtSnr8 ? static_cast<double>(k8) / static_cast<double>(s.injectedAtSnr8) : kNan;
    s.snr50 = crossing50(rows, BinKind::Snr, true);
    s.dmag50 = crossing50(rows, BinKind::DeltaMag, false);
    return s;
}

namespace {
struct H5 {
    hid_t id;
    herr_t (*close)(hid_t);
    ~H5() {
        if (id >= 0) close(id);
    }
};

hid_t completenessType() {
    const hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(CompletenessRow));
    const hsize_t n16[1] = {16};
    const hid_t s16 = H5Tcopy(H5T_C_S1);
    H5Tset_size(s16, 16);
    H5Tset_strpad(s16, H5T_STR_NULLPAD);
    (void)n16;
    H5Tinsert(t, "filter", HOFFSET(CompletenessRow, filter), s16);
    H5Tinsert(t, "bin_kind", HOFFSET(CompletenessRow, binKind), H5T_NATIVE_INT8);
    H5Tinsert(t, "lo", HOFFSET(CompletenessRow, lo), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "hi", HOFFSET(CompletenessRow, hi), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "injected", HOFFSET(CompletenessRow, injected), H5T_NATIVE_INT64);
    H5Tinsert(t, "recovered", HOFFSET(CompletenessRow, recovered), H5T_NATIVE_INT64);
    H5Tinsert(t, "efficiency", HOFFSET(CompletenessRow, efficiency), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "efficiency_err", HOFFSET(CompletenessRow, efficiencyErr), H5T_NATIVE_DOUBLE);
    H5Tclose(s16);
    return t;
}

void doubleAttr(hid_t obj, const char* name, double v) {
    H5 space{H5Screate(H5S_SCALAR), H5Sclose};
    if (H5Aexists(obj, name) > 0) H5Adelete(obj, name);
    H5 a{H5Acreate2(obj, name, H5T_NATIVE_DOUBLE, space.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose};
    H5Awrite(a.id, H5T_NATIVE_DOUBLE, &v);
}
}  // namespace

CompletenessSummary writeCompletenessReport(const std::string& runPath, const std::string& pngPath) {
    std::vector<output::InjectionRow> injections;
    std::vector<output::ObservationRow> observations;
    {
        output::RunReader rd(runPath);
        injections = rd.injections();
        if (injections.empty()) return {};
        observations = rd.observations();
    }
    const auto rows = completeness(injections, observations);
    const auto summary = summarize(rows, injections);

    H5 file{H5Fopen(runPath.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose};
    if (file.id < 0) throw H5Error(runPath + ": cannot open to write /completeness");
    if (H5Lexists(file.id, "completeness", H5P_DEFAULT) > 0) H5Ldelete(file.id, "completeness", H5P_DEFAULT);
    const hsize_t dims[1] = {rows.size()};
    H5 space{H5Screate_simple(1, dims, nullptr), H5Sclose};
    H5 type{completenessType(), H5Tclose};
    H5 ds{H5Dcreate2(file.id, "completeness", type.id, space.id, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Dclose};
    if (ds.id < 0 || (!rows.empty() && H5Dwrite(ds.id, type.id, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows.data()) < 0))
        throw H5Error(runPath + ": cannot write /completeness");
    doubleAttr(ds.id, "injected", static_cast<double>(summary.injected));
    doubleAttr(ds.id, "recovered", static_cast<double>(summary.recovered));
    doubleAttr(ds.id, "efficiency_snr_ge_8", summary.efficiencyAtSnr8);
    doubleAttr(ds.id, "snr_50", summary.snr50);
    doubleAttr(ds.id, "dmag_50", summary.dmag50);
    if (!pngPath.empty()) plotCompleteness(rows, summary, pngPath, std::filesystem::path(runPath).filename().string());
    return summary;
}

}  // namespace astrid::report
