#include "astrid/training/triplet.hpp"

#include <algorithm>
#include <cmath>
#include <set>
#include <stdexcept>

#include "astrid/core/error.hpp"

namespace astrid::training {

std::string_view labelSourceName(LabelSource s) noexcept {
    switch (s) {
        case LabelSource::InjectedFake: return "injected_fake";
        case LabelSource::CatalogTransient: return "catalog_transient";
        case LabelSource::UnmatchedCandidate: return "unmatched_candidate";
        case LabelSource::BlankSky: return "blank_sky";
        case LabelSource::ZtfDrb: return "ztf_drb";
        case LabelSource::ZtfRb: return "ztf_rb";
    }
    return "?";
}

std::string_view labelName(Label l) noexcept {
    switch (l) {
        case Label::Bogus: return "bogus";
        case Label::Real: return "real";
        case Label::BlankSky: return "blank_sky";
    }
    return "?";
}

std::string TripletLayout::planesAttribute() const {
    std::string out;
    for (std::size_t i = 0; i < planes.size(); ++i) out += (i ? "," : "") + planes[i];
    return out;
}

void TripletLayout::validate() const {
    if (planes.empty() || planes.size() > 8)
        throw ConfigError("a triplet needs 1 to 8 planes, got " + std::to_string(planes.size()), "training_planes");
    std::set<std::string> seen;
    for (const std::string& p : planes) {
        if (p.empty() || p.find_first_of(", \t") != std::string::npos)
            throw ConfigError("plane name '" + p + "' is empty or holds a comma or blank", "training_planes");
        if (!seen.insert(p).second) throw ConfigError("plane '" + p + "' is listed twice", "training_planes");
    }
    if (height < 1 || width < 1 || height > 1024 || width > 1024)
        throw ConfigError("cutout size " + std::to_string(width) + " x " + std::to_string(height) +
                              " px is outside 1..1024",
                          "cutout_size");
    if (gzipLevel < 0 || gzipLevel > 9)
        throw ConfigError("gzip level " + std::to_string(gzipLevel) + " is outside 0..9", "training_gzip");
}

TripletBuilder::TripletBuilder(TripletLayout layout) : layout_(std::move(layout)) {
    layout_.validate();
    pixels_.assign(layout_.tripletPixels(), 0.0f);
    flags_.assign(layout_.planePixels(), 0);
    coverage_.assign(layout_.planePixels(), 0);
    pasted_.assign(layout_.planeCount(), false);
}

void TripletBuilder::paste(std::size_t plane, const Image<float>& source, int x0, int y0,
                           const Image<std::uint16_t>* sourceMask) {
    if (plane >= layout_.planeCount())
        throw std::out_of_range("triplet plane " + std::to_string(plane) + " of " + std::to_string(layout_.planeCount()));
    if (sourceMask && (sourceMask->width() != source.width() || sourceMask->height() != source.height()))
        throw DataError("mask " + std::to_string(sourceMask->width()) + " x " + std::to_string(sourceMask->height()) +
                        " does not match its image " + std::to_string(source.width()) + " x " +
                        std::to_string(source.height()));
    const std::uint8_t bit = static_cast<std::uint8_t>(1u << plane);
    constexpr std::uint16_t kFlagBits =
        bits(MaskBit::Bad) | bits(MaskBit::NoData) | bits(MaskBit::CosmicRay) | bits(MaskBit::Interpolated);
    const int W = layout_.width, H = layout_.height;
    float* dst = pixels_.data() + plane * layout_.planePixels();
    for (int fy = 0; fy < H; ++fy) {
        const int sy = fy - y0;
        for (int fx = 0; fx < W; ++fx) {
            const std::size_t k = static_cast<std::size_t>(fy) * W + fx;
            const int sx = fx - x0;
            if (sx < 0 || sy < 0 || sx >= source.width() || sy >= source.height()) {
                coverage_[k] &= static_cast<std::uint8_t>(~bit);
                dst[k] = 0.0f;
                continue;
            }
            coverage_[k] |= bit;
            const float v = source(sx, sy);
            if (std::isfinite(v)) {
                dst[k] = v;
            } else {
                dst[k] = 0.0f;
                flags_[k] |= maskbit::kFlagged;
            }
            if (sourceMask) {
                const std::uint16_t m = (*sourceMask)(sx, sy);
                if (m & kFlagBits) flags_[k] |= maskbit::kFlagged;
                if (m & bits(MaskBit::Saturated)) flags_[k] |= maskbit::kSaturated;
            }
        }
    }
    pasted_[plane] = true;
}

void TripletBuilder::pasteCentred(std::size_t plane, const Image<float>& source, double cx, double cy,
                                  const Image<std::uint16_t>* sourceMask) {
    const int ix = static_cast<int>(std::lround(cx)), iy = static_cast<int>(std::lround(cy));
    paste(plane, source, layout_.width / 2 - ix, layout_.height / 2 - iy, sourceMask);
}

double TripletBuilder::coveredFraction() const {
    const std::uint8_t all = static_cast<std::uint8_t>((1u << layout_.planeCount()) - 1u);
    const auto n = std::count(coverage_.begin(), coverage_.end(), all);
    return static_cast<double>(n) / static_cast<double>(coverage_.size());
}

Triplet TripletBuilder::finish(Label label, TripletMeta meta) const {
    for (std::size_t p = 0; p < pasted_.size(); ++p)
        if (!pasted_[p]) throw DataError("triplet plane '" + layout_.planes[p] + "' was never filled");
    Triplet t;
    t.pixels = pixels_;
    t.mask.resize(layout_.planePixels());
    const std::uint8_t all = static_cast<std::uint8_t>((1u << layout_.planeCount()) - 1u);
    for (std::size_t k = 0; k < t.mask.size(); ++k) {
        std::uint8_t m = flags_[k];
        if (coverage_[k] != all) {
            m |= maskbit::kOutside;
            for (std::size_t p = 0; p < layout_.planeCount(); ++p) t.pixels[p * layout_.planePixels() + k] = 0.0f;
        }
        t.mask[k] = m;
    }
    t.label = label;
    t.meta = std::move(meta);
    return t;
}

}  // namespace astrid::training
