// buildMask: NoData, Saturated (grown) and Bad-column bits.
#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "astrid/background/background.hpp"
#include "astrid/core/error.hpp"
#include "detail.hpp"

namespace astrid::background {
namespace {

using detail::finite;
using detail::forEach8;

void validate(const MaskConfig& c) {
    if (c.saturationGrowPx < 0 || c.saturationGrowPx > 64)
        throw ConfigError("saturationGrowPx must be in [0, 64], got " + std::to_string(c.saturationGrowPx),
                          "saturationGrowPx");
    if (c.badColumnSegmentPx < 16)
        throw ConfigError("badColumnSegmentPx must be >= 16, got " + std::to_string(c.badColumnSegmentPx),
                          "badColumnSegmentPx");
    if (!(c.badColumnFraction > 0.5 && c.badColumnFraction <= 1.0))
        throw ConfigError("badColumnFraction must be in (0.5, 1], got " + std::to_string(c.badColumnFraction),
                          "badColumnFraction");
}

// Grows saturation by a disk of radius r around the given pixels. Only pixels on the boundary of a
// saturated region need stamping: an interior pixel's disk is covered by its boundary's disks.
void growSaturation(const Image<float>& image, Image<std::uint16_t>& mask, const std::vector<std::size_t>& sat,
                    float level, int r) {
    const int w = image.width(), h = image.height();
    std::vector<std::array<int, 2>> disk;
    for (int dy = -r; dy <= r; ++dy)
        for (int dx = -r; dx <= r; ++dx)
            if (dx * dx + dy * dy <= r * r + r / 2) disk.push_back({dx, dy});  // r/2: rounder small disks
    const auto saturated = [&](int x, int y) {
        return x < 0 || y < 0 || x >= w || y >= h || image(x, y) >= level;  // outside counts as saturated
    };
    const std::uint16_t bit = bits(MaskBit::Saturated);
    const auto W = static_cast<std::size_t>(w);
    for (std::size_t i : sat) {
        const int x = static_cast<int>(i % W), y = static_cast<int>(i / W);
        if (saturated(x - 1, y) && saturated(x + 1, y) && saturated(x, y - 1) && saturated(x, y + 1)) continue;
        for (const auto& d : disk) {
            const int xx = x + d[0], yy = y + d[1];
            if (xx >= 0 && yy >= 0 && xx < w && yy < h) mask(xx, yy) |= bit;
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Bad columns. Per row, column x is compared with four neighbours at distances 2 and 3 (not 1, so
// that a pair of adjacent bad columns is found too); the indicator is "strict maximum" (hot) or
// "strict minimum" (dead). For noise that is independent between pixels each has probability 1/5.

struct Neighbours {
    int a, b, c, d;  // column offsets
};

Neighbours neighboursOf(int x, int w) noexcept {
    if (x < 3) return {2, 3, 4, 5};
    if (x > w - 4) return {-5, -4, -3, -2};
    return {-3, -2, 2, 3};
}

enum class Sign { Hot, Dead };

bool extreme(const float* row, int x, int w, Sign s) noexcept {
    const Neighbours n = neighboursOf(x, w);
    const float v = row[x], a = row[x + n.a], b = row[x + n.b], c = row[x + n.c], d = row[x + n.d];
    if (s == Sign::Hot) return v > a && v > b && v > c && v > d;
    return v < a && v < b && v < c && v < d;
}

// The ends of a bad run are change points of the per-row indicator, located by likelihood: a row of a
// good column shows the indicator with probability 1/5, a row of the bad run with probability q (its
// rate inside the run). A missing indicator is strong evidence of a good row when q is near 1, a
// present one only weak evidence of a bad row, so the two are weighed by their log-likelihood ratios
// (with plain +-1 costs, a chance cluster of indicators next to a partial column's end would extend
// it by several rows).
struct RowWeights {
    double present, absent;  // log-likelihood ratio bad : good of one row
};

RowWeights rowWeights(double q) {
    q = std::clamp(q, 0.5, 0.99);
    return {std::log(q / 0.2), std::log((1.0 - q) / 0.8)};
}

std::vector<double> rowEvidence(const Image<float>& image, int x, Sign s, int lo, int hi, RowWeights wts) {
    const auto w = static_cast<std::size_t>(image.width());
    std::vector<double> llr(static_cast<std::size_t>(hi - lo));
    for (int y = lo; y < hi; ++y)
        llr[static_cast<std::size_t>(y - lo)] =
            extreme(image.data() + static_cast<std::size_t>(y) * w, x, image.width(), s) ? wts.present : wts.absent;
    return llr;
}

// First row of the run: the b in [lo, hi] that maximises the evidence of "bad from b on" over
// [lo, hi). Ties go to the lowest b (a pixel too many masked is cheaper than a bad one left).
int runStart(const Image<float>& image, int x, Sign s, int lo, int hi, RowWeights wts) {
    const std::vector<double> llr = rowEvidence(image, x, s, lo, hi, wts);
    int best = hi;
    double sum = 0.0, bestSum = 0.0;
    for (int b = hi - 1; b >= lo; --b) {
        sum += llr[static_cast<std::size_t>(b - lo)];
        if (sum >= bestSum) bestSum = sum, best = b;
    }
    return best;
}

// One past the last row of the run: the e in [lo, hi] that maximises the evidence of "bad before e"
// over [lo, hi); ties go to the highest e.
int runEnd(const Image<float>& image, int x, Sign s, int lo, int hi, RowWeights wts) {
    const std::vector<double> llr = rowEvidence(image, x, s, lo, hi, wts);
    int best = lo;
    double sum = 0.0, bestSum = 0.0;
    for (int e = lo + 1; e <= hi; ++e) {
        sum += llr[static_cast<std::size_t>(e - 1 - lo)];
        if (sum >= bestSum) bestSum = sum, best = e;
    }
    return best;
}

void flagBadColumns(const Image<float>& image, Image<std::uint16_t>& mask, const MaskConfig& config) {
    const int w = image.width(), h = image.height(), seg = config.badColumnSegmentPx;
    if (w < 7 || h < seg) return;
    const int nSeg = h / seg;  // the last segment takes the remainder rows
    const auto segStart = [&](int s) { return s * seg; };
    const auto segEnd = [&](int s) { return s == nSeg - 1 ? h : (s + 1) * seg; };
    const auto W = static_cast<std::size_t>(w);
    std::vector<std::uint16_t> hot(static_cast<std::size_t>(nSeg) * W, 0), dead(hot.size(), 0);
    std::vector<int> samples(static_cast<std::size_t>(nSeg), 0);

    for (int s = 0; s < nSeg; ++s) {
        std::uint16_t* hs = hot.data() + static_cast<std::size_t>(s) * W;
        std::uint16_t* ds = dead.data() + static_cast<std::size_t>(s) * W;
        for (int y = segStart(s); y < segEnd(s); y += 2) {
            ++samples[static_cast<std::size_t>(s)];
            const float* r = image.data() + static_cast<std::size_t>(y) * W;
            for (int x = 0; x < 3; ++x) {
                hs[x] = static_cast<std::uint16_t>(hs[x] + extreme(r, x, w, Sign::Hot));
                ds[x] = static_cast<std::uint16_t>(ds[x] + extreme(r, x, w, Sign::Dead));
            }
            // The hot loop, over x = i + 3 for x in 3 .. w - 4: branch-free and vectorisable.
            if (w > 6) {
                std::uint16_t* hc = hs + 3;
                std::uint16_t* dc = ds + 3;
                forEach8(static_cast<std::size_t>(w - 6), [&](std::size_t i) {
                    const float v = r[i + 3];
                    const float mx = detail::maxf(detail::maxf(r[i], r[i + 1]), detail::maxf(r[i + 5], r[i + 6]));
                    const float mn = detail::minf(detail::minf(r[i], r[i + 1]), detail::minf(r[i + 5], r[i + 6]));
                    hc[i] = static_cast<std::uint16_t>(hc[i] + (v > mx ? 1 : 0));
                    dc[i] = static_cast<std::uint16_t>(dc[i] + (v < mn ? 1 : 0));
                });
            }
            for (int x = std::max(3, w - 3); x < w; ++x) {
                hs[x] = static_cast<std::uint16_t>(hs[x] + extreme(r, x, w, Sign::Hot));
                ds[x] = static_cast<std::uint16_t>(ds[x] + extreme(r, x, w, Sign::Dead));
            }
        }
    }

    const std::uint16_t bit = bits(MaskBit::Bad);
    std::vector<int> flagged(static_cast<std::size_t>(nSeg));
    for (int x = 0; x < w; ++x) {
        // 0 = good, 1 = hot, 2 = dead, per segment.
        bool any = false;
        for (int s = 0; s < nSeg; ++s) {
            const auto si = static_cast<std::size_t>(s);
            const double need = config.badColumnFraction * samples[si];
            const std::size_t k = si * W + static_cast<std::size_t>(x);
            flagged[si] = hot[k] >= need ? 1 : (dead[k] >= need ? 2 : 0);
            any = any || flagged[si] != 0;
        }
        if (!any) continue;
        for (int s = 0; s < nSeg;) {
            const int kind = flagged[static_cast<std::size_t>(s)];
            if (kind == 0) {
                ++s;
                continue;
            }
            int e = s;
            while (e < nSeg && flagged[static_cast<std::size_t>(e)] == kind) ++e;
            const Sign sign = kind == 1 ? Sign::Hot : Sign::Dead;
            const std::vector<std::uint16_t>& counts = sign == Sign::Hot ? hot : dead;
            double present = 0.0, sampled = 0.0;
            for (int k = s; k < e; ++k) {
                present += counts[static_cast<std::size_t>(k) * W + static_cast<std::size_t>(x)];
                sampled += samples[static_cast<std::size_t>(k)];
            }
            const RowWeights wts = rowWeights(present / sampled);
            int y0 = segStart(s), y1 = segEnd(e - 1);
            // The run's ends lie somewhere in the neighbouring (unflagged) segments or in its own first
            // and last segment: locate them row by row.
            if (y0 > 0) y0 = runStart(image, x, sign, std::max(0, y0 - seg), std::min(y1, y0 + seg), wts);
            if (y1 < h) y1 = runEnd(image, x, sign, std::max(y0, y1 - seg), std::min(h, y1 + seg), wts);
            for (int y = y0; y < y1; ++y) mask(x, y) |= bit;
            s = e;
        }
    }
}

// NoData / Saturated bits of one row as int32 (same width as float, so the loop vectorises; see
// detail::forEach8). Returns whether any pixel is saturated.
[[gnu::noinline]]
bool pixelFlags(const float* __restrict px, std::int32_t* __restrict flags, std::size_t n, float sat) {
    const std::int32_t noData = bits(MaskBit::NoData), satBit = bits(MaskBit::Saturated);
    std::int32_t any = 0;
    forEach8(n, [&](std::size_t x) {
        const float v = px[x];
        const std::int32_t fin = finite(v) ? 1 : 0;
        const std::int32_t s = fin & (v >= sat ? 1 : 0);
        flags[x] = s * satBit + (1 - fin) * noData;
        any |= s;
    });
    return any != 0;
}

[[gnu::noinline]]
void mergeFlags(const std::int32_t* __restrict flags, const std::uint16_t* __restrict existing,
                std::uint16_t* __restrict out, std::size_t n) {
    if (existing)
        forEach8(n, [&](std::size_t x) { out[x] = static_cast<std::uint16_t>(existing[x] | flags[x]); });
    else
        forEach8(n, [&](std::size_t x) { out[x] = static_cast<std::uint16_t>(flags[x]); });
}

// The same when `existing` is `out` (restrict would be a lie there).
[[gnu::noinline]]
void mergeFlagsInPlace(const std::int32_t* __restrict flags, std::uint16_t* __restrict out, std::size_t n) {
    forEach8(n, [&](std::size_t x) { out[x] = static_cast<std::uint16_t>(out[x] | flags[x]); });
}

}  // namespace

void buildMask(const Image<float>& image, const MaskConfig& config, const Image<std::uint16_t>* existing,
               Image<std::uint16_t>& out) {
    validate(config);
    const int w = image.width(), h = image.height();
    const bool useExisting = existing != nullptr && !existing->empty();
    if (useExisting && (existing->width() != w || existing->height() != h))
        throw DataError("buildMask: mask plane is " + std::to_string(existing->width()) + "x" +
                        std::to_string(existing->height()) + " but the image is " + std::to_string(w) + "x" +
                        std::to_string(h));
    if (out.width() != w || out.height() != h) out = Image<std::uint16_t>(w, h, Uninitialized{});

    const bool checkSat = std::isfinite(config.saturationAdu) && config.saturationAdu > 0.0;
    // Compared in float, as stored: a pixel clipped at exactly SATURATE must count.
    const float sat = checkSat ? static_cast<float>(config.saturationAdu) : std::numeric_limits<float>::infinity();
    const auto W = static_cast<std::size_t>(w);
    std::vector<std::int32_t> flags(W);
    std::vector<std::size_t> saturated;
    for (int y = 0; y < h; ++y) {
        const std::size_t row = static_cast<std::size_t>(y) * W;
        const bool anySat = pixelFlags(image.data() + row, flags.data(), W, sat);
        if (useExisting && existing->data() == out.data())
            mergeFlagsInPlace(flags.data(), out.data() + row, W);
        else
            mergeFlags(flags.data(), useExisting ? existing->data() + row : nullptr, out.data() + row, W);
        if (anySat && config.saturationGrowPx > 0)
            for (std::size_t x = 0; x < W; ++x)
                if (flags[x] == bits(MaskBit::Saturated)) saturated.push_back(row + x);
    }
    if (!saturated.empty()) growSaturation(image, out, saturated, sat, config.saturationGrowPx);
    if (config.badColumns == ColumnCheck::Detect) flagBadColumns(image, out, config);
}

Image<std::uint16_t> buildMask(const Image<float>& image, const MaskConfig& config,
                               const Image<std::uint16_t>* existing) {
    Image<std::uint16_t> out;
    buildMask(image, config, existing, out);
    return out;
}

}  // namespace astrid::background
