#!/usr/bin/env bash
# Catalog photometry (issue #4) on a simulated campaign, against the simulator's truth:
#  - reference_catalog: the reference's zero point from catalog stars. The catalog's magnitudes
#    are the truth shifted by +0.25 mag, so the measured zero point must be the true one + 0.25
#    (within 0.02 mag): it comes from the catalog, not from the header's MAGZP.
#  - source_catalog: forced photometry at static stars and galaxies of every field on every epoch
#    (/forced_photometry rows with source_kind 1): one row per (source on the image, epoch), and the
#    difference fluxes of these non-variable sources scatter like their errors (robust pull std).
set -euo pipefail
: "${ASTRID:?path of the astrid binary}" "${MPIEXEC:=mpiexec}" "${MPIEXEC_FLAGS:=--oversubscribe}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$ASTRID" simulate --out "$work/sim" --targets 4 --epochs 3 --size 512 --seed 23 --no-defects > /dev/null 2>&1
/usr/bin/python3 - "$work" << 'EOF_PY'
import csv, sys
work = sys.argv[1]
rows = [r for r in csv.DictReader(l for l in open(f"{work}/sim/truth.csv") if not l.startswith("#"))]
ref = [r for r in rows if r["role"] == "reference"]
stars = [r for r in ref if r["kind"] == "star" and r["magnitude"] != "inf"]
with open(f"{work}/refcat.csv", "w") as f:
    f.write("id,ra,dec,mag\n")
    for i, r in enumerate(stars):
        f.write(f"{i},{r['ra']},{r['dec']},{float(r['magnitude']) + 0.25:.5f}\n")
# Static sources: every 4th star and galaxy of each field (not the host: the transient sits on it).
static = [r for r in ref if r["kind"] in ("star", "galaxy") and r["id"] != "host"][::4]
with open(f"{work}/sources.csv", "w") as f:
    f.write("# static stars and galaxies of the simulated fields\nid,ra,dec\n")
    for i, r in enumerate(static):
        f.write(f"{1000 + i},{r['ra']},{r['dec']}\n")
print(f"reference catalog: {len(stars)} stars; source catalog: {len(static)} positions")
EOF_PY
# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "$work/sim/campaign.ini" --output "$work/run.h5" --log_level warn \
  --reference_catalog "$work/refcat.csv" --source_catalog "$work/sources.csv"
/usr/bin/python3 - "$work" << 'EOF_PY'
import csv, sys
import h5py
import numpy as np
work = sys.argv[1]
epochs = [r for r in csv.DictReader(l for l in open(f"{work}/sim/epochs.csv") if not l.startswith("#"))]
true_zp = {r["target"]: float(r["zero_point"]) for r in epochs if r["role"] == "reference"}
f = h5py.File(f"{work}/run.h5", "r")
fp = f["forced_photometry"][:]
names = {t["target_id"]: t["name"].decode() for t in f["targets"][:]}
tgt = fp[fp["source_kind"] == 0]
for tid in np.unique(tgt["target_id"]):
    zp = tgt["zero_point"][tgt["target_id"] == tid]
    err = tgt["zero_point_err"][tgt["target_id"] == tid]
    want = true_zp[names[tid]] + 0.25
    print(f"{names[tid]}: zero point {zp[0]:.4f} +- {err[0]:.4f}, truth + 0.25 = {want:.4f}")
    assert np.all(np.abs(zp - want) < 0.02), (zp, want)
    assert np.all(err > 0) and np.all(err < 0.02)
src = fp[fp["source_kind"] == 1]
n_epochs = int((f["difference_runs"]["status"] == 0).sum())
print(f"{len(src)} source rows over {n_epochs} epochs, {len(np.unique(src['source_id']))} sources")
assert len(src) > 0 and len(np.unique(src["source_id"])) >= 20
done = (src["status"] == 1) & (src["flags"] & 0b1111 == 0)
pull = src["flux_norm"][done] / src["flux_norm_err"][done]
robust = 1.4826 * np.median(np.abs(pull - np.median(pull)))
print(f"static sources: {done.sum()} clean points, pull median {np.median(pull):+.3f}, robust std {robust:.3f}")
assert done.sum() >= 0.7 * len(src)
assert 0.7 < robust < 1.4, robust
assert abs(np.median(pull)) < 0.3
print("catalog photometry: OK")
EOF_PY
