#pragma once
// Internals of the detect module shared by its translation units.
#include <cstdint>
#include <vector>

#include "astrid/core/image.hpp"
#include "astrid/detect/detect.hpp"

namespace astrid::detect::detail {

/// One significant peak of a footprint (a source to measure).
struct Peak {
    int x = 0, y = 0;   ///< pixel of the extremum
    float value = 0;    ///< sign x S_corr there (> 0)
};

struct Pixel {
    int x = 0, y = 0;
};

/// A connected region of |S_corr| >= footprintSigma of one sign with its significant peaks
/// (highest first).
struct Footprint {
    int sign = 1;  ///< +1 brightening, -1 fading
    std::vector<Pixel> pixels;
    std::vector<Peak> peaks;
};

/// Thresholding, run-length labelling and watershed deblending (footprints.cpp). Fills the
/// footprint counters of `result`.
std::vector<Footprint> findFootprints(const Image<float>& scorr, const Image<std::uint16_t>& mask,
                                      const DetectConfig& config, DetectionResult& result);

/// P_D with what measuring needs: its Gaussian-equivalent size and sub-pixel shifted copies.
class PsfStamp {
public:
    /// Throws DataError for an empty, even-sized or non-positive stamp.
    explicit PsfStamp(const Image<double>& stamp);
    int half() const noexcept { return half_; }
    int size() const noexcept { return 2 * half_ + 1; }
    const Image<double>& stamp() const noexcept { return stamp_; }
    /// Adaptive-moment sigma of the pixelated stamp (px): the centroid window.
    double sigmaPx() const noexcept { return sigma_; }
    /// Gaussian-equivalent FWHM with the pixel removed (px), as Candidate::fwhmPx.
    double fwhmPx() const noexcept { return fwhm_; }
    /// The stamp Lanczos-3 shifted so that its centre lies at (h + fx, h + fy), |fx|, |fy| <= 0.5:
    /// out[j * size + i] is the model of a unit source at (px + fx, py + fy) at pixel
    /// (px + i - h, py + j - h).
    void shifted(double fx, double fy, std::vector<double>& out) const;
    /// The stamp at offset (dx, dy) from its centre, bilinearly interpolated; 0 beyond it.
    double valueAt(double dx, double dy) const;

private:
    Image<double> stamp_;
    int half_ = 0;
    double sigma_ = 0.0, fwhm_ = 0.0;
};

/// Deconvolves windowed second moments (about their mean) from a circular Gaussian window of sigma
/// `sigma` and from the pixel (1/12 px^2 per axis); false when the result is not positive definite.
bool deconvolvedShape(double xx, double xy, double yy, double sigma, double& fwhmPx, double& ellipticity,
                      double& positionAngleDeg);

/// saturatedExclusionPx resolved (P_D's half-size when < 0), in whole pixels.
int saturatedReach(const DetectConfig& config, const PsfStamp& psf);
/// Whether a pixel with `satBits` lies within `reach` px of (px, py).
bool nearSaturated(const diff::ZogyResult& z, int px, int py, int reach, std::uint16_t satBits);

/// A peak to measure, with what the grouping decided about it.
struct Member {
    Peak peak;
    int sign = 1;
    int footprint = 0;              ///< index into the group's footprints
    double startX = 0, startY = 0;  ///< the S_corr peak refined per axis (peakStart)
    bool fixedPosition = false;     ///< a dipole lobe: keep the start position (see measureGroup)
    bool fromResidual = false;      ///< found in the residual of the group's PSF fit
};

/// The S_corr peak refined by a 3-point Gaussian (log-parabola) fit per axis, within half a pixel.
void peakStart(const Peak& peak, int sign, const diff::ZogyResult& z, const DetectConfig& config, double& x, double& y);

/// Measures a group of peaks jointly (the peaks of one footprint, or of two footprints joined by a
/// dipole) into `out`. Each member is centroided on its sign x (D - the other members' PSF models
/// at their fitted fluxes); members with fixedPosition keep their start: the two lobes of a dipole
/// overlap, and a pair of opposite PSFs a fraction of a pixel apart constrains only flux x
/// separation. Groups without a dipole are searched for further sources in the residual of the
/// joint fit (see detect.hpp, "deblending"); a member the added sources explain may be dropped.
/// For each candidate appended, `origin` gets the index of its member, or -1 for a source found in
/// a residual. Returns the number of sources found in residuals.
int measureGroup(std::vector<Member> members, const std::vector<const Footprint*>& footprints,
                 const diff::ZogyResult& z, const PsfStamp& psf, const DetectConfig& config,
                 std::vector<Candidate>& out, std::vector<int>& origin);

}  // namespace astrid::detect::detail
