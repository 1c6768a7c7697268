// estimateBackground: per-box clipped statistics, fill, median filter, bicubic spline; with source
// masking, a sampled first pass, source detection on the image binned 2x2, and a second pass measured
// against the first.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <string>
#include <utility>
#include <vector>

#include "astrid/background/background.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/stats.hpp"
#include "astrid/core/log.hpp"
#include "detail.hpp"

namespace astrid::background {
namespace {

using detail::Cells;
using detail::finite;
using detail::forEach8;
using detail::MeshSpline;

void validate(const BackgroundConfig& c) {
    const auto bad = [](const char* key, const std::string& what) {
        throw ConfigError(std::string("background: ") + key + " " + what, key);
    };
    if (c.boxSizePx < 8) bad("boxSizePx", "must be >= 8, got " + std::to_string(c.boxSizePx));
    if (c.filterSize < 1 || c.filterSize % 2 == 0 || c.filterSize > 15)
        bad("filterSize", "must be odd and in [1, 15], got " + std::to_string(c.filterSize));
    if (!(c.clipSigma >= 1.5 && c.clipSigma <= 10.0))
        bad("clipSigma", "must be in [1.5, 10], got " + std::to_string(c.clipSigma));
    if (c.clipIterations < 1 || c.clipIterations > 100)
        bad("clipIterations", "must be in [1, 100], got " + std::to_string(c.clipIterations));
    if (!(c.minValidFraction >= 0.0 && c.minValidFraction <= 1.0))
        bad("minValidFraction", "must be in [0, 1], got " + std::to_string(c.minValidFraction));
    if (c.minValidPixels < 3) bad("minValidPixels", "must be >= 3, got " + std::to_string(c.minValidPixels));
    if (!(c.sourceThresholdSigma > 0.0 && std::isfinite(c.sourceThresholdSigma)))
        bad("sourceThresholdSigma", "must be finite and > 0, got " + std::to_string(c.sourceThresholdSigma));
    if (c.sourcePasses < 1 || c.sourcePasses > 10)
        bad("sourcePasses", "must be in [1, 10], got " + std::to_string(c.sourcePasses));
    if (c.sourceDilatePx < 0 || c.sourceDilatePx > 256)
        bad("sourceDilatePx", "must be in [0, 256], got " + std::to_string(c.sourceDilatePx));
}

// ------------------------------------------------------------------------------------------------
// Clipped statistics of one box.

// Standard deviation of a unit Gaussian truncated to [-c, c].
double truncatedSigma(double c) {
    const double phi = std::exp(-0.5 * c * c) / std::sqrt(2.0 * std::numbers::pi);
    const double mass = std::erf(c / std::numbers::sqrt2);
    return std::sqrt(std::max(0.0, 1.0 - 2.0 * c * phi / mass));
}

// Clipping at k times the clipped sigma until convergence settles where s = truncatedSigma(k s): the
// measured sigma is s times the true one. 1 / s corrects it (1.0153 for k = 3).
double clipCorrection(double k) {
    double s = 1.0;
    for (int i = 0; i < 100; ++i) s = truncatedSigma(k * s);
    return s > 0.0 ? 1.0 / s : 1.0;
}

struct ClipStats {
    double mean = 0, median = 0, sigma = 0;
    double n = 0;  // values inside the final clip
};

// Scratch reused across boxes.
struct Workspace {
    std::vector<float> sample;
    std::vector<std::uint32_t> hist;
    std::vector<double> prefix;
};

constexpr int kBinsPerSigma = 10;  // histogram bin = sigma0 / 10: median/mean quantisation << noise
constexpr int kHalfRangeSigma = 6; // histogram covers median0 +- 6 sigma0

ClipStats clipOnHistogram(const float* v, std::size_t n, Workspace& ws, const BackgroundConfig& config, double med0,
                          double sigma0);

// Sigma-clipped median, mean and sigma of `n` finite values, in linear time: a robust start (median
// and interquartile sigma of a ~128-value subsample, or `guessLevel` / `guessSigma` when the caller
// has them), then a fine histogram on which the clip iterates (SExtractor's approach; sorting 4096
// values per box would dominate the cost).
ClipStats clippedStats(const float* v, std::size_t n, Workspace& ws, const BackgroundConfig& config,
                       double guessLevel = 0.0, double guessSigma = 0.0) {
    if (guessSigma > 0.0 && std::isfinite(guessLevel) && std::isfinite(guessSigma))
        return clipOnHistogram(v, n, ws, config, guessLevel, guessSigma);
    const std::size_t stride = std::max<std::size_t>(1, n / 128);
    ws.sample.clear();
    for (std::size_t i = 0; i < n; i += stride) ws.sample.push_back(v[i]);
    auto& s = ws.sample;
    const std::size_t mid = s.size() / 2;
    std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(mid), s.end());
    const double med0 = s[mid];
    double sigma0 = 0.0;
    if (s.size() >= 4) {
        const std::size_t q1 = mid / 2, q3 = mid + (s.size() - mid) / 2;
        const auto at = [&s](std::size_t k) { return s.begin() + static_cast<std::ptrdiff_t>(k); };
        std::nth_element(at(0), at(q1), at(mid));
        std::nth_element(at(mid + 1), at(q3), s.end());
        sigma0 = (static_cast<double>(s[q3]) - static_cast<double>(s[q1])) / 1.349;
    }
    if (!(sigma0 > 0.0)) {
        // Quantised or nearly constant data: the plain standard deviation sets the scale instead.
        double sum = 0.0, sum2 = 0.0;
        for (std::size_t i = 0; i < n; ++i) {
            const double d = v[i] - med0;
            sum += d;
            sum2 += d * d;
        }
        const double m = sum / static_cast<double>(n);
        sigma0 = std::sqrt(std::max(0.0, sum2 / static_cast<double>(n) - m * m));
        if (!(sigma0 > 0.0)) return ClipStats{med0, med0, 0.0, static_cast<double>(n)};
    }
    return clipOnHistogram(v, n, ws, config, med0, sigma0);
}

// The clip itself, on a histogram of bin sigma0 / 10 over med0 +- 6 sigma0.
ClipStats clipOnHistogram(const float* v, std::size_t n, Workspace& ws, const BackgroundConfig& config, double med0,
                          double sigma0) {
    const int nBins = 2 * kHalfRangeSigma * kBinsPerSigma;
    const auto nb = static_cast<std::size_t>(nBins);
    const double width = sigma0 / kBinsPerSigma, lo = med0 - kHalfRangeSigma * sigma0;
    const auto invW = static_cast<float>(1.0 / width);
    const auto loF = static_cast<float>(lo);
    // Four interleaved histograms: consecutive values often fall in the same bin, and one array would
    // serialise on its increments.
    ws.hist.assign(4 * nb, 0);
    std::uint32_t* hist = ws.hist.data();
    const auto binOf = [&](float x) {
        const float t = (x - loF) * invW;
        return t >= 0.0f && t < static_cast<float>(nBins) ? static_cast<std::size_t>(t) : nb;  // nb: outside
    };
    std::size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (std::size_t q = 0; q < 4; ++q) {
            const std::size_t b = binOf(v[i + q]);
            if (b < nb) ++hist[q * nb + b];
        }
    for (; i < n; ++i) {
        const std::size_t b = binOf(v[i]);
        if (b < nb) ++hist[b];
    }
    // Prefix sums of count, count * x and count * x^2 (x = bin centre in bin units from lo), so every
    // clip iteration is O(log bins).
    std::vector<double>& P = ws.prefix;
    P.assign(3 * (nb + 1), 0.0);
    for (std::size_t k = 0; k < nb; ++k) {
        const double c = static_cast<double>(hist[k]) + hist[nb + k] + hist[2 * nb + k] + hist[3 * nb + k];
        const double x = static_cast<double>(k) + 0.5;
        P[3 * (k + 1)] = P[3 * k] + c;
        P[3 * (k + 1) + 1] = P[3 * k + 1] + c * x;
        P[3 * (k + 1) + 2] = P[3 * k + 2] + c * x * x;
    }
    const auto cum = [&](std::size_t k) { return P[3 * k]; };  // count in bins [0, k)

    std::size_t a = 0, b = nb;  // bins [a, b)
    ClipStats out{med0, med0, sigma0, static_cast<double>(n)};
    const double sheppard = width * width / 12.0;  // binning adds w^2/12 to the variance
    for (int it = 0; it < config.clipIterations; ++it) {
        const double cnt = cum(b) - cum(a);
        if (cnt < 3.0) break;
        const double meanB = (P[3 * b + 1] - P[3 * a + 1]) / cnt;
        const double varB = std::max(0.0, (P[3 * b + 2] - P[3 * a + 2]) / cnt - meanB * meanB);
        // Median: the bin where the cumulative count passes half, interpolated linearly inside it.
        const double target = cum(a) + 0.5 * cnt;
        std::size_t lo1 = a, hi1 = b;  // first k in (a, b] with cum(k) >= target
        while (lo1 + 1 < hi1) {
            const std::size_t m = (lo1 + hi1) / 2;
            if (cum(m) >= target) hi1 = m;
            else lo1 = m;
        }
        const std::size_t k = hi1 - 1;  // the bin that holds the target
        const double inBin = cum(k + 1) - cum(k);
        const double medB = static_cast<double>(k) + (inBin > 0.0 ? (target - cum(k)) / inBin : 0.5);
        out.n = cnt;
        out.mean = lo + meanB * width;
        out.median = lo + medB * width;
        out.sigma = std::sqrt(std::max(0.0, varB * width * width - sheppard));
        const double halfBins = config.clipSigma * out.sigma / width;
        // Bins whose centre lies within median +- clipSigma * sigma.
        const double fa = std::ceil(medB - halfBins - 0.5), fb = std::floor(medB + halfBins - 0.5) + 1.0;
        const std::size_t na = fa <= 0.0 ? 0 : std::min(nb, static_cast<std::size_t>(fa));
        const std::size_t nbEnd = fb <= 0.0 ? 0 : std::min(nb, static_cast<std::size_t>(fb));
        if ((na == a && nbEnd == b) || nbEnd <= na) break;
        a = na;
        b = nbEnd;
    }
    return out;
}

double levelOf(const ClipStats& s, LevelEstimator e) {
    switch (e) {
        case LevelEstimator::Median: return s.median;
        case LevelEstimator::Mean: return s.mean;
        case LevelEstimator::Mode: {
            if (!(s.sigma > 0.0)) return s.mean;
            const double skew = std::fabs(s.mean - s.median);
            // For Gaussian data mean - median has standard deviation 0.756 sigma / sqrt(n); below three
            // of those the box is not measurably skewed and the formula would only add noise.
            const double significant = 3.0 * 0.756 * s.sigma / std::sqrt(std::max(1.0, s.n));
            if (skew < significant || skew >= 0.3 * s.sigma) return s.median;
            return 2.5 * s.median - 1.5 * s.mean;
        }
    }
    return s.median;
}

// ------------------------------------------------------------------------------------------------
// Row kernels (see detail::forEach8 for why they look like this).

// ex[x] = 1 where the mask has an ignored bit.
[[gnu::noinline]]
void maskedRow(const std::uint16_t* __restrict m, std::uint8_t* __restrict ex, std::size_t n, std::uint16_t ignore) {
    forEach8(n, [&](std::size_t x) { ex[x] = (m[x] & ignore) != 0 ? 1 : 0; });
}

// ex[x] |= full[x].
[[gnu::noinline]]
void orRow(const std::uint8_t* __restrict full, std::uint8_t* __restrict ex, std::size_t n) {
    forEach8(n, [&](std::size_t x) { ex[x] = static_cast<std::uint8_t>(ex[x] | full[x]); });
}

// full[x] = binned[x / 2].
[[gnu::noinline]]
void unbinRow(const std::uint8_t* __restrict binned, std::uint8_t* __restrict full, std::size_t n) {
    for (std::size_t x = 0; x + 1 < n; x += 2) full[x] = full[x + 1] = binned[x / 2];
    if (n % 2 == 1) full[n - 1] = binned[n / 2];
}

// a[x] = the pixel, or `fill[x]` where it is not finite or masked.
[[gnu::noinline]]
void substituteRow(const float* __restrict r, const std::uint16_t* __restrict m, const float* __restrict fill,
                   float* __restrict a, std::size_t n, std::uint16_t ignore) {
    forEach8(n, [&](std::size_t x) {
        const float v = r[x], f = fill[x];
        a[x] = finite(v) ? v : f;
    });
    if (m == nullptr) return;
    forEach8(n, [&](std::size_t x) {
        const float v = a[x], f = fill[x];
        a[x] = (m[x] & ignore) != 0 ? f : v;
    });
}

// acc[b] += a[2b] + a[2b + 1].
[[gnu::noinline]]
void addBinnedRow(const float* __restrict a, float* __restrict acc, std::size_t nBinned) {
    forEach8(nBinned, [&](std::size_t b) { acc[b] += a[2 * b] + a[2 * b + 1]; });
}

[[gnu::noinline]]
void sum3(const float* __restrict r0, const float* __restrict r1, const float* __restrict r2, float* __restrict out,
          std::size_t n) {
    forEach8(n, [&](std::size_t b) { out[b] = r0[b] + r1[b] + r2[b]; });
}

// d[b] = 1 where the horizontal 3-sum of the column sums c (padded by one on each side) exceeds t[b].
[[gnu::noinline]]
void detectRow(const float* __restrict c, const float* __restrict t, std::uint8_t* __restrict d, std::size_t n) {
    forEach8(n, [&](std::size_t b) { d[b] = c[b] + c[b + 1] + c[b + 2] > t[b] ? 1 : 0; });
}

[[gnu::noinline]]
void addCounts(const std::uint8_t* __restrict d, int* __restrict count, std::size_t n) {
    forEach8(n, [&](std::size_t b) { count[b] += d[b]; });
}

[[gnu::noinline]]
void subtractCounts(const std::uint8_t* __restrict d, int* __restrict count, std::size_t n) {
    forEach8(n, [&](std::size_t b) { count[b] -= d[b]; });
}

[[gnu::noinline]]
void positive(const int* __restrict count, std::uint8_t* __restrict out, std::size_t n) {
    forEach8(n, [&](std::size_t b) { out[b] = count[b] > 0 ? 1 : 0; });
}

[[gnu::noinline]]
void subtractRow(const float* __restrict a, const float* __restrict b, float* __restrict out, std::size_t n) {
    forEach8(n, [&](std::size_t x) { out[x] = a[x] - b[x]; });
}

[[gnu::noinline]]
void clampAtZero(float* __restrict row, std::size_t n) {
    forEach8(n, [&](std::size_t x) { row[x] = detail::maxf(row[x], 0.0f); });
}

// ------------------------------------------------------------------------------------------------
// The box grid.

struct Mesh {
    int nx = 0, ny = 0;
    std::vector<double> level, rms;
    std::vector<std::size_t> count;  // usable pixels sampled per box
    std::vector<std::size_t> area;   // pixels sampled per box
    std::vector<char> valid;
};

// A previous pass to measure against: its spline (the model) and its filtered mesh (the model's node
// values, which also start the clipping).
struct Reference {
    const MeshSpline* spline = nullptr;
    const Mesh* mesh = nullptr;
};

// Measures every box. `exclusionRow(y, row)` fills row[0..width) with 1 for pixels to ignore; `step`
// samples every step-th row and column (the first pass only needs a rough background). With a
// reference, the statistics are taken of image - model and added to the model's node value: the
// gradient and curvature inside a box then neither widen the distribution (a 0.5 ADU/px gradient
// across 64 px would add 9 ADU rms) nor bias the level where masking leaves only one side of a box.
// The image is read band by band in storage order, each row scattered into the boxes' buffers: walking
// box by box would stride by whole rows and thrash the cache on wide images.
template <class ExclusionRow>
Mesh measureBoxes(const Image<float>& image, const Cells& cx, const Cells& cy, int step, ExclusionRow&& exclusionRow,
                  const BackgroundConfig& config, double sigmaCorrection, Reference ref = {}) {
    Mesh mesh;
    mesh.nx = cx.count;
    mesh.ny = cy.count;
    const auto nx = static_cast<std::size_t>(mesh.nx);
    const std::size_t nBoxes = nx * static_cast<std::size_t>(mesh.ny);
    mesh.level.assign(nBoxes, 0.0);
    mesh.rms.assign(nBoxes, 0.0);
    mesh.count.assign(nBoxes, 0);
    mesh.area.assign(nBoxes, 0);
    const auto W = static_cast<std::size_t>(image.width());
    std::vector<std::uint8_t> ex(W);
    std::vector<std::size_t> offset(nx + 1), n(nx);
    std::vector<float> band, modelRow(ref.spline ? W : 0), residual(ref.spline ? W : 0);
    Workspace ws;
    for (int j = 0; j < mesh.ny; ++j) {
        const int y0 = cy.edge(j), y1 = cy.edge(j + 1);
        const auto rows = static_cast<std::size_t>((y1 - y0 + step - 1) / step);
        offset[0] = 0;
        for (std::size_t i = 0; i < nx; ++i) {
            const int cols = (cx.edge(static_cast<int>(i) + 1) - cx.edge(static_cast<int>(i)) + step - 1) / step;
            offset[i + 1] = offset[i] + rows * static_cast<std::size_t>(cols);
            n[i] = 0;
        }
        band.resize(offset[nx]);
        for (int y = y0; y < y1; y += step) {
            const float* row = image.data() + static_cast<std::size_t>(y) * W;
            if (ref.spline) {
                ref.spline->evalRow(y, modelRow.data());
                subtractRow(row, modelRow.data(), residual.data(), W);
                row = residual.data();
            }
            exclusionRow(y, ex.data());
            for (std::size_t i = 0; i < nx; ++i) {
                float* buf = band.data() + offset[i];
                std::size_t k = n[i];
                const int x1 = cx.edge(static_cast<int>(i) + 1);
                for (int x = cx.edge(static_cast<int>(i)); x < x1; x += step) {
                    const float v = row[x];
                    buf[k] = v;  // branch-free gather: kept only when counted
                    const bool use = finite(v) && ex[static_cast<std::size_t>(x)] == 0;
                    k += use ? 1 : 0;
                }
                n[i] = k;
            }
        }
        for (std::size_t i = 0; i < nx; ++i) {
            const std::size_t b = static_cast<std::size_t>(j) * nx + i;
            mesh.count[b] = n[i];
            mesh.area[b] = offset[i + 1] - offset[i];
            if (n[i] == 0) continue;
            if (ref.mesh) {
                // Residuals: centred on 0, with the reference's noise to start the clip.
                const ClipStats st = clippedStats(band.data() + offset[i], n[i], ws, config, 0.0,
                                                  ref.mesh->rms[b] / sigmaCorrection);
                mesh.level[b] = ref.mesh->level[b] + levelOf(st, config.estimator);
                mesh.rms[b] = st.sigma * sigmaCorrection;
            } else {
                const ClipStats st = clippedStats(band.data() + offset[i], n[i], ws, config);
                mesh.level[b] = levelOf(st, config.estimator);
                mesh.rms[b] = st.sigma * sigmaCorrection;
            }
        }
    }
    return mesh;
}

/// The median, 0 for no values (a level or RMS of nothing).
double medianOf(std::vector<double> v) { return v.empty() ? 0.0 : medianInPlace(v); }

// Marks the usable boxes; false when there is none. `typical` scales the fraction: 1 for the mask
// pass, the median kept fraction for the source pass.
bool markValid(Mesh& mesh, const BackgroundConfig& config, double stepArea, double typical, bool relaxed) {
    mesh.valid.assign(mesh.level.size(), 0);
    bool any = false;
    const double minPixels = std::max(3.0, config.minValidPixels / stepArea);
    const double fraction = config.minValidFraction * typical;
    for (std::size_t b = 0; b < mesh.level.size(); ++b) {
        const auto n = static_cast<double>(mesh.count[b]);
        const bool ok = n >= minPixels && (relaxed || n >= fraction * static_cast<double>(mesh.area[b]));
        mesh.valid[b] = ok;
        any = any || ok;
    }
    return any;
}

// Fills the invalid boxes ring by ring outwards from the valid ones. A box next to valid boxes takes
// the value at its position of a plane fitted (least squares) to the originally valid boxes within two
// boxes of it, so a gradient continues into a masked area instead of stepping (the mean of the
// neighbours would be a whole box's gradient off at an edge); with fewer than three of those, or when
// they are collinear, it takes the mean of its filled 8-neighbours. So extrapolation reaches at most
// two boxes into a masked area and the level is held beyond that. The RMS takes the neighbours' mean.
void fillInvalid(Mesh& mesh) {
    const int nx = mesh.nx, ny = mesh.ny;
    std::vector<char> ok = mesh.valid;
    struct Fill {
        std::size_t box;
        double level, rms;
    };
    std::vector<Fill> fills;
    const auto idx = [nx](int i, int j) { return static_cast<std::size_t>(j * nx + i); };
    for (;;) {
        fills.clear();
        bool missing = false;
        for (int j = 0; j < ny; ++j)
            for (int i = 0; i < nx; ++i) {
                const std::size_t b = idx(i, j);
                if (ok[b]) continue;
                missing = true;
                double sl = 0.0, sr = 0.0;
                int n = 0;
                for (int jj = std::max(0, j - 1); jj <= std::min(ny - 1, j + 1); ++jj)
                    for (int ii = std::max(0, i - 1); ii <= std::min(nx - 1, i + 1); ++ii) {
                        if (!ok[idx(ii, jj)]) continue;
                        sl += mesh.level[idx(ii, jj)];
                        sr += mesh.rms[idx(ii, jj)];
                        ++n;
                    }
                if (n == 0) continue;  // not on this ring
                double level = sl / n;
                // Plane v = a + b di + c dj through the originally valid boxes around; a is the value here.
                double s0 = 0, sdi = 0, sdj = 0, sii = 0, sjj = 0, sij = 0, sv = 0, svi = 0, svj = 0;
                for (int jj = std::max(0, j - 2); jj <= std::min(ny - 1, j + 2); ++jj)
                    for (int ii = std::max(0, i - 2); ii <= std::min(nx - 1, i + 2); ++ii) {
                        if (!mesh.valid[idx(ii, jj)]) continue;
                        const double di = ii - i, dj = jj - j, v = mesh.level[idx(ii, jj)];
                        s0 += 1, sdi += di, sdj += dj, sii += di * di, sjj += dj * dj, sij += di * dj;
                        sv += v, svi += v * di, svj += v * dj;
                    }
                if (s0 >= 3) {
                    // Normal equations [s0 sdi sdj; sdi sii sij; sdj sij sjj] (a b c) = (sv svi svj).
                    const double det = s0 * (sii * sjj - sij * sij) - sdi * (sdi * sjj - sij * sdj) +
                                       sdj * (sdi * sij - sii * sdj);
                    if (std::fabs(det) > 1e-6 * s0 * s0 * s0) {
                        level = (sv * (sii * sjj - sij * sij) - sdi * (svi * sjj - sij * svj) +
                                 sdj * (svi * sij - sii * svj)) /
                                det;
                    }
                }
                fills.push_back({b, level, sr / n});
            }
        if (!missing) return;
        for (const Fill& f : fills) {
            mesh.level[f.box] = f.level;
            mesh.rms[f.box] = f.rms;
            ok[f.box] = 1;
        }
    }
}

// Median filter over the box grid. Outside the grid, values are point reflections through the edge
// box (2 v_edge - v_mirror), so a linear gradient is a fixed point of the filter and edge boxes are
// not pulled towards the interior (measured on the simulator: lower edge errors than mirror padding or
// a truncated window).
std::vector<double> medianFilter(const std::vector<double>& v, int nx, int ny, int size) {
    if (size <= 1) return v;
    const int r = size / 2;
    std::vector<double> out(v.size()), win;
    const auto at = [&](int i, int j) {
        const int ci = std::clamp(i, 0, nx - 1), cj = std::clamp(j, 0, ny - 1);
        const double edge = v[static_cast<std::size_t>(cj * nx + ci)];
        if (ci == i && cj == j) return edge;
        const int mi = std::clamp(2 * ci - i, 0, nx - 1), mj = std::clamp(2 * cj - j, 0, ny - 1);
        return 2.0 * edge - v[static_cast<std::size_t>(mj * nx + mi)];
    };
    for (int j = 0; j < ny; ++j)
        for (int i = 0; i < nx; ++i) {
            win.clear();
            for (int dj = -r; dj <= r; ++dj)
                for (int di = -r; di <= r; ++di) win.push_back(at(i + di, j + dj));
            const std::size_t mid = win.size() / 2;
            std::nth_element(win.begin(), win.begin() + static_cast<std::ptrdiff_t>(mid), win.end());
            out[static_cast<std::size_t>(j * nx + i)] = win[mid];
        }
    return out;
}

enum class Pass { Mask, Sources };

// Valid -> fill -> filter. Returns false when no box is usable even with the relaxed criterion.
// In the source pass the fraction is relative to what a typical box keeps: in a crowded field every box
// loses about half its pixels to sources, and those boxes are fine; a box that loses much more than
// the others sits under a large source.
bool finishMesh(Mesh& mesh, const BackgroundConfig& config, double stepArea, Pass pass, int filterSize) {
    double typical = 1.0;
    if (pass == Pass::Sources) {
        std::vector<double> kept(mesh.count.size());
        for (std::size_t b = 0; b < kept.size(); ++b)
            kept[b] = mesh.area[b] ? static_cast<double>(mesh.count[b]) / static_cast<double>(mesh.area[b]) : 0.0;
        typical = medianOf(std::move(kept));
    }
    if (!markValid(mesh, config, stepArea, typical, false)) {
        if (!markValid(mesh, config, stepArea, typical, true)) return false;
        log::get("astrid.background")
            ->warn("background{}: no box has {:.0f}% of its pixels usable; using boxes with >= {} usable pixels",
                   pass == Pass::Sources ? " (source-masked pass)" : "", 100.0 * config.minValidFraction * typical,
                   config.minValidPixels);
    }
    fillInvalid(mesh);
    mesh.level = medianFilter(mesh.level, mesh.nx, mesh.ny, filterSize);
    mesh.rms = medianFilter(mesh.rms, mesh.nx, mesh.ny, filterSize);
    for (double& r : mesh.rms) r = std::max(0.0, r);
    return true;
}

// ------------------------------------------------------------------------------------------------
// Sources for the second pass, found on the image binned 2x2: a quarter of the work, and a 6x6-pixel
// detection window, which is more sensitive to the faint extended light that biases a background
// than a 3x3 one.

struct SourceMask {
    std::size_t width = 0;            // binned width, ceil(w / 2)
    std::vector<std::uint8_t> plane;  // 1 = source (dilated), binned pixels
};

// A binned pixel is a source when the sum over its 3x3 binned neighbourhood (36 pixels, edges
// replicated) exceeds 36 level + k * 6 rms. Masked or missing pixels count as the level of their box,
// so that they neither trigger nor hide a detection. Detections are dilated by
// ceil(sourceDilatePx / 2) binned pixels (a square).
SourceMask detectSources(const Image<float>& image, const Image<std::uint16_t>& mask, const Mesh& mesh,
                         const Cells& cx, const Cells& cy, const BackgroundConfig& config) {
    const int w = image.width(), h = image.height();
    const int w2 = (w + 1) / 2, h2 = (h + 1) / 2;
    const auto W = static_cast<std::size_t>(w), W2 = static_cast<std::size_t>(w2);
    const std::uint16_t ignore = config.ignoreMask;
    const bool hasMask = !mask.empty();

    // Threshold map on the binned grid: binned pixel b covers pixels 2b and 2b + 1 (centre 2b + 0.5).
    std::vector<double> thrMesh(mesh.level.size());
    const double k = config.sourceThresholdSigma;
    for (std::size_t b = 0; b < thrMesh.size(); ++b) thrMesh[b] = 36.0 * mesh.level[b] + 6.0 * k * mesh.rms[b];
    std::vector<double> nodesX = detail::centres(cx), nodesY = detail::centres(cy);
    for (double& t : nodesX) t = 0.5 * (t - 0.5);
    for (double& t : nodesY) t = 0.5 * (t - 0.5);
    const MeshSpline thr(std::move(nodesX), std::move(nodesY), w2, thrMesh);

    std::vector<int> boxOfX(W);
    for (int i = 0; i < cx.count; ++i)
        for (int x = cx.edge(i); x < cx.edge(i + 1); ++x) boxOfX[static_cast<std::size_t>(x)] = i;
    std::vector<float> coarse(W);  // the level of the box under each pixel of the current box row
    int coarseBoxRow = -1, boxRow = 0;

    // Adds image row y into `acc` (binned columns), masked pixels replaced by their box's level.
    std::vector<float> a(W);
    const auto addRow = [&](int y, float* acc) {
        while (cy.edge(boxRow + 1) <= y) ++boxRow;
        if (boxRow != coarseBoxRow) {
            for (std::size_t x = 0; x < W; ++x)
                coarse[x] = static_cast<float>(mesh.level[static_cast<std::size_t>(boxRow * cx.count + boxOfX[x])]);
            coarseBoxRow = boxRow;
        }
        const std::size_t row = static_cast<std::size_t>(y) * W;
        substituteRow(image.data() + row, hasMask ? mask.data() + row : nullptr, coarse.data(), a.data(), W, ignore);
        const std::size_t full = W / 2;
        addBinnedRow(a.data(), acc, full);
        if (W % 2 == 1) acc[full] += 2.0f * a[W - 1];  // odd width: the last column counts twice
    };
    const auto binnedRow = [&](int by, float* out) {
        std::fill(out, out + W2, 0.0f);
        addRow(2 * by, out);
        if (2 * by + 1 < h) {
            addRow(2 * by + 1, out);
        } else {
            for (std::size_t b = 0; b < W2; ++b) out[b] *= 2.0f;  // odd height: the last row counts twice
        }
    };

    // Binned rows in a ring of three, then the 3x3 sums (edges replicated).
    std::vector<float> ring(3 * W2), colSum(W2 + 2), thrRow(W2);
    std::vector<std::uint8_t> det(W2 * static_cast<std::size_t>(h2));
    const auto slot = [&](int by) { return ring.data() + static_cast<std::size_t>(by % 3) * W2; };
    binnedRow(0, slot(0));
    if (h2 > 1) binnedRow(1, slot(1));
    for (int by = 0; by < h2; ++by) {
        if (by >= 1 && by + 1 < h2) binnedRow(by + 1, slot(by + 1));
        const float* r0 = slot(std::max(0, by - 1));
        const float* r1 = slot(by);
        const float* r2 = slot(std::min(h2 - 1, by + 1));
        sum3(r0, r1, r2, colSum.data() + 1, W2);
        colSum[0] = colSum[1];
        colSum[W2 + 1] = colSum[W2];
        thr.evalRow(by, thrRow.data());
        detectRow(colSum.data(), thrRow.data(), det.data() + static_cast<std::size_t>(by) * W2, W2);
    }

    // Dilation: along rows with a prefix count, then along columns with a running count.
    const int r = (config.sourceDilatePx + 1) / 2;
    SourceMask out;
    out.width = W2;
    if (r == 0) {
        out.plane = std::move(det);
        return out;
    }
    std::vector<int> prefix(W2 + 1);
    for (int by = 0; by < h2; ++by) {
        std::uint8_t* d = det.data() + static_cast<std::size_t>(by) * W2;
        prefix[0] = 0;
        for (std::size_t b = 0; b < W2; ++b) prefix[b + 1] = prefix[b] + d[b];
        if (prefix[W2] == 0) continue;
        for (int b = 0; b < w2; ++b) {
            const int lo = std::max(0, b - r), hi = std::min(w2, b + r + 1);
            d[b] = prefix[static_cast<std::size_t>(hi)] - prefix[static_cast<std::size_t>(lo)] > 0;
        }
    }
    out.plane.resize(det.size());
    std::vector<int> count(W2, 0);
    const auto detRow = [&](int by) { return det.data() + static_cast<std::size_t>(by) * W2; };
    for (int by = 0; by < std::min(h2, r); ++by) addCounts(detRow(by), count.data(), W2);
    for (int by = 0; by < h2; ++by) {
        if (by + r < h2) addCounts(detRow(by + r), count.data(), W2);
        if (by - r - 1 >= 0) subtractCounts(detRow(by - r - 1), count.data(), W2);
        positive(count.data(), out.plane.data() + static_cast<std::size_t>(by) * W2, W2);
    }
    return out;
}

// ------------------------------------------------------------------------------------------------

void render(const MeshSpline& spline, int height, bool nonNegative, Image<float>& out) {
    const int w = spline.width();
    if (out.width() != w || out.height() != height) out = Image<float>(w, height, Uninitialized{});
    for (int y = 0; y < height; ++y) {
        float* row = out.data() + static_cast<std::size_t>(y) * static_cast<std::size_t>(w);
        spline.evalRow(y, row);
        if (nonNegative) clampAtZero(row, static_cast<std::size_t>(w));
    }
}

Image<float> meshImage(const std::vector<double>& v, int nx, int ny) {
    Image<float> out(nx, ny, Uninitialized{});
    for (std::size_t k = 0; k < v.size(); ++k) out.data()[k] = static_cast<float>(v[k]);
    return out;
}

}  // namespace

void estimateBackground(const Image<float>& image, const Image<std::uint16_t>& mask, const BackgroundConfig& config,
                        BackgroundMap& out) {
    validate(config);
    const int w = image.width(), h = image.height();
    if (image.empty()) throw DataError("estimateBackground: empty image");
    if (!mask.empty() && (mask.width() != w || mask.height() != h))
        throw DataError("estimateBackground: mask is " + std::to_string(mask.width()) + "x" +
                        std::to_string(mask.height()) + " but the image is " + std::to_string(w) + "x" +
                        std::to_string(h));
    const Cells cx = detail::makeCells(w, config.boxSizePx), cy = detail::makeCells(h, config.boxSizePx);
    const double corr = clipCorrection(config.clipSigma);
    const std::uint16_t ignore = config.ignoreMask;
    const std::uint16_t* m = mask.empty() ? nullptr : mask.data();
    const auto W = static_cast<std::size_t>(w);
    const auto maskRow = [m, ignore, W](int y, std::uint8_t* ex) {
        if (m == nullptr) {
            std::fill(ex, ex + W, std::uint8_t{0});
            return;
        }
        maskedRow(m + static_cast<std::size_t>(y) * W, ex, W, ignore);
    };
    const auto noPixels = [&]() {
        std::size_t used = 0;
        for (std::size_t k = 0; k < image.size(); ++k)
            used += static_cast<std::size_t>(std::isfinite(image.data()[k]) && !(m && (m[k] & ignore)));
        return DataError("estimateBackground: no background box has " + std::to_string(config.minValidPixels) +
                         " usable pixels (" + std::to_string(used) + " of " + std::to_string(image.size()) +
                         " pixels are finite and unmasked)");
    };

    Mesh mesh;
    if (config.sourceMasking == SourceMasking::On) {
        // Pass 1 on every second row and column, filtered harder (5x5) than the result: it only has to
        // find the sources and be the reference of the next pass, and a large source spoils several
        // boxes in a row here. A tiny image may have too few pixels for the sampled pass: then all.
        const int filter1 = std::max(config.filterSize, 5);
        Mesh first = measureBoxes(image, cx, cy, 2, maskRow, config, corr);
        if (!finishMesh(first, config, 4.0, Pass::Mask, filter1)) {
            first = measureBoxes(image, cx, cy, 1, maskRow, config, corr);
            if (!finishMesh(first, config, 1.0, Pass::Mask, filter1)) throw noPixels();
        }
        mesh = std::move(first);
        for (int pass = 0; pass < config.sourcePasses; ++pass) {
            const SourceMask src = detectSources(image, mask, mesh, cx, cy, config);
            std::vector<std::uint8_t> srcRow(W);
            int srcRowY = -1;
            const auto sourceRow = [&](int y, std::uint8_t* ex) {
                maskRow(y, ex);
                if (y / 2 != srcRowY) {
                    unbinRow(src.plane.data() + static_cast<std::size_t>(y / 2) * src.width, srcRow.data(), W);
                    srcRowY = y / 2;
                }
                orRow(srcRow.data(), ex, W);
            };
            // Measured against the previous pass's model (see measureBoxes).
            const MeshSpline model(cx, cy, mesh.level);
            Mesh next = measureBoxes(image, cx, cy, 1, sourceRow, config, corr, Reference{&model, &mesh});
            if (!finishMesh(next, config, 1.0, Pass::Sources, config.filterSize)) {
                log::get("astrid.background")->warn("background: sources cover every box; keeping the previous pass");
                break;
            }
            mesh = std::move(next);
        }
    } else {
        mesh = measureBoxes(image, cx, cy, 1, maskRow, config, corr);
        if (!finishMesh(mesh, config, 1.0, Pass::Mask, config.filterSize)) throw noPixels();
    }

    out.meshX = mesh.nx;
    out.meshY = mesh.ny;
    // Global values over the boxes that were measured, not filled (their filtered values).
    std::vector<double> gl, gr;
    for (std::size_t b = 0; b < mesh.level.size(); ++b)
        if (mesh.valid[b]) {
            gl.push_back(mesh.level[b]);
            gr.push_back(mesh.rms[b]);
        }
    out.globalLevel = medianOf(std::move(gl));
    out.globalRms = medianOf(std::move(gr));
    out.meshLevel = meshImage(mesh.level, mesh.nx, mesh.ny);
    out.meshRms = meshImage(mesh.rms, mesh.nx, mesh.ny);
    render(MeshSpline(cx, cy, mesh.level), h, false, out.level);
    render(MeshSpline(cx, cy, mesh.rms), h, true, out.rms);
}

BackgroundMap estimateBackground(const Image<float>& image, const Image<std::uint16_t>& mask,
                                 const BackgroundConfig& config) {
    BackgroundMap out;
    estimateBackground(image, mask, config, out);
    return out;
}

}  // namespace astrid::background
