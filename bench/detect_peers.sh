#!/usr/bin/env bash
# Detection on S_corr against SEP (python3-sep, the SExtractor library; Debian package python3-sep)
# on the same synthetic 4k ZOGY difference (bench_detect --export: white-noise pair, ~1,000 point
# sources at S/N 3-50 in S_corr, 30% fading): time, completeness and position RMS against the
# injected positions. SEP runs as one would on a matched-filtered significance image: thresh 5 with
# err=1, no further filter (S_corr is the matched filter already), on S_corr and on -S_corr (fading),
# minarea 5, its default deblending; positions are its isophotal barycentres on S_corr, and
# sep.winpos on D (SExtractor's XWIN_IMAGE with P_D's sigma) as the better SEP position. Both on one
# core (taskset -c 0); times are the best of 3. Prints a markdown table.
#   bash bench/detect_peers.sh [BUILD_DIR] [SIZE]
set -euo pipefail
build="$(realpath "${1:-build}")"
size="${2:-4096}"
/usr/bin/python3 -c "import sep" 2>/dev/null || { echo "SEP not found: apt-get install python3-sep"; exit 1; }
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
taskset -c 0 "$build/bench/bench_detect" --export "$work" "$size" > "$work/astrid.txt"

taskset -c 0 /usr/bin/python3 - "$work" <<'PY'
import csv, sys, time
import numpy as np
import sep
from astropy.io import fits

work = sys.argv[1]
info = dict(l.split() for l in open(f"{work}/astrid.txt"))
astrid_s = float(info["astrid_detect_s"])
sigma = float(info["psf_sigma_px"])
scorr = np.ascontiguousarray(fits.getdata(f"{work}/scorr.fits").astype(np.float32))
diff = np.ascontiguousarray(fits.getdata(f"{work}/diff.fits").astype(np.float32))
truth = [dict((k, float(v)) for k, v in r.items()) for r in csv.DictReader(open(f"{work}/truth.csv"))]
astrid = [dict((k, float(v)) for k, v in r.items()) for r in csv.DictReader(open(f"{work}/astrid.csv"))]
tx = np.array([t["x"] for t in truth]); ty = np.array([t["y"] for t in truth])
tsnr = np.array([t["true_snr"] for t in truth]); tsign = np.sign([t["flux"] for t in truth])

sep.set_extract_pixstack(10_000_000)
def run_sep():
    pos = sep.extract(scorr, 5.0, err=1.0, filter_kernel=None, minarea=5)
    neg = sep.extract(-scorr, 5.0, err=1.0, filter_kernel=None, minarea=5)
    return pos, neg
best = 1e9
for _ in range(3):
    t0 = time.perf_counter(); pos, neg = run_sep(); best = min(best, time.perf_counter() - t0)
t0 = time.perf_counter(); sep.Background(scorr); bkg_s = time.perf_counter() - t0
x = np.concatenate([pos["x"], neg["x"]]); y = np.concatenate([pos["y"], neg["y"]])
sign = np.concatenate([np.ones(len(pos)), -np.ones(len(neg))])
t0 = time.perf_counter()
wx_p, wy_p, _ = sep.winpos(diff, pos["x"], pos["y"], np.full(len(pos), sigma))
wx_n, wy_n, _ = sep.winpos(-diff, neg["x"], neg["y"], np.full(len(neg), sigma))
winpos_s = time.perf_counter() - t0
wx = np.concatenate([wx_p, wx_n]); wy = np.concatenate([wy_p, wy_n])

def evaluate(cx, cy, csign):
    """Nearest detection of the right sign within 2 px of each injected source."""
    cx, cy, csign = np.asarray(cx), np.asarray(cy), np.asarray(csign)
    used = np.zeros(len(cx), bool)
    err = np.full(len(truth), np.nan)
    order = np.argsort(-tsnr)
    for i in order:
        d = np.hypot(cx - tx[i], cy - ty[i])
        d[(csign != tsign[i]) | used] = np.inf
        j = int(np.argmin(d)) if len(d) else -1
        if j >= 0 and d[j] < 2.0:
            used[j] = True; err[i] = d[j]
    found = ~np.isnan(err)
    def comp(lo, hi):
        sel = (tsnr >= lo) & (tsnr < hi)
        return f"{found[sel].sum()}/{sel.sum()} ({found[sel].mean():.3f})"
    bright = (tsnr >= 8) & found
    vbright = (tsnr >= 25) & found
    return (comp(8, 1e9), comp(5, 8), np.sqrt(np.mean(err[bright] ** 2)), np.sqrt(np.mean(err[vbright] ** 2)),
            int((~used).sum()))

ax = [c["x"] for c in astrid]; ay = [c["y"] for c in astrid]; asg = [np.sign(c["significance"]) for c in astrid]
rows = [
    ("astrid detectCandidates (detection + measurement)", astrid_s, evaluate(ax, ay, asg)),
    ("SEP extract on +/-S_corr (isophotal barycentres)", best, evaluate(x, y, sign)),
    ("SEP extract + winpos on D", best + winpos_s, evaluate(wx, wy, sign)),
]
print(f"{len(truth)} injected sources on a {scorr.shape[1]}x{scorr.shape[0]} S_corr; SEP Background on it "
      f"(not needed for S_corr, for reference): {bkg_s:.3f} s\n")
print("| detector | time s | completeness S/N >= 8 | completeness 5-8 | position RMS px (S/N >= 8) | (S/N >= 25) | unmatched detections |")
print("|---|---|---|---|---|---|---|")
for name, t, (c8, c58, rms, rms25, un) in rows:
    print(f"| {name} | {t:.3f} | {c8} | {c58} | {rms:.3f} | {rms25:.3f} | {un} |")
PY
