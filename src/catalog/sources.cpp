#include "astrid/catalog/sources.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <set>

#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"

namespace astrid::catalog {
namespace {
std::string lower(std::string_view s) {
    std::string out(s);
    std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
    return out;
}

int column(const std::vector<std::string>& names, std::initializer_list<const char*> accepted) {
    for (std::size_t i = 0; i < names.size(); ++i)
        for (const char* a : accepted)
            if (names[i] == a) return static_cast<int>(i);
    return -1;
}

double number(std::string_view field, const std::string& path, long line, const char* what) {
    field = text::trim(field);
    double v = 0.0;
    const auto [p, ec] = std::from_chars(field.data(), field.data() + field.size(), v);
    if (ec != std::errc() || p != field.data() + field.size() || !std::isfinite(v))
        throw CatalogError(std::string(what) + " '" + std::string(field) + "' is not a number", path, line);
    return v;
}
}  // namespace

std::vector<CatalogSource> readSourceCatalog(const std::string& path, bool requireMag) {
    std::ifstream in(path);
    if (!in) throw CatalogError("cannot open the source catalog", path);
    std::vector<CatalogSource> out;
    std::vector<std::string> names;
    int cRa = -1, cDec = -1, cId = -1, cMag = -1;
    std::set<std::int64_t> ids;
    std::string text;
    long line = 0;
    std::int64_t row = 0;
    while (std::getline(in, text)) {
        ++line;
        const auto t = text::trim(text);
        if (t.empty() || t.front() == '#') continue;
        const auto fields = text::split(t, ',');
        if (names.empty()) {
            for (auto f : fields) names.push_back(lower(text::trim(f)));
            cRa = column(names, {"ra", "ra_deg", "raj2000"});
            cDec = column(names, {"dec", "dec_deg", "dej2000"});
            cId = column(names, {"id", "source_id"});
            cMag = column(names, {"mag", "magnitude"});
            if (cRa < 0 || cDec < 0) throw CatalogError("the header names no ra and dec columns", path, line);
            if (requireMag && cMag < 0) throw CatalogError("the header names no mag column", path, line);
            continue;
        }
        if (fields.size() != names.size())
            throw CatalogError(std::to_string(fields.size()) + " fields, the header has " + std::to_string(names.size()),
                               path, line);
        CatalogSource s;
        s.raDeg = number(fields[static_cast<std::size_t>(cRa)], path, line, "ra");
        s.decDeg = number(fields[static_cast<std::size_t>(cDec)], path, line, "dec");
        if (s.raDeg < 0.0 || s.raDeg >= 360.0 || std::fabs(s.decDeg) > 90.0)
            throw CatalogError("position outside ra [0, 360), dec [-90, 90]", path, line);
        s.id = row;
        if (cId >= 0) {
            const auto f = text::trim(fields[static_cast<std::size_t>(cId)]);
            const auto [p, ec] = std::from_chars(f.data(), f.data() + f.size(), s.id);
            if (ec != std::errc() || p != f.data() + f.size())
                throw CatalogError("id '" + std::string(f) + "' is not an integer", path, line);
        }
        if (!ids.insert(s.id).second) throw CatalogError("duplicate id " + std::to_string(s.id), path, line);
        if (cMag >= 0) {
            const auto f = text::trim(fields[static_cast<std::size_t>(cMag)]);
            if (!f.empty()) s.mag = number(f, path, line, "mag");
        }
        if (requireMag && !std::isfinite(s.mag)) throw CatalogError("no magnitude", path, line);
        out.push_back(s);
        ++row;
    }
    if (names.empty()) throw CatalogError("empty source catalog (no header line)", path);
    return out;
}

}  // namespace astrid::catalog
