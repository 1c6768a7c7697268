#pragma once
// The per-epoch science stages (issue #3), shared by the campaign (processTarget) and the
// single-pair command (`astrid diff`):
//   prepareImage:  mask -> background -> variance -> stars -> PSF           (once per image)
//   differenceImages: register the reference onto the science grid (WCS guess + matched stars,
//                  asterism matching when the WCS fails), flux ratio, Lanczos3 resampling, the
//                  registered reference's own PSF, ZOGY.
// Failures throw StageError naming the stage and the image, so a caller records them per epoch.
#include <optional>
#include <string>

#include "astrid/background/background.hpp"
#include "astrid/core/error.hpp"
#include "astrid/core/image.hpp"
#include "astrid/diff/zogy.hpp"
#include "astrid/fits/fits_file.hpp"
#include "astrid/pipeline/pipeline.hpp"
#include "astrid/psf/psf_model.hpp"
#include "astrid/psf/stars.hpp"
#include "astrid/registration/registration.hpp"
#include "astrid/wcs/sky_wcs.hpp"

namespace astrid::pipeline {

/// A per-epoch failure: the stage it happened in and why (naming the image).
class StageError : public DataError {
public:
    StageError(Stage stage, const std::string& message) : DataError(message), stage_(stage) {}
    Stage stage() const noexcept { return stage_; }

private:
    Stage stage_;
};

/// One image made ready for differencing.
struct PreparedImage {
    std::string label;               ///< "file[hdu]" for messages
    fits::Header header;
    MaskedImage pixels;              ///< background-subtracted image, mask bits, variance (ADU^2)
    std::optional<wcs::SkyWcs> wcs;  ///< empty when the header has none (pattern matching then)
    double backgroundLevel = 0.0, backgroundRms = 0.0;  ///< global values, ADU
    psf::StarFinderResult stars;
    std::optional<psf::PsfModel> psf;
    int cosmicRays = 0;              ///< pixels flagged as cosmic rays (each masked with its 8 neighbours)
    long interpolatedPixels = 0;     ///< defect pixels interpolated over (PrepareConfig::interpolateMaxRun)
    double backgroundS = 0.0, psfS = 0.0;
};

/// Interpolates runs of at most `maxRun` defect pixels (Bad, CosmicRay) along each row between the
/// usable pixels on either side (no mask bit, finite value, finite positive variance): values linear
/// between those two, variances linear plus (0.3 x the value)^2 for the peak a line can miss, and the
/// defect bits replaced by Interpolated. Runs touching the border, longer runs, and runs holding
/// other bits (Saturated, NoData) stay as they are. Row-wise because the detector's defects are
/// columns. Returns the number of pixels interpolated; maxRun <= 0 does nothing.
long interpolateDefects(MaskedImage& image, int maxRun);

/// Runs mask, background, variance (from GAIN/RDNOISE, or the file's variance plane), star finding,
/// cosmic-ray masking (detections sharper than the PSF) and the PSF on one image. `planes.variance`/`planes.mask` are used when present. Throws StageError
/// (Background or Psf) naming `planes.science.path`.
PreparedImage prepareImage(fits::ImagePlanes planes, const PrepareConfig& config);

/// Everything a difference produced (kept for writing FITS outputs; the summary row is separate).
struct DifferenceImages {
    diff::ZogyResult zogy;
    MaskedImage registeredReference;
    std::optional<psf::PsfModel> registeredReferencePsf;
    psf::StarFinderResult registeredReferenceStars;  ///< the reference's stars on the science grid (ref ADU)
    registration::MatchResult match;
    registration::FluxRatio ratio;
};

/// Registers `reference` onto `science`'s grid and runs ZOGY. Fills `run` (FWHMs, star counts,
/// flux ratio, astrometric RMS, noise, F_D, F_S, S_corr spread, quality flags, timings). Throws
/// StageError (Registration, Psf or Difference).
DifferenceImages differenceImages(const PreparedImage& science, const PreparedImage& reference,
                                  const DifferenceConfig& config, const PrepareConfig& prepare, DifferenceRun& run);

/// The two halves of differenceImages, for callers that release the reference in between (a single
/// pair: `astrid diff` drops the reference's planes, 160 MB at 4k, before ZOGY allocates its own).
/// registerReference fills everything but `zogy` and the registration fields of `run`;
/// subtractRegistered runs ZOGY on its result and fills the rest of `run` except wallS.
DifferenceImages registerReference(const PreparedImage& science, const PreparedImage& reference,
                                   const DifferenceConfig& config, const PrepareConfig& prepare, DifferenceRun& run);
void subtractRegistered(const PreparedImage& science, DifferenceImages& images, const DifferenceConfig& config,
                        DifferenceRun& run);

/// Robust standard deviation (1.4826 MAD) of S_corr over pixels without mask bits (subsampled to
/// at most ~1M pixels).
double robustScorrStd(const diff::ZogyResult& z);

/// Writes D / F_D and S_corr (with the science header's WCS and the ZOGY numbers) and the two PSFs
/// as FITS files: `<prefix>diff.fits`, `<prefix>scorr.fits`, `<prefix>psf_sci.fits`,
/// `<prefix>psf_ref.fits`. diff.fits and scorr.fits carry the ZOGY mask bits (MaskBit) as a MASK
/// image extension: masked pixels are NaN, Edge pixels are finite but within a P_D half-size of a
/// masked pixel or the border. Throws FitsError.
void writeDifferenceFits(const std::string& prefix, const PreparedImage& science, const DifferenceImages& d,
                         const DifferenceRun& run);

}  // namespace astrid::pipeline
