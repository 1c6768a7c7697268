#pragma once
// Small string helpers shared by the parsers.
#include <string>
#include <string_view>
#include <vector>

namespace astrid::text {
/// s without leading and trailing whitespace.
std::string_view trim(std::string_view s) noexcept;
/// Splits on every `sep` (empty fields kept): "a||b" -> {"a", "", "b"}.
std::vector<std::string_view> split(std::string_view s, char sep);
std::string toLower(std::string_view s);
std::string toUpper(std::string_view s);
bool startsWith(std::string_view s, std::string_view prefix) noexcept;
}  // namespace astrid::text
