#!/usr/bin/env bash
# The whole per-epoch difference on one simulated pair per size (`astrid diff`: background, stars and
# PSF of both images, registration, flux ratio, resampling, the registered reference's PSF, ZOGY),
# wall time and peak memory of the process (GNU time). Planning: FFTW_ESTIMATE (a campaign measures
# plans once per shape and reuses them; a single pair would pay ~1-2 s of planning).
#   bash bench/epoch.sh [BUILD_DIR] [SIZES...]
set -euo pipefail
build="${1:-build}"; shift || true
sizes=("${@:-1024 2048 4096}")
astrid="$(realpath "$build/astrid")"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
echo "| size | wall s | peak RSS MB | zogy s | stages (summary.json) |"
echo "|---|---|---|---|---|"
for n in ${sizes[@]}; do
  "$astrid" simulate --out "$work/s$n" --targets 1 --epochs 1 --size "$n" --seed 5 > /dev/null 2>&1
  t=$(ls "$work/s$n/archive")
  /usr/bin/time -f "%e %M" -o "$work/time" "$astrid" diff --reference "$work/s$n/archive/$t/${t}_e0.fits" \
    --science "$work/s$n/archive/$t/${t}_e1.fits" --out "$work/d$n" --fft_effort estimate > /dev/null
  read -r wall rss < "$work/time"
  stages=$(/usr/bin/python3 -c "import json;s=json.load(open('$work/d$n/summary.json'))['seconds'];print(', '.join(f'{k} {v:.2f}' for k,v in s.items()))")
  zogy=$(/usr/bin/python3 -c "import json;print('%.2f'%json.load(open('$work/d$n/summary.json'))['seconds']['zogy'])")
  echo "| ${n}^2 | $wall | $((rss / 1024)) | $zogy | $stages |"
done
