#include "astrid/core/image.hpp"

#include <algorithm>

namespace astrid {
Box Box::intersect(const Box& o) const noexcept {
    Box b{std::max(x0, o.x0), std::max(y0, o.y0), std::min(x1, o.x1), std::min(y1, o.y1)};
    if (b.empty()) return Box{};
    return b;
}
}  // namespace astrid
