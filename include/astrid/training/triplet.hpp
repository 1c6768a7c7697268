#pragma once
// Labelled cutout triplets (science, reference, difference[, S_corr]) as plain data: what the
// campaign's cutout stage and `astrid import-ztf` produce and output::RunFile writes to /training
// (docs/output-format.md, docs/training.md). No HDF5 here.
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

#include "astrid/core/image.hpp"
#include "astrid/training/split.hpp"

namespace astrid::training {

/// /training/labels values.
enum class Label : std::int8_t { Bogus = 0, Real = 1, BlankSky = 2 };

/// Where a label came from (/training/meta label_source).
enum class LabelSource : std::int8_t {
    InjectedFake = 0,        ///< real: matched to a fake injected by astrid
    CatalogTransient = 1,    ///< real: matched to a catalog transient
    UnmatchedCandidate = 2,  ///< bogus: a candidate matching nothing (subtraction artifacts)
    BlankSky = 3,            ///< blank-sky negative
    ZtfDrb = 4,              ///< ZTF alert, label = drb >= threshold, score = drb
    ZtfRb = 5,               ///< ZTF alert without drb (schema < 3.3), label = rb >= threshold, score = rb
};
std::string_view labelSourceName(LabelSource s) noexcept;
std::string_view labelName(Label l) noexcept;

/// /training/mask bits (uint8, one plane shared by all pixel planes of a triplet). Pixels are never
/// NaN, so a network sees finite input: kOutside pixels hold 0 in every plane, a non-finite value
/// becomes 0 in its plane.
namespace maskbit {
inline constexpr std::uint8_t kOutside = 1;    ///< no pixel there: the cutout crosses an image edge (padding)
inline constexpr std::uint8_t kFlagged = 2;    ///< non-finite, bad, no-data or cosmic-ray pixel in some plane
inline constexpr std::uint8_t kSaturated = 4;  ///< saturated in some plane (value kept)
}  // namespace maskbit

/// Shape and conventions of every triplet in one file (/training attributes).
struct TripletLayout {
    std::vector<std::string> planes{"science", "reference", "difference"};
    int height = 63;  ///< px (ZTF alert stamps are 63 x 63)
    int width = 63;
    /// Orientation of the pixel grid, stated (docs/training.md): "north_up_east_left" for astrid
    /// cutouts (row index grows to the north, column index to the west, i.e. north up and east left
    /// when drawn with the origin at the lower left); "ztf_stamp_as_distributed" for ZTF imports.
    std::string orientation = "north_up_east_left";
    std::string pixelUnits = "science image ADU (reference scaled to the science zero point)";
    /// deflate level for /training/triplets and /training/mask chunks; 0 = none (the default:
    /// float noise compresses poorly, docs/performance.md).
    int gzipLevel = 0;
    /// The fractions the producer assigned splits with (recorded as attributes; assignSplit).
    SplitFractions split;

    std::size_t planeCount() const noexcept { return planes.size(); }
    std::size_t planePixels() const noexcept {
        return static_cast<std::size_t>(height) * static_cast<std::size_t>(width);
    }
    std::size_t tripletPixels() const noexcept { return planeCount() * planePixels(); }
    /// The planes joined by commas, e.g. "science,reference,difference".
    std::string planesAttribute() const;
    /// Throws ConfigError naming the problem (no planes, empty/duplicate/comma names, size < 1 or
    /// > 1024, gzip level outside 0..9).
    void validate() const;
};

/// Real/bogus features of the candidate a triplet is centred on (the /candidates columns);
/// NaN / -1 where unknown (blank-sky triplets, fields a survey does not provide).
struct CandidateFeatures {
    static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
    double flux = kNaN, fluxErr = kNaN;  ///< difference-image flux, science ADU
    double significance = kNaN, snr = kNaN;
    double fwhm = kNaN;                  ///< px
    double ellipticity = kNaN;           ///< 1 - b/a
    double positionAngle = kNaN;         ///< deg
    double mag = kNaN, magErr = kNaN;
    std::int8_t isDiffPos = -1, isSaturated = -1, isBlended = -1, isEdge = -1, isDipole = -1;  ///< 1/0, -1 unknown
    std::int32_t nBad = -1, footprintPx = -1;
    double sharpness = kNaN, dipoleRatio = kNaN;
    double nearestRefDistPx = kNaN, nearestRefMag = kNaN;
};

/// Per-triplet metadata (/training/meta row).
struct TripletMeta {
    static constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
    std::int64_t targetId = -1;
    std::string targetName;             ///< also the split key
    std::int64_t obsId = -1;            ///< science observation id (ZTF: candid)
    std::int32_t candidateIndex = -1;   ///< index in /candidates for (target, obs); -1 none
    double mjd = kNaN;
    std::string filter;
    double ra = kNaN, dec = kNaN;       ///< deg ICRS, the cutout centre
    double x = kNaN, y = kNaN;          ///< cutout centre on the science image, 0-based px
    LabelSource labelSource = LabelSource::UnmatchedCandidate;
    double score = kNaN;                ///< a survey's real/bogus score (ZTF drb), NaN otherwise
    double injectedMag = kNaN, injectedSnr = kNaN;  ///< NaN unless an injected fake
    CandidateFeatures features;
    Split split = Split::Train;
};

/// One triplet: pixels [planes][height][width] (row-major, x fastest), mask [height][width].
struct Triplet {
    std::vector<float> pixels;
    std::vector<std::uint8_t> mask;
    Label label = Label::Bogus;
    TripletMeta meta;
};

/// Assembles a triplet plane by plane from images of any size: the frame pixel (fx, fy) takes the
/// source pixel (fx - x0, fy - y0). Frame pixels no plane covers are kOutside (0); cost is
/// O(height * width) per plane whatever the source size, so pasting from a full 4k image is cheap.
class TripletBuilder {
public:
    explicit TripletBuilder(TripletLayout layout);
    const TripletLayout& layout() const noexcept { return layout_; }
    /// Pastes plane `plane` (0-based, < planeCount) from `source` with its pixel (0,0) at frame
    /// pixel (x0, y0); `sourceMask` (same shape, astrid MaskBit bits) when given flags pixels.
    /// Non-finite values become 0 + kFlagged. Throws std::out_of_range for a bad plane index and
    /// DataError when the mask's shape differs from the source's.
    void paste(std::size_t plane, const Image<float>& source, int x0, int y0,
               const Image<std::uint16_t>* sourceMask = nullptr);
    /// Pastes so that source pixel (cx, cy) (rounded) lands on the frame centre (width/2, height/2).
    void pasteCentred(std::size_t plane, const Image<float>& source, double cx, double cy,
                      const Image<std::uint16_t>* sourceMask = nullptr);
    /// The triplet; frame pixels not covered by every plane get kOutside and 0 in every plane.
    /// Throws DataError when a plane was never pasted.
    Triplet finish(Label label, TripletMeta meta) const;
    /// Fraction of frame pixels without kOutside so far (all planes pasted).
    double coveredFraction() const;

private:
    TripletLayout layout_;
    std::vector<float> pixels_;
    std::vector<std::uint8_t> flags_;     // per frame pixel: kFlagged/kSaturated
    std::vector<std::uint8_t> coverage_;  // per frame pixel: how many planes covered it
    std::vector<bool> pasted_;
};

}  // namespace astrid::training
