#pragma once
// The photometry module (issue #4): measuring fluxes at given positions and calibrating them.
//
//   aperture.hpp     exact-overlap circular apertures at several radii, local annulus background
//   forced_psf.hpp   forced PSF fluxes at fixed positions (Condon 1997 weighted kernel), with a
//                    PSF provider or a fixed centred stamp shifted by Lanczos-3
//   calibration.hpp  magnitudes and upper limits, zero points from field stars, ensemble
//                    normalisation across epochs
//   flags.hpp        PhotFlag bits and PixelPosition, shared by all results
//
// Conventions: pixels 0-based, pixel centres at integer coordinates, x the column; fluxes in image
// units; variances in image units squared; masks are MaskBit planes. All functions are plain,
// single-threaded and MPI-free; batch calls take a span of positions and return one plain result
// struct per position in the same order. A NaN flux always comes with a flag saying why.
#include "astrid/photometry/aperture.hpp"
#include "astrid/photometry/calibration.hpp"
#include "astrid/photometry/flags.hpp"
#include "astrid/photometry/forced_psf.hpp"
