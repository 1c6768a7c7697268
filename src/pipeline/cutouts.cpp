// Labelled cutout triplets from a difference (issue #5): science, registered reference (scaled to
// the science flux), D / F_D and optionally S_corr around a position, turned north up / east left.
#include <algorithm>
#include <cmath>

#include "detail.hpp"

namespace astrid::pipeline::detail {
namespace {
/// The dihedral transform (transpose, then flips) that brings a cutout closest to north up, east
/// left when drawn with the origin at the lower left: north towards +row, east towards -column.
/// Exact for the usual orientations (any multiple of 90 degrees, mirrored or not); a residual
/// rotation of the sky on the grid (under 45 degrees) remains and is the WCS's (PA in the header).
struct Orientation {
    bool transpose = false, flipRows = false, flipCols = false;
};

Orientation orientationAt(const wcs::SkyWcs& w, double x, double y) {
    Orientation o;
    try {
        const auto c = w.pixelToSky(x, y);
        const double d = 1.0 / 3600.0;  // 1 arcsec
        const auto n = w.skyToPixel(c.raDeg, std::clamp(c.decDeg + d, -90.0, 90.0));
        const auto e = w.skyToPixel(c.raDeg + d / std::max(std::cos(c.decDeg * M_PI / 180.0), 1e-6), c.decDeg);
        double nx = n.x - x, ny = n.y - y, ex = e.x - x, ey = e.y - y;
        o.transpose = std::fabs(nx) > std::fabs(ny);
        if (o.transpose) std::swap(nx, ny), std::swap(ex, ey);
        o.flipRows = ny < 0;  // north must point to +row
        o.flipCols = ex > 0;  // east must point to -column
    } catch (const Error&) {
        // no usable WCS here: as on the grid
    }
    return o;
}

void orient(training::Triplet& t, const training::TripletLayout& layout, const Orientation& o) {
    if (!o.transpose && !o.flipRows && !o.flipCols) return;
    const int h = layout.height, w = layout.width;
    if (o.transpose && h != w) return;  // only square cutouts can be transposed in place
    auto apply = [&](auto* plane) {
        using T = std::remove_pointer_t<decltype(plane)>;
        std::vector<T> copy(plane, plane + static_cast<std::size_t>(h) * static_cast<std::size_t>(w));
        for (int r = 0; r < h; ++r)
            for (int c = 0; c < w; ++c) {
                int sr = r, sc = c;
                if (o.flipRows) sr = h - 1 - sr;
                if (o.flipCols) sc = w - 1 - sc;
                if (o.transpose) std::swap(sr, sc);
                plane[static_cast<std::size_t>(r) * w + c] = copy[static_cast<std::size_t>(sr) * w + sc];
            }
    };
    for (std::size_t p = 0; p < layout.planeCount(); ++p) apply(t.pixels.data() + p * layout.planePixels());
    apply(t.mask.data());
}
}  // namespace

training::CandidateFeatures featuresOf(const CandidateRecord& c) {
    training::CandidateFeatures f;
    f.flux = c.flux, f.fluxErr = c.fluxErr, f.significance = c.significance, f.snr = c.snr;
    f.fwhm = c.fwhm, f.ellipticity = c.ellipticity, f.positionAngle = c.positionAngle;
    f.mag = c.mag, f.magErr = c.magErr;
    f.isDiffPos = c.isDiffPos, f.isSaturated = c.isSaturated, f.isBlended = c.isBlended;
    f.isEdge = c.isEdge, f.isDipole = c.isDipole;
    f.nBad = c.nBad, f.footprintPx = c.footprintPx;
    f.sharpness = c.sharpness, f.dipoleRatio = c.dipoleRatio;
    f.nearestRefDistPx = c.nearestRefDistPx, f.nearestRefMag = c.nearestRefMag;
    return f;
}

std::optional<training::Triplet> cutoutTriplet(const PreparedImage& science, const DifferenceImages& images,
                                               const DifferenceRun& run, const TrainingConfig& cfg, double x, double y,
                                               training::Label label, training::TripletMeta meta) {
    const auto& layout = cfg.layout;
    training::TripletBuilder b(layout);
    b.pasteCentred(0, science.pixels.image, x, y, &science.pixels.mask);
    b.pasteCentred(1, images.registeredReference.image, x, y, &images.registeredReference.mask);
    b.pasteCentred(2, images.zogy.diff, x, y, &images.zogy.mask);
    if (layout.planeCount() > 3) b.pasteCentred(3, images.zogy.scorr, x, y, &images.zogy.mask);
    if (cfg.skipEdge && b.coveredFraction() < 1.0) return std::nullopt;
    meta.x = x;
    meta.y = y;
    if (science.wcs && !(std::isfinite(meta.ra) && std::isfinite(meta.dec))) {
        const auto sky = science.wcs->pixelToSky(x, y);
        meta.ra = sky.raDeg;
        meta.dec = sky.decDeg;
    }
    meta.split = training::assignSplit(meta.targetName, layout.split);
    training::Triplet t = b.finish(label, std::move(meta));
    // The reference on the science flux scale (run.fluxRatio = reference flux per science flux).
    if (std::isfinite(run.fluxRatio) && run.fluxRatio > 0) {
        float* ref = t.pixels.data() + layout.planePixels();
        for (std::size_t i = 0; i < layout.planePixels(); ++i) ref[i] = static_cast<float>(ref[i] / run.fluxRatio);
    }
    if (science.wcs) orient(t, layout, orientationAt(*science.wcs, x, y));
    return t;
}

}  // namespace astrid::pipeline::detail
