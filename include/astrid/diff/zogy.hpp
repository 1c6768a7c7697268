#pragma once
// ZOGY proper image subtraction (Zackay, Ofek & Gal-Yam 2016, ApJ 830, 27; "ZOGY" below, equation
// numbers theirs). Inputs are a science image N and a reference R already registered onto N's pixel
// grid, both background-subtracted, with per-pixel variance images, a combined mask, and PSFs.
//
// Conventions: F_n = 1 (the science image defines the flux scale); F_r = fluxRatio is the
// reference's flux per unit science flux (R ~ F_r x sky). Outputs:
//   diff   = D / F_D: the proper difference in science ADU. A point source of science flux alpha
//            that appears between the epochs shows as alpha x P_D (P_D has unit sum); the noise is
//            white with standard deviation 1 / F_D (ZOGY eqs 13-15).
//   score  = S (eq 17), the matched-filter image; for a point source S = alpha F_S at its centre.
//   scorr  = S_corr (eq 25): S over the square root of its variance including the source noise of
//            both images (eqs 26-28) and the astrometric noise (eqs 30-31); N(0, 1) where nothing
//            changed. flux = S / F_S and fluxErr = sqrt(V(S)) / F_S give a PSF-photometry estimate.
// Large images are processed in overlapping tiles (like the BlackGEM/MeerLICHT pipeline): memory is
// bounded by the tile size and the PSF may differ per tile (the providers are asked at each tile
// centre). Masked pixels are replaced by zero (the background) with background variance before the
// transforms, so a saturated core cannot ring across the image, and are flagged in `mask` of the
// result together with the pixels their kernels touch.
#include <cstdint>
#include <functional>
#include <string>

#include "astrid/core/image.hpp"

namespace astrid::diff {

/// A PSF at a position: a (2h+1) x (2h+1) stamp with unit sum, the image of a point source located at
/// the centre of the stamp's centre pixel. Coordinates are 0-based pixels of the science grid.
using PsfProvider = std::function<Image<double>(double x, double y)>;

struct ZogyConfig {
    int tilePx = 1024;                ///< tile size (core, without overlap); <= 0: the whole image at once
    int overlapPx = 0;                ///< margin around each tile; 0, or less than the largest PSF half-size
                                      ///< (which would wrap the PSF): 3 x that half-size. Smaller margins
                                      ///< trade accuracy of D for speed (FWHM 15 px, 64 px tiles, against
                                      ///< one tile: RMS error of D 0.10 sigma at 1 x, 0.007 at 1.5 x, 0.004 at 3 x)
    double astrometricSigmaXPx = 0.0; ///< registration noise sigma_x (px), e.g. the matched-star RMS / sqrt(2)
    double astrometricSigmaYPx = 0.0;
    bool sourceNoise = true;          ///< use the full variance images in S_corr (else only sigma_n, sigma_r)
    std::uint16_t badMask = 0xFFFF;   ///< mask bits that exclude a pixel
    double psfFloor = 1e-8;           ///< relative floor on the denominators, against division by ~0
    bool keepScore = true;            ///< return S (one image of memory; S_corr and D always)
    bool keepScoreVariance = false;   ///< also return V(S) (one more image of memory)
    /// Also return the per-pixel variance of D / F_D, V_n (x) d_n^2 + V_r (x) d_r^2 over F_D^2
    /// (source noise of both images included; 1 / F_D^2 on pure background): the variance map for
    /// photometry on D. One more inverse transform per tile and one image of memory.
    bool keepDiffVariance = false;
    /// Remove a constant differential background per tile: the median of D over the tile's good
    /// pixels, taken out of D and (through the DC gain from D to S) out of S and S_corr. Two
    /// background estimates never agree exactly (a mesh's clipped sky depends on the seeing through
    /// the faint stars in it); the rest is a constant in D that biases every PSF fit on it by
    /// offset x (sum P / sum P^2), a few percent for faint transients. This is the differential
    /// background term of the Alard-Lupton kernel fit, taken here after the subtraction.
    bool removeOffset = true;
};

struct ZogyInput {
    const Image<float>* science = nullptr;          ///< N, background-subtracted, ADU
    const Image<float>* reference = nullptr;        ///< R on the science grid, background-subtracted
    const Image<float>* scienceVariance = nullptr;  ///< ADU^2, including source noise
    const Image<float>* referenceVariance = nullptr;
    const Image<std::uint16_t>* mask = nullptr;     ///< combined mask on the science grid (may be null)
    PsfProvider sciencePsf;
    PsfProvider referencePsf;
    double fluxRatio = 1.0;  ///< F_r (reference flux per unit science flux)
    /// Background noise sigma of each image (ADU); <= 0: the median of sqrt(variance) over the image.
    double sigmaScience = 0.0;
    double sigmaReference = 0.0;
};

struct ZogyResult {
    Image<float> diff;    ///< D / F_D, science ADU
    Image<float> score;   ///< S (empty unless keepScore)
    Image<float> scorr;   ///< S_corr
    Image<float> scoreVariance;  ///< V(S) used for S_corr (empty unless keepScoreVariance)
    Image<float> diffVariance;   ///< variance of diff, ADU^2 (empty unless keepDiffVariance)
    Image<std::uint16_t> mask;   ///< input mask plus Edge where a kernel reached a masked pixel or the border
    double fD = 0.0;      ///< F_D (eq 15)
    double fS = 0.0;      ///< F_S of the tile nearest the centre: flux = S / F_S
    double sigmaScience = 0.0, sigmaReference = 0.0;  ///< background noise used
    Image<double> psfD;   ///< P_D of the tile nearest the centre (stamp, unit sum)
    int tiles = 0;
    /// Where the time went (seconds): PSF kernels, tile loading, the 8 transforms per tile and
    /// their spectral products, writing the outputs, the edge mask.
    struct Timing {
        double kernelsS = 0, loadS = 0, transformsS = 0, outputS = 0, maskS = 0;
    } timing;
    int fftWidth = 0, fftHeight = 0;  ///< transform size of a tile
    int overlapPx = 0;                ///< margin around the tiles as used (of the tile nearest the centre)
    double offset = 0.0;              ///< differential background removed from D / F_D (removeOffset),
                                      ///< science ADU, of the tile nearest the centre
};

/// Runs ZOGY. Throws DataError for inconsistent inputs (sizes differ, missing PSFs, non-positive
/// noise, a PSF stamp without finite positive sum).
ZogyResult zogy(const ZogyInput& input, const ZogyConfig& config = {});
/// As above with the combined mask handed over (moved) instead of input.mask (which must be null):
/// it becomes the result's mask, so a 4k pair does not hold two copies (32 MB). An empty image
/// means no mask.
ZogyResult zogy(const ZogyInput& input, const ZogyConfig& config, Image<std::uint16_t> combinedMask);

/// FFTW planning effort for transform shapes planned from now on (process-wide; plans are cached
/// per shape). Measure times candidate algorithms once per shape (~1-2 s at 1152^2) for transforms
/// ~35% faster: right for campaigns, wrong for quick tests. Default: Estimate.
enum class FftEffort { Estimate, Measure };
void setFftEffort(FftEffort effort);

/// FFTW single-precision wisdom (the planner's measurements) as text, to save in a file or to
/// broadcast from one rank to the others; importFftWisdom returns false when FFTW rejects the text.
std::string exportFftWisdom();
bool importFftWisdom(const std::string& wisdom);
/// Runs `f` with the process's FFTW planner lock held: for code that calls FFTW's wisdom functions
/// itself (the runner's fftwf_mpi_gather_wisdom / fftwf_mpi_broadcast_wisdom) while another thread
/// may be planning (the FFTW planner is not thread-safe).
void withFftPlannerLocked(const std::function<void()>& f);
/// Wisdom file helpers: importFftWisdomFile returns false when the file does not exist and throws
/// IoError when it exists but cannot be read or FFTW rejects it (naming the file);
/// exportFftWisdomFile writes atomically (temporary name, then rename) and throws IoError.
bool importFftWisdomFile(const std::string& path);
void exportFftWisdomFile(const std::string& path);

/// The smallest n >= minimum that is a multiple of 16 with no prime factor above 5 (FFTW's fast sizes).
int goodFftSize(int minimum);

}  // namespace astrid::diff
