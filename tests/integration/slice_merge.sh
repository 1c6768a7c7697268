#!/usr/bin/env bash
# Job-array slices merged (`slice = i/N`, `astrid merge`) hold exactly the rows and the /training
# triplets of one run over the whole catalog (the SLURM test does the same under sbatch; this one
# needs no SLURM and covers fakes and training cutouts).
set -euo pipefail
: "${ASTRID:?path of the astrid binary}" "${MPIEXEC:=mpiexec}" "${MPIEXEC_FLAGS:=--oversubscribe}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$ASTRID" simulate --out "$work/sim" --targets 6 --epochs 2 --size 256 --seed 3 > /dev/null 2>&1
job=("$work/sim/campaign.ini" --fft_effort estimate --log_level error --training_cutouts true --fakes_per_epoch 3)
# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "${job[@]}" --output "$work/full.h5" > /dev/null
for i in 0 1 2; do
  # shellcheck disable=SC2086
  "$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "${job[@]}" --slice "$i/3" --output "$work/s$i.h5" > /dev/null
done
if "$ASTRID" merge --out "$work/partial.h5" "$work/s0.h5" "$work/s2.h5" 2> "$work/err"; then
  echo "a missing slice was not refused"; exit 1
fi
cat "$work/err"
"$ASTRID" merge --out "$work/merged.h5" "$work/s2.h5" "$work/s0.h5" "$work/s1.h5"
/usr/bin/python3 "$here/compare_runs.py" "$work/full.h5" "$work/merged.h5"
echo "slice + merge: OK"
