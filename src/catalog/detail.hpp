#pragma once
// Private to the catalog module.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "astrid/catalog/catalog.hpp"

namespace astrid::catalog {
namespace detail {
// Shared by the dispatcher (catalog.cpp) and the format parsers (sai.cpp, csv.cpp). Not API.

/// Rows of one file before filtering; targets carry their ids and lines already.
struct ParsedRows {
    std::size_t dataRows = 0;
    std::vector<Target> targets;
    std::vector<Rejection> rejected;
};

/// One data row's outcome from a format parser: a target or a rejection.
struct RowResult {
    std::optional<Target> target;
    Rejection rejection;
};

/// Counts a data row and files its outcome: the target gets the next stable id, else the rejection.
inline void addRow(ParsedRows& rows, RowResult&& r) {
    const auto id = static_cast<std::int64_t>(rows.dataRows++);
    if (r.target) {
        r.target->id = id;
        rows.targets.push_back(std::move(*r.target));
    } else {
        rows.rejected.push_back(std::move(r.rejection));
    }
}

/// How a date column is read (see the header comment).
enum class DateStyle { Calendar, CalendarOrNumber, Mjd };

struct ParsedDate {
    double mjd = 0.0;
    DatePrecision precision = DatePrecision::Day;
};

/// Parses a trimmed, non-empty date field; nullopt with `why` set when it is not a date.
std::optional<ParsedDate> parseDate(std::string_view text, DateStyle style, std::string* why);

/// Lines with '\r' line ends and a leading UTF-8 BOM removed. Throws CatalogError on a read error.
std::vector<std::string> readLines(std::istream& in, const std::string& fileName);

/// True for lines that are empty after trimming or whose first non-blank character is '#'.
bool isBlankOrComment(std::string_view line) noexcept;

/// True for a psql header separator: dashes and '+' only (after trimming), starting with '-' and
/// containing at least one '+'.
bool isPsqlSeparator(std::string_view line) noexcept;

/// The layout rule documented at CatalogFormat; never returns Auto.
CatalogFormat detectFormat(const std::vector<std::string>& lines) noexcept;

/// Throws CatalogError when there is no SAI header.
ParsedRows parseSaiLines(const std::vector<std::string>& lines, const std::string& fileName);
/// Throws CatalogError when there is no CSV header with name, RA and Dec columns.
ParsedRows parseCsvLines(const std::vector<std::string>& lines, const std::string& fileName);

}  // namespace detail
}  // namespace astrid::catalog
