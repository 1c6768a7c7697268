#include "astrid/core/stats.hpp"

#include <algorithm>
#include <limits>

namespace astrid {

double medianInPlace(std::span<double> v) {
    if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
    const auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
    std::nth_element(v.begin(), mid, v.end());
    const double upper = *mid;
    if (v.size() % 2 == 1) return upper;
    return 0.5 * (upper + *std::max_element(v.begin(), mid));
}

}  // namespace astrid
