#include "astrid/core/angle.hpp"

#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <numbers>
#include <vector>

namespace astrid {
namespace {
void setWhy(std::string* why, std::string text) {
    if (why) *why = std::move(text);
}

// Splits on spaces, ':' and the letters h m s d (as in 12h30m05s); keeps number tokens.
std::vector<std::string> tokens(std::string_view text) {
    std::vector<std::string> out;
    std::string cur;
    auto flush = [&] {
        if (!cur.empty()) out.push_back(cur), cur.clear();
    };
    for (char c : text) {
        if (c == ' ' || c == '\t' || c == ':' || c == 'h' || c == 'm' || c == 's' || c == 'd' || c == '\'' ||
            c == '"')
            flush();
        else
            cur.push_back(c);
    }
    flush();
    return out;
}

std::optional<double> number(const std::string& s) {
    if (s.empty()) return std::nullopt;
    double v = 0.0;
    const char* b = s.data();
    const char* e = s.data() + s.size();
    if (*b == '+') ++b;
    auto [p, ec] = std::from_chars(b, e, v);
    if (ec != std::errc{} || p != e || !std::isfinite(v)) return std::nullopt;
    return v;
}

// Parses up to three unsigned sexagesimal components into a value in units of the first one.
std::optional<double> sexagesimal(const std::vector<std::string>& t, std::size_t first, std::string* why) {
    const std::size_t n = t.size() - first;
    if (n < 1 || n > 3) {
        setWhy(why, "expected 1 to 3 sexagesimal fields, got " + std::to_string(n));
        return std::nullopt;
    }
    double value = 0.0;
    double scale = 1.0;
    for (std::size_t i = 0; i < n; ++i) {
        const std::string& tok = t[first + i];
        if (tok.front() == '-' || tok.front() == '+') {
            setWhy(why, "sign inside a sexagesimal field '" + tok + "'");
            return std::nullopt;
        }
        auto v = number(tok);
        if (!v) {
            setWhy(why, "not a number: '" + tok + "'");
            return std::nullopt;
        }
        if (i > 0 && (*v < 0.0 || *v >= 60.0)) {
            setWhy(why, "minutes/seconds field out of [0, 60): '" + tok + "'");
            return std::nullopt;
        }
        if (i + 1 < n && std::floor(*v) != *v) {
            setWhy(why, "fractional field before the last: '" + tok + "'");
            return std::nullopt;
        }
        value += *v / scale;
        scale *= 60.0;
    }
    return value;
}
}  // namespace

std::optional<double> parseRa(std::string_view text, std::string* why, bool decimalIsDegrees) {
    auto t = tokens(text);
    if (t.empty()) {
        setWhy(why, "empty RA");
        return std::nullopt;
    }
    if (t.size() == 1 && decimalIsDegrees && text.find(':') == std::string_view::npos &&
        text.find('h') == std::string_view::npos) {
        auto v = number(t[0]);
        if (!v) {
            setWhy(why, "RA not a number: '" + t[0] + "'");
            return std::nullopt;
        }
        if (*v < 0.0 || *v >= 360.0) {
            setWhy(why, "RA out of [0, 360) deg: " + t[0]);
            return std::nullopt;
        }
        return *v;
    }
    auto hours = sexagesimal(t, 0, why);
    if (!hours) return std::nullopt;
    if (*hours < 0.0 || *hours >= 24.0) {
        setWhy(why, "RA out of [0, 24) h: '" + std::string(text) + "'");
        return std::nullopt;
    }
    return *hours * 15.0;
}

std::optional<double> parseDec(std::string_view text, std::string* why) {
    auto t = tokens(text);
    if (t.empty()) {
        setWhy(why, "empty Dec");
        return std::nullopt;
    }
    double sign = 1.0;
    // A detached sign ("- 8 49 37.0") is its own token; an attached one leads the first token.
    if (t[0] == "-" || t[0] == "+") {
        sign = t[0] == "-" ? -1.0 : 1.0;
        t.erase(t.begin());
        if (t.empty()) {
            setWhy(why, "Dec has a sign and nothing else");
            return std::nullopt;
        }
    } else if (t[0].front() == '-' || t[0].front() == '+') {
        sign = t[0].front() == '-' ? -1.0 : 1.0;
        t[0].erase(0, 1);
        if (t[0].empty()) {
            setWhy(why, "Dec sign without degrees");
            return std::nullopt;
        }
    }
    auto deg = sexagesimal(t, 0, why);
    if (!deg) return std::nullopt;
    if (*deg > 90.0) {
        setWhy(why, "Dec out of [-90, 90] deg: '" + std::string(text) + "'");
        return std::nullopt;
    }
    return sign * *deg;
}

double angularSeparationDeg(double ra1, double dec1, double ra2, double dec2) {
    constexpr double d2r = std::numbers::pi / 180.0;
    const double sdd = std::sin((dec2 - dec1) * d2r / 2.0);
    const double sda = std::sin((ra2 - ra1) * d2r / 2.0);
    const double h = sdd * sdd + std::cos(dec1 * d2r) * std::cos(dec2 * d2r) * sda * sda;
    return 2.0 * std::asin(std::min(1.0, std::sqrt(h))) / d2r;
}

// Both formatters round once in integer units of the last printed digit so that carries
// propagate; rounding only the seconds printed "23:59:60.000".
std::string formatRaHms(double raDeg) {
    constexpr long long kMsPerDay = 24LL * 3600 * 1000;
    long long ms = std::llround(raDeg / 15.0 * 3600.0 * 1000.0) % kMsPerDay;
    if (ms < 0) ms += kMsPerDay;
    char buf[32];
    std::snprintf(buf, sizeof buf, "%02lld:%02lld:%02lld.%03lld", ms / 3600000, ms / 60000 % 60, ms / 1000 % 60,
                  ms % 1000);
    return buf;
}

std::string formatDecDms(double decDeg) {
    const char sign = decDeg < 0 ? '-' : '+';
    const long long cas = std::llround(std::fabs(decDeg) * 3600.0 * 100.0);  // centi-arcseconds
    char buf[32];
    std::snprintf(buf, sizeof buf, "%c%02lld:%02lld:%02lld.%02lld", sign, cas / 360000, cas / 6000 % 60,
                  cas / 100 % 60, cas % 100);
    return buf;
}

}  // namespace astrid
