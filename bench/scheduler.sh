#!/usr/bin/env bash
# Scheduler throughput series for docs/performance.md and docs/scaling.md (issue #6):
# trivial targets at 2, 8 and 32 ranks (oversubscribed on this 2-core machine), with checkpoints
# every 1000 and every 64 targets, then targets that cost 20 ms (sleep: no CPU) at 32 ranks.
# usage: bash bench/scheduler.sh [BUILD_DIR]   (prints one JSON line per run)
set -euo pipefail
build="${1:-build}"
mpirun=(mpirun --oversubscribe)
[ "$(id -u)" = 0 ] && mpirun+=(--allow-run-as-root)
export OMPI_MCA_mpi_yield_when_idle=1
for ranks in 2 8 32; do
  for ckpt in 1000 64; do
    "${mpirun[@]}" -n "$ranks" "$build/bench/bench_scheduler" --targets 20000 --checkpoint "$ckpt" | grep '^{'
  done
done
for ranks in 8 32; do
  "${mpirun[@]}" -n "$ranks" "$build/bench/bench_scheduler" --targets 4000 --checkpoint 64 --cost-ms 20 | grep '^{'
done
