// Fake injection and recovery (issue #5): point sources with the science image's own PSF, placed
// on blank sky and near detected sources, at magnitudes around each position's 5-sigma limit,
// injected into a copy of the prepared science image (with Poisson noise), differenced against
// the same registered reference, and matched to the candidates of that difference.
#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>

#include "astrid/photometry/forced_psf.hpp"
#include "detail.hpp"

namespace astrid::pipeline::detail {
namespace {
/// splitmix64: decorrelates the (seed, target, epoch) triple into one RNG seed.
std::uint64_t mix(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

struct Spot {
    double x, y;
    std::int8_t hostKind;
    double hostOffset;
};

bool maskedNear(const Image<std::uint16_t>& mask, double x, double y, double radius) {
    const int r = static_cast<int>(std::ceil(radius));
    const int cx = static_cast<int>(std::lround(x)), cy = static_cast<int>(std::lround(y));
    for (int j = cy - r; j <= cy + r; ++j)
        for (int i = cx - r; i <= cx + r; ++i) {
            if (i < 0 || j < 0 || i >= mask.width() || j >= mask.height()) return true;
            if ((i - cx) * (i - cx) + (j - cy) * (j - cy) > r * r) continue;
            if (mask(i, j) != 0) return true;
        }
    return false;
}
}  // namespace

std::vector<InjectionRecord> injectAndRecover(const catalog::Target& target, const PreparedImage& science,
                                              DifferenceImages& images, const DifferenceRun& run,
                                              const DifferenceConfig& diffConfig, const detect::DetectConfig& dc,
                                              double zeroPoint, const InjectionConfig& cfg,
                                              const TrainingConfig* training, const training::TripletMeta* meta,
                                              std::vector<training::Triplet>* triplets) {
    std::vector<InjectionRecord> out;
    if (cfg.perEpoch <= 0 || !science.psf) return out;
    const double fwhm = run.fwhmSciencePx > 0 ? run.fwhmSciencePx : 3.0;
    const int w = science.pixels.image.width(), h = science.pixels.image.height();
    const double margin = std::max(cfg.marginPx, static_cast<double>(science.psf->halfSize()));
    if (w <= 2 * margin || h <= 2 * margin) return out;
    std::mt19937_64 rng(mix(cfg.seed ^ mix(static_cast<std::uint64_t>(target.id)) ^
                            mix(static_cast<std::uint64_t>(run.scienceObsId) * 7919u)));
    std::uniform_real_distribution<double> unit(0.0, 1.0);

    double tx = std::numeric_limits<double>::quiet_NaN(), ty = tx;
    if (science.wcs) {
        const auto p = science.wcs->skyToPixel(target.raDeg, target.decDeg);
        tx = p.x;
        ty = p.y;
    }
    const auto& stars = science.stars.stars;
    std::vector<const psf::Star*> hosts;
    for (const auto& s : stars)
        if (s.x > margin && s.y > margin && s.x < w - 1 - margin && s.y < h - 1 - margin) hosts.push_back(&s);

    // Positions: each fake is either near a detected source (a host galaxy or a star, where
    // subtraction residuals make detection hard) or on blank sky; none near the target, another
    // fake, a masked pixel or the border.
    const auto& mask = images.zogy.mask;
    std::vector<Spot> spots;
    for (int attempt = 0; attempt < 60 * cfg.perEpoch && static_cast<int>(spots.size()) < cfg.perEpoch; ++attempt) {
        Spot s{0, 0, 0, std::numeric_limits<double>::quiet_NaN()};
        // The kind is fixed per slot (the first hostFraction of them near sources) so that the
        // blank-sky positions, rejected more often, still get their share.
        const bool nearHost = !hosts.empty() && static_cast<double>(spots.size()) < cfg.hostFraction * cfg.perEpoch;
        if (nearHost) {
            const auto* host = hosts[static_cast<std::size_t>(unit(rng) * static_cast<double>(hosts.size())) % hosts.size()];
            const double r = (0.5 + 1.5 * unit(rng)) * fwhm, a = 2.0 * std::numbers::pi * unit(rng);
            s = {host->x + r * std::cos(a), host->y + r * std::sin(a), 1, r};
        } else {
            s.x = margin + unit(rng) * (w - 1 - 2 * margin);
            s.y = margin + unit(rng) * (h - 1 - 2 * margin);
            const double clear2 = 9.0 * fwhm * fwhm;
            if (std::any_of(stars.begin(), stars.end(), [&](const psf::Star& t) {
                    return (t.x - s.x) * (t.x - s.x) + (t.y - s.y) * (t.y - s.y) < clear2;
                }))
                continue;
        }
        if (s.x < margin || s.y < margin || s.x > w - 1 - margin || s.y > h - 1 - margin) continue;
        if (std::isfinite(tx) && std::hypot(s.x - tx, s.y - ty) < cfg.minTargetDistanceFwhm * fwhm) continue;
        const double sep = std::max(cfg.minSeparationFwhm * fwhm, 8.0);
        if (std::any_of(spots.begin(), spots.end(), [&](const Spot& o) { return std::hypot(o.x - s.x, o.y - s.y) < sep; }))
            continue;
        if (!mask.empty() && maskedNear(mask, s.x, s.y, 1.5 * fwhm)) continue;
        spots.push_back(s);
    }
    if (spots.empty()) return out;

    // The 1-sigma flux error of a PSF fit on the clean difference at each position (what the
    // forced photometry measures there): the fakes' S/N scale.
    std::vector<photometry::PixelPosition> pos;
    for (const auto& s : spots) pos.push_back({s.x, s.y});
    std::vector<photometry::ForcedPsfResult> sigma;
    {
        const DifferenceView view(images.zogy);
        if (!view.image().variance.empty())
            sigma = photometry::forcedPsfPhotometry(view.image(), pos, images.zogy.psfD, differenceFitConfig(fwhm));
    }
    if (sigma.empty()) return out;

    PreparedImage injected = science;
    injected.label = science.label + " (with fakes)";
    double gain = science.header.getDouble("GAIN").value_or(1.0);
    if (!(gain > 0.0)) gain = 1.0;
    const double ratio = std::isfinite(run.fluxRatio) && run.fluxRatio > 0 ? run.fluxRatio : 1.0;
    std::uniform_real_distribution<double> dmag(cfg.dmagMin, cfg.dmagMax);
    for (std::size_t k = 0; k < spots.size(); ++k) {
        const double err = sigma[k].fluxErr;
        if (!(std::isfinite(err) && err > 0.0)) continue;
        InjectionRecord rec;
        rec.scienceObsId = run.scienceObsId;
        rec.index = static_cast<int>(out.size());
        rec.x = spots[k].x;
        rec.y = spots[k].y;
        rec.hostKind = spots[k].hostKind;
        rec.hostOffsetPx = spots[k].hostOffset;
        rec.fluxSci = 5.0 * err * std::pow(10.0, -0.4 * dmag(rng));
        rec.snrTrue = rec.fluxSci / err;
        if (std::isfinite(zeroPoint)) {
            rec.mag = zeroPoint - 2.5 * std::log10(rec.fluxSci * ratio);
            rec.magLimit = zeroPoint - 2.5 * std::log10(5.0 * err * ratio);
        }
        if (science.wcs) {
            const auto sky = science.wcs->pixelToSky(rec.x, rec.y);
            rec.ra = sky.raDeg;
            rec.dec = sky.decDeg;
        }
        // The PSF at this position, centred on pixel (cx, cy) with the sub-pixel offset; each
        // pixel gets Poisson noise on its electrons and its variance grows accordingly.
        const int cx = static_cast<int>(std::lround(rec.x)), cy = static_cast<int>(std::lround(rec.y));
        const Image<double> stamp = science.psf->stampAt(rec.x, rec.y, rec.x - cx, rec.y - cy);
        const int hs = science.psf->halfSize();
        for (int j = -hs; j <= hs; ++j)
            for (int i = -hs; i <= hs; ++i) {
                const double v = rec.fluxSci * stamp(i + hs, j + hs);
                if (!(v > 0.0)) continue;
                const double electrons = v * gain;
                const double drawn = electrons < 1e5 ? static_cast<double>(std::poisson_distribution<long long>(electrons)(rng))
                                                     : std::normal_distribution<double>(electrons, std::sqrt(electrons))(rng);
                injected.pixels.image(cx + i, cy + j) += static_cast<float>(drawn / gain);
                if (!injected.pixels.variance.empty())
                    injected.pixels.variance(cx + i, cy + j) += static_cast<float>(v / gain);
            }
        out.push_back(rec);
    }
    if (out.empty()) return out;

    // The same registered reference, differenced against the science image with fakes.
    DifferenceRun scratch = run;
    subtractRegistered(injected, images, diffConfig, scratch);
    const auto cands = candidatesOf(injected, images, scratch, zeroPoint, dc);
    const double radius = std::max(cfg.matchRadiusFwhm * fwhm, 1.5);
    std::vector<char> used(cands.size(), 0);
    for (auto& rec : out) {
        double best = radius;
        std::size_t bestIdx = cands.size();
        for (std::size_t c = 0; c < cands.size(); ++c) {
            if (used[c] || !cands[c].isDiffPos) continue;
            const double dist = std::hypot(cands[c].x - rec.x, cands[c].y - rec.y);
            if (dist <= best) best = dist, bestIdx = c;
        }
        if (bestIdx == cands.size()) continue;
        used[bestIdx] = 1;
        const auto& c = cands[bestIdx];
        rec.recovered = true;
        rec.candX = c.x;
        rec.candY = c.y;
        rec.candSignificance = c.significance;
        rec.candFlux = c.flux;
        rec.candFluxErr = c.fluxErr;
        rec.candFwhm = c.fwhm;
        rec.candSharpness = c.sharpness;
        if (training && training->enabled && meta && triplets) {
            training::TripletMeta m = *meta;
            m.candidateIndex = c.index;  // in this injected difference, not in /candidates
            m.labelSource = training::LabelSource::InjectedFake;
            m.injectedMag = rec.mag;
            m.injectedSnr = rec.snrTrue;
            m.features = featuresOf(c);
            m.ra = rec.ra;
            m.dec = rec.dec;
            if (auto t = cutoutTriplet(injected, images, scratch, *training, c.x, c.y, training::Label::Real, m))
                triplets->push_back(std::move(*t));
        }
    }
    return out;
}

}  // namespace astrid::pipeline::detail
