// Footprints on S_corr: one pass of run-length labelling (8-connected, positive and negative at
// once), then a watershed per footprint that keeps the peaks that stand out from their saddles.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "detail.hpp"

namespace astrid::detect::detail {
namespace {
using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

/// A horizontal run of same-sign pixels above the footprint threshold: [x0, x1) on row y.
struct Run {
    int y = 0, x0 = 0, x1 = 0;
    int sign = 1;
    float peak = 0;  ///< largest sign x S_corr in the run
};

int findRoot(std::vector<int>& parent, int i) {
    while (parent[static_cast<std::size_t>(i)] != i) {
        int& p = parent[static_cast<std::size_t>(i)];
        p = parent[static_cast<std::size_t>(p)];  // path halving
        i = p;
    }
    return i;
}

void unite(std::vector<int>& parent, int a, int b) {
    a = findRoot(parent, a);
    b = findRoot(parent, b);
    if (a == b) return;
    if (a < b) std::swap(a, b);
    parent[static_cast<std::size_t>(a)] = b;  // the older run is the root: deterministic labels
}

/// The watershed of one footprint. `pixels` hold (x, y, sign x S_corr); returns its significant peaks,
/// highest first.
struct FpPixel {
    int x, y;
    float v;
};

std::vector<Peak> deblend(const std::vector<FpPixel>& px, const DetectConfig& cfg) {
    const int n = static_cast<int>(px.size());
    int bx0 = std::numeric_limits<int>::max(), by0 = bx0, bx1 = std::numeric_limits<int>::min(), by1 = bx1;
    for (const auto& p : px) {
        bx0 = std::min(bx0, p.x), bx1 = std::max(bx1, p.x);
        by0 = std::min(by0, p.y), by1 = std::max(by1, p.y);
    }
    const int bw = bx1 - bx0 + 1, bh = by1 - by0 + 1;
    // Local grid of pixel indices, with a one-pixel frame of -1 so neighbours need no bounds test.
    const int gw = bw + 2;
    std::vector<int> grid(static_cast<std::size_t>(gw) * static_cast<std::size_t>(bh + 2), -1);
    auto cell = [&](int x, int y) { return static_cast<std::size_t>(y - by0 + 1) * static_cast<std::size_t>(gw) + static_cast<std::size_t>(x - bx0 + 1); };
    for (int i = 0; i < n; ++i) grid[cell(px[static_cast<std::size_t>(i)].x, px[static_cast<std::size_t>(i)].y)] = i;

    std::vector<int> order(static_cast<std::size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(), [&](int a, int b) {
        const float va = px[static_cast<std::size_t>(a)].v, vb = px[static_cast<std::size_t>(b)].v;
        return va > vb || (va == vb && a < b);
    });
    std::vector<int> rank(static_cast<std::size_t>(n));
    for (int r = 0; r < n; ++r) rank[static_cast<std::size_t>(order[static_cast<std::size_t>(r)])] = r;

    const float top = px[static_cast<std::size_t>(order[0])].v;
    const float minProminence = static_cast<float>(std::max(cfg.deblendMinProminenceSigma, cfg.deblendContrast * top));
    const float threshold = static_cast<float>(cfg.thresholdSigma);
    // Union-find over pixels; a root carries its region's peak (as a pixel index).
    std::vector<int> parent(static_cast<std::size_t>(n), -1), peakOf(static_cast<std::size_t>(n), -1);
    std::vector<Peak> peaks;
    const std::ptrdiff_t offsets[8] = {-gw - 1, -gw, -gw + 1, -1, 1, gw - 1, gw, gw + 1};
    for (int r = 0; r < n; ++r) {
        const int p = order[static_cast<std::size_t>(r)];
        const std::size_t c = cell(px[static_cast<std::size_t>(p)].x, px[static_cast<std::size_t>(p)].y);
        int roots[8];
        int nr = 0;
        for (std::ptrdiff_t off : offsets) {
            const int q = grid[static_cast<std::size_t>(static_cast<std::ptrdiff_t>(c) + off)];
            if (q < 0 || parent[static_cast<std::size_t>(q)] < 0) continue;  // outside or not flooded yet
            const int root = findRoot(parent, q);
            if (std::find(roots, roots + nr, root) == roots + nr) roots[nr++] = root;
        }
        if (nr == 0) {  // a new local maximum
            parent[static_cast<std::size_t>(p)] = p;
            peakOf[static_cast<std::size_t>(p)] = p;
            continue;
        }
        // The region with the highest peak absorbs the others at this saddle level.
        int a = roots[0];
        for (int k = 1; k < nr; ++k)
            if (rank[static_cast<std::size_t>(peakOf[static_cast<std::size_t>(roots[k])])] <
                rank[static_cast<std::size_t>(peakOf[static_cast<std::size_t>(a)])])
                a = roots[k];
        const float saddle = px[static_cast<std::size_t>(p)].v;
        for (int k = 0; k < nr; ++k) {
            const int b = roots[k];
            if (b == a) continue;
            const FpPixel& pb = px[static_cast<std::size_t>(peakOf[static_cast<std::size_t>(b)])];
            if (pb.v >= threshold && pb.v - saddle >= minProminence) peaks.push_back(Peak{pb.x, pb.y, pb.v});
            parent[static_cast<std::size_t>(b)] = a;
        }
        parent[static_cast<std::size_t>(p)] = a;
    }
    const FpPixel& pm = px[static_cast<std::size_t>(order[0])];
    peaks.push_back(Peak{pm.x, pm.y, pm.v});
    std::sort(peaks.begin(), peaks.end(), [](const Peak& a, const Peak& b) {
        return a.value > b.value || (a.value == b.value && (a.y < b.y || (a.y == b.y && a.x < b.x)));
    });
    return peaks;
}
}  // namespace

std::vector<Footprint> findFootprints(const Image<float>& scorr, const Image<std::uint16_t>& mask,
                                      const DetectConfig& cfg, DetectionResult& result) {
    const auto t0 = Clock::now();
    const int W = scorr.width(), H = scorr.height();
    const float low = static_cast<float>(cfg.footprintSigma);
    const std::uint16_t bad = cfg.badMaskBits;
    std::vector<Run> runs;
    std::vector<int> parent;
    // Per-row flags (1 positive, 2 negative), padded so the scan can test 8 at a time.
    std::vector<std::uint8_t> flags(static_cast<std::size_t>(W) + 8, 0);
    std::size_t prevBegin = 0, prevEnd = 0;
    for (int y = 0; y < H; ++y) {
        const float* s = &scorr(0, y);
        std::uint8_t* f = flags.data();
        // Branch-free (vectorised); NaN fails both comparisons.
        if (mask.empty()) {
            for (int x = 0; x < W; ++x)
                f[x] = static_cast<std::uint8_t>((s[x] >= low) | ((s[x] <= -low) << 1));
        } else {
            const std::uint16_t* m = &mask(0, y);
            for (int x = 0; x < W; ++x)
                f[x] = static_cast<std::uint8_t>(((s[x] >= low) | ((s[x] <= -low) << 1)) * ((m[x] & bad) == 0));
        }
        const std::size_t curBegin = runs.size();
        int x = 0;
        while (x < W) {
            std::uint64_t word;
            std::memcpy(&word, f + x, sizeof word);  // the padding keeps this inside the buffer
            if (word == 0) {
                x += 8;
                continue;
            }
            if (f[x] == 0) {
                ++x;
                continue;
            }
            const std::uint8_t v = f[x];
            const float sign = v == 1 ? 1.0f : -1.0f;
            Run run{y, x, x, v == 1 ? 1 : -1, -std::numeric_limits<float>::infinity()};
            for (; x < W && f[x] == v; ++x) run.peak = std::max(run.peak, sign * s[x]);
            run.x1 = x;
            parent.push_back(static_cast<int>(runs.size()));
            runs.push_back(run);
        }
        // 8-connectivity with the previous row's runs of the same sign: the runs overlap when
        // widened by one pixel. Both rows are sorted by x0.
        const std::size_t curEnd = runs.size();
        std::size_t j = prevBegin;
        for (std::size_t c = curBegin; c < curEnd; ++c) {
            while (j < prevEnd && runs[j].x1 < runs[c].x0) ++j;
            for (std::size_t k = j; k < prevEnd && runs[k].x0 <= runs[c].x1; ++k)
                if (runs[k].sign == runs[c].sign) unite(parent, static_cast<int>(k), static_cast<int>(c));
        }
        prevBegin = curBegin;
        prevEnd = curEnd;
    }

    // Footprints whose extremum reaches the detection threshold; their runs grouped by root.
    const std::size_t nRuns = runs.size();
    std::vector<float> rootPeak(nRuns, -std::numeric_limits<float>::infinity());
    std::vector<int> root(nRuns);
    for (std::size_t i = 0; i < nRuns; ++i) {
        root[i] = findRoot(parent, static_cast<int>(i));
        float& rp = rootPeak[static_cast<std::size_t>(root[i])];
        rp = std::max(rp, runs[i].peak);
    }
    const float threshold = static_cast<float>(cfg.thresholdSigma);
    std::vector<int> slot(nRuns, -1);
    int nKept = 0;
    for (std::size_t i = 0; i < nRuns; ++i)
        if (root[i] == static_cast<int>(i) && rootPeak[i] >= threshold) slot[i] = nKept++;
    std::vector<int> start(static_cast<std::size_t>(nKept) + 1, 0);
    for (std::size_t i = 0; i < nRuns; ++i) {
        const int s = slot[static_cast<std::size_t>(root[i])];
        if (s >= 0) ++start[static_cast<std::size_t>(s) + 1];
    }
    std::partial_sum(start.begin(), start.end(), start.begin());
    std::vector<int> members(static_cast<std::size_t>(start.back()));
    {
        std::vector<int> fill(start.begin(), start.end() - 1);
        for (std::size_t i = 0; i < nRuns; ++i) {
            const int s = slot[static_cast<std::size_t>(root[i])];
            if (s >= 0) members[static_cast<std::size_t>(fill[static_cast<std::size_t>(s)]++)] = static_cast<int>(i);
        }
    }
    result.thresholdS += since(t0);

    const auto t1 = Clock::now();
    std::vector<Footprint> out;
    out.reserve(static_cast<std::size_t>(nKept));
    std::vector<FpPixel> pixels;
    for (int s = 0; s < nKept; ++s) {
        pixels.clear();
        int sign = 1;
        for (int m = start[static_cast<std::size_t>(s)]; m < start[static_cast<std::size_t>(s) + 1]; ++m) {
            const Run& r = runs[static_cast<std::size_t>(members[static_cast<std::size_t>(m)])];
            sign = r.sign;
            const float* row = &scorr(0, r.y);
            for (int x = r.x0; x < r.x1; ++x) pixels.push_back(FpPixel{x, r.y, static_cast<float>(sign) * row[x]});
        }
        if (static_cast<int>(pixels.size()) < cfg.minPixels) {
            ++result.footprintsTooSmall;
            continue;
        }
        Footprint fp;
        fp.sign = sign;
        fp.pixels.reserve(pixels.size());
        for (const auto& p : pixels) fp.pixels.push_back(Pixel{p.x, p.y});
        fp.peaks = deblend(pixels, cfg);
        if (fp.peaks.size() > 1) ++result.blendedFootprints;
        out.push_back(std::move(fp));
    }
    result.footprints = static_cast<int>(out.size());
    result.deblendS += since(t1);
    return out;
}

}  // namespace astrid::detect::detail
