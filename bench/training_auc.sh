#!/usr/bin/env bash
# The issue #5 measurement: a simulated campaign (defects on: cosmic rays, bad columns, saturated
# stars, so the subtraction leaves real artifacts) cut into labelled triplets with fakes, then the
# PyTorch example trains for SECONDS on CPU and reports ROC AUC on the test split (fakes and the
# detected target as positives, unmatched candidates and undetected target positions as negatives).
#   bash bench/training_auc.sh [BUILD_DIR] [SECONDS]
set -euo pipefail
build="$(realpath "${1:-build}")"; seconds="${2:-120}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mpirun=(mpirun --oversubscribe); [ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
"$build/astrid" simulate --out "$work/sim" --targets 16 --epochs 4 --size 512 --seed 31 > /dev/null 2>&1
/usr/bin/time -f "campaign: %e s" "${mpirun[@]}" -n 2 "$build/astrid" run "$work/sim/campaign.ini" --output "$work/run.h5" \
  --fakes_per_epoch 30 --training_cutouts true --log_level error | tail -1
/usr/bin/python3 -c "
import h5py, numpy as np
t = h5py.File('$work/run.h5')['training']; m = t['meta'][:]
print('triplets', t['triplets'].shape, 'labels (bogus, real, blank)', np.bincount(t['labels'][:]).tolist(),
      'splits (train, validation, test)', np.bincount(m['split']).tolist())"
/usr/bin/python3 "$here/docs/examples/train_triplets.py" "$work/run.h5" --seconds "$seconds" --threads 1 | tail -1
