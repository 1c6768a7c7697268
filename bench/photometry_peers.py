#!/usr/bin/python3
"""astrid's aperture photometry against SEP and photutils on the same image and positions.

    /usr/bin/python3 bench/photometry_peers.py --tool build/tests/photometry_apertures        # 4096^2, 10,000 positions
    /usr/bin/python3 bench/photometry_peers.py --quick --tool build/tests/photometry_apertures  # the ctest: 1024^2, 2,000

Writes a simulated image (sky 1000 + Gaussian noise sigma 10 + Gaussian stars, float32 FITS) and
uniform random positions (the edges included: apertures partly off the image), then measures
  - raw sums in circles of radius 3, 5, 8 px with exact pixel overlap: astrid (photometry_apertures),
    sep.sum_circle(subpix=0), photutils aperture_photometry(method='exact');
  - the same plus a local background from the annulus 12-20 px: astrid (sigma-clipped median,
    3 sigma, 5 passes), sep.sum_circle(bkgann=...) (SEP's annulus mean, no clipping), photutils
    ApertureStats(CircularAnnulus, sigma_clip=SigmaClip(3, maxiters=5)).median + the sums.
Checks that the three sets of raw sums agree to 1e-6 relative and that astrid's annulus medians equal
photutils' (same centre-in-annulus pixels, same clipping), prints a markdown table of CPU seconds
(best of --repeat; photutils' ApertureStats once in the full run: it takes minutes) and exits 1 on
disagreement, 77 when sep or photutils is missing.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import sep
    import photutils
    from astropy.io import fits
    from astropy.stats import SigmaClip
    from photutils.aperture import ApertureStats, CircularAnnulus, CircularAperture, aperture_photometry
except ImportError as e:  # the ctest skips
    print(f"skipped: {e}")
    sys.exit(77)

RADII = [3.0, 5.0, 8.0]
ANNULUS = (12.0, 20.0)


def make_image(size, n_stars, rng):
    img = 1000.0 + 10.0 * rng.standard_normal((size, size))
    xs, ys = rng.uniform(0, size - 1, n_stars), rng.uniform(0, size - 1, n_stars)
    fluxes = 10 ** rng.uniform(2.5, 5.0, n_stars)
    sigma, h = 1.5, 8
    from scipy.special import erf
    for x, y, f in zip(xs, ys, fluxes):
        ix, iy = int(round(x)), int(round(y))
        x0, x1, y0, y1 = max(ix - h, 0), min(ix + h + 1, size), max(iy - h, 0), min(iy + h + 1, size)
        gx = np.arange(x0, x1 + 1) - 0.5 - x
        gy = np.arange(y0, y1 + 1) - 0.5 - y
        px = np.diff(0.5 * erf(gx / (sigma * np.sqrt(2))))
        py = np.diff(0.5 * erf(gy / (sigma * np.sqrt(2))))
        img[y0:y1, x0:x1] += f * np.outer(py, px)
    return img.astype(np.float32)


def best_cpu(repeat, fn):
    best, out = None, None
    for _ in range(repeat):
        t0 = time.process_time()
        out = fn()
        t = time.process_time() - t0
        best = t if best is None else min(best, t)
    return best, out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tool", required=True, help="build/tests/photometry_apertures")
    ap.add_argument("--quick", action="store_true", help="1024^2, 2,000 positions, one repetition (the ctest)")
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--positions", type=int, default=10000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default=None, help="keep the image, positions and CSV here")
    a = ap.parse_args()
    if a.quick:
        a.size, a.positions, a.repeat = 1024, 2000, 1

    rng = np.random.default_rng(4)
    work = a.workdir or tempfile.mkdtemp(prefix="astrid_phot_peers_")
    os.makedirs(work, exist_ok=True)
    img = make_image(a.size, a.size * a.size // 800, rng)
    img_path, pos_path, csv_path = (os.path.join(work, n) for n in ("image.fits", "positions.txt", "astrid.csv"))
    fits.writeto(img_path, img, overwrite=True)
    x = rng.uniform(-0.49, a.size - 0.51, a.positions)
    y = rng.uniform(-0.49, a.size - 0.51, a.positions)
    np.savetxt(pos_path, np.column_stack([x, y]), fmt="%.17g")

    # astrid
    radii_arg = ",".join(f"{r:g}" for r in RADII)
    res = subprocess.run([a.tool, img_path, pos_path, csv_path, radii_arg, f"{ANNULUS[0]:g},{ANNULUS[1]:g}",
                          str(a.repeat)], check=True, capture_output=True, text=True)
    timing = json.loads(res.stdout)
    tab = np.genfromtxt(csv_path, delimiter=",", names=True)
    ours = np.column_stack([tab[f"sum_{r:g}"] for r in RADII])
    ours_bkg = tab["bkg"]

    data = np.ascontiguousarray(img, dtype=np.float32)
    data64 = data.astype(np.float64)

    # SEP: one call per radius (sum_circle takes one radius for all positions).
    t_sep, sep_sums = best_cpu(a.repeat, lambda: np.column_stack(
        [sep.sum_circle(data, x, y, r, subpix=0)[0] for r in RADII]))
    t_sep_bkg, _ = best_cpu(a.repeat, lambda: [sep.sum_circle(data, x, y, r, subpix=0, bkgann=ANNULUS)[0]
                                              for r in RADII])

    # photutils: one call for all radii.
    pos = np.column_stack([x, y])
    apers = [CircularAperture(pos, r=r) for r in RADII]

    def phot_sums():
        t = aperture_photometry(data64, apers, method="exact")
        return np.column_stack([np.asarray(t[f"aperture_sum_{i}"]) for i in range(len(RADII))])

    t_phot, phot = best_cpu(a.repeat, phot_sums)
    annulus = CircularAnnulus(pos, r_in=ANNULUS[0], r_out=ANNULUS[1])
    clip = SigmaClip(sigma=3.0, maxiters=5)
    t_stats, phot_bkg = best_cpu(1, lambda: np.asarray(ApertureStats(data64, annulus, sigma_clip=clip).median))

    rel = lambda u, v: float(np.max(np.abs(u - v) / np.abs(v)))
    d_sep, d_phot = rel(ours, sep_sums), rel(ours, phot)
    d_peers = rel(sep_sums, phot)
    finite = np.isfinite(ours_bkg) & np.isfinite(phot_bkg)
    d_bkg = float(np.max(np.abs(ours_bkg[finite] - phot_bkg[finite]) / np.abs(phot_bkg[finite])))
    n_bkg_missing = int(np.sum(~finite))

    n = a.positions
    print(f"\n{n} positions on a {a.size}^2 float32 image, radii {radii_arg} px, annulus "
          f"{ANNULUS[0]:g}-{ANNULUS[1]:g} px; CPU seconds, best of {a.repeat} "
          f"(photutils ApertureStats: 1); sep {sep.__version__}, photutils {photutils.__version__}\n")
    print("| code | raw sums, 3 radii (s) | sums + annulus background (s) | annulus estimator | "
          "max relative difference of the raw sums to astrid |")
    print("|---|---|---|---|---|")
    print(f"| astrid | {timing['raw_s']:.3f} | {timing['annulus_s']:.3f} | sigma-clipped median | - |")
    print(f"| sep.sum_circle(subpix=0) | {t_sep:.3f} | {t_sep_bkg:.3f} | mean, no clipping | {d_sep:.1e} |")
    print(f"| photutils aperture_photometry(method='exact') + ApertureStats | {t_phot:.3f} | "
          f"{t_phot + t_stats:.3f} | sigma-clipped median | {d_phot:.1e} |")
    print(f"\nsep vs photutils raw sums: max relative difference {d_peers:.1e}")
    print(f"annulus medians astrid vs photutils ApertureStats: max relative difference {d_bkg:.1e} "
          f"({n - n_bkg_missing} positions compared, {n_bkg_missing} without a value in one of them)")

    ok = d_sep <= 1e-6 and d_phot <= 1e-6 and d_bkg <= 1e-6 and n_bkg_missing == 0
    print("OK" if ok else "DISAGREEMENT beyond 1e-6")
    if not a.workdir:
        for p in (img_path, pos_path, csv_path):
            os.remove(p)
        os.rmdir(work)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
