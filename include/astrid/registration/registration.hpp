#pragma once
// Registration of the reference image onto each science image's pixel grid (issue #3).
//
//   1. PixelMap::fromWcs(sciWcs, refWcs, w, h)      science pixel -> reference pixel from the WCSs
//   2. matchStarLists(sciStars, refStars, &map)     pairs stars, fits the correction polynomial
//                                                   (pattern matching when the WCS guess fails)
//   3. resample(reference, result.map, w, h)        Lanczos3, flux-conserving, variance and mask
//   4. fluxRatio(result.pairs)                      reference / science photometric ratio
//
// Everything maps SCIENCE pixel (x, y) -> REFERENCE pixel (x', y'); pixels 0-based with centres at
// integer coordinates, x the column. The pieces live in their own headers, included here.
#include "astrid/registration/flux_ratio.hpp"
#include "astrid/registration/match.hpp"
#include "astrid/registration/pixel_map.hpp"
#include "astrid/registration/resample.hpp"
