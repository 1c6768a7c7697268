#!/usr/bin/env bash
# The real DECam pair (../shared/data, 2016 vs 2018, i band, a crowded 256 px cutout): `astrid diff`
# must subtract it cleanly (S_corr ~ N(0, 1) away from sources) and the known variable at
# RA 318.10810, Dec -66.01581 (~30% brighter in 2018) must stand out in S_corr.
set -euo pipefail
: "${ASTRID:?}" "${ASTRID_SHARED_DATA:?}"
d="$ASTRID_SHARED_DATA/images/decam_i_318.108-66.016/input_data"
if [ ! -f "$d/DEC-OBS18a.mini.fits" ]; then
  echo "SKIPPED: DECam data not found under $d"
  exit 77
fi
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
"$ASTRID" diff --reference "$d/DEC-OBS18a.mini.fits" --science "$d/DEC-OBS04a.mini.fits" --out "$out"
for f in diff.fits scorr.fits psf_sci.fits psf_ref.fits summary.json; do test -s "$out/$f"; done
/usr/bin/python3 - "$out" <<'PY'
import json, sys, warnings
import numpy as np
from astropy.io import fits
from astropy.wcs import WCS
warnings.simplefilter("ignore")
out = sys.argv[1]
summary = json.load(open(f"{out}/summary.json"))
with fits.open(f"{out}/scorr.fits") as h:
    s = h[0].data.astype(float)
    w = WCS(h[0].header)
x, y = w.all_world2pix([[318.10810, -66.01581]], 0)[0]
xi, yi = int(round(x)), int(round(y))
peak = np.nanmax(s[yi - 3:yi + 4, xi - 3:xi + 4])
good = s[np.isfinite(s)]
robust = 1.4826 * np.median(np.abs(good - np.median(good)))
print(f"variable at pixel ({x:.1f}, {y:.1f}): S_corr peak {peak:.1f}; robust S_corr std {robust:.3f}; "
      f"flux ratio {summary['flux_ratio']:.3f}; FWHM sci {summary['fwhm_sci_px']:.2f} ref {summary['fwhm_ref_px']:.2f}")
assert peak > 5.0, f"the known variable does not stand out (S_corr {peak:.1f})"
assert abs(robust - 1.0) < 0.1, f"S_corr is not N(0,1) away from sources (robust std {robust:.3f})"
assert 0.8 < summary["flux_ratio"] < 1.25, summary["flux_ratio"]
PY
echo "real DECam pair: OK"
