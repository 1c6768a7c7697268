#pragma once
// Sexagesimal and decimal angle parsing for catalogs. Sky positions are ICRS degrees.
#include <optional>
#include <string>
#include <string_view>

namespace astrid {

/// Parses right ascension: "HH MM SS.ss", "HH:MM:SS.ss", "HHhMMmSS.ss", or decimal degrees when
/// `decimalIsDegrees` and the text is one number. Returns degrees in [0, 360) or nullopt with
/// `why` set (out of range minutes, wrong token count, ...).
std::optional<double> parseRa(std::string_view text, std::string* why = nullptr, bool decimalIsDegrees = true);

/// Parses declination: "+DD MM SS.s", "-DD:MM:SS.s", with the sign possibly separated from the
/// degrees by spaces ("- 8 49 37.0", the SAI layout for |Dec| < 10 deg), or decimal degrees.
/// A sign on any later token is an error. Returns degrees in [-90, 90] or nullopt with `why` set.
std::optional<double> parseDec(std::string_view text, std::string* why = nullptr);

/// Angular separation of two ICRS positions in degrees (haversine, stable at small angles).
double angularSeparationDeg(double ra1, double dec1, double ra2, double dec2);

/// RA as "HH:MM:SS.sss" and Dec as "+DD:MM:SS.ss".
std::string formatRaHms(double raDeg);
std::string formatDecDms(double decDeg);

}  // namespace astrid
