#!/usr/bin/env bash
# Issue #4 in the campaign, against the simulator's truth (images without detector defects: with
# them, a bad column or cosmic ray near a target corrupts D there, see docs/testing.md): forced
# photometry of every target's transient on every science epoch (flux of D at the catalog position
# vs the true transient flux), the transient among the candidates of every epoch where its S/N >= 8,
# the ensemble normalisation near 1 (the flux ratio already scales each epoch), and the schema.
# 640^2 images: ~50 PSF stars each, as a survey image has hundreds; at 320^2 (10-20 stars, half the
# epochs on the Moffat fallback) the per-epoch PSF errors alone gave pull std 1.17-1.3.
# The bounds are today's figures with room (seed 23: median ratio 1.0015, pull std 1.095, robust
# 1.034), not a measurement of issue #4's goals: with 40 targets sharing one reference each the
# median is uncertain by ~2% (bench/photometry_truth.sh measures the goals with 120 targets and
# target-bootstrap intervals; docs/performance.md).
set -euo pipefail
: "${ASTRID:?path of the astrid binary}" "${MPIEXEC:=mpiexec}" "${MPIEXEC_FLAGS:=--oversubscribe}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# ASTRID_PHOTOMETRY_TARGETS (the sanitizer build sets 12): fewer targets check the products' shape
# only; the statistics below are asserted with the full 40.
targets="${ASTRID_PHOTOMETRY_TARGETS:-40}"
size=640
[[ "$targets" == 40 ]] || size=320
"$ASTRID" simulate --out "$work/sim" --targets "$targets" --epochs 4 --size "$size" --seed 23 --no-defects > /dev/null
# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "$work/sim/campaign.ini" --output "$work/run.h5" --log_level warn \
    --fft_effort estimate
/usr/bin/python3 - "$work" "$targets" <<'PY'
import csv, sys
import h5py
import numpy as np
work = sys.argv[1]
targets = int(sys.argv[2])
full = targets == 40
def check(ok, what):
    """The statistics are asserted on the full campaign only."""
    if full:
        assert ok, what
f = h5py.File(f"{work}/run.h5", "r")
assert f.attrs["schema_version"] == 4
names = {r["target_id"]: r["name"].decode() for r in f["targets"][:]}
path = {o["obs_id"]: o["fits_path"].decode() for o in f["observations"][:]}
truth = {}
for r in csv.DictReader(l for l in open(f"{work}/sim/epochs.csv") if not l.startswith("#")):
    truth[(r["target"], int(r["epoch"]))] = (float(r["transient_flux"]), float(r["target_x"]), float(r["target_y"]))
p = f["forced_photometry"][:]
done = p[p["status"] == 1]
clean = (done["flags"] & (4 | 8)) == 0  # no masked or saturated pixel under the PSF stamp
print(f"forced photometry: {len(p)} points, {len(done)} done, {np.sum(p['status'] == 2)} failed")
assert len(p) == targets * 4, len(p)
# Every point without a measurement says why. Known weakness (issue #4 notes): a reference bad
# column or cosmic ray becomes a ~6 px NoData strip after resampling, and a target on one has its
# core masked in D (15% of these points, seed 23); the bar below guards against more.
failed = p[p["status"] == 2]
assert all(r["fail_reason"].decode() for r in failed)
check(len(done) >= 0.8 * len(p), len(done))
tf = np.array([truth[(names[r["target_id"]], int(path[r["science_obs_id"]].split("_e")[-1].split(".")[0]))][0]
               for r in done])
ratio = done["flux_sci"] / tf
pull = (done["flux_sci"] - tf) / done["flux_sci_err"]
snr = tf / done["flux_sci_err"]
def robust(x): return 1.4826 * np.median(np.abs(x - np.median(x)))
print(f"flux / truth (all {len(pull)}): median {np.median(ratio):.4f}; pull mean {pull.mean():+.3f} std {pull.std():.3f} "
      f"robust {robust(pull):.3f}")
ratio, pull, snr = ratio[clean], pull[clean], snr[clean]
print(f"flux / truth (unflagged {len(pull)}): median {np.median(ratio):.4f}; pull mean {pull.mean():+.3f} "
      f"std {pull.std():.3f} robust {robust(pull):.3f}")
for lo, hi in ((0, 10), (10, 20), (20, 1e9)):
    m = (snr >= lo) & (snr < hi)
    if m.sum() >= 10:
        print(f"  true S/N {lo}-{hi if hi < 1e9 else 'inf'}: n {m.sum()}, median ratio {np.median(ratio[m]):.4f}, "
              f"pull std {pull[m].std():.3f}")
check(clean.sum() >= 0.8 * len(done), clean.sum())
check(abs(np.median(ratio) - 1) < 0.02, np.median(ratio))
check(0.9 < robust(pull) < 1.15, robust(pull))
check(pull.std() < 1.25, pull.std())
check(abs(np.median(pull)) < 0.3, np.median(pull))
# Magnitudes from the reference's MAGZP; the ensemble normalisation changes little.
assert np.all(np.isfinite(done["zero_point"])) and np.all(np.isfinite(done["mag"]))
nf = done["norm_factor"][np.isfinite(done["norm_factor"])]
print(f"ensemble normalisation: median |c - 1| {np.median(np.abs(nf - 1)):.4f}, max {np.max(np.abs(nf - 1)):.4f}")
check(np.all(np.abs(nf - 1) < 0.05), nf)
# The transient among the candidates wherever its true S/N >= 8.
c = f["candidates"][:]
found = total = 0
for r, s in zip(done[clean], snr):
    if s < 8:
        continue
    total += 1
    m = (c["science_obs_id"] == r["science_obs_id"]) & (np.hypot(c["pixel_x"] - r["x"], c["pixel_y"] - r["y"]) < 2)
    found += bool(np.any(m & (c["isdiffpos"] == 1)))
dr = f["difference_runs"][:]
print(f"candidates: {len(c)} on {len(dr)} differences ({len(c) / len(dr):.2f} per difference); "
      f"transient found in {found}/{total} epochs with true S/N >= 8")
check(found >= 0.95 * total, (found, total))
assert np.all(dr["candidates_found"] >= 0)
print("photometry campaign: OK")
PY

# Faint transients (peak 21.5-23.5 mag: most points below 3 sigma) on blank sky: every point is a
# detection with a finite magnitude or an upper limit, and the true magnitude is fainter than the
# limit for (nearly) all limits.
faint=$(( targets < 40 ? 6 : 16 ))  # the sanitizer build's memory check needs only a few
"$ASTRID" simulate --out "$work/faint" --targets "$faint" --epochs 4 --size 256 --seed 31 --no-defects --no-galaxies \
    --transient-mag-min 21.5 --transient-mag-max 23.5 > /dev/null
# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "$work/faint/campaign.ini" --output "$work/faint.h5" --log_level warn \
    --fft_effort estimate
/usr/bin/python3 - "$work" <<'PY'
import csv, sys
import h5py
import numpy as np
work = sys.argv[1]
f = h5py.File(f"{work}/faint.h5", "r")
names = {r["target_id"]: r["name"].decode() for r in f["targets"][:]}
path = {o["obs_id"]: o["fits_path"].decode() for o in f["observations"][:]}
truth = {(r["target"], int(r["epoch"])): float(r["transient_mag"])
         for r in csv.DictReader(l for l in open(f"{work}/faint/epochs.csv") if not l.startswith("#"))}
p = f["forced_photometry"][:]
d = p[p["status"] == 1]
tm = np.array([truth[(names[r["target_id"]], int(path[r["science_obs_id"]].split("_e")[-1].split(".")[0]))] for r in d])
ul = d["is_upper_limit"] == 1
print(f"faint transients: {len(p)} points, {len(d)} measured, {ul.sum()} upper limits, {(~ul).sum()} detections; "
      f"limits with the truth fainter: {np.mean(tm[ul] > d['mag'][ul]):.3f}")
assert np.all(np.isfinite(d["mag"])), "every measured point has a magnitude or a limit"
assert ul.sum() >= 0.5 * len(d), ul.sum()
assert np.mean(tm[ul] > d["mag"][ul]) >= 0.95
print("faint light curves: OK")
PY
