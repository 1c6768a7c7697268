// PSF model construction. Why the model is "Moffat + tapered residual tables" (psf_model.hpp) rather
// than a bare pixel stack: the stack's wings are noise. With a few dozen to a few hundred S/N >= 50
// stars the summed |noise| over a 4-FWHM stamp is several percent of the flux (measured: a 4-FWHM
// table with 33 stars doubled sum|stamp - truth| from 2% to 3.2%), while the true wings beyond 3 FWHM
// hold only 2-6%. A Moffat fitted to the whole stack (weights = the stack's inverse variance)
// describes those wings with a handful of parameters, and the tables fit the core, plus whatever
// further out the stars show the Moffat cannot follow (a halo: sum|stamp - truth| 1.1% against 7% for
// the Moffat alone in the core+halo test). This is DAOPHOT's analytic + look-up-table PSF; the
// per-pixel polynomial variation and the accuracy floor in the weights are PSFEx's.
#include "astrid/psf/psf_model.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numbers>
#include <string>

#include <Eigen/Dense>

#include "astrid/core/error.hpp"
#include "astrid/core/stats.hpp"
#include "detail.hpp"

namespace astrid::psf {
namespace {
constexpr double kPi = std::numbers::pi;

void require(bool ok, const char* key, const std::string& what) {
    if (!ok) throw ConfigError("psf: " + std::string(key) + " " + what, key);
}

void validate(const PsfConfig& c) {
    require(c.minSnr >= 0.0, "min_snr", "must be >= 0");
    require(c.fwhmClipSigma > 0.0, "fwhm_clip_sigma", "must be > 0");
    require(c.fwhmClipMinFraction >= 0.0, "fwhm_clip_min_fraction", "must be >= 0");
    require(c.maxEllipticityExcess > 0.0, "max_ellipticity_excess", "must be > 0");
    require(c.halfSizePx >= 0 && c.halfSizePx <= 200, "half_size_px", "must be in [0, 200] (0: automatic)");
    require(c.halfSizeFwhm >= 1.0 && c.halfSizeFwhm <= 20.0, "half_size_fwhm", "must be in [1, 20]");
    require(c.maxStars >= 1, "max_stars", "must be >= 1");
    require(c.maxSpatialOrder >= 0 && c.maxSpatialOrder <= 2, "max_spatial_order", "must be 0, 1 or 2");
    require(c.minStarsEmpirical >= 1, "min_stars_empirical", "must be >= 1");
    require(c.minStarsLinear >= 3, "min_stars_linear", "must be >= 3");
    require(c.minStarsQuadratic >= 6, "min_stars_quadratic", "must be >= 6");
    require(std::isfinite(c.spatialSignificance), "spatial_significance", "must be finite");
    require(c.residualRadiusFwhm > 0.5, "residual_radius_fwhm", "must be > 0.5");
    require(c.clipSigma > 0.0, "clip_sigma", "must be > 0");
    require(c.clipIterations >= 0 && c.clipIterations <= 20, "clip_iterations", "must be in [0, 20]");
    require(c.accuracy >= 0.0 && c.accuracy < 1.0, "accuracy", "must be in [0, 1)");
    require(c.maxClippedFraction > 0.0 && c.maxClippedFraction <= 1.0, "max_clipped_fraction", "must be in (0, 1]");
    require(c.neighbourMaskFwhm >= 0.0, "neighbour_mask_fwhm", "must be >= 0");
    require(c.fallbackMinSnr >= 0.0, "fallback_min_snr", "must be >= 0");
    require(c.minStarsMoffat >= 1, "min_stars_moffat", "must be >= 1");
}

// Polynomial terms in scaled coordinates: 1, u, v, u^2, uv, v^2.
int termsForOrder(int order) { return order <= 0 ? 1 : (order == 1 ? 3 : 6); }
void basis(double u, double v, int terms, double* b) {
    const double all[6] = {1.0, u, v, u * u, u * v, v * v};
    for (int k = 0; k < terms; ++k) b[k] = all[k];
}

// One PSF star: its recentred, flux-normalised stamp.
struct StarStamp {
    std::size_t index = 0;
    double x = 0, y = 0, u = 0, v = 0;
    double fx = 0, fy = 0;           // centroid minus nearest pixel centre
    double flux = 0;                 // current normalisation (total flux)
    std::vector<double> val;         // data / flux
    std::vector<double> var;         // variance / flux^2; < 0 marks an unusable pixel
    std::vector<unsigned char> use;  // 1: pixel in the fit (valid and not clipped)
    bool active = true;
};

struct Selection {
    std::vector<std::size_t> strict, relaxed;  // indices into stars, best S/N first
    double fwhm = 0.0;                         // median Gaussian-equivalent FWHM of the chosen list
    int halfSize = 0;
};

bool usablePixel(const Image<float>& image, const Image<float>& variance, const Image<std::uint16_t>& mask,
                 std::uint16_t badBits, int x, int y) {
    const float v = image(x, y), s2 = variance(x, y);
    if (!std::isfinite(v) || !(s2 >= 0.0f && s2 < std::numeric_limits<float>::infinity())) return false;
    return mask.empty() || (mask(x, y) & badBits) == 0;
}

// Filters candidates: flags and S/N, then FWHM and ellipticity near the median.
std::vector<std::size_t> filterStars(const std::vector<Star>& stars, const PsfConfig& c, std::uint32_t reject,
                                     double minSnr, double& medianFwhm) {
    std::vector<std::size_t> idx;
    for (std::size_t i = 0; i < stars.size(); ++i) {
        const Star& s = stars[i];
        if ((s.flags & reject) == 0 && s.snr >= minSnr && std::isfinite(s.fwhmPx) && s.fwhmPx > 0.0 &&
            std::isfinite(s.x) && std::isfinite(s.y) && s.flux > 0.0)
            idx.push_back(i);
    }
    medianFwhm = std::numeric_limits<double>::quiet_NaN();
    if (idx.empty()) return idx;
    std::vector<double> f, e;
    for (std::size_t i : idx) {
        f.push_back(stars[i].fwhmPx);
        e.push_back(stars[i].ellipticity);
    }
    medianFwhm = median(f);
    if (idx.size() < 3) return idx;
    std::vector<double> dev;
    for (double v : f) dev.push_back(std::abs(v - medianFwhm));
    const double band = std::max(c.fwhmClipSigma * 1.4826 * median(dev), c.fwhmClipMinFraction * medianFwhm);
    const double eMax = median(e) + c.maxEllipticityExcess;
    std::vector<std::size_t> kept;
    for (std::size_t i : idx)
        if (std::abs(stars[i].fwhmPx - medianFwhm) <= band && !(stars[i].ellipticity > eMax)) kept.push_back(i);
    return kept;
}

Selection selectStars(const std::vector<Star>& stars, const PsfConfig& c, int width, int height) {
    Selection sel;
    double fStrict = 0, fRelaxed = 0;
    sel.strict = filterStars(stars, c, c.rejectFlags, c.minSnr, fStrict);
    const std::uint32_t relaxedReject = c.rejectFlags & ~(StarFlag::Blended | StarFlag::SkyResidual);
    sel.relaxed = filterStars(stars, c, relaxedReject, std::min(c.fallbackMinSnr, c.minSnr), fRelaxed);
    sel.fwhm = std::isfinite(fStrict) ? fStrict : fRelaxed;
    if (!std::isfinite(sel.fwhm)) return sel;
    sel.halfSize = c.halfSizePx > 0 ? c.halfSizePx
                                    : std::clamp(static_cast<int>(std::lround(c.halfSizeFwhm * sel.fwhm)), 6, 64);
    // The stamp plus the Lanczos footprint (3 px) must lie inside the image.
    const int margin = sel.halfSize + 4;
    auto inside = [&](std::size_t i) {
        const double x = stars[i].x, y = stars[i].y;
        return x >= margin && y >= margin && x <= width - 1 - margin && y <= height - 1 - margin;
    };
    auto finishList = [&](std::vector<std::size_t>& v) {
        std::erase_if(v, [&](std::size_t i) { return !inside(i); });
        std::stable_sort(v.begin(), v.end(), [&](std::size_t a, std::size_t b) { return stars[a].snr > stars[b].snr; });
        // Memory: every star keeps three stamp-sized planes; 2e7 pixels in all (~300 MB) is the ceiling.
        const std::size_t side = static_cast<std::size_t>(2 * sel.halfSize + 1);
        const std::size_t cap = std::min(static_cast<std::size_t>(c.maxStars), std::max<std::size_t>(20, 20000000 / (side * side)));
        if (v.size() > cap) v.resize(cap);
    };
    finishList(sel.strict);
    finishList(sel.relaxed);
    return sel;
}

// Lanczos-3 recentring. A star at fractional offset (fx, fy) from its nearest pixel centre (|f| <= 0.5)
// is resampled at (i + fx, j + fy): output pixel i takes input pixels i + ox - 2 ... i + ox + 3 with
// ox = floor(fx). The input is a square region of side n + 5 whose first column is at offset
// -h + ox - 2 from the star's nearest pixel. Stars and the synthetic Moffat stars of the blur
// correction go through this same code.
struct Recentring {
    std::array<double, 6> wx{}, wy{};
    int ox = 0, oy = 0;
};
Recentring recentringFor(double fx, double fy) {
    Recentring r;
    const double ox = std::floor(fx), oy = std::floor(fy);
    r.wx = detail::lanczos3Weights(fx - ox);
    r.wy = detail::lanczos3Weights(fy - oy);
    r.ox = static_cast<int>(ox);
    r.oy = static_cast<int>(oy);
    return r;
}

// out[j * n + i] (n = 2h + 1) from region[r * m + q] (m = n + 5); outBad (when given) is set where a
// bad input pixel lies under a non-negligible tap.
void recentre(const std::vector<double>& region, const std::vector<unsigned char>* bad, int h, const Recentring& rc,
              std::vector<double>& out, std::vector<unsigned char>* outBad) {
    const int n = 2 * h + 1, m = n + 5;
    constexpr double kTapMin = 1e-3;  // a tap this small cannot spoil a pixel
    std::vector<double> tmp(static_cast<std::size_t>(n * m));
    std::vector<unsigned char> tbad(bad ? static_cast<std::size_t>(n * m) : 0);
    for (int r = 0; r < m; ++r)
        for (int i = 0; i < n; ++i) {
            double acc = 0.0;
            unsigned char b = 0;
            for (int k = 0; k < 6; ++k) {
                const std::size_t src = static_cast<std::size_t>(r * m + i + k);
                acc += rc.wx[static_cast<std::size_t>(k)] * region[src];
                if (bad && (*bad)[src] && std::abs(rc.wx[static_cast<std::size_t>(k)]) > kTapMin) b = 1;
            }
            tmp[static_cast<std::size_t>(r * n + i)] = acc;
            if (bad) tbad[static_cast<std::size_t>(r * n + i)] = b;
        }
    out.assign(static_cast<std::size_t>(n * n), 0.0);
    if (outBad) outBad->assign(static_cast<std::size_t>(n * n), 0);
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i) {
            double acc = 0.0;
            unsigned char b = 0;
            for (int k = 0; k < 6; ++k) {
                const std::size_t src = static_cast<std::size_t>((j + k) * n + i);
                acc += rc.wy[static_cast<std::size_t>(k)] * tmp[src];
                if (bad && tbad[src] && std::abs(rc.wy[static_cast<std::size_t>(k)]) > kTapMin) b = 1;
            }
            out[static_cast<std::size_t>(j * n + i)] = acc;
            if (outBad) (*outBad)[static_cast<std::size_t>(j * n + i)] = b;
        }
}

// The light of the detected stars by a first model. One stamp of the first model per PSF star, at
// that star's position, serves all its neighbours: Lanczos-3-shifted to each one's sub-pixel
// position and scaled by its star-finder flux. Rendering the model at every neighbour instead cost
// ~1 s per 4k image (the Moffat's transcendentals); a bilinear shift, cheaper still, broadens the
// neighbours' profiles enough to matter (crowded test: 0.9956 against 0.9974).
struct NeighbourLight {
    const PsfModel* model = nullptr;
    const std::vector<Star>* stars = nullptr;

    // Subtracts every detected star but `self` within reach from `reg` (m x m pixels, first pixel at
    // image (x0, y0)), in units of `norm`.
    void subtract(std::vector<double>& reg, int x0, int y0, int m, std::size_t self, double norm,
                  const detail::GridIndex& grid) const {
        const int hm = model->halfSize();
        const Star& me = (*stars)[self];
        const Image<double> base = model->stampAt(me.x, me.y);
        const double cx = x0 + 0.5 * (m - 1), cy = y0 + 0.5 * (m - 1);
        grid.forEachWithin(cx, cy, std::sqrt(2.0) * (0.5 * m + hm) + 1.0, [&](std::size_t j) {
            const Star& o = (*stars)[j];
            if (j == self || !(o.flux > 0.0) || !std::isfinite(o.flux)) return;
            const int rx = static_cast<int>(std::lround(o.x)), ry = static_cast<int>(std::lround(o.y));
            const int qa = std::max(0, rx - hm - x0), qb = std::min(m - 1, rx + hm - x0);
            const int ra = std::max(0, ry - hm - y0), rb = std::min(m - 1, ry + hm - y0);
            if (qa > qb || ra > rb) return;
            const Image<double> k = detail::lanczosSample(base, rx - o.x, ry - o.y);
            const double f = o.flux / norm;
            for (int r = ra; r <= rb; ++r)
                for (int q = qa; q <= qb; ++q)
                    reg[static_cast<std::size_t>(r * m + q)] -= f * k(x0 + q - rx + hm, y0 + r - ry + hm);
        });
    }
};

// Resamples one star to put its centroid on the stamp centre, normalised by its flux, with pixels near
// other detections and pixels whose kernel footprint touches a bad pixel marked unusable; with
// `light`, the other stars' modelled light is subtracted first.
StarStamp extractStar(const Image<float>& image, const Image<float>& variance, const Image<std::uint16_t>& mask,
                      std::uint16_t badBits, const std::vector<Star>& stars, std::size_t index, int h,
                      const detail::GridIndex& grid, double neighbourRadius, const NeighbourLight* light) {
    const Star& s = stars[index];
    const int n = 2 * h + 1, m = n + 5;
    StarStamp st;
    st.index = index;
    st.x = s.x;
    st.y = s.y;
    st.flux = s.flux;
    const int ix = static_cast<int>(std::lround(s.x)), iy = static_cast<int>(std::lround(s.y));
    st.fx = s.x - ix;
    st.fy = s.y - iy;
    const Recentring rc = recentringFor(st.fx, st.fy);
    const int cx0 = ix - h + rc.ox - 2, cy0 = iy - h + rc.oy - 2;
    std::vector<double> reg(static_cast<std::size_t>(m * m));
    std::vector<unsigned char> bad(static_cast<std::size_t>(m * m));
    for (int r = 0; r < m; ++r)
        for (int q = 0; q < m; ++q) {
            const int x = cx0 + q, y = cy0 + r;
            const bool ok = usablePixel(image, variance, mask, badBits, x, y);
            reg[static_cast<std::size_t>(r * m + q)] = ok ? image(x, y) / s.flux : 0.0;
            bad[static_cast<std::size_t>(r * m + q)] = ok ? 0 : 1;
        }
    if (light) light->subtract(reg, cx0, cy0, m, index, s.flux, grid);
    std::vector<unsigned char> outBad;
    recentre(reg, &bad, h, rc, st.val, &outBad);
    const std::size_t np = static_cast<std::size_t>(n * n);
    st.var.assign(np, -1.0);
    const double f2 = s.flux * s.flux;
    for (int j = 0; j < n; ++j)
        for (int i = 0; i < n; ++i) {
            const std::size_t p = static_cast<std::size_t>(j * n + i);
            // The nearest input pixel's variance (|fx|, |fy| <= 0.5): interpolation correlates the noise
            // but hardly changes its level.
            const int px = ix - h + i, py = iy - h + j;
            if (!outBad[p] && usablePixel(image, variance, mask, badBits, px, py)) st.var[p] = variance(px, py) / f2;
        }
    // Other detections: their light is not this star's PSF.
    if (neighbourRadius > 0.0) {
        const double reach = h * std::sqrt(2.0) + 2.0 * neighbourRadius + 1.0;
        grid.forEachWithin(s.x, s.y, reach, [&](std::size_t j) {
            if (j == index || !(stars[j].flux > 0.0)) return;
            const double r = neighbourRadius * (stars[j].flux > s.flux ? 2.0 : 1.0);
            const double cx = stars[j].x - s.x + h, cy = stars[j].y - s.y + h;
            const int i0 = std::max(0, static_cast<int>(std::floor(cx - r))), i1 = std::min(n - 1, static_cast<int>(std::ceil(cx + r)));
            const int j0 = std::max(0, static_cast<int>(std::floor(cy - r))), j1 = std::min(n - 1, static_cast<int>(std::ceil(cy + r)));
            for (int jj = j0; jj <= j1; ++jj)
                for (int ii = i0; ii <= i1; ++ii)
                    if ((ii - cx) * (ii - cx) + (jj - cy) * (jj - cy) <= r * r)
                        st.var[static_cast<std::size_t>(jj * n + ii)] = -1.0;
        });
    }
    st.use.resize(np);
    for (std::size_t p = 0; p < np; ++p) st.use[p] = st.var[p] >= 0.0 ? 1 : 0;
    return st;
}

// Interpolation blur correction. Resampling a star at sub-pixel phase f is not exact: Lanczos-3
// slightly smooths a well-sampled core, by an amount that depends on f, so the stack of recentred
// stars is a little broader than the PSF (measured: ~3% of the flux moved in the core at FWHM 2.6).
// The same resampling applied to the fitted Moffat, rendered exactly at phase f, shows the error:
// delta(f) = M - recentre(M rendered at f). Adding delta(f_s) to star s removes the error to first
// order (exactly for a Moffat PSF). delta is tabulated on a grid of phases and interpolated.
class BlurCorrection {
public:
    static constexpr int kBins = 9;  // phases -0.5 ... 0.5 in steps of 1/8
    BlurCorrection(const detail::MoffatParams& centred, int h, double gridFwhm) {
        const int n = 2 * h + 1, m = n + 5, big = h + 3;
        const Image<double> ref = detail::renderMoffat(centred, h, gridFwhm);
        table_.resize(kBins * kBins);
        for (int b = 0; b < kBins; ++b)
            for (int a = 0; a < kBins; ++a) {
                const double fx = phase(a), fy = phase(b);
                detail::MoffatParams p = centred;
                p.x0 = fx;
                p.y0 = fy;
                const Image<double> star = detail::renderMoffat(p, big, gridFwhm);
                const Recentring rc = recentringFor(fx, fy);
                std::vector<double> region(static_cast<std::size_t>(m * m));
                for (int r = 0; r < m; ++r)
                    for (int q = 0; q < m; ++q)
                        region[static_cast<std::size_t>(r * m + q)] = star(q + rc.ox + 1, r + rc.oy + 1);
                std::vector<double> out;
                recentre(region, nullptr, h, rc, out, nullptr);
                std::vector<double>& d = table_[static_cast<std::size_t>(b * kBins + a)];
                d.resize(out.size());
                for (std::size_t i = 0; i < out.size(); ++i) d[i] = ref.data()[i] - out[i];
            }
    }
    // Adds delta(fx, fy) (bilinear between the tabulated phases) to `val`.
    void apply(double fx, double fy, std::vector<double>& val) const {
        const double ax = std::clamp((fx + 0.5) * (kBins - 1), 0.0, kBins - 1.0);
        const double ay = std::clamp((fy + 0.5) * (kBins - 1), 0.0, kBins - 1.0);
        const int a0 = std::min(static_cast<int>(ax), kBins - 2), b0 = std::min(static_cast<int>(ay), kBins - 2);
        const double tx = ax - a0, ty = ay - b0;
        const double w[4] = {(1 - tx) * (1 - ty), tx * (1 - ty), (1 - tx) * ty, tx * ty};
        const std::vector<double>* d[4] = {&table_[static_cast<std::size_t>(b0 * kBins + a0)],
                                           &table_[static_cast<std::size_t>(b0 * kBins + a0 + 1)],
                                           &table_[static_cast<std::size_t>((b0 + 1) * kBins + a0)],
                                           &table_[static_cast<std::size_t>((b0 + 1) * kBins + a0 + 1)]};
        for (std::size_t i = 0; i < val.size(); ++i)
            val[i] += w[0] * (*d[0])[i] + w[1] * (*d[1])[i] + w[2] * (*d[2])[i] + w[3] * (*d[3])[i];
    }

private:
    static double phase(int k) { return -0.5 + static_cast<double>(k) / (kBins - 1); }
    std::vector<std::vector<double>> table_;
};

double weightOf(double var, double model, double accuracy) {
    const double floor = accuracy * model;
    return 1.0 / std::max(var + floor * floor, 1e-30);
}

void checkShape(const MoffatShape& s) {
    if (!(std::isfinite(s.fwhmPx) && s.fwhmPx > 0.0 && s.fwhmPx < 1000.0) ||
        !(std::isfinite(s.beta) && s.beta > 1.1 && s.beta <= 30.0) ||
        !(s.ellipticity >= 0.0 && s.ellipticity <= 0.9) || !std::isfinite(s.positionAngleDeg))
        throw DataError("psf: invalid Moffat shape (fwhm " + std::to_string(s.fwhmPx) + " px, beta " +
                        std::to_string(s.beta) + ", ellipticity " + std::to_string(s.ellipticity) + ")");
}

MoffatShape shapeOf(const detail::MoffatParams& p) {
    MoffatShape s;
    detail::shapeFromMoffat(p, s.fwhmPx, s.ellipticity, s.positionAngleDeg);
    s.beta = p.beta;
    return s;
}

}  // namespace

std::string_view kindName(PsfModel::Kind kind) noexcept {
    switch (kind) {
    case PsfModel::Kind::Empirical: return "empirical";
    case PsfModel::Kind::EmpiricalVarying: return "empirical-varying";
    case PsfModel::Kind::Moffat: return "moffat";
    }
    return "unknown";
}

PsfModel PsfModel::analytic(const MoffatShape& shape, int halfSize, int imageWidth, int imageHeight) {
    checkShape(shape);
    if (halfSize < 1 || halfSize > 500) throw DataError("psf: analytic model half-size must be in [1, 500]");
    PsfModel m;
    m.kind_ = Kind::Moffat;
    m.halfSize_ = halfSize;
    m.width_ = std::max(imageWidth, 0);
    m.height_ = std::max(imageHeight, 0);
    const detail::MoffatParams p =
        detail::moffatFromShape(shape.fwhmPx, shape.beta, shape.ellipticity, shape.positionAngleDeg);
    m.amp_ = 1.0;
    m.c11_ = p.c11;
    m.c12_ = p.c12;
    m.c22_ = p.c22;
    m.beta_ = p.beta;
    m.gridFwhm_ = shape.fwhmPx;
    m.moffatStamp_ = detail::renderMoffat(p, halfSize, m.gridFwhm_);
    m.moffat_ = shape;
    m.fwhmPx_ = shape.fwhmPx;
    return m;
}

Image<double> PsfModel::residualAt(double x, double y) const {
    if (tables_.empty()) return {};
    const double cx = 0.5 * (width_ - 1), cy = 0.5 * (height_ - 1);
    const double xc = width_ > 0 ? std::clamp(x, 0.0, width_ - 1.0) : cx;
    const double yc = height_ > 0 ? std::clamp(y, 0.0, height_ - 1.0) : cy;
    const double u = cx > 0 ? (xc - cx) / cx : 0.0, v = cy > 0 ? (yc - cy) / cy : 0.0;
    double b[6];
    const int terms = static_cast<int>(tables_.size());
    basis(u, v, terms, b);
    Image<double> out = tables_[0];
    for (int k = 1; k < terms; ++k) {
        const double* t = tables_[static_cast<std::size_t>(k)].data();
        double* o = out.data();
        for (std::size_t p = 0; p < out.size(); ++p) o[p] += b[k] * t[p];
    }
    return out;
}

Image<double> PsfModel::finish(Image<double> stamp) const {
    double sum = 0.0;
    for (double& v : stamp.pixels()) {
        if (!(v > 0.0)) v = 0.0;
        sum += v;
    }
    if (sum > 0.0)
        for (double& v : stamp.pixels()) v /= sum;
    return stamp;
}

Image<double> PsfModel::stampAt(double x, double y) const {
    Image<double> s = moffatStamp_;
    if (!tables_.empty()) {
        const Image<double> r = residualAt(x, y);
        for (std::size_t p = 0; p < s.size(); ++p) s.data()[p] += r.data()[p];
    }
    return finish(std::move(s));
}

Image<double> PsfModel::stampAt(double x, double y, double dx, double dy) const {
    if (!std::isfinite(dx) || !std::isfinite(dy)) throw DataError("psf: stamp offset must be finite");
    detail::MoffatParams p{amp_, dx, dy, c11_, c12_, c22_, beta_};
    Image<double> s = detail::renderMoffat(p, halfSize_, gridFwhm_);
    if (!tables_.empty()) {
        const Image<double> r = detail::lanczosSample(residualAt(x, y), -dx, -dy);
        for (std::size_t q = 0; q < s.size(); ++q) s.data()[q] += r.data()[q];
    }
    return finish(std::move(s));
}

MoffatShape PsfModel::shapeAt(double x, double y) const {
    if (kind_ == Kind::Moffat) return moffat_;
    const Image<double> stamp = stampAt(x, y);
    const Image<double> weight(stamp.width(), stamp.height(), 1.0);
    detail::MoffatParams start{1.0, 0.0, 0.0, c11_, c12_, c22_, beta_};
    const detail::MoffatFit fit = detail::fitMoffat(stamp, weight, start, gridFwhm_);
    if (!fit.ok) return moffat_;
    return shapeOf(fit.params);
}

double PsfModel::fwhmAt(double x, double y) const {
    if (kind_ != Kind::EmpiricalVarying) return fwhmPx_;
    return shapeAt(x, y).fwhmPx;
}

double PsfModel::halfMaxFwhmPx() const { return halfMaxFwhm(stampAt(0.5 * (width_ - 1), 0.5 * (height_ - 1))); }

double halfMaxFwhm(const Image<double>& stamp) {
    const int nx = stamp.width(), ny = stamp.height();
    if (nx < 2 || ny < 2) return std::numeric_limits<double>::quiet_NaN();
    double peak = -std::numeric_limits<double>::infinity();
    for (double v : stamp.pixels()) peak = std::max(peak, v);
    if (!(peak > 0.0)) return std::numeric_limits<double>::quiet_NaN();
    const double half = 0.5 * peak;
    constexpr int kSub = 8;
    long count = 0;
    for (int j = 0; j + 1 < ny; ++j)
        for (int i = 0; i + 1 < nx; ++i) {
            const double a = stamp(i, j), b = stamp(i + 1, j), c = stamp(i, j + 1), d = stamp(i + 1, j + 1);
            if (std::max(std::max(a, b), std::max(c, d)) < half) continue;
            for (int sj = 0; sj < kSub; ++sj) {
                const double ty = (sj + 0.5) / kSub;
                for (int si = 0; si < kSub; ++si) {
                    const double tx = (si + 0.5) / kSub;
                    const double v = (1 - ty) * ((1 - tx) * a + tx * b) + ty * ((1 - tx) * c + tx * d);
                    if (v >= half) ++count;
                }
            }
        }
    const double area = static_cast<double>(count) / (kSub * kSub);
    return 2.0 * std::sqrt(area / kPi);
}

PsfModel buildPsf(const Image<float>& image, const Image<float>& variance, const Image<std::uint16_t>& mask,
                  const std::vector<Star>& stars, const PsfConfig& config) {
    validate(config);
    detail::requireSamePlanes("buildPsf", image, variance, mask);
    const int width = image.width(), height = image.height();
    const Selection sel = selectStars(stars, config, width, height);
    const bool empirical = static_cast<int>(sel.strict.size()) >= config.minStarsEmpirical;
    if (!empirical && static_cast<int>(sel.relaxed.size()) < config.minStarsMoffat)
        throw DataError("too few stars for a PSF: " + std::to_string(stars.size()) + " found, " +
                        std::to_string(sel.relaxed.size()) + " usable (need " +
                        std::to_string(config.minStarsMoffat) + " unsaturated, unmasked star(s) with S/N >= " +
                        std::to_string(static_cast<int>(std::min(config.fallbackMinSnr, config.minSnr))) +
                        " whose stamp fits in the image)");
    const std::vector<std::size_t>& chosen = empirical ? sel.strict : sel.relaxed;
    const int h = sel.halfSize, n = 2 * h + 1;
    const std::size_t np = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
    const double fwhmStars = sel.fwhm;

    // Stamps. With a first model, the light of every other detected star near a PSF star is
    // subtracted from its stamp (DAOPHOT's neighbour subtraction): beyond the neighbour masks their
    // wings would otherwise broaden the stack.
    std::vector<double> xs(stars.size()), ys(stars.size());
    for (std::size_t i = 0; i < stars.size(); ++i) {
        xs[i] = stars[i].x;
        ys[i] = stars[i].y;
    }
    const detail::GridIndex grid(xs, ys, std::max(8.0, 2.0 * h));
    const double cxImg = 0.5 * (width - 1), cyImg = 0.5 * (height - 1);
    auto extractAll = [&](const NeighbourLight* light) {
        std::vector<StarStamp> st;
        st.reserve(chosen.size());
        for (std::size_t i : chosen) {
            st.push_back(extractStar(image, variance, mask, config.badMaskBits, stars, i, h, grid,
                                     config.neighbourMaskFwhm * fwhmStars, light));
            st.back().u = cxImg > 0 ? (stars[i].x - cxImg) / cxImg : 0.0;
            st.back().v = cyImg > 0 ? (stars[i].y - cyImg) / cyImg : 0.0;
        }
        return st;
    };

    auto fitStamps = [&](std::vector<StarStamp> st) -> PsfModel {
        int order = 0;
        if (empirical) {
            const int count = static_cast<int>(st.size());
            if (config.maxSpatialOrder >= 2 && count >= config.minStarsQuadratic) order = 2;
            else if (config.maxSpatialOrder >= 1 && count >= config.minStarsLinear) order = 1;
        }
        int terms = empirical ? termsForOrder(order) : 0;

        // Pixel geometry.
        std::vector<double> radius(np);
        for (int j = 0; j < n; ++j)
            for (int i = 0; i < n; ++i) radius[static_cast<std::size_t>(j * n + i)] = std::hypot(i - h, j - h);

        // The Moffat is fitted to the weighted mean stack (first pass: inverse-variance weights only).
        const double gridFwhm = fwhmStars;
        auto stackMean = [&](const std::vector<double>* model, Image<double>& mean, Image<double>& wsum) {
            mean = Image<double>(n, n, 0.0);
            wsum = Image<double>(n, n, 0.0);
            for (const StarStamp& s : st) {
                if (!s.active) continue;
                for (std::size_t p = 0; p < np; ++p) {
                    if (!s.use[p]) continue;
                    const double w = weightOf(s.var[p], model ? (*model)[p] : 0.0, model ? config.accuracy : 0.0);
                    mean.data()[p] += w * s.val[p];
                    wsum.data()[p] += w;
                }
            }
            for (std::size_t p = 0; p < np; ++p)
                mean.data()[p] = wsum.data()[p] > 0.0 ? mean.data()[p] / wsum.data()[p] : 0.0;
        };
        Image<double> mean, wsum;
        stackMean(nullptr, mean, wsum);
        double stackSum = 0.0;
        for (double v : mean.pixels()) stackSum += v;
        detail::MoffatParams start = detail::moffatFromShape(fwhmStars, 3.0, 0.0, 0.0);
        start.amp = stackSum > 0.0 ? stackSum : 1.0;
        auto fitStack = [&](const detail::MoffatParams& from) {
            const detail::MoffatFit fit = detail::fitMoffat(mean, wsum, from, gridFwhm);
            if (!fit.ok)
                throw DataError("too few stars for a PSF: " + std::to_string(stars.size()) + " found, " +
                                std::to_string(st.size()) + " usable, and the Moffat fit to their stack failed");
            detail::MoffatParams p = fit.params;
            // The stack is centred by construction (every star was resampled onto its centroid): any fitted
            // offset is left to the residual tables so that the model stays centred on the centre pixel.
            p.x0 = 0.0;
            p.y0 = 0.0;
            return p;
        };
        detail::MoffatParams moffat = fitStack(start);
        {
            // Undo the resampling blur (see BlurCorrection), then refit the Moffat to the corrected stack.
            const BlurCorrection blur(moffat, h, gridFwhm);
            for (StarStamp& s : st) blur.apply(s.fx, s.fy, s.val);
            stackMean(nullptr, mean, wsum);
            moffat = fitStack(moffat);
        }
        double fwhmModel = shapeOf(moffat).fwhmPx;

        std::vector<Image<double>> tables;
        Image<double> moffatStamp = detail::renderMoffat(moffat, h, gridFwhm);
        std::vector<double> taper(np, 0.0);
        std::vector<std::size_t> core;  // pixels the tables are fitted on
        double residualRadius = 0.0;
        // The tables reach residualRadiusFwhm, and further out while the mean stack still differs
        // significantly from the Moffat: in 1-px rings, chi^2 of (stack - Moffat) against the stack's
        // variance must exceed its expectation by 3 sigma; two quiet rings in a row end the search. So a
        // halo the Moffat cannot follow is kept when the stars show it, and noise is not added where they
        // do not.
        auto setGeometry = [&]() {
            const double rMin = std::min(config.residualRadiusFwhm * fwhmModel, static_cast<double>(h));
            double rRes = rMin;
            if (terms > 0) {
                std::vector<double> chi2(static_cast<std::size_t>(2 * h + 2), 0.0), cnt(chi2.size(), 0.0);
                for (std::size_t p = 0; p < np; ++p) {
                    if (!(wsum.data()[p] > 0.0)) continue;
                    const std::size_t ring = static_cast<std::size_t>(std::lround(radius[p]));
                    const double d = mean.data()[p] - moffatStamp.data()[p];
                    chi2[ring] += d * d * wsum.data()[p];
                    cnt[ring] += 1.0;
                }
                int quiet = 0;
                for (int ring = static_cast<int>(std::ceil(rMin)); ring <= h && quiet < 2; ++ring) {
                    const double nr = cnt[static_cast<std::size_t>(ring)];
                    const bool loud = nr > 0 && chi2[static_cast<std::size_t>(ring)] - nr > 3.0 * std::sqrt(2.0 * nr);
                    if (loud) {
                        rRes = std::min(ring + 1.0, static_cast<double>(h));
                        quiet = 0;
                    } else {
                        ++quiet;
                    }
                }
            }
            residualRadius = rRes;
            const double width1 = std::min(fwhmModel, rRes);
            core.clear();
            for (std::size_t p = 0; p < np; ++p) {
                const double r = radius[p];
                taper[p] = r <= rRes - width1 ? 1.0 : (r >= rRes ? 0.0 : 0.5 * (1.0 + std::cos(kPi * (r - (rRes - width1)) / width1)));
                if (r < rRes) core.push_back(p);
            }
        };
        setGeometry();

        // The current model of star s on every pixel: Moffat + tapered tables at the star's position.
        auto evalModel = [&](const StarStamp& s, std::vector<double>& out) {
            out.assign(moffatStamp.data(), moffatStamp.data() + np);
            if (tables.empty()) return;
            double b[6];
            basis(s.u, s.v, terms, b);
            for (std::size_t p : core) {
                double t = 0.0;
                for (int k = 0; k < terms; ++k) t += b[k] * tables[static_cast<std::size_t>(k)].data()[p];
                out[p] += taper[p] * t;
            }
        };
        std::vector<double> model(np);

        // Per-pixel weighted least squares of (star - Moffat) on the polynomial terms.
        // With `gain`, also the chi^2 reduction of the nested fits (1, 3 and 6 terms share their leading
        // normal-equation blocks) for choosing the spatial order.
        struct OrderGain {
            double q[3] = {0.0, 0.0, 0.0};  // sum over pixels of sol^T rhs for 1, 3, 6 terms
            double pixels = 0.0;
        };
        auto fitTables = [&](OrderGain* gain) {
            const int kk = terms;
            const std::size_t nc = core.size();
            const int nTri = kk * (kk + 1) / 2;
            std::vector<double> normal(nc * static_cast<std::size_t>(nTri), 0.0), rhs(nc * static_cast<std::size_t>(kk), 0.0);
            for (const StarStamp& s : st) {
                if (!s.active) continue;
                evalModel(s, model);
                double b[6];
                basis(s.u, s.v, kk, b);
                double bb[21];
                int t = 0;
                for (int a = 0; a < kk; ++a)
                    for (int c = a; c < kk; ++c) bb[t++] = b[a] * b[c];
                for (std::size_t ci = 0; ci < nc; ++ci) {
                    const std::size_t p = core[ci];
                    if (!s.use[p]) continue;
                    const double w = weightOf(s.var[p], model[p], config.accuracy);
                    const double y = s.val[p] - moffatStamp.data()[p];
                    double* nrm = normal.data() + ci * static_cast<std::size_t>(nTri);
                    double* r = rhs.data() + ci * static_cast<std::size_t>(kk);
                    for (int q = 0; q < nTri; ++q) nrm[q] += w * bb[q];
                    for (int a = 0; a < kk; ++a) r[a] += w * y * b[a];
                }
            }
            std::vector<Image<double>> out(static_cast<std::size_t>(kk), Image<double>(n, n, 0.0));
            Eigen::MatrixXd a(kk, kk);
            Eigen::VectorXd r(kk);
            for (std::size_t ci = 0; ci < nc; ++ci) {
                const double* nrm = normal.data() + ci * static_cast<std::size_t>(nTri);
                int t = 0;
                for (int i = 0; i < kk; ++i)
                    for (int c = i; c < kk; ++c) a(i, c) = a(c, i) = nrm[t++];
                for (int i = 0; i < kk; ++i) r(i) = rhs[ci * static_cast<std::size_t>(kk) + static_cast<std::size_t>(i)];
                if (!(a(0, 0) > 0.0)) continue;  // no star covers this pixel: no correction
                // A whisker of ridge keeps a pixel that only stars on one side cover solvable.
                for (int i = 0; i < kk; ++i) a(i, i) += 1e-9 * a(0, 0);
                const Eigen::VectorXd sol = a.ldlt().solve(r);
                if (!sol.allFinite()) continue;
                for (int k = 0; k < kk; ++k) out[static_cast<std::size_t>(k)].data()[core[ci]] = sol(k);
                if (gain) {
                    gain->pixels += 1.0;
                    int level = 0;
                    for (int sub : {1, 3, 6}) {
                        if (sub > kk) break;
                        const Eigen::VectorXd subSol = a.topLeftCorner(sub, sub).ldlt().solve(r.head(sub));
                        if (subSol.allFinite()) gain->q[level] += subSol.dot(r.head(sub));
                        ++level;
                    }
                }
            }
            tables = std::move(out);
        };

        // The spatial order the data support: the quadratic (linear) terms must lower chi^2 by
        // spatialSignificance sigma more than noise would (delta chi^2 ~ chi^2 with 3 (2) dof per pixel).
        // That sigma assumes independent pixels; resampling correlates neighbours and inflates the spread
        // of chi^2 (~1.6x), hence the high default. A constant PSF then gets a constant model, with less
        // noise, even when there are enough stars for a varying one; measured: z ~ 0-9 for constant
        // simulated PSFs, 300-30000 for a FWHM varying 2.5-4 px across the field.
        auto chooseOrder = [&]() {
            if (terms <= 1) return;
            OrderGain g;
            fitTables(&g);
            auto significant = [&](double dq, double dofPerPixel) {
                const double dof = dofPerPixel * g.pixels;
                return dof > 0.0 && (dq - dof) / std::sqrt(2.0 * dof) > config.spatialSignificance;
            };
            int best = 0;
            if (terms >= 6 && significant(g.q[2] - g.q[1], 3.0)) best = 2;
            else if (significant(g.q[1] - g.q[0], 2.0)) best = 1;
            if (best < order) {
                order = best;
                terms = termsForOrder(order);
                fitTables(nullptr);
            }
        };

        for (int it = 0;; ++it) {
            if (terms > 0) {
                // The order is chosen after the first round of clipping, so that neighbours' light does not
                // pass for spatial variation.
                if (it == std::min(1, config.clipIterations) && terms > 1) chooseOrder();
                else fitTables(nullptr);
            }
            if (it >= config.clipIterations) break;
            // Flux renormalisation, clipping and star rejection against the current model.
            int active = 0;
            for (StarStamp& s : st) active += s.active ? 1 : 0;
            const double coreR = 1.5 * fwhmModel;
            for (StarStamp& s : st) {
                if (!s.active) continue;
                evalModel(s, model);
                double num = 0.0, den = 0.0;
                for (std::size_t p : core) {
                    if (!s.use[p]) continue;
                    const double m = model[p];
                    const double w = weightOf(s.var[p], m, config.accuracy);
                    num += w * m * s.val[p];
                    den += w * m * m;
                }
                if (den > 0.0) {
                    const double a = std::clamp(num / den, 0.5, 2.0);
                    for (std::size_t p = 0; p < np; ++p) {
                        s.val[p] /= a;
                        if (s.var[p] >= 0.0) s.var[p] /= a * a;
                    }
                    s.flux *= a;
                }
                int coreValid = 0, coreClipped = 0;
                const double k2 = config.clipSigma * config.clipSigma;
                for (std::size_t p = 0; p < np; ++p) {
                    if (s.var[p] < 0.0) continue;
                    const double m = model[p];
                    const double d = s.val[p] - m;
                    const double fl = config.accuracy * m;
                    const bool clip = d * d > k2 * (s.var[p] + fl * fl);
                    s.use[p] = clip ? 0 : 1;
                    if (radius[p] <= coreR) {
                        ++coreValid;
                        coreClipped += clip ? 1 : 0;
                    }
                }
                const int minKeep = empirical ? config.minStarsEmpirical : config.minStarsMoffat;
                if (coreValid == 0 || coreClipped > config.maxClippedFraction * coreValid) {
                    if (active > minKeep) {
                        s.active = false;
                        --active;
                    }
                }
            }
            if (empirical) {
                if (order == 2 && active < config.minStarsQuadratic) order = active >= config.minStarsLinear ? 1 : 0;
                else if (order == 1 && active < config.minStarsLinear) order = 0;
                if (termsForOrder(order) < terms) {
                    terms = termsForOrder(order);
                    tables.resize(static_cast<std::size_t>(terms));
                }
            }
            // Refit the Moffat to the clipped stack, with the accuracy floor in the weights: once, after the
            // first clipping (later clipping rounds hardly move it; each fit costs ~10 ms at 4 FWHM stamps).
            if (it > 0) continue;
            for (std::size_t p = 0; p < np; ++p) model[p] = moffatStamp.data()[p] + (tables.empty() ? 0.0 : taper[p] * tables[0].data()[p]);
            stackMean(&model, mean, wsum);
            moffat = fitStack(moffat);
            fwhmModel = shapeOf(moffat).fwhmPx;
            moffatStamp = detail::renderMoffat(moffat, h, gridFwhm);
            setGeometry();
        }

        PsfModel out;
        out.kind_ = !empirical ? PsfModel::Kind::Moffat
                               : (order > 0 ? PsfModel::Kind::EmpiricalVarying : PsfModel::Kind::Empirical);
        out.halfSize_ = h;
        out.order_ = empirical ? order : 0;
        out.width_ = width;
        out.height_ = height;
        out.amp_ = moffat.amp;
        out.c11_ = moffat.c11;
        out.c12_ = moffat.c12;
        out.c22_ = moffat.c22;
        out.beta_ = moffat.beta;
        out.gridFwhm_ = gridFwhm;
        out.residualRadius_ = empirical ? residualRadius : 0.0;
        out.moffatStamp_ = std::move(moffatStamp);
        out.moffat_ = shapeOf(moffat);
        if (empirical) {
            for (Image<double>& t : tables)
                for (std::size_t p = 0; p < np; ++p) t.data()[p] *= taper[p];
            out.tables_ = std::move(tables);
        }
        for (const StarStamp& s : st)
            if (s.active) out.starIndices_.push_back(s.index);
        out.fwhmPx_ = out.kind_ == PsfModel::Kind::Moffat ? out.moffat_.fwhmPx : out.shapeAt(cxImg, cyImg).fwhmPx;
        return out;
    };

    PsfModel out = fitStamps(extractAll(nullptr));
    if (config.subtractNeighbours) {
        const NeighbourLight light{&out, &stars};
        out = fitStamps(extractAll(&light));
    }
    return out;
}

}  // namespace astrid::psf
