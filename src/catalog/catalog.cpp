// Catalog reading front end: line splitting, layout detection, the shared date rules, filters and
// the CSV target writer. The layout parsers live in sai.cpp and csv.cpp.
#include "astrid/catalog/catalog.hpp"
#include "detail.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <istream>
#include <ostream>

#include "astrid/core/error.hpp"
#include "astrid/core/text.hpp"
#include "astrid/core/time.hpp"

namespace astrid::catalog {
namespace detail {
namespace {

bool allDigits(std::string_view s) noexcept {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

int digitsValue(std::string_view s) noexcept {
    int v = 0;
    for (char c : s) v = v * 10 + (c - '0');
    return v;
}

// The whole text as one finite number, or nullopt ("2014-09" is not a number).
std::optional<double> plainNumber(std::string_view s) {
    if (s.empty()) return std::nullopt;
    const char* b = s.data();
    const char* e = s.data() + s.size();
    if (*b == '+') ++b;
    double v = 0.0;
    auto [p, ec] = std::from_chars(b, e, v);
    if (ec != std::errc{} || p != e || !std::isfinite(v)) return std::nullopt;
    return v;
}

int daysInMonth(int y, int m) noexcept {
    static constexpr int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return (m == 2 && leap) ? 29 : kDays[m - 1];
}

void setWhy(std::string* why, std::string text) {
    if (why) *why = std::move(text);
}

// "YYYY", "YYYY-MM", "YYYY-MM-DD" with 0 meaning "unknown" for month/day. Returns nullopt with `why`
// when the text has this shape but is no date, and sets `matched` false when it is not this shape.
std::optional<ParsedDate> partialDate(std::string_view text, bool& matched, std::string* why) {
    matched = false;
    const char sep = text.find('/') != std::string_view::npos ? '/' : '-';
    const auto parts = text::split(text, sep);
    if (parts.size() > 3 || parts[0].size() != 4 || !allDigits(parts[0])) return std::nullopt;
    for (std::size_t i = 1; i < parts.size(); ++i)
        if (parts[i].empty() || parts[i].size() > 2 || !allDigits(parts[i])) return std::nullopt;
    matched = true;
    const int y = digitsValue(parts[0]);
    const int m = parts.size() > 1 ? digitsValue(parts[1]) : 0;
    const int d = parts.size() > 2 ? digitsValue(parts[2]) : 0;
    if (m > 12) {
        setWhy(why, "month out of range");
        return std::nullopt;
    }
    if (m == 0 && d != 0) {
        setWhy(why, "day given without a month");
        return std::nullopt;
    }
    if (m == 0) return ParsedDate{mjdFromCivil(y, 1, 1), DatePrecision::Year};
    if (d == 0) return ParsedDate{mjdFromCivil(y, m, 1), DatePrecision::Month};
    if (d > daysInMonth(y, m)) {
        setWhy(why, "no such day");
        return std::nullopt;
    }
    // A full, valid Y-M-D that parseIsoDateToMjd refused cannot happen; be explicit anyway.
    return ParsedDate{mjdFromCivil(y, m, d), DatePrecision::Day};
}

}  // namespace

std::optional<ParsedDate> parseDate(std::string_view text, DateStyle style, std::string* why) {
    text = text::trim(text);
    if (text.empty()) {
        setWhy(why, "empty date");
        return std::nullopt;
    }
    if (style == DateStyle::Mjd) {
        if (auto v = plainNumber(text)) {
            // An MJD column holding a JD (2.4e6) would otherwise land in the year 8400.
            if (*v <= -1e6 || *v >= 1e6) {
                setWhy(why, "MJD out of range (-1e6, 1e6); a JD?");
                return std::nullopt;
            }
            return ParsedDate{*v, DatePrecision::Day};
        }
        // Fall through: hand-edited MJD columns do contain calendar dates.
    }
    if (auto mjd = parseIsoDateToMjd(text)) return ParsedDate{*mjd, DatePrecision::Day};
    bool matched = false;
    std::string partialWhy;
    if (auto p = partialDate(text, matched, &partialWhy)) return p;
    if (matched) {
        setWhy(why, partialWhy);
        return std::nullopt;
    }
    if (style == DateStyle::CalendarOrNumber) {
        if (auto v = plainNumber(text)) {
            if (*v >= 10000.0 && *v < 100000.0) return ParsedDate{*v, DatePrecision::Day};
            if (*v >= 2400000.0 && *v < 2500000.0) return ParsedDate{*v - 2400000.5, DatePrecision::Day};
            setWhy(why, "number is neither an MJD in [10000, 100000) nor a JD in [2400000, 2500000)");
            return std::nullopt;
        }
    }
    setWhy(why, "not a date (expected YYYY-MM-DD[THH:MM:SS])");
    return std::nullopt;
}

std::vector<std::string> readLines(std::istream& in, const std::string& fileName) {
    std::vector<std::string> lines;
    std::string line;
    while (std::getline(in, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (lines.empty() && line.starts_with("\xEF\xBB\xBF")) line.erase(0, 3);
        lines.push_back(std::move(line));
        line.clear();
    }
    if (in.bad()) throw CatalogError("read error after " + std::to_string(lines.size()) + " lines", fileName);
    return lines;
}

bool isBlankOrComment(std::string_view line) noexcept {
    const auto t = text::trim(line);
    return t.empty() || t.front() == '#';
}

bool isPsqlSeparator(std::string_view line) noexcept {
    const auto t = text::trim(line);
    if (t.empty() || t.front() != '-') return false;
    bool plus = false;
    for (char c : t) {
        if (c == '+')
            plus = true;
        else if (c != '-')
            return false;
    }
    return plus;
}

CatalogFormat detectFormat(const std::vector<std::string>& lines) noexcept {
    // The separator follows the header directly in psql output; a few lines of slack cost nothing.
    constexpr int kLookahead = 3;
    std::size_t i = 0;
    while (i < lines.size() && text::trim(lines[i]).empty()) ++i;
    if (i == lines.size() || lines[i].find('|') == std::string::npos) return CatalogFormat::Csv;
    int seen = 0;
    for (std::size_t j = i + 1; j < lines.size() && seen < kLookahead; ++j) {
        if (text::trim(lines[j]).empty()) continue;
        if (isPsqlSeparator(lines[j])) return CatalogFormat::Sai;
        ++seen;
    }
    return CatalogFormat::Csv;
}

}  // namespace detail

namespace {

bool typeSelected(const std::string& type, const std::vector<std::string>& prefixes) {
    return std::any_of(prefixes.begin(), prefixes.end(),
                       [&](const std::string& p) { return type.starts_with(p); });
}

void applyFilter(detail::ParsedRows& rows, const CatalogFilter& filter, CatalogReport& report) {
    const std::string beforeReason =
        filter.minYear ? "discovered before " + std::to_string(*filter.minYear) : std::string{};
    for (Target& t : rows.targets) {
        if (t.discMjd && t.discPrecision != DatePrecision::Day) ++report.partialDateRows;
        const char* fixedReason = nullptr;
        const std::string* reason = nullptr;
        if (filter.minYear) {
            if (!t.discMjd)
                fixedReason = "no discovery date (min-year filter)";
            else if (civilFromMjd(*t.discMjd).year < *filter.minYear)
                reason = &beforeReason;
        }
        if (!fixedReason && !reason && !filter.types.empty() && !typeSelected(t.type, filter.types))
            fixedReason = "type not selected";
        if (!fixedReason && !reason && filter.limit && report.targets.size() >= *filter.limit)
            fixedReason = "beyond limit";
        if (fixedReason || reason) {
            report.excluded.push_back(Exclusion{t.id, t.line, reason ? *reason : std::string(fixedReason), t.name});
        } else {
            report.targets.push_back(std::move(t));
        }
    }
}

// RFC 4180 quoting; leading/trailing blanks are quoted too because readers (ours included) trim
// unquoted fields.
void writeCsvField(std::ostream& out, std::string_view s) {
    const bool quote = s.find_first_of(",\"\r\n") != std::string_view::npos ||
                       (!s.empty() && (std::isspace(static_cast<unsigned char>(s.front())) ||
                                       std::isspace(static_cast<unsigned char>(s.back()))));
    if (!quote) {
        out << s;
        return;
    }
    out << '"';
    for (char c : s) {
        if (c == '"') out << '"';
        out << c;
    }
    out << '"';
}

std::string fixed(double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

}  // namespace

std::map<std::string, std::size_t> CatalogReport::rejectionCounts() const {
    std::map<std::string, std::size_t> counts;
    for (const auto& r : rejected) ++counts[r.category];
    return counts;
}

std::map<std::string, std::size_t> CatalogReport::exclusionCounts() const {
    std::map<std::string, std::size_t> counts;
    for (const auto& e : excluded) ++counts[e.reason];
    return counts;
}

CatalogReport parseCatalog(std::istream& in, const std::string& fileName, CatalogFormat format,
                           const CatalogFilter& filter) {
    const auto lines = detail::readLines(in, fileName);
    const CatalogFormat resolved = format == CatalogFormat::Auto ? detail::detectFormat(lines) : format;
    detail::ParsedRows rows = resolved == CatalogFormat::Sai ? detail::parseSaiLines(lines, fileName)
                                                             : detail::parseCsvLines(lines, fileName);
    CatalogReport report;
    report.file = fileName;
    report.format = resolved;
    report.dataRows = rows.dataRows;
    report.rejected = std::move(rows.rejected);
    applyFilter(rows, filter, report);
    return report;
}

CatalogReport readCatalog(const std::string& path, CatalogFormat format, const CatalogFilter& filter) {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw CatalogError("is a directory, not a catalog file", path);
    std::ifstream in(path, std::ios::binary);
    if (!in) throw CatalogError(std::string("cannot open catalog file: ") + std::strerror(errno), path);
    return parseCatalog(in, path, format, filter);
}

void writeTargetsCsv(std::ostream& out, const std::vector<Target>& targets) {
    out << "id,name,ra_deg,dec_deg,disc_mjd,type\n";
    for (const Target& t : targets) {
        out << t.id << ',';
        writeCsvField(out, t.name);
        out << ',' << fixed(t.raDeg, 8) << ',' << fixed(t.decDeg, 8) << ',';
        if (t.discMjd) out << fixed(*t.discMjd, 6);
        out << ',';
        writeCsvField(out, t.type);
        out << '\n';
    }
}

std::vector<Target> sliceTargets(const std::vector<Target>& targets, Slice slice) {
    if (slice.count == 0 || slice.index >= slice.count)
        throw DataError("slice " + std::to_string(slice.index) + "/" + std::to_string(slice.count) +
                        ": the index must be in [0, N) and N >= 1");
    const std::size_t n = targets.size();
    // floor(i n / N) without forming i * n: i (n / N) + floor(i (n % N) / N).
    const std::size_t q = n / slice.count, r = n % slice.count;
    const auto bound = [&](std::size_t i) { return i * q + i * r / slice.count; };
    const auto first = targets.begin() + static_cast<std::ptrdiff_t>(bound(slice.index));
    const auto last = targets.begin() + static_cast<std::ptrdiff_t>(bound(slice.index + 1));
    return std::vector<Target>(first, last);
}

std::string formatName(CatalogFormat format) {
    switch (format) {
        case CatalogFormat::Auto: return "auto";
        case CatalogFormat::Sai: return "sai";
        case CatalogFormat::Csv: return "csv";
    }
    return "unknown";
}

std::optional<CatalogFormat> formatFromName(std::string_view name) {
    const std::string n = text::toLower(text::trim(name));
    if (n == "auto") return CatalogFormat::Auto;
    if (n == "sai") return CatalogFormat::Sai;
    if (n == "csv") return CatalogFormat::Csv;
    return std::nullopt;
}

}  // namespace astrid::catalog
