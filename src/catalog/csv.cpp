// CSV target lists as real catalogues export them (TNS, OSC, spreadsheets): a header naming the
// columns under one of several aliases, '#' comments, RFC 4180 quoting, ',' or another delimiter,
// positions in degrees or sexagesimal, dates as ISO strings or MJD/JD numbers.
// Quoted fields may not span lines: a catalogue row is one line, and an unbalanced quote must cost
// one row, not swallow the rest of the file.
#include <array>
#include <span>

#include "astrid/catalog/catalog.hpp"
#include "detail.hpp"
#include "astrid/core/angle.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"

namespace astrid::catalog::detail {
namespace {

constexpr std::size_t kNone = static_cast<std::size_t>(-1);

// Aliases in priority order: with both "name" and "id" present (our own writeTargetsCsv output),
// "name" is the name.
constexpr std::string_view kNameAliases[] = {"name", "sn_name", "object", "objname", "target",
                                                                   "id"};
constexpr std::string_view kRaAliases[] = {"ra", "ra_deg", "sn_ra", "raj2000", "ra_j2000",
                                                                 "radeg"};
constexpr std::string_view kDecAliases[] = {"dec",      "dec_deg",   "sn_dec", "dej2000",
                                                                  "decj2000", "dec_j2000", "decdeg", "decl"};
constexpr std::string_view kDiscAliases[] = {
    "disc_date", "discovery_date", "discdate", "disc_mjd", "discovery_mjd", "mjd", "date"};
constexpr std::string_view kMaxAliases[] = {"max_date", "max_mjd", "maxdate"};
constexpr std::string_view kTypeAliases[] = {"type", "sn_type", "class"};
constexpr std::string_view kHostAliases[] = {"host", "gal_name", "host_name", "galaxy"};

using Aliases = std::span<const std::string_view>;

struct Columns {
    std::size_t name = kNone, ra = kNone, dec = kNone, disc = kNone, max = kNone, type = kNone, host = kNone;
    DateStyle discStyle = DateStyle::CalendarOrNumber, maxStyle = DateStyle::CalendarOrNumber;
    std::size_t headerFields = 0;
};

bool isBlank(char c, char delim) { return (c == ' ' || c == '\t') && c != delim; }

// Splits one line; false with `why` on broken quoting. Unquoted fields are trimmed; a '"' has
// meaning only at the start of a field, so 12d30'05" style values need no quoting.
bool splitCsv(std::string_view line, char delim, std::vector<std::string>& out, std::string* why) {
    out.clear();
    std::size_t i = 0;
    const std::size_t n = line.size();
    for (;;) {
        const std::size_t start = i;
        while (i < n && isBlank(line[i], delim)) ++i;
        if (i < n && line[i] == '"') {
            ++i;
            std::string value;
            for (;;) {
                if (i >= n) {
                    if (why) *why = "unterminated quoted field in column " + std::to_string(out.size() + 1);
                    return false;
                }
                if (line[i] == '"') {
                    if (i + 1 < n && line[i + 1] == '"') {
                        value += '"';
                        i += 2;
                        continue;
                    }
                    ++i;
                    break;
                }
                value += line[i++];
            }
            while (i < n && isBlank(line[i], delim)) ++i;
            if (i < n && line[i] != delim) {
                if (why) *why = "text after the closing quote in column " + std::to_string(out.size() + 1);
                return false;
            }
            out.push_back(std::string(text::trim(value)));
        } else {
            std::size_t end = line.find(delim, i);
            if (end == std::string_view::npos) end = n;
            out.push_back(std::string(text::trim(line.substr(start, end - start))));
            i = end;
        }
        if (i >= n) return true;
        ++i;  // the delimiter; a delimiter at the very end yields a final empty field
    }
}

// The candidate that occurs most often outside quotes in the header; ',' on a tie or none.
char detectDelimiter(std::string_view header) {
    constexpr std::array<char, 4> kCandidates = {',', '\t', ';', '|'};
    std::array<std::size_t, 4> counts{};
    bool inQuotes = false;
    for (char c : header) {
        if (c == '"') inQuotes = !inQuotes;
        if (inQuotes) continue;
        for (std::size_t k = 0; k < kCandidates.size(); ++k)
            if (c == kCandidates[k]) ++counts[k];
    }
    std::size_t best = 0;
    for (std::size_t k = 1; k < kCandidates.size(); ++k)
        if (counts[k] > counts[best]) best = k;
    return kCandidates[best];
}

bool isMissing(std::string_view v) {
    if (v.empty() || v == "-" || v == "--") return true;
    const std::string l = text::toLower(v);
    return l == "na" || l == "n/a" || l == "nan" || l == "null" || l == "none";
}

std::size_t findColumn(const std::vector<std::string>& names, Aliases aliases) {
    for (std::string_view alias : aliases)
        for (std::size_t i = 0; i < names.size(); ++i)
            if (names[i] == alias) return i;
    return kNone;
}

std::string joined(Aliases aliases) {
    std::string s;
    for (std::string_view a : aliases) s += (s.empty() ? "" : "/") + std::string(a);
    return s;
}

Columns headerColumns(std::string_view header, char delim, const std::string& fileName, long lineNo) {
    std::vector<std::string> names;
    std::string why;
    if (!splitCsv(header, delim, names, &why)) throw CatalogError("CSV header: " + why, fileName, lineNo);
    for (auto& n : names) n = text::toLower(n);
    Columns c;
    c.headerFields = names.size();
    c.name = findColumn(names, kNameAliases);
    c.ra = findColumn(names, kRaAliases);
    c.dec = findColumn(names, kDecAliases);
    c.disc = findColumn(names, kDiscAliases);
    c.max = findColumn(names, kMaxAliases);
    c.type = findColumn(names, kTypeAliases);
    c.host = findColumn(names, kHostAliases);
    std::string missing;
    auto need = [&](std::size_t idx, Aliases aliases) {
        if (idx == kNone) missing += (missing.empty() ? "" : "; ") + joined(aliases);
    };
    need(c.name, kNameAliases);
    need(c.ra, kRaAliases);
    need(c.dec, kDecAliases);
    if (!missing.empty())
        throw CatalogError("no recognisable CSV header: no column named " + missing, fileName, lineNo);
    auto style = [&](std::size_t idx) {
        return idx != kNone && names[idx].find("mjd") != std::string::npos ? DateStyle::Mjd
                                                                             : DateStyle::CalendarOrNumber;
    };
    c.discStyle = style(c.disc);
    c.maxStyle = style(c.max);
    return c;
}

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

RowResult parseRow(std::string_view line, char delim, const Columns& c, long lineNo, std::vector<std::string>& f) {
    RowResult r;
    auto reject = [&](std::string category, std::string detail) {
        r.rejection = Rejection{lineNo, std::move(category), std::move(detail)};
        return r;
    };
    std::string why;
    if (!splitCsv(line, delim, f, &why)) return reject("bad quoting", why);
    if (f.size() < c.headerFields)
        return reject("wrong column count",
                      std::to_string(f.size()) + " fields, header has " + std::to_string(c.headerFields));
    for (std::size_t i = c.headerFields; i < f.size(); ++i)
        if (!f[i].empty())
            return reject("wrong column count", std::to_string(f.size()) + " fields, header has " +
                                                    std::to_string(c.headerFields) + "; extra field " + quoted(f[i]));

    Target t;
    t.line = lineNo;
    if (isMissing(f[c.name])) return reject("missing name", "name field " + quoted(f[c.name]));
    t.name = f[c.name];

    if (isMissing(f[c.ra])) return reject("missing ra", "ra field " + quoted(f[c.ra]));
    const auto ra = parseRa(f[c.ra], &why, /*decimalIsDegrees=*/true);
    if (!ra) return reject("bad ra", "ra " + quoted(f[c.ra]) + ": " + why);
    t.raDeg = *ra;

    if (isMissing(f[c.dec])) return reject("missing dec", "dec field " + quoted(f[c.dec]));
    const auto dec = parseDec(f[c.dec], &why);
    if (!dec) return reject("bad dec", "dec " + quoted(f[c.dec]) + ": " + why);
    t.decDeg = *dec;

    std::optional<ParsedDate> disc, max;
    if (c.disc != kNone && !isMissing(f[c.disc])) {
        disc = parseDate(f[c.disc], c.discStyle, &why);
        if (!disc) return reject("bad date", "discovery date " + quoted(f[c.disc]) + ": " + why);
    }
    if (c.max != kNone && !isMissing(f[c.max])) {
        max = parseDate(f[c.max], c.maxStyle, &why);
        if (!max) return reject("bad date", "max date " + quoted(f[c.max]) + ": " + why);
    }
    if (max) t.maxMjd = max->mjd;
    if (disc) {
        t.discMjd = disc->mjd;
        t.discPrecision = disc->precision;
    } else if (max) {
        t.discMjd = max->mjd;
        t.discPrecision = max->precision;
        t.discDateFromMax = true;
    }
    if (c.type != kNone && !isMissing(f[c.type])) t.type = f[c.type];
    if (c.host != kNone && !isMissing(f[c.host])) t.host = f[c.host];
    r.target = std::move(t);
    return r;
}

}  // namespace

ParsedRows parseCsvLines(const std::vector<std::string>& lines, const std::string& fileName) {
    std::size_t i = 0;
    while (i < lines.size() && isBlankOrComment(lines[i])) ++i;
    if (i == lines.size()) throw CatalogError("no CSV header: the file has no non-blank, non-comment line", fileName);
    const char delim = detectDelimiter(lines[i]);
    const Columns columns = headerColumns(lines[i], delim, fileName, static_cast<long>(i + 1));

    ParsedRows rows;
    std::vector<std::string> fields;  // reused: one allocation per file, not per row
    for (++i; i < lines.size(); ++i) {
        if (isBlankOrComment(lines[i])) continue;
        addRow(rows, parseRow(lines[i], delim, columns, static_cast<long>(i + 1), fields));
    }
    return rows;
}

}  // namespace astrid::catalog::detail
