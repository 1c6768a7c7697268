#!/usr/bin/env bash
# Issue #4's forced-photometry goals measured with enough targets to resolve 1%: the transient's
# forced PSF flux on D against the simulator's truth (median ratio, pull = (flux - true) / error per
# S/N bin), with 95% intervals from a bootstrap over TARGETS (one reference per target is shared by
# all its epochs, so epochs of a target are not independent samples).
#
#   bash bench/photometry_truth.sh BUILD_DIR [TARGETS] [SIZE] [SEED] [-- extra simulate flags]
#
# Defaults: 120 targets x 4 epochs of 640^2 px (about 50 PSF stars per image), hosts on, no detector
# defects (their effect is measured separately: docs/testing.md), 2 ranks. ~3 min on 2 cores.
set -euo pipefail
build="${1:?build directory}"
targets="${2:-120}"
size="${3:-640}"
seed="${4:-23}"
shift $(( $# < 4 ? $# : 4 ))
[[ "${1:-}" == "--" ]] && shift
astrid="$build/astrid"
work="$(mktemp -d)"
# KEEP=1 keeps the simulation and the output for a closer look.
if [[ -z "${KEEP:-}" ]]; then trap 'rm -rf "$work"' EXIT; else echo "work directory: $work"; fi
"$astrid" simulate --out "$work/sim" --targets "$targets" --epochs 4 --size "$size" --seed "$seed" --no-defects "$@" > /dev/null
mpiexec --allow-run-as-root --oversubscribe -n 2 "$astrid" run "$work/sim/campaign.ini" --output "$work/run.h5" \
    --log_level warn --fft_effort estimate
/usr/bin/python3 - "$work" <<'PY'
import csv, sys
import h5py
import numpy as np
work = sys.argv[1]
f = h5py.File(f"{work}/run.h5", "r")
names = {r["target_id"]: r["name"].decode() for r in f["targets"][:]}
path = {o["obs_id"]: o["fits_path"].decode() for o in f["observations"][:]}
truth = {}
for r in csv.DictReader(l for l in open(f"{work}/sim/epochs.csv") if not l.startswith("#")):
    truth[(r["target"], int(r["epoch"]))] = float(r["transient_flux"])
p = f["forced_photometry"][:]
p = p[(p["source_kind"] == 0) & (p["status"] == 1) & ((p["flags"] & (4 | 8)) == 0)]
tf = np.array([truth[(names[r["target_id"]], int(path[r["science_obs_id"]].split("_e")[-1].split(".")[0]))] for r in p])
ratio = p["flux_sci"] / tf
pull = (p["flux_sci"] - tf) / p["flux_sci_err"]
snr = tf / p["flux_sci_err"]
tid = p["target_id"]
ids = np.unique(tid)
rng = np.random.default_rng(1)
def robust(x): return 1.4826 * np.median(np.abs(x - np.median(x)))
def boot(stat, sel):
    """95% interval of stat over a bootstrap of targets."""
    vals = []
    groups = [np.flatnonzero(sel & (tid == t)) for t in ids]
    for _ in range(400):
        pick = np.concatenate([groups[i] for i in rng.integers(0, len(ids), len(ids))])
        if len(pick) > 2:
            vals.append(stat(pick))
    return np.percentile(vals, [2.5, 97.5])
print(f"{len(p)} unflagged points on {len(ids)} targets")
for lo, hi in ((0, 1e9), (0, 10), (10, 20), (20, 50), (50, 1e9)):
    sel = (snr >= lo) & (snr < hi)
    if sel.sum() < 10:
        continue
    m = np.median(ratio[sel])
    ml, mh = boot(lambda k: np.median(ratio[k]), sel)
    sd = pull[sel].std()
    sl, sh = boot(lambda k: pull[k].std(), sel)
    label = "all" if (lo, hi) == (0, 1e9) else f"S/N {lo}-{hi if hi < 1e9 else 'inf'}"
    print(f"{label:>10}: n {sel.sum():4d}  median ratio {m:.4f} [{ml:.4f}, {mh:.4f}]  pull mean {pull[sel].mean():+.3f} "
          f"std {sd:.3f} [{sl:.3f}, {sh:.3f}] robust {robust(pull[sel]):.3f}")
PY
