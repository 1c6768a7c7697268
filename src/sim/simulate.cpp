// Campaign generation: targets, epochs, pointings and WCS, scenes, detector effects, files and truth.
// Rendering itself lives in render.cpp.
#include "astrid/sim/simulate.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numbers>
#include <sstream>
#include <string_view>

#include <fmt/format.h>

#include "astrid/core/error.hpp"
#include "astrid/core/image.hpp"
#include "astrid/core/log.hpp"
#include "astrid/core/text.hpp"
#include "astrid/core/time.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/sim/render.hpp"
#include "astrid/wcs/sky_wcs.hpp"

namespace astrid::sim {
namespace fs = std::filesystem;

namespace {
constexpr double kPi = std::numbers::pi;
constexpr double kDeg = kPi / 180.0;
constexpr double kInf = std::numeric_limits<double>::infinity();

// Random stream purposes: each (purpose, target, epoch) triple has its own generator.
enum class Stream : std::uint64_t { Target = 1, Field = 2, Epoch = 3, Cosmic = 4, Noise = 5, Detector = 6 };

Rng stream(std::uint64_t seed, Stream s, std::uint64_t target = 0, std::uint64_t epoch = 0) {
    return Rng(streamSeed(seed, static_cast<std::uint64_t>(s), target, epoch));
}

double roundTo(double v, int decimals) {
    const double f = std::pow(10.0, decimals);
    return std::round(v * f) / f;
}

// ------------------------------------------------------------------------------------------------
// Configuration checks

void require(bool ok, const char* key, const std::string& what) {
    if (!ok) throw ConfigError("simulate: " + std::string(key) + " " + what, key);
}

void validate(const SimConfig& c) {
    require(!c.outDir.empty(), "out_dir", "must be set");
    require(c.targets >= 1 && c.targets <= 100000, "targets", "must be in [1, 100000]");
    require(c.epochs >= 1 && c.epochs <= 200, "epochs", "must be in [1, 200]");
    require(c.sizePx >= 128 && c.sizePx <= 16384, "size", "must be in [128, 16384] px");
    require(c.pixelScaleArcsec > 0.01 && c.pixelScaleArcsec < 10.0, "pixel_scale", "must be in (0.01, 10) arcsec");
    require(!c.filter.empty() && c.filter.find('\'') == std::string::npos, "filter", "must be a non-empty name");
    require(c.distortionPx >= 0.0 && c.distortionPx <= 20.0, "distortion_px", "must be in [0, 20]");
    require(c.starsPerMegapixel >= 0.0 && c.starsPerMegapixel <= 1e5, "stars_per_megapixel", "must be in [0, 1e5]");
    require(c.starCountSlope > 0.0 && c.starCountSlope < 1.0, "star_count_slope", "must be in (0, 1)");
    require(c.starMagBright < c.starMagFaint, "star_mag_bright", "must be < star_mag_faint");
    require(c.galaxiesPerMegapixel >= 0.0 && c.galaxiesPerMegapixel <= 1e4, "galaxies_per_megapixel",
            "must be in [0, 1e4]");
    require(c.galaxyMagBright < c.galaxyMagFaint, "galaxy_mag_bright", "must be < galaxy_mag_faint");
    require(c.hostMagBright <= c.hostMagFaint, "host_mag_bright", "must be <= host_mag_faint");
    require(c.transientPeakMagMin <= c.transientPeakMagMax, "transient_peak_mag_min", "must be <= the max");
    require(std::isfinite(c.zeroPoint), "zero_point", "must be finite");
    require(c.extinctionPerAirmass >= 0.0, "extinction_per_airmass", "must be >= 0");
    require(c.exposureSec > 0.0, "exposure_sec", "must be > 0");
    require(c.airmassMax >= 1.02 && c.airmassMax <= 5.0, "airmass_max", "must be in [1.02, 5]");
    require(c.fwhmMinPx >= 1.0 && c.fwhmMinPx <= c.fwhmMaxPx && c.fwhmMaxPx <= 20.0, "fwhm_min_px",
            "and fwhm_max_px must satisfy 1 <= min <= max <= 20");
    require(c.betaMin > 1.5 && c.betaMin <= c.betaMax && c.betaMax <= 20.0, "beta_min",
            "and beta_max must satisfy 1.5 < min <= max <= 20");
    require(c.ellipticityMax >= 0.0 && c.ellipticityMax <= 0.5, "ellipticity_max", "must be in [0, 0.5]");
    require(c.skyMin >= 0.0 && c.skyMin <= c.skyMax, "sky_min", "must be in [0, sky_max]");
    require(c.skyGradientMax >= 0.0 && c.skyGradientMax < 0.3, "sky_gradient_max", "must be in [0, 0.3)");
    require(c.skyCurvatureMax >= 0.0 && c.skyCurvatureMax < 0.3, "sky_curvature_max", "must be in [0, 0.3)");
    require(c.gainMin > 0.0 && c.gainMin <= c.gainMax, "gain_min", "must be in (0, gain_max]");
    require(c.readNoiseMin >= 0.0 && c.readNoiseMin <= c.readNoiseMax, "read_noise_min", "must be in [0, read_noise_max]");
    require(c.fullWellElectrons > 0.0 && c.adcMaxAdu > 0.0, "full_well", "and adc_max must be > 0");
    require(c.maxPointingOffsetPx >= 0.0, "max_pointing_offset_px", "must be >= 0");
    require(c.maxRotationDeg >= 0.0 && c.maxRotationDeg <= 10.0, "max_rotation_deg", "must be in [0, 10]");
    require(c.maxScaleChange >= 0.0 && c.maxScaleChange <= 0.05, "max_scale_change", "must be in [0, 0.05]");
    require(c.minSaturatedStars >= 0 && c.minSaturatedStars <= 1000, "min_saturated_stars", "must be in [0, 1000]");
    require(c.referenceDepth >= 1 && c.referenceDepth <= 1000, "reference_depth", "must be in [1, 1000]");
    require(c.cosmicRaysPerMegapixel >= 0.0 && c.cosmicRaysPerMegapixel <= 1e4, "cosmic_rays_per_megapixel",
            "must be in [0, 1e4]");
}

// ------------------------------------------------------------------------------------------------
// The camera: fixed for the whole campaign.

struct BadColumn {
    int x = 0, y0 = 0, y1 = 0;  // rows y0..y1 inclusive
    bool hot = false;
    double levelAdu = 0.0;      // added to a hot column
};

// SIP-style polynomial in pixel offsets from CRPIX: du = sum a[p][q] u^p v^q (2 <= p + q <= 3).
using Poly3 = std::array<std::array<double, 4>, 4>;

struct Camera {
    double crpixDx = 0.0, crpixDy = 0.0;  // reference pixel offset from the image centre
    std::vector<BadColumn> badColumns;
    Poly3 a{}, b{};                        // forward distortion (pixels)
};

Camera makeCamera(const SimConfig& c) {
    Rng rng = stream(c.seed, Stream::Detector);
    Camera cam;
    const int n = c.sizePx;
    cam.crpixDx = roundTo(rng.uniform(-3.0, 3.0), 3);
    cam.crpixDy = roundTo(rng.uniform(-3.0, 3.0), 3);
    const int nCols = rng.uniformInt(2, 3);
    for (int i = 0; i < nCols; ++i) {
        BadColumn col;
        col.x = rng.uniformInt(8, n - 9);
        const bool full = rng.uniform() < 0.6;
        col.y0 = full ? 0 : rng.uniformInt(n / 8, n - n / 8);
        col.y1 = n - 1;
        col.hot = (i == 1) || (i == 2 && rng.uniform() < 0.5);
        col.levelAdu = col.hot ? std::round(rng.uniform(800.0, 4000.0)) : 0.0;
        cam.badColumns.push_back(col);
    }
    // Barrel distortion plus a small random quadratic part; |displacement| = distortionPx at the corners.
    const double half = 0.5 * n;
    const double k = c.distortionPx / (2.0 * std::sqrt(2.0) * half * half * half);
    cam.a[3][0] = k;
    cam.a[1][2] = k;
    cam.b[2][1] = k;
    cam.b[0][3] = k;
    const double qAmp = 0.3 * c.distortionPx / (half * half);
    for (auto [p, q] : {std::pair{2, 0}, {1, 1}, {0, 2}}) {
        cam.a[static_cast<std::size_t>(p)][static_cast<std::size_t>(q)] = qAmp * rng.uniform(-1.0, 1.0);
        cam.b[static_cast<std::size_t>(p)][static_cast<std::size_t>(q)] = qAmp * rng.uniform(-1.0, 1.0);
    }
    return cam;
}

double evalPoly(const Poly3& c, double u, double v) {
    double s = 0.0;
    for (std::size_t p = 0; p < 4; ++p)
        for (std::size_t q = 0; p + q < 4; ++q)
            if (c[p][q] != 0.0) s += c[p][q] * std::pow(u, static_cast<double>(p)) * std::pow(v, static_cast<double>(q));
    return s;
}

// Least-squares SIP inverse (AP_/BP_, terms 1 <= p + q <= order) of the forward distortion over the
// image, in coordinates normalised by `half` for conditioning. Returns coefficients indexed
// [p][q] in pixel units and the largest residual on the fitting grid (px).
struct SipInverse {
    std::vector<std::array<double, 3>> ap, bp;  // {p, q, coefficient}
    double maxResidualPx = 0.0;
};

SipInverse fitSipInverse(const Camera& cam, double half, int order) {
    std::vector<std::pair<int, int>> terms;
    for (int d = 1; d <= order; ++d)
        for (int p = d; p >= 0; --p) terms.emplace_back(p, d - p);
    const std::size_t m = terms.size();
    std::vector<double> ata(m * m, 0.0), atbU(m, 0.0), atbV(m, 0.0);
    struct Sample {
        double un, vn, du, dv;
    };
    std::vector<Sample> samples;
    const int g = 31;
    for (int j = 0; j < g; ++j)
        for (int i = 0; i < g; ++i) {
            const double u = -1.05 * half + 2.1 * half * i / (g - 1), v = -1.05 * half + 2.1 * half * j / (g - 1);
            const double uu = u + evalPoly(cam.a, u, v), vv = v + evalPoly(cam.b, u, v);
            samples.push_back({uu / half, vv / half, u - uu, v - vv});
        }
    std::vector<double> basis(m);
    auto fillBasis = [&](double un, double vn) {
        for (std::size_t t = 0; t < m; ++t)
            basis[t] = std::pow(un, terms[t].first) * std::pow(vn, terms[t].second);
    };
    for (const Sample& s : samples) {
        fillBasis(s.un, s.vn);
        for (std::size_t r = 0; r < m; ++r) {
            atbU[r] += basis[r] * s.du;
            atbV[r] += basis[r] * s.dv;
            for (std::size_t c = 0; c < m; ++c) ata[r * m + c] += basis[r] * basis[c];
        }
    }
    // Gaussian elimination with partial pivoting on [A^T A | b_u b_v].
    std::vector<double> solU = atbU, solV = atbV, mat = ata;
    for (std::size_t col = 0; col < m; ++col) {
        std::size_t piv = col;
        for (std::size_t r = col + 1; r < m; ++r)
            if (std::fabs(mat[r * m + col]) > std::fabs(mat[piv * m + col])) piv = r;
        if (piv != col) {
            for (std::size_t c = 0; c < m; ++c) std::swap(mat[col * m + c], mat[piv * m + c]);
            std::swap(solU[col], solU[piv]);
            std::swap(solV[col], solV[piv]);
        }
        const double d = mat[col * m + col];
        for (std::size_t r = 0; r < m; ++r) {
            if (r == col) continue;
            const double f = mat[r * m + col] / d;
            if (f == 0.0) continue;
            for (std::size_t c = col; c < m; ++c) mat[r * m + c] -= f * mat[col * m + c];
            solU[r] -= f * solU[col];
            solV[r] -= f * solV[col];
        }
    }
    SipInverse out;
    for (std::size_t t = 0; t < m; ++t) {
        const double scale = std::pow(half, -(terms[t].first + terms[t].second));
        const double cu = solU[t] / mat[t * m + t], cv = solV[t] / mat[t * m + t];
        out.ap.push_back({static_cast<double>(terms[t].first), static_cast<double>(terms[t].second), cu * scale});
        out.bp.push_back({static_cast<double>(terms[t].first), static_cast<double>(terms[t].second), cv * scale});
        solU[t] = cu;
        solV[t] = cv;
    }
    for (const Sample& s : samples) {
        fillBasis(s.un, s.vn);
        double pu = 0.0, pv = 0.0;
        for (std::size_t t = 0; t < m; ++t) pu += solU[t] * basis[t], pv += solV[t] * basis[t];
        out.maxResidualPx = std::max(out.maxResidualPx, std::hypot(pu - s.du, pv - s.dv));
    }
    return out;
}

// ------------------------------------------------------------------------------------------------
// Targets and their fields: fixed on the sky, the same in every epoch.

struct Star {
    double ra = 0, dec = 0, mag = 0;
};

struct Galaxy {
    double ra = 0, dec = 0, mag = 0, sersicN = 1, reArcsec = 1, axisRatio = 1, paDeg = 0;
    std::string id;
};

// Bazin et al. (2009) light curve, normalised to 1 at its peak.
struct LightCurve {
    double peakMjd = 0, peakMag = 0, tauRise = 3, tauFall = 20;
    double shape(double t) const {
        const double t0 = peakMjd - tauRise * std::log(tauFall / tauRise - 1.0);
        auto f = [&](double x) { return std::exp(-(x - t0) / tauFall) / (1.0 + std::exp(-(x - t0) / tauRise)); };
        return f(t) / f(peakMjd);
    }
};

struct TargetPlan {
    catalog::Target target;
    LightCurve lightCurve;
    std::vector<double> epochMjd;  // [0] reference, [1..K] science
    std::vector<Star> stars;
    std::vector<Galaxy> galaxies;  // the host first when galaxies are on
};

// "aa", "ab", ..., "zz", "aaa", ...: the IAU suffixes after the single letters.
std::string sneSuffix(int index) {
    int letters = 2, span = 26 * 26;
    while (index >= span) {
        index -= span;
        ++letters;
        span *= 26;
    }
    std::string s(static_cast<std::size_t>(letters), 'a');
    for (int i = letters - 1; i >= 0; --i) {
        s[static_cast<std::size_t>(i)] = static_cast<char>('a' + index % 26);
        index /= 26;
    }
    return s;
}

// Magnitude from dN/dm ~ 10^(slope m) on [bright, faint] by inversion.
double drawMagnitude(Rng& rng, double slope, double bright, double faint) {
    const double span = std::pow(10.0, slope * (faint - bright)) - 1.0;
    return bright + std::log10(1.0 + rng.uniform() * span) / slope;
}

// Side of the square sky region (nominal pixels) that covers every epoch's footprint plus the PSF.
double fieldSidePx(const SimConfig& c, double maxOffsetPx) {
    return c.sizePx + 2.0 * (maxOffsetPx + 0.02 * c.sizePx + c.distortionPx + 64.0);
}

double maxOffsetPx(const SimConfig& c) { return std::min(c.maxPointingOffsetPx, 0.15 * c.sizePx); }

// The target, its light curve and its epochs (the Target stream). The name is set by nameTargets.
TargetPlan planTarget(const SimConfig& c, int index) {
    TargetPlan plan;
    Rng rng = stream(c.seed, Stream::Target, static_cast<std::uint64_t>(index));
    catalog::Target& t = plan.target;

    // Position: uniform on the sphere for |Dec| < 70; target 0 just south of the equator, so that the
    // SAI detached-sign declination ("- 5 12 ...") is always in the catalog.
    double ra = rng.uniform(0.0, 360.0), dec = 0.0;
    if (index == 0) {
        dec = rng.uniform(-9.5, -1.0);
    } else {
        const double s = std::sin(70.0 * kDeg);
        dec = std::asin(rng.uniform(-s, s)) / kDeg;
    }
    // Quantised to what the SAI layout stores (0.0001 s of RA, 0.001" of Dec): the catalog read back
    // then gives the true position.
    const double raSec = std::round(ra / 15.0 * 3600.0 * 1e4) / 1e4;
    t.raDeg = std::fmod(raSec * 15.0 / 3600.0, 360.0);
    t.decDeg = std::round(dec * 3600.0 * 1e3) / 1e3 / 3600.0;

    const double first = mjdFromCivil(2021, 1, 10), last = mjdFromCivil(2022, 12, 20);
    const double disc = std::floor(rng.uniform(first, last + 1.0));
    t.id = index;
    t.line = index + 3;  // SAI header and separator come first
    t.discMjd = disc;
    const bool ia = rng.uniform() < 0.7;
    t.type = ia ? "Ia" : "II";

    LightCurve& lc = plan.lightCurve;
    lc.peakMjd = disc + rng.uniformInt(6, 18);
    lc.peakMag = roundTo(rng.uniform(c.transientPeakMagMin, c.transientPeakMagMax), 3);
    lc.tauRise = rng.uniform(2.5, 4.0);
    lc.tauFall = ia ? rng.uniform(15.0, 25.0) : rng.uniform(40.0, 80.0);
    t.maxMjd = lc.peakMjd;

    // Epochs: a reference 100-300 days before discovery, science epochs from a few days after it,
    // 5-20 days apart; all at night (UTC 01-08 h, a Chilean site).
    plan.epochMjd.push_back(disc - std::floor(rng.uniform(100.0, 300.0)) + rng.uniform(0.05, 0.35));
    double day = disc + rng.uniform(1.0, 4.0);
    for (int e = 1; e <= c.epochs; ++e) {
        plan.epochMjd.push_back(std::floor(day) + rng.uniform(0.05, 0.35));
        day += rng.uniform(5.0, 20.0);
    }
    return plan;
}

// Names in catalog order, per discovery year as the IAU does: 2021aa, 2021ab, 2022aa, ...
void nameTargets(const SimConfig& c, std::vector<TargetPlan>& plans) {
    std::map<int, int> perYear;
    for (TargetPlan& p : plans) {
        const int year = civilFromMjd(*p.target.discMjd).year;
        p.target.name = std::to_string(year) + sneSuffix(perYear[year]++);
        p.target.host = c.galaxies ? "SIMG " + p.target.name : "";
    }
}

// The target's field (the Field stream): stars and galaxies fixed on the sky.
void planField(const SimConfig& c, int index, TargetPlan& plan) {
    const catalog::Target& t = plan.target;
    Rng frng = stream(c.seed, Stream::Field, static_cast<std::uint64_t>(index));
    const double scaleDeg = c.pixelScaleArcsec / 3600.0;
    const auto field = wcs::SkyWcs::tan({t.raDeg, t.decDeg}, {0.0, 0.0}, {-scaleDeg, 0.0, 0.0, scaleDeg});
    const double side = fieldSidePx(c, maxOffsetPx(c));
    const double nStars = frng.poisson(c.starsPerMegapixel * side * side / 1e6);
    std::vector<double> px, py, mags;
    for (int i = 0; i < static_cast<int>(nStars); ++i) {
        px.push_back(frng.uniform(-0.5 * side, 0.5 * side));
        py.push_back(frng.uniform(-0.5 * side, 0.5 * side));
        mags.push_back(drawMagnitude(frng, c.starCountSlope, c.starMagBright, c.starMagFaint));
    }
    // The brightest few must saturate: the magnitude that saturates even the broadest, faintest-peaked
    // PSF at the lowest zero point, brighter by a margin.
    {
        const double alpha = moffatAlpha(c.fwhmMaxPx, c.betaMin);
        const double peakFraction = 0.9 * (c.betaMin - 1.0) / (kPi * alpha * alpha);  // 0.9: pixel integration
        const double satAdu = std::min(c.adcMaxAdu, c.fullWellElectrons / c.gainMax) - c.skyMax;
        const double zpLow = c.zeroPoint - c.extinctionPerAirmass * (c.airmassMax - 1.0) - 0.15;
        const double magSat = zpLow - 2.5 * std::log10(std::max(1.0, satAdu) / peakFraction) - 0.5;
        const double inner = 0.5 * c.sizePx - maxOffsetPx(c) - 0.03 * c.sizePx - 16.0;
        int have = 0;
        for (std::size_t i = 0; i < px.size(); ++i)
            if (mags[i] < magSat && std::fabs(px[i]) < inner && std::fabs(py[i]) < inner) ++have;
        for (; have < c.minSaturatedStars && magSat > c.starMagBright; ++have) {
            px.push_back(frng.uniform(-inner, inner));
            py.push_back(frng.uniform(-inner, inner));
            mags.push_back(drawMagnitude(frng, c.starCountSlope, c.starMagBright, magSat));
        }
    }
    std::vector<double> sra(px.size()), sdec(px.size());
    field.pixelToSky(px, py, sra, sdec);
    for (std::size_t i = 0; i < px.size(); ++i) plan.stars.push_back({sra[i], sdec[i], roundTo(mags[i], 4)});

    if (c.galaxies) {
        auto drawShape = [&](Galaxy& g) {
            const bool disk = frng.uniform() < 0.65;
            g.sersicN = roundTo(disk ? frng.uniform(0.8, 1.3) : frng.uniform(1.5, 3.0), 3);
            g.axisRatio = roundTo(frng.uniform(0.3, 1.0), 3);
            g.paDeg = roundTo(frng.uniform(0.0, 180.0), 2);
        };
        // The host: 0.5-2" from the transient, which sits inside its half-light radius.
        Galaxy host;
        host.id = "host";
        host.mag = roundTo(frng.uniform(c.hostMagBright, c.hostMagFaint), 3);
        host.reArcsec = roundTo(frng.uniform(1.5, 4.0), 3);
        drawShape(host);
        host.sersicN = roundTo(frng.uniform(0.8, 1.5), 3);
        const double off = frng.uniform(0.5, 2.0), ang = frng.uniform(0.0, 2.0 * kPi);
        const double east = off * std::sin(ang), north = off * std::cos(ang);
        const auto hp = field.pixelToSky(-east / c.pixelScaleArcsec, north / c.pixelScaleArcsec);
        host.ra = hp.raDeg;
        host.dec = hp.decDeg;
        plan.galaxies.push_back(host);

        const double gside = side + 128.0;
        const double nGal = frng.poisson(c.galaxiesPerMegapixel * gside * gside / 1e6);
        std::vector<double> gx, gy;
        std::vector<Galaxy> gals;
        const double reMin = std::max(0.6, 1.2 * c.pixelScaleArcsec);
        for (int i = 0; i < static_cast<int>(nGal); ++i) {
            Galaxy g;
            g.id = fmt::format("g{:04d}", i);
            g.mag = roundTo(drawMagnitude(frng, 0.4, c.galaxyMagBright, c.galaxyMagFaint), 4);
            g.reArcsec = roundTo(std::max(reMin, 1.2 * std::pow(10.0, -0.15 * (g.mag - 20.0)) * frng.uniform(0.7, 1.4)), 3);
            drawShape(g);
            gx.push_back(frng.uniform(-0.5 * gside, 0.5 * gside));
            gy.push_back(frng.uniform(-0.5 * gside, 0.5 * gside));
            gals.push_back(g);
        }
        std::vector<double> gra(gx.size()), gdec(gx.size());
        field.pixelToSky(gx, gy, gra, gdec);
        for (std::size_t i = 0; i < gals.size(); ++i) {
            gals[i].ra = gra[i];
            gals[i].dec = gdec[i];
            plan.galaxies.push_back(gals[i]);
        }
    }
}

// ------------------------------------------------------------------------------------------------
// One epoch

struct EpochGeometry {
    double crvalRa = 0, crvalDec = 0, crpixX = 0, crpixY = 0;  // crpix 0-based
    std::array<double, 4> cd{};
};

void addDistortionCards(fits::Header& h, const SimConfig& c, const Camera& cam, const SipInverse& inv) {
    if (c.distortion == Distortion::Sip) {
        h.set("A_ORDER", 3);
        for (int p = 0; p <= 3; ++p)
            for (int q = 0; p + q <= 3; ++q)
                if (p + q >= 2) h.set(fmt::format("A_{}_{}", p, q), cam.a[static_cast<std::size_t>(p)][static_cast<std::size_t>(q)]);
        h.set("B_ORDER", 3);
        for (int p = 0; p <= 3; ++p)
            for (int q = 0; p + q <= 3; ++q)
                if (p + q >= 2) h.set(fmt::format("B_{}_{}", p, q), cam.b[static_cast<std::size_t>(p)][static_cast<std::size_t>(q)]);
        h.set("AP_ORDER", 4);
        for (const auto& t : inv.ap) h.set(fmt::format("AP_{}_{}", static_cast<int>(t[0]), static_cast<int>(t[1])), t[2]);
        h.set("BP_ORDER", 4);
        for (const auto& t : inv.bp) h.set(fmt::format("BP_{}_{}", static_cast<int>(t[0]), static_cast<int>(t[1])), t[2]);
    } else if (c.distortion == Distortion::Tpv) {
        // TPV acts on intermediate world coordinates (deg) after CD; the camera polynomial converted
        // at the nominal scale (xi ~ -u s, eta ~ v s: odd terms keep their sign, even ones flip).
        const double s = c.pixelScaleArcsec / 3600.0;
        std::array<double, 11> pv1{}, pv2{};
        pv1[1] = 1.0;
        pv2[1] = 1.0;
        // xi terms: 4 x^2, 5 xy, 6 y^2, 7 x^3, 8 x^2 y, 9 x y^2, 10 y^3 (x = xi, y = eta)
        // eta terms: 4 y^2, 5 y x, 6 x^2, 7 y^3, 8 y^2 x, 9 y x^2, 10 x^3
        const double k = cam.a[3][0] / (s * s);
        pv1[7] = k;
        pv1[9] = k;
        pv2[7] = k;
        pv2[9] = k;
        // u = -xi / s, v = eta / s. du = a20 u^2 + a11 u v + a02 v^2 -> dxi = -s du.
        pv1[4] = -cam.a[2][0] / s;
        pv1[5] = cam.a[1][1] / s;
        pv1[6] = -cam.a[0][2] / s;
        // dv = b20 u^2 + b11 u v + b02 v^2 -> deta = s dv.
        pv2[6] = cam.b[2][0] / s;
        pv2[5] = -cam.b[1][1] / s;
        pv2[4] = cam.b[0][2] / s;
        for (std::size_t i = 0; i < pv1.size(); ++i) h.set(fmt::format("PV1_{}", i), pv1[i]);
        for (std::size_t i = 0; i < pv2.size(); ++i) h.set(fmt::format("PV2_{}", i), pv2[i]);
    }
}

fits::Header wcsHeader(const SimConfig& c, const Camera& cam, const SipInverse& inv, const EpochGeometry& g) {
    fits::Header h("simulated WCS");
    h.set("NAXIS", 2);
    h.set("NAXIS1", c.sizePx);
    h.set("NAXIS2", c.sizePx);
    h.set("WCSAXES", 2);
    const char* ct1 = c.distortion == Distortion::Sip ? "RA---TAN-SIP" : c.distortion == Distortion::Tpv ? "RA---TPV" : "RA---TAN";
    const char* ct2 = c.distortion == Distortion::Sip ? "DEC--TAN-SIP" : c.distortion == Distortion::Tpv ? "DEC--TPV" : "DEC--TAN";
    h.set("CTYPE1", ct1);
    h.set("CTYPE2", ct2);
    h.set("CUNIT1", "deg");
    h.set("CUNIT2", "deg");
    h.set("CRVAL1", g.crvalRa, "[deg] pointing reference RA");
    h.set("CRVAL2", g.crvalDec, "[deg] pointing reference Dec");
    h.set("CRPIX1", g.crpixX + 1.0, "reference pixel (FITS 1-based)");
    h.set("CRPIX2", g.crpixY + 1.0, "reference pixel (FITS 1-based)");
    h.set("CD1_1", g.cd[0]);
    h.set("CD1_2", g.cd[1]);
    h.set("CD2_1", g.cd[2]);
    h.set("CD2_2", g.cd[3]);
    h.set("RADESYS", "ICRS");
    h.set("EQUINOX", 2000.0);
    addDistortionCards(h, c, cam, inv);
    return h;
}

struct EpochConditions {
    double airmass, fwhm, beta, ell, pa, zp, sky, gradX, gradY, curv, gain, rn, sat;
    double offX, offY, rot, scale;
};

EpochConditions drawConditions(const SimConfig& c, int target, int epoch) {
    Rng rng = stream(c.seed, Stream::Epoch, static_cast<std::uint64_t>(target), static_cast<std::uint64_t>(epoch));
    EpochConditions k{};
    k.airmass = roundTo(rng.uniform(1.02, c.airmassMax), 3);
    k.fwhm = roundTo(rng.uniform(c.fwhmMinPx, c.fwhmMaxPx), 4);
    k.beta = roundTo(rng.uniform(c.betaMin, c.betaMax), 4);
    k.ell = roundTo(rng.uniform(0.0, c.ellipticityMax), 4);
    k.pa = roundTo(rng.uniform(-90.0, 90.0), 2);
    const double cloud = std::min(0.15, std::fabs(0.03 * rng.normal()));
    k.zp = roundTo(c.zeroPoint - c.extinctionPerAirmass * (k.airmass - 1.0) - cloud, 4);
    k.sky = roundTo(rng.uniform(c.skyMin, c.skyMax), 3);
    k.gradX = roundTo(rng.uniform(-c.skyGradientMax, c.skyGradientMax), 5);
    k.gradY = roundTo(rng.uniform(-c.skyGradientMax, c.skyGradientMax), 5);
    k.curv = roundTo(rng.uniform(-c.skyCurvatureMax, c.skyCurvatureMax), 5);
    k.gain = roundTo(rng.uniform(c.gainMin, c.gainMax), 3);
    k.rn = roundTo(rng.uniform(c.readNoiseMin, c.readNoiseMax), 2);
    k.sat = std::floor(std::min(c.adcMaxAdu, c.fullWellElectrons / k.gain));
    if (epoch == 0 && c.referenceDepth > 1) {  // the mean of K exposures: K times the electrons per ADU
        k.gain *= c.referenceDepth;
        k.rn *= std::sqrt(static_cast<double>(c.referenceDepth));
    }
    const double mo = maxOffsetPx(c);
    k.offX = rng.uniform(-mo, mo);
    k.offY = rng.uniform(-mo, mo);
    k.rot = rng.uniform(-c.maxRotationDeg, c.maxRotationDeg);
    k.scale = 1.0 + rng.uniform(-c.maxScaleChange, c.maxScaleChange);
    return k;
}

struct EpochOutput {
    SimEpochTruth truth;
    std::vector<TruthRow> rows;
};

std::string targetDirName(const catalog::Target& t) { return t.name; }

std::string formatBadColumns(const std::vector<BadColumn>& cols) {
    std::string s;
    for (const BadColumn& b : cols) {
        if (!s.empty()) s += ' ';
        s += fmt::format("{}:{}-{}:{}", b.x, b.y0, b.y1, b.hot ? "hot" : "dead");
    }
    return s;
}

double magnitudeOf(double flux, double zp) { return flux > 0.0 ? zp - 2.5 * std::log10(flux) : kInf; }

EpochOutput renderEpoch(const SimConfig& c, const Camera& cam, const SipInverse& inv, const TargetPlan& plan,
                        int ti, int e, const fs::path& outDir) {
    const int n = c.sizePx;
    const double centre = 0.5 * (n - 1);
    const catalog::Target& tgt = plan.target;
    const EpochConditions k = drawConditions(c, ti, e);
    const double mjd = plan.epochMjd[static_cast<std::size_t>(e)];

    // Pointing: CD from rotation and scale; CRPIX the camera's; CRVAL chosen so that the target lands
    // at centre + offset (refined through the full WCS so that distortion is included).
    EpochGeometry g;
    const double sDeg = c.pixelScaleArcsec / 3600.0 * k.scale;
    const double cr = std::cos(k.rot * kDeg), sr = std::sin(k.rot * kDeg);
    g.cd = {-sDeg * cr, sDeg * sr, sDeg * sr, sDeg * cr};
    g.crpixX = centre + cam.crpixDx;
    g.crpixY = centre + cam.crpixDy;
    const double wantX = centre + k.offX, wantY = centre + k.offY;
    {
        const auto w0 = wcs::SkyWcs::tan({tgt.raDeg, tgt.decDeg}, {wantX, wantY}, g.cd);
        const auto p = w0.pixelToSky(g.crpixX, g.crpixY);
        g.crvalRa = p.raDeg;
        g.crvalDec = p.decDeg;
    }
    for (int iter = 0; iter < 3 && c.distortion != Distortion::None; ++iter) {
        const auto w = wcs::SkyWcs::fromHeader(wcsHeader(c, cam, inv, g));
        const auto p = w.skyToPixel(tgt.raDeg, tgt.decDeg);
        // Moving the pointing by -d pixels moves every source by +d.
        const auto lin = wcs::SkyWcs::tan({g.crvalRa, g.crvalDec}, {g.crpixX, g.crpixY}, g.cd);
        const auto q = lin.pixelToSky(g.crpixX - (wantX - p.x), g.crpixY - (wantY - p.y));
        g.crvalRa = q.raDeg;
        g.crvalDec = q.decDeg;
    }
    fits::Header header = wcsHeader(c, cam, inv, g);
    const wcs::SkyWcs w = wcs::SkyWcs::fromHeader(header);
    const auto tp = w.skyToPixel(tgt.raDeg, tgt.decDeg);

    EpochOutput out;
    SimEpochTruth& tr = out.truth;
    tr.targetName = tgt.name;
    tr.epoch = e;
    tr.role = e == 0 ? "reference" : "science";
    tr.file = (fs::path("archive") / targetDirName(tgt) / fmt::format("{}_e{}.fits", tgt.name, e)).generic_string();
    tr.mjd = mjd;
    tr.fwhmPx = k.fwhm;
    tr.beta = k.beta;
    tr.ellipticity = k.ell;
    tr.positionAngleDeg = k.pa;
    tr.skyLevel = k.sky;
    tr.zeroPoint = k.zp;
    tr.gain = k.gain;
    tr.readNoise = k.rn;
    tr.saturation = k.sat;
    tr.airmass = k.airmass;
    tr.exposureSec = c.exposureSec;
    tr.crvalRa = g.crvalRa;
    tr.crvalDec = g.crvalDec;
    tr.crpixX = g.crpixX;
    tr.crpixY = g.crpixY;
    tr.cd11 = g.cd[0];
    tr.cd12 = g.cd[1];
    tr.cd21 = g.cd[2];
    tr.cd22 = g.cd[3];
    tr.offsetXPx = tp.x - centre;
    tr.offsetYPx = tp.y - centre;
    tr.rotationDeg = k.rot;
    tr.scaleFactor = k.scale;
    tr.targetX = tp.x;
    tr.targetY = tp.y;
    tr.skyGradX = k.gradX;
    tr.skyGradY = k.gradY;
    tr.skyCurvature = k.curv;
    tr.distortion = distortionName(c.distortion);
    tr.badColumns = c.defects ? formatBadColumns(cam.badColumns) : "";
    tr.seed = c.seed;
    const double lcShape = e == 0 ? 0.0 : plan.lightCurve.shape(mjd);
    tr.transientFlux = e == 0 ? 0.0 : std::pow(10.0, -0.4 * (plan.lightCurve.peakMag - k.zp)) * lcShape;
    tr.transientMag = magnitudeOf(tr.transientFlux, k.zp);

    auto row = [&](double ra, double dec, double x, double y, double flux, const char* kind, std::string id) {
        TruthRow r;
        r.target = tgt.name;
        r.epoch = e;
        r.role = tr.role;
        r.mjd = mjd;
        r.filter = c.filter;
        r.ra = ra;
        r.dec = dec;
        r.x = x;
        r.y = y;
        r.flux = flux;
        r.magnitude = magnitudeOf(flux, k.zp);
        r.kind = kind;
        r.id = std::move(id);
        out.rows.push_back(std::move(r));
    };
    auto inside = [&](double x, double y) { return x >= -0.5 && y >= -0.5 && x < n - 0.5 && y < n - 0.5; };

    // Scene (expectation, ADU) in double.
    Image<double> model(n, n, 0.0);
    const PsfRenderer psf(MoffatPsf{k.fwhm, k.beta, k.ell, k.pa});
    const double reach = psf.radiusPx() + 2.0;
    {
        const std::size_t ns = plan.stars.size();
        std::vector<double> ra(ns), dec(ns), x(ns), y(ns);
        for (std::size_t i = 0; i < ns; ++i) ra[i] = plan.stars[i].ra, dec[i] = plan.stars[i].dec;
        w.skyToPixel(ra, dec, x, y);
        for (std::size_t i = 0; i < ns; ++i) {
            if (!std::isfinite(x[i]) || x[i] < -reach || y[i] < -reach || x[i] > n + reach || y[i] > n + reach) continue;
            const double flux = std::pow(10.0, -0.4 * (plan.stars[i].mag - k.zp));
            psf.add(model, x[i], y[i], flux);
            if (inside(x[i], y[i])) row(ra[i], dec[i], x[i], y[i], flux, "star", fmt::format("s{:05d}", i));
        }
    }
    if (!plan.galaxies.empty()) {
        const std::size_t ng = plan.galaxies.size();
        std::vector<double> ra(ng), dec(ng), x(ng), y(ng);
        for (std::size_t i = 0; i < ng; ++i) ra[i] = plan.galaxies[i].ra, dec[i] = plan.galaxies[i].dec;
        w.skyToPixel(ra, dec, x, y);
        std::vector<SersicGalaxy> list;
        for (std::size_t i = 0; i < ng; ++i) {
            const Galaxy& gal = plan.galaxies[i];
            const double r = 6.0 * gal.reArcsec / c.pixelScaleArcsec * 1.02 + reach;
            if (!std::isfinite(x[i]) || x[i] < -r || y[i] < -r || x[i] > n + r || y[i] > n + r) continue;
            // Local Jacobian pixel -> (arcsec east, arcsec north), by central differences through the WCS.
            std::array<double, 4> px{x[i] + 0.5, x[i] - 0.5, x[i], x[i]}, py{y[i], y[i], y[i] + 0.5, y[i] - 0.5};
            std::array<double, 4> pra{}, pdec{};
            w.pixelToSky(px, py, pra, pdec);
            const double cosd = std::cos(dec[i] * kDeg);
            auto dra = [](double a, double b) {
                double d = a - b;
                if (d > 180.0) d -= 360.0;
                if (d < -180.0) d += 360.0;
                return d;
            };
            SersicGalaxy sg;
            sg.x = x[i];
            sg.y = y[i];
            sg.flux = std::pow(10.0, -0.4 * (gal.mag - k.zp));
            sg.sersicIndex = gal.sersicN;
            sg.halfLightRadius = gal.reArcsec;
            sg.axisRatio = gal.axisRatio;
            sg.positionAngleDeg = gal.paDeg;
            sg.jacobian = {dra(pra[0], pra[1]) * cosd * 3600.0, dra(pra[2], pra[3]) * cosd * 3600.0,
                           (pdec[0] - pdec[1]) * 3600.0, (pdec[2] - pdec[3]) * 3600.0};
            list.push_back(sg);
            if (inside(x[i], y[i])) row(ra[i], dec[i], x[i], y[i], sg.flux, "galaxy", gal.id);
        }
        renderGalaxies(model, list, psf);
    }
    // The transient, at the catalog position.
    psf.add(model, tp.x, tp.y, tr.transientFlux);
    row(tgt.raDeg, tgt.decDeg, tp.x, tp.y, tr.transientFlux, "transient", "sn");

    // Sky.
    for (int y = 0; y < n; ++y)
        for (int x = 0; x < n; ++x) model(x, y) += tr.skyAt(x, y, n);

    // Detector: Poisson (electrons) + read noise, then cosmic rays, bad columns and saturation.
    Image<float> image(n, n, 0.0f);
    {
        Rng nr = stream(c.seed, Stream::Noise, static_cast<std::uint64_t>(ti), static_cast<std::uint64_t>(e));
        const double gain = k.gain, rnAdu = k.rn / k.gain;
        double* m = model.data();
        float* o = image.data();
        for (std::size_t i = 0; i < model.size(); ++i) {
            double v = m[i];
            if (c.noise) v = nr.poisson(std::max(0.0, v * gain)) / gain + rnAdu * nr.normal();
            m[i] = v;
        }
        if (c.defects) {
            Rng crRng = stream(c.seed, Stream::Cosmic, static_cast<std::uint64_t>(ti), static_cast<std::uint64_t>(e));
            const int count = static_cast<int>(crRng.poisson(c.cosmicRaysPerMegapixel * n * n / 1e6));
            tr.cosmicRays = count;
            static constexpr int kDirs[8][2] = {{1, 0}, {1, 1}, {0, 1}, {-1, 1}, {-1, 0}, {-1, -1}, {0, -1}, {1, -1}};
            for (int i = 0; i < count; ++i) {
                const int x0 = crRng.uniformInt(2, n - 3), y0 = crRng.uniformInt(2, n - 3);
                const double u = crRng.uniform();
                const int len = u < 0.5 ? 1 : (u < 0.8 ? 2 : 3);
                const auto& d = kDirs[crRng.uniformInt(0, 7)];
                const double total = std::exp(crRng.uniform(std::log(300.0), std::log(20000.0)));
                std::array<double, 3> wts{1.0, 0.0, 0.0};
                double wsum = 1.0;
                for (int j = 1; j < len; ++j) wsum += (wts[static_cast<std::size_t>(j)] = crRng.uniform(0.2, 1.0));
                double sx = 0.0, sy = 0.0;
                for (int j = 0; j < len; ++j) {
                    const double dep = total * wts[static_cast<std::size_t>(j)] / wsum;
                    const int xx = x0 + j * d[0], yy = y0 + j * d[1];
                    model(xx, yy) += dep;
                    sx += dep * xx;
                    sy += dep * yy;
                }
                const auto sky = w.pixelToSky(sx / total, sy / total);
                row(sky.raDeg, sky.decDeg, sx / total, sy / total, total, "cosmic_ray", fmt::format("cr{:03d}", i));
            }
            for (const BadColumn& b : cam.badColumns)
                for (int y = b.y0; y <= b.y1; ++y) {
                    double& v = model(b.x, y);
                    v = b.hot ? v + b.levelAdu : (c.noise ? rnAdu * nr.normal() : 0.0);
                }
        }
        for (std::size_t i = 0; i < model.size(); ++i) o[i] = static_cast<float>(std::min(m[i], k.sat));
    }

    // Header.
    fits::Header h;
    h.set("OBJECT", tgt.name, "target name");
    h.set("TELESCOP", "SIMULATED");
    h.set("INSTRUME", "astrid-sim");
    h.set("FILTER", c.filter);
    h.set("DATE-OBS", isoFromMjd(mjd), "UTC start of exposure");
    h.set("MJD-OBS", roundTo(mjd, 8), "MJD (UTC) start of exposure");
    h.set("EXPTIME", c.exposureSec, "[s] exposure time");
    h.set("AIRMASS", k.airmass);
    h.set("GAIN", k.gain, "[e-/ADU]");
    h.set("RDNOISE", k.rn, "[e-] read noise");
    if (e == 0 && c.referenceDepth > 1) h.set("NCOMBINE", c.referenceDepth, "exposures averaged");
    h.set("SATURATE", k.sat, "[ADU] saturation level");
    h.set("SEEING", roundTo(k.fwhm * c.pixelScaleArcsec * k.scale, 4), "[arcsec] PSF FWHM");
    h.set("FWHM", k.fwhm, "[px] PSF FWHM");
    h.set("BUNIT", "ADU");
    for (const fits::Card& card : header.cards()) {
        if (card.key == "NAXIS" || card.key == "NAXIS1" || card.key == "NAXIS2") continue;
        h.append(card);
    }
    h.set("TRUEFWHM", k.fwhm, "[px] true Moffat FWHM (before pixel)");
    h.set("TRUEBETA", k.beta, "true Moffat beta");
    h.set("TRUEELL", k.ell, "true PSF ellipticity 1 - b/a");
    h.set("TRUEPA", k.pa, "[deg] true PSF PA, from +x to +y");
    h.set("TRUEZP", k.zp, "true zero point (mag of 1 ADU)");
    // What a survey's calibration writes (ZTF MAGZP): photometry reads it from the reference.
    h.set("MAGZP", std::round(k.zp * 1000.0) / 1000.0, "photometric zero point (mag of 1 ADU)");
    h.set("TRUESKY", k.sky, "[ADU] true sky at the image centre");
    if (c.seed <= static_cast<std::uint64_t>(std::numeric_limits<long long>::max()))
        h.set("SIMSEED", static_cast<long long>(c.seed), "astrid simulate seed");
    else
        h.set("SIMSEED", std::to_string(c.seed), "astrid simulate seed");

    const fs::path file = outDir / tr.file;
    std::error_code ec;
    fs::create_directories(file.parent_path(), ec);
    if (ec) throw IoError("simulate: cannot create directory " + file.parent_path().string() + ": " + ec.message());
    fits::FitsFile f = fits::FitsFile::create(file.string());
    f.writeImage(image, h);
    f.close();
    return out;
}

// A re-run into the same directory with fewer epochs must not leave older epoch files behind: the
// pipeline selects by date and would pick them up. Only files of our own naming are removed.
void removeStaleEpochFiles(const fs::path& dir, const std::string& name) {
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return;
    const std::string prefix = name + "_e";
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string file = entry.path().filename().string();
        if (file.size() <= prefix.size() + 5 || file.compare(0, prefix.size(), prefix) != 0 ||
            file.compare(file.size() - 5, 5, ".fits") != 0)
            continue;
        const std::string digits = file.substr(prefix.size(), file.size() - prefix.size() - 5);
        if (!std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) continue;
        fs::remove(entry.path(), ec);
        if (ec) throw IoError("simulate: cannot remove stale " + entry.path().string() + ": " + ec.message());
    }
}

// ------------------------------------------------------------------------------------------------
// Text outputs

void writeText(const fs::path& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) throw IoError("simulate: cannot open " + path.string() + " for writing");
    out << text;
    out.close();
    if (!out) throw IoError("simulate: cannot write " + path.string());
}

std::string fmtNum(double v, const char* spec) {
    if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
    if (std::isnan(v)) return "nan";
    return fmt::format(fmt::runtime(spec), v);
}

constexpr const char* kTruthHeader =
    "# astrid simulate truth: one row per injected source per image.\n"
    "# target,epoch,role: the image (epoch 0 = reference, before discovery; 1..K science).\n"
    "# mjd: MJD-OBS of the image. filter: its band.\n"
    "# ra,dec: ICRS degrees. x,y: 0-based pixel position in that image (pixel centres at integers),\n"
    "#   exactly the image's own WCS (header) applied to ra,dec; sources are listed when 0-based\n"
    "#   -0.5 <= x,y < size-0.5 (stars and galaxies just outside still add light at the edges).\n"
    "# flux: total ADU of the source in the image (PSF-convolved, before noise and clipping; light\n"
    "#   falling off the image included). Cosmic rays: ADU deposited, not PSF-convolved.\n"
    "# magnitude: zero_point - 2.5 log10(flux), the image's true zero point (epochs.csv); inf for flux 0.\n"
    "# kind: star | galaxy | transient | cosmic_ray. id: stable per target across epochs (s<n> star,\n"
    "#   g<n> galaxy, host = the transient's host galaxy, sn = the transient); cosmic rays cr<n> per image.\n";

void appendTruthRows(std::string& buf, const std::vector<TruthRow>& rows) {
    for (const TruthRow& r : rows)
        buf += fmt::format("{},{},{},{:.8f},{},{:.12f},{:.12f},{:.9f},{:.9f},{},{},{},{}\n", r.target, r.epoch, r.role,
                           r.mjd, r.filter, r.ra, r.dec, r.x, r.y, fmtNum(r.flux, "{}"),
                           fmtNum(r.magnitude, "{:.6f}"), r.kind, r.id);
}

constexpr const char* kEpochHeader =
    "# astrid simulate epoch truth: one row per image.\n"
    "# file is relative to this file's directory. mjd = MJD-OBS. PSF: Moffat (fwhm_px = geometric mean of the\n"
    "#   axes' FWHM before pixel integration, beta, ellipticity = 1 - b/a, position_angle_deg from +x to +y).\n"
    "# sky_level ADU at the image centre; sky(x,y) = sky_level (1 + sky_grad_x u + sky_grad_y v +\n"
    "#   sky_curvature (u^2 + v^2)), u = (x - c)/(size/2), v = (y - c)/(size/2), c = (size - 1)/2.\n"
    "# zero_point: mag = zero_point - 2.5 log10(ADU). gain e-/ADU, read_noise e-, saturation ADU (clipped).\n"
    "# WCS: crval deg, crpix 0-based, cd deg/px; CD = scale * scale_factor * [[-cos r, sin r], [sin r, cos r]],\n"
    "#   r = rotation_deg; offset_x/y_px = target pixel - image centre; target_x/y = target pixel.\n"
    "# transient_flux ADU (0 at the reference), transient_mag (inf when 0). bad_columns: x:y0-y1:dead|hot.\n";

std::string epochCsvHeader() {
    return "target,epoch,role,file,mjd,fwhm_px,beta,ellipticity,position_angle_deg,sky_level,zero_point,gain,"
           "read_noise,saturation,airmass,exptime,crval_ra,crval_dec,crpix_x,crpix_y,cd11,cd12,cd21,cd22,"
           "offset_x_px,offset_y_px,rotation_deg,scale_factor,target_x,target_y,sky_grad_x,sky_grad_y,"
           "sky_curvature,transient_flux,transient_mag,distortion,bad_columns,cosmic_rays,seed\n";
}

std::string epochCsvRow(const SimEpochTruth& t) {
    auto g = [](double v) { return fmtNum(v, "{}"); };  // shortest text that reads back exactly
    return fmt::format("{},{},{},{},{:.8f},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                       t.targetName, t.epoch, t.role, t.file, t.mjd, g(t.fwhmPx), g(t.beta), g(t.ellipticity),
                       g(t.positionAngleDeg), g(t.skyLevel), g(t.zeroPoint), g(t.gain), g(t.readNoise),
                       g(t.saturation), g(t.airmass), g(t.exposureSec), g(t.crvalRa), g(t.crvalDec), g(t.crpixX),
                       g(t.crpixY), g(t.cd11), g(t.cd12), g(t.cd21), g(t.cd22), g(t.offsetXPx), g(t.offsetYPx),
                       g(t.rotationDeg), g(t.scaleFactor), g(t.targetX), g(t.targetY), g(t.skyGradX), g(t.skyGradY),
                       g(t.skyCurvature), g(t.transientFlux), g(t.transientMag), t.distortion, t.badColumns,
                       t.cosmicRays, t.seed);
}
}  // namespace

// --------------------------------------------------------------------------------------------------

std::string distortionName(Distortion d) {
    switch (d) {
        case Distortion::None: return "none";
        case Distortion::Sip: return "sip";
        case Distortion::Tpv: return "tpv";
    }
    return "none";
}

Distortion parseDistortion(const std::string& textIn) {
    const std::string t = text::toLower(text::trim(textIn));
    if (t == "none" || t == "tan") return Distortion::None;
    if (t == "sip") return Distortion::Sip;
    if (t == "tpv") return Distortion::Tpv;
    throw ConfigError("unknown distortion '" + textIn + "' (none, sip, tpv)", "distortion");
}

double SimEpochTruth::skyAt(double x, double y, int sizePx) const noexcept {
    const double c = 0.5 * (sizePx - 1), h = 0.5 * sizePx;
    const double u = (x - c) / h, v = (y - c) / h;
    return skyLevel * (1.0 + skyGradX * u + skyGradY * v + skyCurvature * (u * u + v * v));
}

SimSummary simulateCampaign(const SimConfig& config) {
    validate(config);
    const auto start = std::chrono::steady_clock::now();
    const fs::path outDir(config.outDir);
    std::error_code ec;
    fs::create_directories(outDir / "archive", ec);
    if (ec) throw IoError("simulate: cannot create " + (outDir / "archive").string() + ": " + ec.message());

    const Camera cam = makeCamera(config);
    const SipInverse inv = config.distortion == Distortion::Sip ? fitSipInverse(cam, 0.5 * config.sizePx, 4) : SipInverse{};

    SimSummary summary;
    summary.catalogPath = (outDir / "catalog.txt").string();
    summary.truthPath = (outDir / "truth.csv").string();
    summary.epochTruthPath = (outDir / "epochs.csv").string();
    summary.jobPath = (outDir / "campaign.ini").string();
    summary.archiveDir = (outDir / "archive").string();

    std::string truth = kTruthHeader;
    truth += "target,epoch,role,mjd,filter,ra,dec,x,y,flux,magnitude,kind,id\n";
    std::string epochs = kEpochHeader + epochCsvHeader();
    double maxBefore = 0.0, maxAfter = 0.0;
    std::vector<TargetPlan> plans;
    for (int t = 0; t < config.targets; ++t) plans.push_back(planTarget(config, t));
    nameTargets(config, plans);
    for (int t = 0; t < config.targets; ++t) {
        TargetPlan& plan = plans[static_cast<std::size_t>(t)];
        planField(config, t, plan);
        removeStaleEpochFiles(outDir / "archive" / targetDirName(plan.target), plan.target.name);
        summary.targets.push_back(plan.target);
        const double disc = *plan.target.discMjd;
        maxBefore = std::max(maxBefore, disc - plan.epochMjd.front());
        maxAfter = std::max(maxAfter, plan.epochMjd.back() - disc);
        for (int e = 0; e <= config.epochs; ++e) {
            EpochOutput eo = renderEpoch(config, cam, inv, plan, t, e, outDir);
            appendTruthRows(truth, eo.rows);
            summary.truthRows += eo.rows.size();
            epochs += epochCsvRow(eo.truth);
            summary.epochs.push_back(std::move(eo.truth));
        }
        // The field is needed no more: keep memory flat for long campaigns.
        plan.stars = {};
        plan.galaxies = {};
    }

    {
        std::ostringstream cat;
        catalog::writeSaiCatalog(cat, summary.targets);
        writeText(summary.catalogPath, cat.str());
    }
    writeText(summary.truthPath, truth);
    writeText(summary.epochTruthPath, epochs);

    // Windows that select the reference and every science epoch, with a margin.
    summary.jobDaysBefore = std::max(400, static_cast<int>(std::ceil(maxBefore)) + 10);
    summary.jobDaysAfter = std::max(200, static_cast<int>(std::ceil(maxAfter)) + 10);
    // Two epochs may point up to 2 x maxOffsetPx apart per axis (plus up to 2 deg of relative
    // rotation): the reference can cover less of a science image than the archive default of 0.85
    // asks. The simulated pairs are still good for differencing over their overlap.
    const double shift = 2.0 * maxOffsetPx(config) / config.sizePx;
    const double worstOverlap = (1.0 - shift) * (1.0 - shift) - 2.0 * std::sin(2.0 * config.maxRotationDeg * M_PI / 180.0);
    const double minOverlap = std::clamp(std::floor(100.0 * worstOverlap - 5.0) / 100.0, 0.1, 0.85);
    writeText(summary.jobPath, fmt::format("# astrid job file written by `astrid simulate` (seed {})\n"
                                           "catalog = catalog.txt\n"
                                           "archive = archive\n"
                                           "output = campaign.h5\n"
                                           "days_before = {}\n"
                                           "days_after = {}\n"
                                           "# pointings differ by up to {:.0f} px per axis between epochs\n"
                                           "min_overlap = {:.2f}\n",
                                           config.seed, summary.jobDaysBefore, summary.jobDaysAfter,
                                           2.0 * maxOffsetPx(config), minOverlap));

    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    log::get("astrid.sim")
        ->info("simulated {} targets x {} epochs of {}x{} px into {} in {:.2f} s ({} truth rows)", config.targets,
               config.epochs + 1, config.sizePx, config.sizePx, config.outDir, secs, summary.truthRows);
    return summary;
}

// --------------------------------------------------------------------------------------------------

std::vector<TruthRow> readTruthCsv(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw IoError("cannot open truth file " + path);
    std::vector<TruthRow> rows;
    std::string line;
    long lineNo = 0;
    bool header = false;
    auto fail = [&](const std::string& why) {
        throw DataError(path + ":" + std::to_string(lineNo) + ": " + why);
    };
    auto number = [&](std::string_view s, const char* what) {
        double v = 0.0;
        const auto t = text::trim(s);
        if (t == "inf") return kInf;
        const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
        if (ec != std::errc{} || p != t.data() + t.size()) fail(std::string("bad ") + what + " '" + std::string(t) + "'");
        return v;
    };
    while (std::getline(in, line)) {
        ++lineNo;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (text::trim(line).empty() || line[0] == '#') continue;
        if (!header) {
            if (!text::startsWith(line, "target,epoch,role,mjd,filter,ra,dec,x,y,flux,magnitude,kind"))
                fail("not a truth.csv header");
            header = true;
            continue;
        }
        const auto f = text::split(line, ',');
        if (f.size() != 13) fail("expected 13 fields, found " + std::to_string(f.size()));
        TruthRow r;
        r.target = std::string(f[0]);
        r.epoch = static_cast<int>(number(f[1], "epoch"));
        r.role = std::string(f[2]);
        r.mjd = number(f[3], "mjd");
        r.filter = std::string(f[4]);
        r.ra = number(f[5], "ra");
        r.dec = number(f[6], "dec");
        r.x = number(f[7], "x");
        r.y = number(f[8], "y");
        r.flux = number(f[9], "flux");
        r.magnitude = number(f[10], "magnitude");
        r.kind = std::string(f[11]);
        r.id = std::string(f[12]);
        rows.push_back(std::move(r));
    }
    if (in.bad()) throw IoError("cannot read truth file " + path);
    if (!header) throw DataError(path + ": no truth.csv header");
    return rows;
}

}  // namespace astrid::sim
