#!/usr/bin/env bash
# The demo campaign end to end, as the README runs it: simulate, run on 2 MPI ranks, inspect, and
# read the HDF5 back with h5py (what users do), checking it against the simulator's truth.
set -euo pipefail
: "${ASTRID:?path of the astrid binary}" "${MPIEXEC:=mpiexec}" "${MPIEXEC_FLAGS:=--oversubscribe}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"$ASTRID" simulate --out "$work/sim" --targets 5 --epochs 3 --size 256 --seed 11
# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run --config "$work/sim/campaign.ini" --output "$work/run.h5" \
    --checkpoint_targets 2
"$ASTRID" inspect "$work/run.h5" | tee "$work/inspect.txt"
grep -q "targets: 5 (5 ok, 0 failed, 0 skipped)" "$work/inspect.txt"
"$ASTRID" inspect "$work/run.h5" --csv targets --out "$work/targets.csv"
test "$(wc -l < "$work/targets.csv")" -eq 6
/usr/bin/python3 "$here/check_run.py" "$work/run.h5" --sim "$work/sim" --ranks 2 --epochs 3

# Distorted WCSs (SIP and TPV as real cameras write them) go through the same pipeline, on 1 rank
# started without mpirun (MPI singleton).
for d in sip tpv; do
  "$ASTRID" simulate --out "$work/$d" --targets 2 --epochs 2 --size 256 --seed 4 --distortion "$d" > /dev/null
  "$ASTRID" run "$work/$d/campaign.ini" --output "$work/$d.h5" --log_level warn
  "$ASTRID" inspect "$work/$d.h5" | grep -q "targets: 2 (2 ok, 0 failed, 0 skipped)"
done
echo "demo campaign: OK"
