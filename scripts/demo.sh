#!/usr/bin/env bash
# Set up, simulate the embedded demo campaign, process it on 2 MPI ranks, and summarise the output.
# Usage: bash scripts/demo.sh [OUT_DIR]        (default: ./demo)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$(realpath -m "${1:-demo}")"
build="$here/build"
mkdir -p "$out"
echo "== setting up (Debian packages, build); log: $out/setup.log"
bash "$here/scripts/setup.sh" "$build" > "$out/setup.log" 2>&1 || { tail -50 "$out/setup.log"; exit 1; }
mpi_flags=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && mpi_flags+=(--allow-run-as-root)
"$build/astrid" simulate --out "$out/sim" --targets 8 --epochs 3 --size 512 --seed 1
mpirun "${mpi_flags[@]}" -n 2 "$build/astrid" run --config "$out/sim/campaign.ini" --output "$out/campaign.h5"
echo
"$build/astrid" inspect "$out/campaign.h5"
echo
echo "output: $out/campaign.h5   (h5py: h5py.File('$out/campaign.h5')['targets'][:])"
