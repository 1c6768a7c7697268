#pragma once
// Calendar <-> Modified Julian Date (UTC, proleptic Gregorian; leap seconds ignored, which is below
// the precision any stage here needs).
#include <optional>
#include <string>
#include <string_view>

namespace astrid {

/// MJD of the civil date-time (year, month 1-12, day 1-31, fractional day via hours/min/sec).
double mjdFromCivil(int year, int month, int day, int hour = 0, int minute = 0, double second = 0.0);

struct CivilDate {
    int year = 0, month = 0, day = 0, hour = 0, minute = 0;
    double second = 0.0;
};
/// Inverse of mjdFromCivil.
CivilDate civilFromMjd(double mjd);

/// Parses "YYYY-MM-DD", "YYYY-MM-DDTHH:MM:SS[.sss]" (also with a space instead of 'T') and
/// "YYYY/MM/DD". Returns nullopt for anything else, including impossible dates (2014-02-30).
std::optional<double> parseIsoDateToMjd(std::string_view text);

/// "YYYY-MM-DDTHH:MM:SS.sss" for an MJD.
std::string isoFromMjd(double mjd);

/// Current UTC time as ISO 8601 with a trailing 'Z'.
std::string utcNowIso();

}  // namespace astrid
