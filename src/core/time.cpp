#include "astrid/core/time.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>

namespace astrid {
namespace {
// Days from civil, Howard Hinnant's algorithm: days since 1970-01-01.
long long daysFromCivil(long long y, unsigned m, unsigned d) {
    y -= m <= 2;
    const long long era = (y >= 0 ? y : y - 399) / 400;
    const unsigned yoe = static_cast<unsigned>(y - era * 400);
    const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + static_cast<long long>(doe) - 719468;
}
constexpr double kMjdOfUnixEpoch = 40587.0;

bool leap(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }
int daysInMonth(int y, int m) {
    static const int d[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return (m == 2 && leap(y)) ? 29 : d[m - 1];
}
}  // namespace

double mjdFromCivil(int year, int month, int day, int hour, int minute, double second) {
    const long long days = daysFromCivil(year, static_cast<unsigned>(month), static_cast<unsigned>(day));
    return static_cast<double>(days) + kMjdOfUnixEpoch + (hour + (minute + second / 60.0) / 60.0) / 24.0;
}

CivilDate civilFromMjd(double mjd) {
    const double dayFloor = std::floor(mjd);
    long long z = static_cast<long long>(dayFloor - kMjdOfUnixEpoch) + 719468;
    const long long era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = static_cast<unsigned>(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const long long y = static_cast<long long>(yoe) + era * 400;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    const unsigned d = doy - (153 * mp + 2) / 5 + 1;
    const unsigned m = mp < 10 ? mp + 3 : mp - 9;
    CivilDate c;
    c.year = static_cast<int>(y + (m <= 2));
    c.month = static_cast<int>(m);
    c.day = static_cast<int>(d);
    double secs = (mjd - dayFloor) * 86400.0;
    c.hour = static_cast<int>(secs / 3600.0);
    secs -= c.hour * 3600.0;
    c.minute = static_cast<int>(secs / 60.0);
    c.second = secs - c.minute * 60.0;
    return c;
}

std::optional<double> parseIsoDateToMjd(std::string_view text) {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    while (!text.empty() && (text.back() == ' ' || text.back() == 'Z')) text.remove_suffix(1);
    int y = 0, mo = 0, d = 0, h = 0, mi = 0;
    double s = 0.0;
    char sep1 = 0, sep2 = 0, t = 0;
    const std::string str(text);
    int consumed = 0;
    int n = std::sscanf(str.c_str(), "%4d%c%2d%c%2d%n", &y, &sep1, &mo, &sep2, &d, &consumed);
    if (n != 5 || sep1 != sep2 || (sep1 != '-' && sep1 != '/')) return std::nullopt;
    if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return std::nullopt;
    if (static_cast<std::size_t>(consumed) < str.size()) {
        int consumed2 = 0;
        n = std::sscanf(str.c_str() + consumed, "%c%2d:%2d:%lf%n", &t, &h, &mi, &s, &consumed2);
        if (n != 4 || (t != 'T' && t != ' ') || static_cast<std::size_t>(consumed + consumed2) != str.size())
            return std::nullopt;
        if (h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0.0 || s >= 61.0) return std::nullopt;
    }
    return mjdFromCivil(y, mo, d, h, mi, s);
}

std::string isoFromMjd(double mjd) {
    // Round once, in integer milliseconds, so that a carry reaches the day: printing the seconds
    // with %06.3f alone turned 59.9996 s into "60.000".
    double day = std::floor(mjd);
    long long ms = std::llround((mjd - day) * 86400000.0);
    if (ms >= 86400000LL) {
        day += 1.0;
        ms -= 86400000LL;
    }
    const CivilDate c = civilFromMjd(day);
    char buf[48];
    std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02lld:%02lld:%02lld.%03lld", c.year, c.month, c.day,
                  ms / 3600000, ms / 60000 % 60, ms / 1000 % 60, ms % 1000);
    return buf;
}

std::string utcNowIso() {
    const auto now = std::chrono::system_clock::now();
    const std::time_t t = std::chrono::system_clock::to_time_t(now);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[32];
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}

}  // namespace astrid
