#pragma once
// wcslib behind RAII. Pixel coordinates are 0-based with pixel centres at integer values (the FITS
// +1 happens only in sky_wcs.cpp). Sky coordinates are ICRS degrees, RA in [0, 360).
// Every projection wcslib reads from a header works, including TPV and SIP distortions.
#include <array>
#include <memory>
#include <span>
#include <string>

#include "astrid/fits/header.hpp"

namespace astrid::wcs {

struct SkyPoint {
    double raDeg = 0.0;
    double decDeg = 0.0;
};
struct PixelPoint {
    double x = 0.0;
    double y = 0.0;
};

/// A celestial WCS (the two celestial axes of a header). Copyable (deep copy); not safe to use one
/// instance from several threads at once (wcslib caches state in it): copy it per thread.
class SkyWcs {
public:
    /// Parses the header's primary WCS (wcspih, all wcslib relaxations, wcsfix repairs).
    /// Throws WcsError naming header.source() when there is no usable celestial WCS.
    static SkyWcs fromHeader(const fits::Header& header);
    /// A plain TAN WCS: crval (deg), crpix (0-based pixel), cd matrix (deg/pixel, row-major
    /// {CD1_1, CD1_2, CD2_1, CD2_2}).
    static SkyWcs tan(SkyPoint crval, PixelPoint crpix, std::array<double, 4> cd);

    SkyWcs(const SkyWcs& other);
    SkyWcs& operator=(const SkyWcs& other);
    SkyWcs(SkyWcs&&) noexcept;
    SkyWcs& operator=(SkyWcs&&) noexcept;
    ~SkyWcs();

    /// 0-based pixel -> sky. Throws WcsError for a pixel outside the projection's domain.
    SkyPoint pixelToSky(double x, double y) const;
    /// Sky -> 0-based pixel. Throws WcsError when the position has no pixel (e.g. behind a TAN plane).
    PixelPoint skyToPixel(double raDeg, double decDeg) const;
    /// Batch versions (much faster per point). Points that fail come back as NaN.
    void pixelToSky(std::span<const double> x, std::span<const double> y, std::span<double> ra,
                    std::span<double> dec) const;
    void skyToPixel(std::span<const double> ra, std::span<const double> dec, std::span<double> x,
                    std::span<double> y) const;

    /// Local pixel scale at a pixel (arcsec/pixel, geometric mean of the two axes).
    double pixelScaleArcsec(double x, double y) const;
    /// Projection code of the celestial axes, e.g. "TAN", "TPV", "SIN".
    std::string projection() const;
    /// Header cards that describe this WCS (wcshdo), to write into a FITS header.
    fits::Header toHeader() const;

private:
    SkyWcs() = default;
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Fraction of image A's pixels whose sky position falls inside image B (0..1), sampled on a
/// grid of `samples` x `samples` points. Both images given by WCS and size in pixels.
double footprintOverlap(const SkyWcs& a, int widthA, int heightA, const SkyWcs& b, int widthB, int heightB,
                        int samples = 33);

/// True when the sky position lands on the image at least `marginPx` from its edges.
bool footprintContains(const SkyWcs& wcs, int width, int height, SkyPoint p, double marginPx = 0.0);

}  // namespace astrid::wcs
