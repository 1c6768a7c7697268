#pragma once
// Private to the registration module: shared by match.cpp and pattern_match.cpp. Not API.
#include <cmath>
#include <cstddef>
#include <span>
#include <vector>

#include "astrid/core/stats.hpp"
#include "astrid/registration/match.hpp"

namespace astrid::registration::detail {

/// A uniform grid over a point set for fixed-radius neighbour queries (O(1) per query for radii of
/// the order of the cell size). Keeps a pointer to the points: they must outlive it.
class PointGrid {
public:
    PointGrid(std::span<const PixelPoint> points, double cellPx);
    /// Index of the nearest point within `radius` of (x, y), or -1; its squared distance in *d2.
    int nearest(double x, double y, double radius, double* d2 = nullptr) const;
    /// Calls f(index) for every point within `radius` of (x, y) (and possibly a few just beyond: the
    /// caller checks the distance).
    template <class F>
    void forEachNear(double x, double y, double radius, F&& f) const {
        if (!(std::isfinite(x) && std::isfinite(y)) || nx_ == 0) return;
        const int i0 = cellIndex(x - radius, x0_, nx_), i1 = cellIndex(x + radius, x0_, nx_);
        const int j0 = cellIndex(y - radius, y0_, ny_), j1 = cellIndex(y + radius, y0_, ny_);
        if (x + radius < x0_ || y + radius < y0_ || x - radius > x0_ + nx_ * cell_ || y - radius > y0_ + ny_ * cell_) return;
        for (int j = j0; j <= j1; ++j)
            for (int i = i0; i <= i1; ++i) {
                const std::size_t c = static_cast<std::size_t>(j) * static_cast<std::size_t>(nx_) + static_cast<std::size_t>(i);
                for (int k = start_[c]; k < start_[c + 1]; ++k) f(items_[static_cast<std::size_t>(k)]);
            }
    }

private:
    int cellIndex(double v, double origin, int n) const noexcept {
        const double c = std::floor((v - origin) / cell_);
        return c < 0.0 ? 0 : (c >= n - 1 ? n - 1 : static_cast<int>(c));
    }
    std::span<const PixelPoint> points_;
    double x0_ = 0.0, y0_ = 0.0, cell_ = 1.0;
    int nx_ = 0, ny_ = 0;
    std::vector<int> start_, items_;  // CSR layout: items_[start_[c] .. start_[c+1]) lie in cell c
};

/// Stars with finite positions, brightest first (a non-finite flux sorts last), with their
/// positions as PixelPoints.
struct SortedStars {
    std::vector<MatchPoint> stars;
    std::vector<PixelPoint> xy;
};
SortedStars sortedByFlux(const std::vector<MatchPoint>& stars);

/// Least-squares similarity (4 parameters) mapping from[i] -> to[i], mirrored or not. Needs >= 2
/// distinct points; returns false when degenerate.
bool fitSimilarity(std::span<const PixelPoint> from, std::span<const PixelPoint> to, Parity parity,
                   PolyTransform& out);

using astrid::median;  // core/stats.hpp

}  // namespace astrid::registration::detail
