#!/usr/bin/env bash
# The whole per-epoch difference on one simulated pair per size (`astrid diff`: background, stars and
# PSF of both images, registration, flux ratio, resampling, the registered reference's PSF, ZOGY),
# wall time and peak memory of the process (GNU time), on one core (taskset). Planning: FFTW_MEASURE
# from a wisdom file that an untimed first run of the same size fills (what a campaign with
# fft_wisdom does after its first run; the first run pays ~1-2 s of planning per transform size).
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
  pair=(--reference "$work/s$n/archive/$t/${t}_e0.fits" --science "$work/s$n/archive/$t/${t}_e1.fits" --out "$work/d$n"
        --fft_effort measure --fft_wisdom "$work/wisdom")
  "$astrid" diff "${pair[@]}" > /dev/null
  /usr/bin/time -f "%e %M" -o "$work/time" taskset -c 0 "$astrid" diff "${pair[@]}" > /dev/null
  read -r wall rss < "$work/time"
  stages=$(/usr/bin/python3 -c "import json;s=json.load(open('$work/d$n/summary.json'))['seconds'];print(', '.join(f'{k} {v:.2f}' for k,v in s.items()))")
  zogy=$(/usr/bin/python3 -c "import json;print('%.2f'%json.load(open('$work/d$n/summary.json'))['seconds']['zogy'])")
  echo "| ${n}^2 | $wall | $((rss / 1024)) | $zogy | $stages |"
done
