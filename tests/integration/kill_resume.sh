#!/usr/bin/env bash
# Durability (issue #6): kill -9 a campaign at many points, resume it, and check that the final
# tables are exactly those of an uninterrupted run: zero rows lost, zero duplicated.
#
# Kill points (deterministic, from the seed; ASTRID_KILL_POINTS of them, default 24):
#  - in-process: ASTRID_CRASH_AT makes a rank SIGKILL itself after its n-th finished target, after
#    its journal record is durable but before the commit, after the commit but before the HDF5
#    append, or between two HDF5 table appends; on rank 0, rank 1 or both;
#  - external: kill -9 of one rank or of every rank after a seeded delay.
# Then: SIGUSR1 (what `sbatch --signal=USR1@T` sends) stops gracefully with exit 75 and resumes;
# a changed configuration is refused; an output on a full filesystem fails at a checkpoint with a
# clear error, and the run resumes once there is room.
set -euo pipefail
: "${ASTRID:?path of the astrid binary}" "${MPIEXEC:=mpiexec}" "${MPIEXEC_FLAGS:=--oversubscribe}"
points="${ASTRID_KILL_POINTS:-24}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
cleanup() {
  if mountpoint -q "$work/full" 2> /dev/null; then umount "$work/full" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
py=/usr/bin/python3

"$ASTRID" simulate --out "$work/sim" --targets 12 --epochs 2 --size 256 --seed 21 > /dev/null 2>&1
# Fakes and training cutouts on: their rows and triplets must survive kills exactly like the rest.
job=("$work/sim/campaign.ini" --fft_effort estimate --checkpoint_targets 2 --log_level error --fakes_per_epoch 4
     --training_cutouts true)
run() {  # run OUTPUT [extra args...]: 2 ranks; prints nothing, returns astrid's status
  local out="$1"; shift
  # shellcheck disable=SC2086
  "$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "${job[@]}" --output "$out" "$@" > "$work/last.log" 2>&1
}
run "$work/ref.h5"

survived=0
for ((seed = 1; seed <= points; ++seed)); do
  out="$work/k$seed.h5"
  if ((seed % 3 != 0)); then
    # 16 distinct (point, n, rank) combinations out of 4 x 4 x 3.
    pts=(target journal commit hdf5)
    point="${pts[$((seed % 4))]}:$((1 + (seed / 4) % 4))"
    case $(((seed + seed / 4) % 3)) in 0) where="@0" ;; 1) where="@1" ;; *) where="" ;; esac
    what="ASTRID_CRASH_AT=$point$where"
    set +e
    # shellcheck disable=SC2086
    ASTRID_CRASH_AT="$point$where" "$MPIEXEC" $MPIEXEC_FLAGS -x ASTRID_CRASH_AT -n 2 "$ASTRID" run "${job[@]}" \
      --output "$out" > "$work/last.log" 2>&1
    status=$?
    set -e
  else
    delay="$(awk -v s="$seed" 'BEGIN { printf "%.2f", 0.3 + 0.15 * s / 3 }')"
    victims="all"; (((seed / 3) % 2)) && victims="one"
    what="external kill -9 of $victims rank(s) after ${delay}s"
    # shellcheck disable=SC2086
    "$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "${job[@]}" --output "$out" > "$work/last.log" 2>&1 &
    mpipid=$!
    sleep "$delay"
    pids="$(pgrep -f "astrid run .*--output $out" | grep -v "^$mpipid\$" || true)"
    if [ -n "$pids" ]; then
      if [ "$victims" = one ]; then pids="$(echo "$pids" | tail -1)"; fi
      # shellcheck disable=SC2086
      kill -9 $pids 2> /dev/null || true
    fi
    set +e
    wait "$mpipid"
    status=$?
    set -e
  fi
  committed="none"
  if [ -f "$out.journal/commit.json" ]; then
    committed="$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["targets_done"])' "$out.journal/commit.json")"
  fi
  # Resume (twice if the first resume is itself the one that finishes the run, that is fine).
  if ! run "$out"; then
    echo "kill point $seed ($what): the resume failed:"; cat "$work/last.log"; exit 1
  fi
  if ! $py "$here/compare_runs.py" "$work/ref.h5" "$out" --quiet; then
    echo "kill point $seed ($what, status $status, $committed targets committed): rows differ after resume"
    exit 1
  fi
  echo "kill point $seed: $what -> exit $status, $committed/12 targets committed, resume exact"
  # A kill that came after the run had finished (exit 0) is not counted as a kill survived.
  if [ "$status" -ne 0 ]; then survived=$((survived + 1)); fi
  rm -rf "$out" "$out.journal"
done
echo "kill points survived: $survived of $points tried (the rest came after the run had finished)"
if ((survived < points * 5 / 6)); then echo "too few kills landed: $survived"; exit 1; fi

# A graceful stop: SIGUSR1 to mpirun (forwarded to every rank), exit 75, then resume. The signal is
# sent once the first checkpoint is committed (the ranks' handlers are installed by then, whatever
# the build's speed).
# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "${job[@]}" --output "$work/sig.h5" > "$work/sig.log" 2>&1 &
mpipid=$!
for _ in $(seq 1 600); do
  done_now=0
  if [ -f "$work/sig.h5.journal/commit.json" ]; then
    done_now="$($py -c 'import json,sys; print(json.load(open(sys.argv[1]))["targets_done"])' "$work/sig.h5.journal/commit.json" 2> /dev/null || echo 0)"
  fi
  [ "$done_now" -ge 2 ] && break
  sleep 0.1
done
kill -USR1 "$mpipid"
set +e
wait "$mpipid"
status=$?
set -e
grep -q "interrupted by a signal" "$work/sig.log" || { echo "SIGUSR1: no interruption message"; cat "$work/sig.log"; exit 1; }
[ "$status" -ne 0 ] || { echo "SIGUSR1: exit status 0 for an interrupted run"; exit 1; }
$py - "$work/sig.h5" << 'EOF'
import sys, h5py
with h5py.File(sys.argv[1], "r") as f:  # the interrupted output is a readable, consistent file
    assert f.attrs["status"] == "incomplete", f.attrs["status"]
    assert f["targets"].shape[0] < 12, f["targets"].shape
EOF
run "$work/sig.h5"
$py "$here/compare_runs.py" "$work/ref.h5" "$work/sig.h5" --quiet
grep -q "from the earlier attempt" "$work/last.log"
echo "SIGUSR1: stopped with status $status, resumed exactly"

# A complete output is left alone; a changed configuration is refused, naming the key.
run "$work/sig.h5"
grep -q "complete already" "$work/last.log"
if run "$work/sig.h5" --detection_threshold 6; then echo "a changed configuration was not refused"; exit 1; fi
grep -q "detection_threshold: '5' -> '6'" "$work/last.log" || { cat "$work/last.log"; exit 1; }
run "$work/sig.h5" --detection_threshold 6 --fresh
echo "changed configuration refused; --fresh starts again"

# A full filesystem: the checkpoint fails with a clear error, nothing committed is lost, and the
# same job resumes once there is room.
mkdir -p "$work/full"
if mount -t tmpfs -o size=48k tmpfs "$work/full" 2> /dev/null; then
  if run "$work/full/run.h5"; then echo "a full filesystem went unnoticed"; exit 1; fi
  grep -Eq "No space left on device|kB free" "$work/last.log" || { echo "no clear disk-full error:"; cat "$work/last.log"; exit 1; }
  grep -m1 -E "No space left|kB free" "$work/last.log"
  mount -o remount,size=64m "$work/full"
  run "$work/full/run.h5" || { cat "$work/last.log"; exit 1; }
  $py "$here/compare_runs.py" "$work/ref.h5" "$work/full/run.h5" --quiet
  echo "disk full: clear error, resumed exactly after making room"
else
  echo "disk full: SKIPPED (cannot mount a tmpfs here; needs root)"
fi
echo "kill/resume: OK"
