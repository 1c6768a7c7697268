#!/usr/bin/python3
"""astrid's difference of the real DECam stacks against the source project's own (SFFT, Hu et al. 2022).

    /usr/bin/python3 bench/decam_compare.py BUILD_DIR [--data DIR] [--png PATH] [--keep DIR]

Runs `astrid stack` on the five 2016 exposures (reference) and the five 2018 exposures (science) of
../shared/data/images/decam_i_318.108-66.016 and `astrid diff` on the two stacks, in a temporary
directory, then compares our D (diff.fits, D / F_D in science ADU) with 4check/FinalDifference.fits.

What the SFFT difference is (its test script, test/difference_noise_decorrelation/decorr.py of
thomasvrussell/sfft): Stack04 - K (x) Stack18, where each stack is the median of five exposures
convolved with SFFT's matching kernels onto the first exposure (04a, 18a) and K (FinalMatchKernel,
sum 1.0333) matches Stack18 onto Stack04. Its header is DEC-OBS04a's, so its flux scale is that of
exposure 04a in ADU and its PSF that of Stack04 (~04a's); its noise is not decorrelated (the
.DeCorr file is). Our D is in the ADU of our science stack, which is scaled to its first input, 04a,
too, and has the PSF P_D of ZOGY's eq 14. So the two are compared (a) by the variable's aperture
flux (radius ~2.5 FWHM, local annulus), which does not depend on the PSF, (b) by the pixel
correlation after Gaussian smoothing to one resolution, (c) by the robust noise away from sources,
per pixel and at that resolution, and by the empirical S/N of the variable, (d) by the residual of
the bright star that leaves a dipole.

Prints a markdown table (docs/testing.md quotes it) and writes a PNG (needs python3-matplotlib):
reference stack, science stack, our D, our S_corr with the two sources circled, SFFT's difference.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from astropy.io import fits
from astropy.visualization import ZScaleInterval
from astropy.wcs import WCS

warnings.simplefilter("ignore")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
VARIABLE = (318.10810, -66.01581)
DIPOLE_STAR = (318.11763, -66.01063)


def robust_std(a):
    a = a[np.isfinite(a)]
    return 1.4826 * np.median(np.abs(a - np.median(a)))


def smooth(a, sigma):
    """Separable Gaussian smoothing (edges extended, NaN as 0); sigma 0 returns a copy."""
    a = np.nan_to_num(np.asarray(a, float))
    if sigma <= 0:
        return a.copy()
    r = int(4 * sigma + 0.5)
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    p = np.pad(a, r, mode="edge")
    p = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), 0, p)
    p = np.apply_along_axis(lambda v: np.convolve(v, k, mode="same"), 1, p)
    return p[r:-r, r:-r]


def half_max_fwhm(psf):
    """Non-parametric FWHM of a stamp: 2 sqrt(area at >= half the peak / pi)."""
    return 2.0 * np.sqrt(np.sum(psf >= 0.5 * psf.max()) / np.pi)


def zogy_pd(psf_n, psf_r, fr, sigma_n, sigma_r, size=96):
    """ZOGY's P_D (eq 14) from the two PSF stamps, the flux ratio and the noise levels."""
    def padded(p):
        out = np.zeros((size, size))
        h = p.shape[0] // 2
        out[size // 2 - h:size // 2 + h + 1, size // 2 - h:size // 2 + h + 1] = p / p.sum()
        return np.fft.fft2(np.fft.ifftshift(out))
    pn, pr = padded(psf_n), padded(psf_r)
    d = np.sqrt(sigma_n ** 2 * fr ** 2 * np.abs(pr) ** 2 + sigma_r ** 2 * np.abs(pn) ** 2)
    pd = np.real(np.fft.fftshift(np.fft.ifft2(fr * pn * pr / d)))
    return pd / pd.sum()


def moffat_fwhm(img, x, y, h=10):
    """FWHM of a star from its half-maximum area (local background from the stamp's edge)."""
    xi, yi = int(round(x)), int(round(y))
    stamp = np.nan_to_num(img[yi - h:yi + h + 1, xi - h:xi + h + 1].astype(float))
    edge = np.concatenate([stamp[0], stamp[-1], stamp[:, 0], stamp[:, -1]])
    return half_max_fwhm(stamp - np.median(edge))


def aperture(img, x, y, r, r_in, r_out, yy, xx):
    d = np.hypot(xx - x, yy - y)
    ap, an = d <= r, (d > r_in) & (d < r_out)
    return np.nansum(img[ap]) - np.nanmedian(img[an]) * ap.sum()


def run(cmd):
    print("$ " + " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", help="astrid build directory (holds the astrid binary)")
    ap.add_argument("--data", default=os.path.join(REPO, "..", "shared", "data", "images", "decam_i_318.108-66.016"))
    ap.add_argument("--png", default=os.path.join(REPO, "docs", "images", "decam_difference.png"))
    ap.add_argument("--keep", help="write the stacks and the difference here instead of a temporary directory")
    args = ap.parse_args()
    astrid = os.path.join(os.path.abspath(args.build), "astrid")
    inp, check = os.path.join(args.data, "input_data"), os.path.join(args.data, "4check")
    if not os.path.isfile(os.path.join(inp, "DEC-OBS18a.mini.fits")):
        sys.exit(f"DECam data not found under {inp}")
    tmp = None
    if args.keep:
        work = args.keep
        os.makedirs(work, exist_ok=True)
    else:
        tmp = tempfile.TemporaryDirectory()
        work = tmp.name
    ref_stack, sci_stack, out = (os.path.join(work, n) for n in ("stack18.fits", "stack04.fits", "diff"))
    run([astrid, "stack", "--out", ref_stack] + [os.path.join(inp, f"DEC-OBS18{k}.mini.fits") for k in "abcde"])
    run([astrid, "stack", "--out", sci_stack] + [os.path.join(inp, f"DEC-OBS04{k}.mini.fits") for k in "abcde"])
    run([astrid, "diff", "--reference", ref_stack, "--science", sci_stack, "--out", out])

    summary = json.load(open(os.path.join(out, "summary.json")))
    with fits.open(os.path.join(out, "diff.fits")) as h:
        ours, mask, wcs = h[0].data.astype(float), h["MASK"].data, WCS(h[0].header)
    scorr = fits.getdata(os.path.join(out, "scorr.fits")).astype(float)
    sfft_h = fits.getheader(os.path.join(check, "FinalDifference.fits"))
    sfft = fits.getdata(os.path.join(check, "FinalDifference.fits")).astype(float)
    sfft_sci = fits.getdata(os.path.join(check, "Stack-DEC-OBS04.fits")).astype(float)
    sci = fits.getdata(sci_stack).astype(float)
    ref = fits.getdata(ref_stack).astype(float)
    yy, xx = np.mgrid[:ours.shape[0], :ours.shape[1]]
    (vx, vy), (bx, by) = wcs.all_world2pix([VARIABLE, DIPOLE_STAR], 0)
    kernel_sum = fits.getdata(os.path.join(inp, "FinalMatchKernel.fits")).sum()

    # Resolutions. Ours: P_D from the two PSFs astrid measured. SFFT's: the PSF of its Stack04,
    # measured on the bright isolated star near (101, 73).
    psf_n = fits.getdata(os.path.join(out, "psf_sci.fits")).astype(float)
    psf_r = fits.getdata(os.path.join(out, "psf_ref.fits")).astype(float)
    pd = zogy_pd(psf_n, psf_r, summary["flux_ratio"], summary["sigma_sci_adu"], summary["sigma_ref_adu"])
    fwhm_ours = half_max_fwhm(pd)
    fwhm_sfft = moffat_fwhm(sfft_sci, 101, 73)
    fwhm_common = max(fwhm_ours, fwhm_sfft) + 2.0
    s2f = 2.0 * np.sqrt(2.0 * np.log(2.0))
    sm_ours = smooth(ours, np.sqrt(max(fwhm_common ** 2 - fwhm_ours ** 2, 0)) / s2f)
    sm_sfft = smooth(sfft, np.sqrt(max(fwhm_common ** 2 - fwhm_sfft ** 2, 0)) / s2f)

    # Where to measure noise: unmasked in ours, the fainter half of the science stack (smoothed),
    # beyond 3 FWHM of the two known sources and 12 px from the border.
    fw = max(summary["fwhm_sci_px"], summary["fwhm_ref_px"])
    border = (xx >= 12) & (yy >= 12) & (xx < ours.shape[1] - 12) & (yy < ours.shape[0] - 12)
    far = (np.hypot(xx - vx, yy - vy) > 3 * fw) & (np.hypot(xx - bx, yy - by) > 3 * fw)
    good = (mask == 0) & np.isfinite(ours) & np.isfinite(sfft) & border
    quiet = good & far & (smooth(sci, 2.0) < np.nanmedian(sci))

    # (a) the variable: aperture flux in both differences (same radius, local annulus), its flux in
    # our science stack, and the empirical S/N: aperture sums at random quiet positions.
    r_ap = 2.5 * max(fwhm_ours, fwhm_sfft)
    cx, cy = vx, vy
    for _ in range(20):  # centroid on our D (the variable is the only strong source there)
        wt = np.where(np.hypot(xx - cx, yy - cy) < 6, np.exp(-0.5 * ((xx - cx) ** 2 + (yy - cy) ** 2) / 4.0), 0) * np.clip(np.nan_to_num(ours), 0, None)
        cx, cy = (wt * xx).sum() / wt.sum(), (wt * yy).sum() / wt.sum()
    f_ours = aperture(ours, cx, cy, r_ap, r_ap + 3, r_ap + 8, yy, xx)
    f_sfft = aperture(sfft, cx, cy, r_ap, r_ap + 3, r_ap + 8, yy, xx)
    f_host = aperture(sci, cx, cy, r_ap, r_ap + 3, r_ap + 8, yy, xx)
    rng = np.random.default_rng(1)
    sums_ours, sums_sfft = [], []
    while len(sums_ours) < 300:
        x, y = rng.uniform(r_ap + 12, ours.shape[1] - r_ap - 12), rng.uniform(r_ap + 12, ours.shape[0] - r_ap - 12)
        d = np.hypot(xx - x, yy - y)
        if np.hypot(x - vx, y - vy) < 2 * r_ap + 10 or np.hypot(x - bx, y - by) < 2 * r_ap + 10 or not good[d <= r_ap + 8].all():
            continue
        sums_ours.append(aperture(ours, x, y, r_ap, r_ap + 3, r_ap + 8, yy, xx))
        sums_sfft.append(aperture(sfft, x, y, r_ap, r_ap + 3, r_ap + 8, yy, xx))
    err_ours, err_sfft = robust_std(np.array(sums_ours)), robust_std(np.array(sums_sfft))

    # The matched-filter (PSF-fit) S/N of the variable in each difference: the difference correlated
    # with a Gaussian of its PSF's FWHM, the value at the variable over the robust std of the filtered
    # image at quiet pixels (empirical, so correlated noise and residuals count).
    def filtered_snr(img, fwhm):
        f = smooth(img, fwhm / s2f)
        peak = f[int(round(cy)) - 2:int(round(cy)) + 3, int(round(cx)) - 2:int(round(cx)) + 3].max()
        return peak / robust_std(f[quiet])
    mf_ours, mf_sfft = filtered_snr(ours, fwhm_ours), filtered_snr(sfft, fwhm_sfft)

    # (b) correlation at the common resolution.
    def corr(sel):
        return np.corrcoef(sm_ours[sel], sm_sfft[sel])[0, 1]
    corr_all, corr_far = corr(good), corr(good & far)

    # (d) the bright star: its flux, the lobes and the residual within 2.5 FWHM, both differences.
    sx, sy = bx, by
    for _ in range(30):
        r2 = (xx - sx) ** 2 + (yy - sy) ** 2
        wt = np.where(r2 < 64, np.exp(-0.5 * r2 / 4.0) * np.nan_to_num(sci), 0.0)
        sx, sy = (wt * xx).sum() / wt.sum(), (wt * yy).sum() / wt.sum()
    star_flux = aperture(sci, sx, sy, r_ap, r_ap + 3, r_ap + 8, yy, xx)
    near = np.hypot(xx - sx, yy - sy) <= r_ap

    def lobes(img, sigma_smooth):
        sm = smooth(img, 1.0)
        pj, pi = np.unravel_index(np.argmax(np.where(near, sm, -np.inf)), sm.shape)
        nj, ni = np.unravel_index(np.argmin(np.where(near, sm, np.inf)), sm.shape)
        rms = np.sqrt(np.nanmean(img[near] ** 2))
        return (sm[pj, pi], pi - sx, pj - sy, sm[nj, ni], ni - sx, nj - sy, rms, np.nansum(img[near]))
    lob_ours, lob_sfft = lobes(ours, 1.0), lobes(sfft, 1.0)

    rows = [
        ("flux scale", f"ADU of 04a (our science stack is scaled to its first input); F_r {summary['flux_ratio']:.4f}",
         f"04a ADU (header of DEC-OBS04a, no BUNIT); kernel sum {kernel_sum:.4f} (F_r {1 / kernel_sum:.4f})", ""),
        ("PSF FWHM of the difference (px)", f"{fwhm_ours:.2f} (P_D, eq 14)", f"{fwhm_sfft:.2f} (Stack04)", "half-maximum area"),
        ("(a) variable: aperture flux (ADU, r = %.1f px)" % r_ap, f"{f_ours:.0f} +- {err_ours:.0f}", f"{f_sfft:.0f} +- {err_sfft:.0f}",
         f"ours / SFFT = {f_ours / f_sfft:.3f}"),
        ("(a) variable: aperture S/N (empirical error)", f"{f_ours / err_ours:.1f}", f"{f_sfft / err_sfft:.1f}",
         "error = robust std of 300 quiet apertures"),
        ("(a) variable: matched-filter S/N (background noise, empirical)", f"{mf_ours:.1f}", f"{mf_sfft:.1f}",
         "Gaussian of each PSF's FWHM; no source noise (S_corr has it)"),
        ("(a) variable: change / its 2018 flux", f"{f_ours / f_host:.3f}", f"{f_sfft / f_host:.3f}",
         f"2018 aperture flux {f_host:.0f} ADU (our stack)"),
        ("(b) pixel correlation of the two, at FWHM %.1f px: all unmasked pixels" % fwhm_common, f"{corr_all:.3f}", "(same)",
         "both smoothed to one resolution"),
        ("(b) the same beyond 3 FWHM of the two sources", f"{corr_far:.3f}", "(same)", ""),
        ("(c) robust noise per pixel (ADU)", f"{robust_std(ours[quiet]):.1f}", f"{robust_std(sfft[quiet]):.1f}",
         "ours is white (ZOGY); SFFT's is correlated (not decorrelated)"),
        ("(c) robust noise at FWHM %.1f px (ADU)" % fwhm_common, f"{robust_std(sm_ours[quiet]):.2f}", f"{robust_std(sm_sfft[quiet]):.2f}", ""),
        ("(d) bright star: 2018 aperture flux (ADU)", f"{star_flux:.0f}", "", f"centroid ({sx:.1f}, {sy:.1f})"),
        ("(d) positive lobe (ADU, offset px)", "%.0f at (%+.1f, %+.1f)" % lob_ours[0:3], "%.0f at (%+.1f, %+.1f)" % lob_sfft[0:3], "smoothed 1 px"),
        ("(d) negative lobe (ADU, offset px)", "%.0f at (%+.1f, %+.1f)" % lob_ours[3:6], "%.0f at (%+.1f, %+.1f)" % lob_sfft[3:6], ""),
        ("(d) residual rms within r (ADU) / that per star flux", f"{lob_ours[6]:.0f} / {lob_ours[6] / star_flux:.1e}",
         f"{lob_sfft[6]:.0f} / {lob_sfft[6] / star_flux:.1e}", ""),
        ("(d) net residual within r / star flux", f"{lob_ours[7] / star_flux:+.4f}", f"{lob_sfft[7] / star_flux:+.4f}", ""),
    ]
    print(f"astrid {summary.get('algorithm', 'zogy')} difference of the stacks vs SFFT FinalDifference "
          f"(S_corr robust std {summary['scorr_std']:.3f}, variable S_corr peak "
          f"{np.nanmax(scorr[int(round(vy)) - 3:int(round(vy)) + 4, int(round(vx)) - 3:int(round(vx)) + 4]):.1f})\n")
    print("| quantity | astrid (ZOGY, astrid stacks) | SFFT FinalDifference | note |")
    print("|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nSFFT header: EXP_BN {sfft_h.get('EXP_BN')}, GAIN {sfft_h.get('GAIN')}, BUNIT {sfft_h.get('BUNIT', '(none)')}")

    # The picture.
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle
    noise_ours = robust_std(ours[quiet])
    noise_sfft = robust_std(sfft[quiet])
    panels = [
        ("reference: astrid stack of 5 (2016)", ref, "zscale", None),
        ("science: astrid stack of 5 (2018)", sci, "zscale", None),
        ("astrid D / F_D (ADU, +-5 sigma)", ours, "sym", 5 * noise_ours),
        ("astrid S_corr (+-5)", scorr, "sym", 5.0),
        ("SFFT FinalDifference (ADU, +-5 sigma)", sfft, "sym", 5 * noise_sfft),
    ]
    fig, axes = plt.subplots(1, 5, figsize=(15, 3.5), dpi=80)
    for ax, (title, img, stretch, lim) in zip(axes, panels):
        if stretch == "zscale":
            lo, hi = ZScaleInterval().get_limits(img[np.isfinite(img)])
            ax.imshow(img, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        else:
            cmap = plt.get_cmap("RdBu_r").copy()
            cmap.set_bad("0.35")  # masked (NaN) pixels in grey
            ax.imshow(img, origin="lower", cmap=cmap, vmin=-lim, vmax=lim, interpolation="nearest")
        for (x, y), label, colour in (((vx, vy), "variable", "lime"), ((sx, sy), "dipole star", "orange")):
            ax.add_patch(Circle((x, y), 12, fill=False, color=colour, lw=1.2))
            if ax is axes[3]:
                ax.annotate(label, (x, y - 24), color="black", ha="center", fontsize=9, weight="bold")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("DECam i, RA 318.108 Dec -66.016 (256 px, 0.26\"/px): 2018 minus 2016, five exposures per epoch", fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.png)), exist_ok=True)
    fig.savefig(args.png, dpi=80)
    # Noise does not compress: a 256-colour palette keeps the file small (the maps use < 256 colours
    # per panel anyway after the stretch).
    from PIL import Image
    Image.open(args.png).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.png, optimize=True)
    print(f"\npicture: {args.png} ({os.path.getsize(args.png) / 1024:.0f} kB)")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
