#pragma once
#include <string_view>

namespace astrid {
/// Semantic version of this build, e.g. "0.1.0".
std::string_view version() noexcept;
/// Short git sha of the source tree at configure time, or "unknown".
std::string_view gitSha() noexcept;
}  // namespace astrid
