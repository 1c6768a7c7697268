#pragma once
// Small order statistics shared by the modules.
#include <span>
#include <vector>

namespace astrid {

/// Median of the values, reordering them (nth_element, linear time); NaN when empty. For an even
/// count, the mean of the two middle values.
double medianInPlace(std::span<double> values);

/// Median of a copy of the values (see medianInPlace).
inline double median(std::vector<double> values) { return medianInPlace(values); }

}  // namespace astrid
