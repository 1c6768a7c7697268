// Robust statistics and plane checks shared by the photometry sources (detail.hpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "detail.hpp"

namespace astrid::photometry {

namespace detail {

void checkPlanes(const MaskedImage& image, const char* what) {
    const int w = image.image.width(), h = image.image.height();
    if (image.variance.width() != w || image.variance.height() != h)
        throw DataError(fmt::format("{}: variance plane is {}x{}, image {}x{}", what, image.variance.width(),
                                    image.variance.height(), w, h));
    if (!image.mask.empty() && (image.mask.width() != w || image.mask.height() != h))
        throw DataError(fmt::format("{}: mask plane is {}x{}, image {}x{}", what, image.mask.width(),
                                    image.mask.height(), w, h));
}

std::vector<std::size_t> rowOrder(std::span<const PixelPosition> positions) {
    std::vector<std::size_t> order(positions.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
    const auto key = [&](std::size_t i) {
        const PixelPosition& p = positions[i];
        const bool finite = std::isfinite(p.x) && std::isfinite(p.y);
        return std::pair{finite ? std::floor(p.y + 0.5) : std::numeric_limits<double>::infinity(), finite ? p.x : 0.0};
    };
    std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return key(a) < key(b); });
    return order;
}

namespace {
// Mean and population standard deviation in one pass, shifted by `centre` against cancellation.
void meanStd(const std::vector<double>& v, double centre, double& mean, double& sd) {
    if (v.empty()) {
        mean = sd = std::numeric_limits<double>::quiet_NaN();
        return;
    }
    double s = 0.0, q = 0.0;
    for (double x : v) {
        const double t = x - centre;
        s += t;
        q += t * t;
    }
    const double n = static_cast<double>(v.size()), m = s / n;
    mean = centre + m;
    sd = std::sqrt(std::max(0.0, q / n - m * m));
}
}  // namespace

ClippedStats sigmaClip(std::vector<double>& v, double kappa, int iterations) {
    ClippedStats st;
    for (int it = 0;; ++it) {
        st.median = medianInPlace(v);
        meanStd(v, st.median, st.mean, st.stddev);
        st.n = static_cast<int>(v.size());
        if (it >= iterations || v.size() < 3) break;
        const double lim = kappa * st.stddev;
        const auto end = std::remove_if(v.begin(), v.end(), [&](double x) { return std::fabs(x - st.median) > lim; });
        if (end == v.end()) break;
        v.erase(end, v.end());
    }
    return st;
}

double madSigma(const std::vector<double>& v, double centre, std::vector<double>& scratch) {
    scratch.resize(v.size());
    for (std::size_t i = 0; i < v.size(); ++i) scratch[i] = std::fabs(v[i] - centre);
    return 1.482602218505602 * medianInPlace(scratch);
}

std::vector<std::size_t> madClip(const std::vector<double>& values, double kappa, int iterations, double minSigma) {
    std::vector<std::size_t> kept(values.size());
    for (std::size_t i = 0; i < kept.size(); ++i) kept[i] = i;
    std::vector<double> sample, scratch;
    for (int it = 0; it < iterations && kept.size() >= 3; ++it) {
        sample.clear();
        for (std::size_t i : kept) sample.push_back(values[i]);
        const double med = medianInPlace(sample);
        const double lim = kappa * std::max(madSigma(sample, med, scratch), minSigma);
        std::vector<std::size_t> next;
        next.reserve(kept.size());
        for (std::size_t i : kept)
            if (std::fabs(values[i] - med) <= lim) next.push_back(i);
        if (next.size() == kept.size()) break;
        kept.swap(next);
    }
    return kept;
}

}  // namespace detail
}  // namespace astrid::photometry
