#!/usr/bin/env bash
# SLURM for real (issue #6): a single-node SLURM on localhost (tests/slurm/cluster.sh) runs the
# job scripts of slurm/ on a small simulated campaign, and the outputs are compared row for row
# (timings and ranks aside: tests/integration/compare_runs.py) with a plain mpirun run:
#  1. time limit: slurm/campaign.sbatch with --time=1 --signal=B:USR1@55; the warning reaches the
#     ranks, they checkpoint and exit 75, the script requeues the job, and the requeued attempts
#     (released at once instead of after SLURM's two-minute requeue hold) finish the campaign;
#  2. job array: slurm/campaign-array.sbatch over 2 slices, joined by `astrid merge`;
#  3. scancel: the ranks checkpoint and exit 75, the job is not requeued, the output is
#     "incomplete" with a committed journal, and submitting the job again completes it.
# Needs root (it starts munged, slurmctld and slurmd) and the Debian packages slurmctld, slurmd,
# slurm-client and munge (scripts/debian-packages.txt); skips (status 77) without them. Every
# daemon it started is stopped on exit.
set -euo pipefail
: "${ASTRID:?path of the astrid binary}" "${MPIEXEC:=mpiexec}" "${MPIEXEC_FLAGS:=--oversubscribe}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
py=/usr/bin/python3
ASTRID="$(readlink -f "$ASTRID")"
export ASTRID  # the job scripts run this binary

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root to start munged, slurmctld and slurmd"
for tool in munged munge slurmctld slurmd sbatch srun scontrol squeue scancel sinfo; do
  command -v "$tool" > /dev/null ||
    skip "$tool not found: install the Debian packages slurmctld slurmd slurm-client munge (scripts/debian-packages.txt)"
done

work="$(mktemp -d /tmp/astrid-slurm.XXXXXX)"
refpid=""
# shellcheck source=tests/slurm/cluster.sh
source "$here/cluster.sh"
cleanup() {
  [ -n "$refpid" ] && kill "$refpid" 2> /dev/null
  slurm_down
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -25 "$f"; }; done
  echo "--- slurmctld.log"; tail -15 "$work/slurm/slurmctld.log" 2> /dev/null || true
  exit 1
}

t0=$SECONDS
slurm_up "$work/slurm" || fail "SLURM did not come up"
echo "single-node SLURM up in $((SECONDS - t0)) s ($(sinfo -h -o '%P %D %c %t'))"

# When does slurmctld run its time-limit check (every ~30 s)? A probe job that takes its
# --signal warning at the first check tells (see step 1).
probe=$(sbatch --parsable -J probe -n 1 --time=1 --signal=B:USR1@59 -o "$work/probe.out" \
  --wrap "trap 'date +%s.%N > $work/probe.t.tmp; mv $work/probe.t.tmp $work/probe.t; exit 0' USR1; while :; do sleep 0.2; done")

"$ASTRID" simulate --out "$work/sim" --targets 80 --epochs 2 --size 256 --seed 11 > /dev/null 2>&1
# --limit 72: eight catalog rows excluded ("beyond limit"), so /catalog_issues has rows to merge.
job=("$work/sim/campaign.ini" --fft_effort estimate --log_level warn --checkpoint_targets 2 --limit 72)
total=72

state() { scontrol show job "$1" -o 2> /dev/null | grep -o 'JobState=[A-Z_]*' | head -1 | cut -d= -f2; }
restarts() { scontrol show job "$1" -o 2> /dev/null | grep -o 'Restarts=[0-9]*' | head -1 | cut -d= -f2; }
h5status() { $py -c 'import h5py, sys; print(h5py.File(sys.argv[1], "r").attrs["status"])' "$1"; }
# wait_jobs SECONDS ID...: until none of the jobs is pending or running; a job requeued by its
# script is released early (SLURM holds a requeued job for two minutes: its BeginTime), but only
# after 3 s in that state. Seen once in CI: the time-limited job ended FAILED after its second
# requeue, with no third attempt in its log, when it was released within a second of the requeue;
# the suspected cause (not confirmed) is the same job id starting again while slurmd was still
# cleaning up its previous run.
wait_jobs() {
  local deadline=$((SECONDS + $1)) id line; shift
  local -A held=()
  while :; do
    line="$(squeue -h -j "$(IFS=,; echo "$*")" -o '%i %r' 2> /dev/null || true)"
    [ -z "$line" ] && return 0
    ((SECONDS < deadline)) || fail "jobs $* still queued after the time allowed: $line"
    while read -r id reason; do
      if [ "$reason" = BeginTime ]; then
        held[$id]=$(( ${held[$id]:-0} + 1 ))
        if [ "${held[$id]}" -ge 3 ]; then scontrol update JobId="$id" StartTime=now; held[$id]=0; fi
      else
        held[$id]=0
      fi
    done <<< "$line"
    sleep 1
  done
}

# 3. scancel: slice 0 of 2 as a single job, cancelled once a checkpoint has committed 2 targets.
cancelled=$(sbatch --parsable -J cancel -n 1 --time=10 -o "$work/cancel.log" \
  "$repo/slurm/campaign.sbatch" "${job[@]}" --slice 0/2 --output "$work/cancel.h5")
committed() { [ -f "$1" ] && $py -c 'import json, sys; print(json.load(open(sys.argv[1]))["targets_done"])' "$1" || echo 0; }
deadline=$((SECONDS + 90))
until [ "$(committed "$work/cancel.h5.journal/commit.json")" -ge 2 ]; do
  ((SECONDS < deadline)) || fail "the job to cancel committed no checkpoint in 90 s"
  sleep 0.2
done
scancel "$cancelled"
wait_jobs 60 "$cancelled"
[ "$(state "$cancelled")" = CANCELLED ] || fail "cancelled job $cancelled ended $(state "$cancelled")"
[ "$(restarts "$cancelled")" = 0 ] || fail "a cancelled job was requeued"
grep -q "SIGTERM received, forwarding" "$work/cancel.log" || fail "the batch script did not see scancel's SIGTERM"
grep -q "astrid exited with status 75" "$work/cancel.log" || fail "astrid did not exit 75 after scancel"
grep -q "requeueing" "$work/cancel.log" && fail "the script requeued a cancelled job"
[ "$(h5status "$work/cancel.h5")" = incomplete ] || fail "the cancelled output's status is $(h5status "$work/cancel.h5")"
done_at_cancel="$(committed "$work/cancel.h5.journal/commit.json")"
echo "scancel: job $cancelled stopped with exit 75, output incomplete, $done_at_cancel/$((total / 2)) targets committed"

# 1. The time limit. The warning comes at slurmctld's first time-limit check at least 5 s into
# the job (@55 of a 1-minute limit). Submitted 10 s before a check, the job starts ~1-2 s later
# and takes the warning ~8 s in, while the campaign needs several times longer on its one
# computing rank (scheduler_computes = no), sharing the machine with everything below.
deadline=$((SECONDS + 45))
until [ -f "$work/probe.t" ]; do
  ((SECONDS < deadline)) || fail "the probe job got no --signal warning in 45 s"
  sleep 0.2
done
delay="$($py -c '
import sys, time
check = float(sys.argv[1])
now = time.time()
while check - 10 < now + 0.2:
    check += 30
print(f"{check - 10 - now:.2f}")' "$(cat "$work/probe.t")")"
sleep "$delay"
limited=$(sbatch --parsable -J limited -n 2 --time=1 --signal=B:USR1@55 -o "$work/limited.log" \
  "$repo/slurm/campaign.sbatch" "${job[@]}" --scheduler_computes no --output "$work/limited.h5")

# The reference: a plain mpirun run of the whole campaign.
# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "${job[@]}" --output "$work/ref.h5" > "$work/ref.log" 2>&1 &
refpid=$!
# 2. The job array: 2 slices of 1 task each.
array=$(sbatch --parsable -J array --array=0-1 -n 1 --time=10 -o "$work/array-%a.log" \
  "$repo/slurm/campaign-array.sbatch" "${job[@]}" --output "$work/camp.h5")
# 3. Resume the cancelled job: submit it again.
resumed=$(sbatch --parsable -J resume -n 1 --time=10 -o "$work/cancel.log" \
  "$repo/slurm/campaign.sbatch" "${job[@]}" --slice 0/2 --output "$work/cancel.h5")

wait "$refpid" || fail "the reference mpirun run failed"
refpid=""
wait_jobs 240 "$limited" "$array" "$resumed"

# 1. The time-limited job: checkpointed on the warning, requeued, resumed, complete and exact.
[ "$(state "$limited")" = COMPLETED ] || fail "the time-limited job ended $(state "$limited")"
requeues="$(restarts "$limited")"
[ "$requeues" -ge 1 ] || fail "the time-limited job finished without being requeued (the warning came too late?)"
grep -q "SIGUSR1 received, forwarding" "$work/limited.log" || fail "no SIGUSR1 reached the batch script"
grep -q "interrupted by a signal after a final checkpoint" "$work/limited.log" || fail "astrid did not checkpoint on the signal"
kept="$(grep -o '([0-9]* from the earlier attempt)' "$work/limited.log" | head -1 | tr -dc 0-9)"
[ "${kept:-0}" -gt 0 ] || fail "the first requeued attempt found no targets from the first"
$py "$repo/tests/integration/compare_runs.py" "$work/ref.h5" "$work/limited.h5" --quiet ||
  fail "the time-limited, requeued campaign differs from the mpirun run"
echo "time limit: job $limited warned, checkpointed and requeued $requeues time(s) ($kept targets kept by the first attempt); rows exact"

# 2. The array: both slices complete; merged, the rows of the mpirun run.
for i in 0 1; do
  [ "$(state "${array}_$i")" = COMPLETED ] || fail "array task $i ended $(state "${array}_$i")"
done
"$ASTRID" merge --out "$work/merged.h5" "$work"/camp.slice-{0,1}-of-2.h5 > "$work/merge.log" 2>&1 ||
  fail "astrid merge failed: $(cat "$work/merge.log")"
$py "$repo/tests/integration/compare_runs.py" "$work/ref.h5" "$work/merged.h5" --quiet ||
  fail "the merged slices differ from the mpirun run"
echo "array: 2 slices merged, rows exact ($(head -1 "$work/merge.log" | sed 's/^astrid merge: //'))"

# 3. The cancelled job, submitted again: complete, and exactly slice 0 of the array.
[ "$(state "$resumed")" = COMPLETED ] || fail "the resubmitted cancelled job ended $(state "$resumed")"
grep -q "from the earlier attempt" "$work/cancel.log" || fail "the resubmitted job did not resume"
$py "$repo/tests/integration/compare_runs.py" "$work/camp.slice-0-of-2.h5" "$work/cancel.h5" --quiet ||
  fail "the cancelled and resubmitted slice differs from the array's slice 0"
echo "scancel: resubmitted job $resumed resumed and completed; rows exact"
echo "slurm_single_node: all checks passed in $((SECONDS - t0)) s"
