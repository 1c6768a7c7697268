// The SAI supernova catalogue (sncat) as exported by psql: a '|'-separated header of column names,
// a "----+----" separator, one '|'-separated row per supernova, possibly a "(N rows)" footer.
// Columns are found by name so that extracts with other column sets still read.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <ostream>

#include "astrid/catalog/catalog.hpp"
#include "detail.hpp"
#include "astrid/core/angle.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"
#include "astrid/core/time.hpp"

namespace astrid::catalog::detail {
namespace {

// The column set of the compiled SAI file, in its order; writeSaiCatalog reproduces it so that
// files we write look like the real thing to any other reader.
constexpr std::array<std::string_view, 33> kSaiColumns = {
    "sn_name",      "gal_name",     "sn_gal_uncert", "gal_ra",       "gal_dec",       "gal_mag",    "gal_mband",
    "gal_mag_ref",  "gal_posang",   "gal_inclination", "redshift",   "gal_type",      "gal_logab",  "gal_log10d",
    "gal_type_code", "sn_offset_ew", "sn_offset_ns", "sn_mag",       "sn_mflag",      "sn_mband",   "sn_qmag",
    "sn_optdisc",   "max_date",     "disc_date",     "sn_type",      "sn_ra",         "sn_dec",     "sn_uncert",
    "surveys",      "discoverer",   "sn_comment",    "gal_comment",  "mod_date_arr"};

constexpr std::size_t kNone = static_cast<std::size_t>(-1);

struct Columns {
    std::size_t name = kNone, ra = kNone, dec = kNone;
    std::size_t host = kNone, maxDate = kNone, discDate = kNone, type = kNone;
    std::size_t headerFields = 0;
    std::size_t needed = 0;  // a row must have at least this many fields to hold every column we read
};

std::vector<std::string_view> splitTrimmed(std::string_view line) {
    auto fields = text::split(line, '|');
    for (auto& f : fields) f = text::trim(f);
    return fields;
}

// "(6539 rows)" / "(1 row)", psql's footer.
bool isPsqlFooter(std::string_view line) {
    const auto t = text::trim(line);
    if (t.size() < 6 || t.front() != '(' || t.back() != ')') return false;
    const auto inner = t.substr(1, t.size() - 2);
    const auto space = inner.find(' ');
    if (space == 0 || space == std::string_view::npos) return false;
    const auto digits = inner.substr(0, space);
    const auto word = inner.substr(space + 1);
    return std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
           (word == "rows" || word == "row");
}

Columns headerColumns(std::string_view header, const std::string& fileName, long lineNo) {
    const auto names = splitTrimmed(header);
    Columns c;
    c.headerFields = names.size();
    auto find = [&](std::string_view wanted) {
        for (std::size_t i = 0; i < names.size(); ++i)
            if (text::toLower(names[i]) == wanted) return i;
        return kNone;
    };
    c.name = find("sn_name");
    c.ra = find("sn_ra");
    c.dec = find("sn_dec");
    c.host = find("gal_name");
    c.maxDate = find("max_date");
    c.discDate = find("disc_date");
    c.type = find("sn_type");
    std::string missing;
    for (auto [idx, label] : {std::pair{c.name, "sn_name"}, {c.ra, "sn_ra"}, {c.dec, "sn_dec"}})
        if (idx == kNone) missing += std::string(missing.empty() ? "" : ", ") + label;
    if (!missing.empty())
        throw CatalogError("no SAI header: expected '|'-separated column names including sn_name, sn_ra and "
                           "sn_dec; missing " + missing,
                           fileName, lineNo);
    for (std::size_t idx : {c.name, c.ra, c.dec, c.host, c.maxDate, c.discDate, c.type})
        if (idx != kNone) c.needed = std::max(c.needed, idx + 1);
    return c;
}

// SAI positions are always sexagesimal; a single number would be read as hours (RA) and silently
// land 15x off, so it is refused here rather than guessed.
bool looksSexagesimal(std::string_view s) {
    int numbers = 0;
    bool inToken = false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        const char ch = s[i];
        const bool sep = ch == ' ' || ch == '\t' || ch == ':';
        if (sep) {
            inToken = false;
        } else if (!inToken) {
            inToken = true;
            const bool loneSign = (ch == '+' || ch == '-') &&
                                  (i + 1 == s.size() || s[i + 1] == ' ' || s[i + 1] == '\t');
            if (!loneSign) ++numbers;
        }
    }
    return numbers >= 2;
}

std::string quoted(std::string_view s) { return "'" + std::string(s) + "'"; }

// One data row -> a Target, or the reason it is not one.
RowResult parseRow(std::string_view line, const Columns& c, long lineNo) {
    RowResult r;
    auto reject = [&](std::string category, std::string detail) {
        r.rejection = Rejection{lineNo, std::move(category), std::move(detail)};
        return r;
    };
    const auto f = splitTrimmed(line);
    if (f.size() < c.needed)
        return reject("wrong column count", std::to_string(f.size()) + " fields, need at least " +
                                                std::to_string(c.needed) + " (header has " +
                                                std::to_string(c.headerFields) + ")");
    // Extra trailing empties (a trailing '|') are harmless; extra content means a '|' inside some
    // field shifted the columns, and every value after it would be read from the wrong column.
    for (std::size_t i = c.headerFields; i < f.size(); ++i)
        if (!f[i].empty())
            return reject("wrong column count", std::to_string(f.size()) + " fields, header has " +
                                                    std::to_string(c.headerFields) + "; extra field " + quoted(f[i]));

    Target t;
    t.line = lineNo;
    t.name = std::string(f[c.name]);
    if (t.name.empty()) return reject("missing name", "sn_name is empty");

    std::string why;
    const auto raText = f[c.ra];
    if (raText.empty()) return reject("missing ra", "sn_ra is empty");
    if (!looksSexagesimal(raText)) return reject("bad ra", "sn_ra " + quoted(raText) + ": expected HH MM SS.ss");
    const auto ra = parseRa(raText, &why, /*decimalIsDegrees=*/false);
    if (!ra) return reject("bad ra", "sn_ra " + quoted(raText) + ": " + why);
    t.raDeg = *ra;

    const auto decText = f[c.dec];
    if (decText.empty()) return reject("missing dec", "sn_dec is empty");
    if (!looksSexagesimal(decText))
        return reject("bad dec", "sn_dec " + quoted(decText) + ": expected +DD MM SS.s");
    const auto dec = parseDec(decText, &why);
    if (!dec) return reject("bad dec", "sn_dec " + quoted(decText) + ": " + why);
    t.decDeg = *dec;

    std::optional<ParsedDate> disc, max;
    for (auto [idx, label, out] : {std::tuple{c.discDate, "disc_date", &disc}, {c.maxDate, "max_date", &max}}) {
        if (idx == kNone || f[idx].empty()) continue;
        *out = parseDate(f[idx], DateStyle::Calendar, &why);
        if (!*out) return reject("bad date", std::string(label) + " " + quoted(f[idx]) + ": " + why);
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
    if (c.type != kNone) t.type = std::string(f[c.type]);
    if (c.host != kNone) t.host = std::string(f[c.host]);
    r.target = std::move(t);
    return r;
}

// ---- writer ----

void requireWritable(bool ok, const Target& t, const std::string& what) {
    if (!ok) throw DataError("cannot write target '" + t.name + "' (id " + std::to_string(t.id) + ") as SAI: " + what);
}

bool hasForbidden(std::string_view s) { return s.find_first_of("|\r\n") != std::string_view::npos; }

// MJD range whose civil years have four digits, which is what the SAI date fields and our reader hold.
constexpr double kMinWritableMjd = -678575.0;  // 0001-01-01
constexpr double kMaxWritableMjd = 2973484.0;  // 10000-01-01

std::string formatDate(double mjd, DatePrecision precision) {
    double day = std::floor(mjd);
    // Integer milliseconds so that rounding can never print a 60th second.
    long long ms = std::llround((mjd - day) * 86400000.0);
    if (ms >= 86400000LL) {
        day += 1.0;
        ms -= 86400000LL;
    }
    const CivilDate c = civilFromMjd(day);
    char buf[48];
    if (precision == DatePrecision::Year && ms == 0 && c.month == 1 && c.day == 1)
        std::snprintf(buf, sizeof buf, "%04d", c.year);
    else if (precision == DatePrecision::Month && ms == 0 && c.day == 1)
        std::snprintf(buf, sizeof buf, "%04d-%02d", c.year, c.month);
    else if (ms == 0)
        std::snprintf(buf, sizeof buf, "%04d-%02d-%02d", c.year, c.month, c.day);
    else
        std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03d", c.year, c.month, c.day,
                      static_cast<int>(ms / 3600000), static_cast<int>(ms / 60000 % 60),
                      static_cast<int>(ms / 1000 % 60), static_cast<int>(ms % 1000));
    return buf;
}

// "HH MM SS.ssss": rounded once in integer units of the last digit so carries propagate.
std::string formatRa(double raDeg) {
    constexpr long long kPerDay = 24LL * 3600 * 10000;
    long long n = std::llround(raDeg / 15.0 * 3600.0 * 10000.0);
    n %= kPerDay;
    if (n < 0) n += kPerDay;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%02lld %02lld %02lld.%04lld", n / 36000000, n / 600000 % 60, n / 10000 % 60,
                  n % 10000);
    return buf;
}

// "+DD MM SS.sss", with SAI's detached sign below 10 degrees ("- 8 49 37.000").
std::string formatDec(double decDeg) {
    const long long n = std::llround(std::fabs(decDeg) * 3600.0 * 1000.0);
    const char sign = (decDeg < 0 && n != 0) ? '-' : '+';
    char buf[32];
    std::snprintf(buf, sizeof buf, "%c%2lld %02lld %02lld.%03lld", sign, n / 3600000, n / 60000 % 60, n / 1000 % 60,
                  n % 1000);
    return buf;
}

}  // namespace

ParsedRows parseSaiLines(const std::vector<std::string>& lines, const std::string& fileName) {
    std::size_t i = 0;
    while (i < lines.size() && isBlankOrComment(lines[i])) ++i;
    if (i == lines.size()) throw CatalogError("no SAI header: the file has no non-blank line", fileName);
    const Columns columns = headerColumns(lines[i], fileName, static_cast<long>(i + 1));

    ParsedRows rows;
    for (++i; i < lines.size(); ++i) {
        const std::string& line = lines[i];
        if (isBlankOrComment(line) || isPsqlSeparator(line) || isPsqlFooter(line)) continue;
        addRow(rows, parseRow(line, columns, static_cast<long>(i + 1)));
    }
    return rows;
}

}  // namespace astrid::catalog::detail

namespace astrid::catalog {

void writeSaiCatalog(std::ostream& out, const std::vector<Target>& targets) {
    using detail::kSaiColumns;
    // Validate everything first so that a bad target leaves no half-written file behind.
    for (const Target& t : targets) {
        detail::requireWritable(!text::trim(t.name).empty(), t, "empty name");
        detail::requireWritable(!detail::hasForbidden(t.name) && !detail::hasForbidden(t.host) &&
                                    !detail::hasForbidden(t.type),
                                t, "'|' or a line break in name, host or type");
        detail::requireWritable(std::isfinite(t.raDeg) && t.raDeg >= 0.0 && t.raDeg < 360.0, t,
                                "ra " + std::to_string(t.raDeg) + " outside [0, 360)");
        detail::requireWritable(std::isfinite(t.decDeg) && t.decDeg >= -90.0 && t.decDeg <= 90.0, t,
                                "dec " + std::to_string(t.decDeg) + " outside [-90, 90]");
        for (const auto& d : {t.discMjd, t.maxMjd})
            detail::requireWritable(!d || (std::isfinite(*d) && *d >= detail::kMinWritableMjd &&
                                           *d < detail::kMaxWritableMjd),
                                    t, "date outside the years 0001-9999");
    }

    auto column = [](std::string_view name) {
        return static_cast<std::size_t>(std::find(kSaiColumns.begin(), kSaiColumns.end(), name) - kSaiColumns.begin());
    };
    const std::size_t cName = column("sn_name"), cHost = column("gal_name"), cMax = column("max_date"),
                      cDisc = column("disc_date"), cType = column("sn_type"), cRa = column("sn_ra"),
                      cDec = column("sn_dec");

    std::string header, separator;
    for (std::size_t i = 0; i < kSaiColumns.size(); ++i) {
        if (i) header += '|', separator += '+';
        header += ' ' + std::string(kSaiColumns[i]) + ' ';
        separator += std::string(kSaiColumns[i].size() + 2, '-');
    }
    out << header << '\n' << separator << '\n';

    std::array<std::string, kSaiColumns.size()> fields;
    for (const Target& t : targets) {
        for (auto& f : fields) f.clear();
        fields[cName] = std::string(text::trim(t.name));
        fields[cHost] = std::string(text::trim(t.host));
        fields[cType] = std::string(text::trim(t.type));
        fields[cRa] = detail::formatRa(t.raDeg);
        fields[cDec] = detail::formatDec(t.decDeg);
        if (t.maxMjd)
            fields[cMax] = detail::formatDate(*t.maxMjd, t.discDateFromMax ? t.discPrecision : DatePrecision::Day);
        if (t.discMjd) {
            if (!t.discDateFromMax)
                fields[cDisc] = detail::formatDate(*t.discMjd, t.discPrecision);
            else if (!t.maxMjd)  // the fallback without its source: keep the date, as max_date
                fields[cMax] = detail::formatDate(*t.discMjd, t.discPrecision);
        }
        for (std::size_t i = 0; i < fields.size(); ++i) out << (i ? " | " : "") << fields[i];
        out << '\n';
    }
}

}  // namespace astrid::catalog
