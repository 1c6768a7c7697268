#pragma once
// The simulated campaign: the embedded default data set and the ground truth of every later test.
//
// simulateCampaign(config) writes into config.outDir:
//   catalog.txt                          the targets in the SAI sncat layout (catalog::writeSaiCatalog)
//   archive/<name>/<name>_e<k>.fits      one float32 image per epoch; k = 0 is the reference epoch
//                                        (before discovery), k = 1..K the science epochs (after it).
//                                        The file name carries no role: the pipeline decides by date.
//   truth.csv                            every injected source in every epoch (format in its header)
//   epochs.csv                           the per-epoch truth (SimEpochTruth, one row per image)
//   campaign.ini                         a job file for `astrid run` with paths relative to itself
//
// Conventions: pixels 0-based, centres at integers, x the column; sky ICRS degrees; dates MJD (UTC);
// image values ADU, bias-subtracted, flat-fielded (the sky is the only background). A magnitude is
// zeroPoint - 2.5 log10(flux in ADU, whole exposure). Everything is a pure function of the config:
// each target draws from its own random streams, derived from (seed, purpose, target index, epoch),
// so a target's images do not depend on the order of generation or on how many targets there are.
// The same config gives byte-identical files on the same platform; the uniform/normal/Poisson
// transforms are our own (the std distributions differ between standard libraries), so only last-bit
// differences of libm could make another platform differ.
//
// The targets: named per discovery year in catalog order like real SNe (2021aa, 2021ab, 2022aa, ...),
// type Ia (70%) or II, discovered in 2021-2022 (integer MJD), peak 6-18 days later (max_date in the
// catalog is the true peak), |Dec| < 70 deg; target 0 always has -9.5 < Dec < -1 deg so that the SAI
// detached-sign declination ("- 7 39 48.267") is in every catalog. Positions are quantised to the SAI
// precision (0.0001 s, 0.001") so the catalog read back gives the true position.
// Epochs: the reference 100-300 days before discovery, science epochs from 1-4 days after it, 5-20
// days apart. The transient (Bazin light curve, peak mag in [transientPeakMagMin, Max]) has zero flux
// at the reference epoch. Its host galaxy centre is 0.5-2" from it.
//
// Realism choices worth knowing (defaults):
//   - zero point 28.5 for the whole exposure (not 25): with a dark r-band sky of ~21 mag/arcsec^2 at
//     0.5"/px that gives the "few hundred ADU" sky, and a 19-20 mag transient peak has S/N ~ 30-60;
//     with a zero point of 25 and the same sky it would be at S/N ~ 2.
//   - one camera: the bad columns and the reference pixel are fixed in detector coordinates for the
//     whole campaign; distortion (when asked) is the camera's and the same in every image.
//   - per-epoch conditions (seeing, airmass, sky, gain, read noise) vary independently; header values
//     are rounded to sensible digits and the rounded values are the truth (what the pixels used).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "astrid/catalog/catalog.hpp"

namespace astrid::sim {

/// Optical distortion written into every image's WCS: none (TAN), SIP (A_/B_ polynomials with a fitted
/// AP_/BP_ inverse, CTYPE RA---TAN-SIP) or TPV (PV1_/PV2_ polynomials, CTYPE RA---TPV).
enum class Distortion { None, Sip, Tpv };

/// "none", "sip", "tpv".
std::string distortionName(Distortion d);
/// Inverse of distortionName (case-insensitive); throws ConfigError naming "distortion" otherwise.
Distortion parseDistortion(const std::string& text);

/// Everything that shapes a campaign. Ranges are drawn uniformly per epoch unless stated.
struct SimConfig {
    std::string outDir;              ///< created if missing
    int targets = 4;                 ///< >= 1
    int epochs = 3;                  ///< science epochs K >= 1 (plus one reference epoch)
    int sizePx = 512;                ///< square images, >= 128
    std::uint64_t seed = 1;
    double pixelScaleArcsec = 0.5;   ///< nominal; each epoch scales it by scaleFactor
    std::string filter = "r";
    bool galaxies = true;            ///< background galaxies and one host per transient
    Distortion distortion = Distortion::None;
    double distortionPx = 1.5;       ///< radial (barrel) displacement at the image corners, px

    // Scene.
    double starsPerMegapixel = 3000;  ///< mean star density (stars per 10^6 px of sky)
    double starCountSlope = 0.30;     ///< dN/dm ~ 10^(slope m)
    double starMagBright = 11.0;      ///< star magnitude range. With the default zero point ~7 stars per
    double starMagFaint = 22.0;       ///< 1024^2 image saturate (~2 per 512^2), and the faintest are at the
                                      ///< detection limit (S/N ~ 5), so completeness can be measured
    int minSaturatedStars = 3;        ///< per target, stars that saturate in every epoch even in the worst
                                      ///< seeing, placed inside every footprint; drawn from the bright end of
                                      ///< the same power law when the field has fewer (a 512^2 field
                                      ///< averages ~2 otherwise)
    double galaxiesPerMegapixel = 80; ///< background galaxies (a few tens per 512^2 image)
    double galaxyMagBright = 17.5, galaxyMagFaint = 22.5;  ///< background galaxies, dN/dm ~ 10^(0.4 m)
    double hostMagBright = 16.5, hostMagFaint = 18.5;
    double transientPeakMagMin = 19.0, transientPeakMagMax = 20.0;

    // Observing conditions.
    double zeroPoint = 28.5;          ///< at airmass 1 and clear sky (mag of 1 ADU in the exposure)
    double extinctionPerAirmass = 0.1;
    double exposureSec = 60.0;
    double airmassMax = 1.8;          ///< airmass drawn in [1.02, airmassMax]
    double fwhmMinPx = 2.5, fwhmMaxPx = 4.5;
    double betaMin = 2.5, betaMax = 4.0;
    double ellipticityMax = 0.1;      ///< PSF 1 - b/a
    double skyMin = 200, skyMax = 600;  ///< sky level at the image centre, ADU
    double skyGradientMax = 0.015;    ///< linear sky term per half-image, fraction of the level
    double skyCurvatureMax = 0.01;    ///< quadratic term at the half-image radius, fraction
    double gainMin = 1.0, gainMax = 2.5;           ///< e-/ADU
    double readNoiseMin = 3.0, readNoiseMax = 8.0;  ///< e-
    double fullWellElectrons = 150000;  ///< SATURATE = min(adcMaxAdu, fullWell / gain)
    double adcMaxAdu = 65535;

    // Pointing.
    double maxPointingOffsetPx = 40;  ///< target offset from the image centre, per axis (capped at 15% of sizePx)
    double maxRotationDeg = 1.0;      ///< |rotation| of each epoch's CD matrix
    double maxScaleChange = 0.005;    ///< |scaleFactor - 1|

    // Detector effects and noise.
    bool noise = true;                ///< Poisson (gain) + Gaussian read noise; false renders the expectation
    bool defects = true;              ///< bad columns and cosmic rays
    double cosmicRaysPerMegapixel = 100;  ///< mean count (a few tens per 512^2)
    /// The reference epoch is the mean of this many exposures, like a stacked template: the same
    /// signal in ADU, the noise of K times the electrons (header GAIN x K, RDNOISE x sqrt(K), NCOMBINE).
    int referenceDepth = 1;
};

/// The truth of one image. Angles in degrees; pixels 0-based.
struct SimEpochTruth {
    std::string targetName;
    int epoch = 0;                   ///< 0 = reference, 1..K science
    std::string role;                ///< "reference" or "science"
    std::string file;                ///< path relative to outDir
    double mjd = 0.0;                ///< start of the exposure (MJD-OBS)
    double fwhmPx = 0.0, beta = 0.0, ellipticity = 0.0, positionAngleDeg = 0.0;  ///< MoffatPsf fields
    double skyLevel = 0.0;           ///< ADU at the image centre (see skyAt)
    double zeroPoint = 0.0;          ///< mag = zeroPoint - 2.5 log10(ADU)
    double gain = 0.0;               ///< e-/ADU
    double readNoise = 0.0;          ///< e-
    double saturation = 0.0;         ///< ADU; pixels are clipped here
    double airmass = 0.0;
    double exposureSec = 0.0;
    // WCS truth: CRPIX 0-based; CD rows {CD1_1, CD1_2; CD2_1, CD2_2} in deg/px.
    double crvalRa = 0.0, crvalDec = 0.0, crpixX = 0.0, crpixY = 0.0;
    double cd11 = 0.0, cd12 = 0.0, cd21 = 0.0, cd22 = 0.0;
    /// The target's pixel position minus the image centre ((size - 1) / 2): the pointing offset.
    double offsetXPx = 0.0, offsetYPx = 0.0;
    /// CD = pixelScale * scaleFactor * [[-cos r, sin r], [sin r, cos r]] (r = rotationDeg): north up and
    /// east left for r = 0; the pixel +y axis points at position angle r (east of north).
    double rotationDeg = 0.0, scaleFactor = 1.0;
    double targetX = 0.0, targetY = 0.0;  ///< pixel position of the target (transient) in this image
    // Sky(x, y) = skyLevel * (1 + skyGradX u + skyGradY v + skyCurvature (u^2 + v^2)),
    // u = (x - c) / (size / 2), v = (y - c) / (size / 2), c = (size - 1) / 2.
    double skyGradX = 0.0, skyGradY = 0.0, skyCurvature = 0.0;
    double transientFlux = 0.0;      ///< ADU (0 at the reference epoch)
    double transientMag = 0.0;       ///< +inf when the flux is 0
    std::string distortion;          ///< "none", "sip", "tpv"
    /// Detector defects as "x:y0-y1:dead|hot" (rows y0..y1 inclusive), space-separated; empty if none.
    std::string badColumns;
    int cosmicRays = 0;
    std::uint64_t seed = 0;          ///< campaign seed (SIMSEED)

    /// The true sky level (ADU) at pixel (x, y) of an image of `sizePx`.
    double skyAt(double x, double y, int sizePx) const noexcept;
};

/// What simulateCampaign wrote. Paths are outDir joined with the file name.
struct SimSummary {
    std::string catalogPath, truthPath, epochTruthPath, jobPath, archiveDir;
    std::vector<catalog::Target> targets;  ///< as written to catalog.txt (ids and lines match a re-read)
    std::vector<SimEpochTruth> epochs;     ///< target-major, epoch-minor
    std::size_t truthRows = 0;             ///< data rows of truth.csv
    int jobDaysBefore = 0, jobDaysAfter = 0;
};

/// Generates and writes a campaign. Throws ConfigError for an invalid config (naming the field),
/// IoError when a directory or text file cannot be written, FitsError when an image cannot.
SimSummary simulateCampaign(const SimConfig& config);

/// One row of truth.csv.
struct TruthRow {
    std::string target;
    int epoch = 0;
    std::string role;
    double mjd = 0.0;
    std::string filter;
    double ra = 0.0, dec = 0.0;   ///< deg
    double x = 0.0, y = 0.0;      ///< 0-based pixel position in that epoch's image
    double flux = 0.0;            ///< total ADU (cosmic rays: deposited ADU)
    double magnitude = 0.0;       ///< zeroPoint - 2.5 log10(flux); +inf for flux 0
    std::string kind;             ///< "star", "galaxy", "transient", "cosmic_ray"
    std::string id;               ///< stable across epochs within a target: "s00042", "g0007", "host"
                                  ///< (the transient's host galaxy), "sn"; cosmic rays "cr012" per image
};

/// Reads truth.csv back. Throws IoError when the file cannot be read, DataError for a malformed row
/// (naming the line).
std::vector<TruthRow> readTruthCsv(const std::string& path);

}  // namespace astrid::sim
