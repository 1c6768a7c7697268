#!/usr/bin/env bash
# Whole-campaign timings: simulate once, then `astrid run` at several rank counts and with rank 0
# computing or only scheduling. Prints a markdown table (wall seconds = median of REPEAT runs,
# peak RSS of the largest rank from GNU time).
#   bash bench/campaign.sh [BUILD_DIR] [TARGETS] [EPOCHS] [SIZE] [REPEAT]
set -euo pipefail
build="${1:-build}"; targets="${2:-32}"; epochs="${3:-3}"; size="${4:-1024}"; repeat="${5:-3}"
astrid="$(realpath "$build/astrid")"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
flags=(--oversubscribe); [ "$(id -u)" -eq 0 ] && flags+=(--allow-run-as-root)
export OMPI_MCA_mpi_yield_when_idle=1
t0=$(date +%s.%N)
"$astrid" simulate --out "$work/sim" --targets "$targets" --epochs "$epochs" --size "$size" --seed 3 > /dev/null 2>&1
t1=$(date +%s.%N)
echo "simulate: $targets targets x $((epochs + 1)) epochs of ${size}^2 px: $(echo "$t1 - $t0" | bc) s"
echo
echo "| ranks | rank 0 computes | wall s (median of $repeat) | targets/s | peak RSS per rank MB |"
echo "|---|---|---|---|---|"
for np in 1 2 4; do
  for computes in yes no; do
    [ "$np" -eq 1 ] && [ "$computes" = no ] && continue
    walls=(); rss=0
    for _ in $(seq "$repeat"); do
      rm -f "$work/run.h5"
      s=$(date +%s.%N)
      mpirun "${flags[@]}" -n "$np" /usr/bin/time -f "%M" -o "$work/time.%q{OMPI_COMM_WORLD_RANK}" \
        "$astrid" run "$work/sim/campaign.ini" --output "$work/run.h5" --scheduler_computes "$computes" \
        --log_level warn > /dev/null 2>&1 || true
      e=$(date +%s.%N)
      walls+=("$(echo "$e - $s" | bc)")
      for f in "$work"/time.*; do r=$(tail -1 "$f"); [ "$r" -gt "$rss" ] && rss=$r; done
      rm -f "$work"/time.*
    done
    med=$(printf '%s\n' "${walls[@]}" | sort -n | sed -n "$(( (repeat + 1) / 2 ))p")
    echo "| $np | $computes | $med | $(echo "scale=1; $targets / $med" | bc) | $((rss / 1024)) |"
  done
done
