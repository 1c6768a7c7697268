#!/usr/bin/env bash
# Archives end to end on loopback (issue #7): a simulated campaign served by
# tests/support/archive_server.py as MAST; astrid query -> astrid stage -> astrid run gives the same
# HDF5 rows as the run on the local archive; stage is idempotent; two concurrent stages download
# every file once; offline runs without the files fail with "not staged"; fetch_on_demand fills the
# cache during the run; an unreachable archive is a per-target error naming the URL.
set -euo pipefail
: "${ASTRID:?path of the astrid binary}" "${MPIEXEC:=mpiexec}" "${MPIEXEC_FLAGS:=--oversubscribe}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
py=/usr/bin/python3

"$ASTRID" simulate --out "$work/sim" --targets 4 --epochs 2 --size 256 --seed 21 > /dev/null
"$py" "$here/../support/archive_server.py" --root "$work/sim/archive" --write-checksums --port-file "$work/port" \
    > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
base="http://127.0.0.1:$(cat "$work/port")"
ctl() { curl -sf -X POST --data-binary "$1" "$base/_control" > /dev/null; }

# The sim job's windows and overlap, and every reference kept: the manifest must hold every file the
# local run lists, so both runs see the same observations.
"$ASTRID" query --catalog "$work/sim/catalog.txt" --mast-url "$base" --missions SIMULATED --days-before 400 \
    --days-after 200 --min-overlap 0.37 --max-reference 5 --out "$work/m.json" --log-level warn
"$py" - "$work/m.json" "$work/sim/archive" <<'PY'
import glob, json, sys
m = json.load(open(sys.argv[1]))
assert m["summary"]["paired"] == 4, m["summary"]
n = len(glob.glob(sys.argv[2] + "/*/*.fits"))
assert m["summary"]["products"] == n, (m["summary"], n)
for t in m["targets"]:
    for o in t["observations"]:
        assert [p["product_type"] for p in o["products"]] == ["SCIENCE"], o["products"]
PY

# Stage: everything, then nothing.
"$ASTRID" stage --manifest "$work/m.json" --cache "$work/cache" --progress lines | tee "$work/stage1.txt"
grep -q "12 downloaded" "$work/stage1.txt"
"$ASTRID" stage --manifest "$work/m.json" --cache "$work/cache" | tee "$work/stage2.txt"
grep -q "0 downloaded (0.0 MB" "$work/stage2.txt"
grep -q "12 already in the cache" "$work/stage2.txt"

# Two stages at once on a fresh cache (throttled so they overlap): every file crosses the network once.
curl -sf -X POST "$base/_reset" > /dev/null
ctl '{"match": "Download", "fault": "throttle", "rate": 3000000, "times": -1}'
"$ASTRID" stage --manifest "$work/m.json" --cache "$work/cache2" --jobs 2 --progress none > "$work/a.txt" &
a=$!
"$ASTRID" stage --manifest "$work/m.json" --cache "$work/cache2" --jobs 2 --progress none > "$work/b.txt"
wait "$a"
sleep 0.3
curl -sf "$base/_stats" | "$py" -c '
import json, sys
s = json.load(sys.stdin)
bodies = s["full_bodies"]
assert len(bodies) == 12 and set(bodies.values()) == {1}, bodies
assert s["requests"]["/api/v0.1/Download/file"] == 12, s["requests"]
'
curl -sf -X POST "$base/_reset" > /dev/null

# Runs: local archive vs manifest + cache (offline), on 2 ranks; the same rows but fits_path.
# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "$work/sim/campaign.ini" --output "$work/local.h5" \
    --fft_effort estimate --log_level warn
# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "$work/sim/campaign.ini" --manifest "$work/m.json" \
    --cache "$work/cache" --output "$work/remote.h5" --fft_effort estimate --log_level warn
"$py" "$here/compare_runs.py" "$work/local.h5" "$work/remote.h5" --ignore fits_path

# Offline without the files: every target fails, saying what to do.
set +e
"$ASTRID" run "$work/sim/campaign.ini" --manifest "$work/m.json" --cache "$work/empty" --output "$work/offline.h5" \
    --fft_effort estimate --log_level error > /dev/null
rc=$?
set -e
test "$rc" -eq 2
"$ASTRID" inspect "$work/offline.h5" --failures | tee "$work/offline.txt"
test "$(grep -c "not staged" "$work/offline.txt")" -ge 4

# A manifest that did not pair one target and lacks another: each fails with the manifest's reason,
# once (data verdicts are not retried).
"$py" - "$work/m.json" "$work/m2.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m["targets"][0]["status"] = "unpaired"
m["targets"][0]["reason"] = "no reference epoch in the window (test)"
m["targets"][0]["observations"] = []
del m["targets"][1]
json.dump(m, open(sys.argv[2], "w"))
PY
set +e
"$ASTRID" run "$work/sim/campaign.ini" --manifest "$work/m2.json" --cache "$work/cache" --output "$work/m2.h5" \
    --fft_effort estimate --log_level warn --max_retries 2 > "$work/m2.log" 2>&1
rc=$?
set -e
test "$rc" -eq 2
"$ASTRID" inspect "$work/m2.h5" --failures | tee "$work/m2.txt"
grep -q "unpaired in the manifest .*m2.json: no reference epoch in the window (test)" "$work/m2.txt"
grep -q "is not in the manifest .*m2.json" "$work/m2.txt"
if grep -q "retrying" "$work/m2.log"; then echo "a data verdict was retried"; exit 1; fi

# On demand: the run downloads what it needs, each file once, and matches the local run.
# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run "$work/sim/campaign.ini" --manifest "$work/m.json" \
    --cache "$work/ondemand" --fetch_on_demand true --output "$work/ondemand.h5" --fft_effort estimate --log_level warn
"$py" "$here/compare_runs.py" "$work/local.h5" "$work/ondemand.h5" --ignore fits_path --quiet
curl -sf "$base/_stats" | "$py" -c '
import json, sys
b = json.load(sys.stdin)["full_bodies"]
assert len(b) == 12 and set(b.values()) == {1}, b
'

# An unreachable archive: recorded per target with the URL, exit status 2, no observations made up.
set +e
"$ASTRID" query --catalog "$work/sim/catalog.txt" --mast-url http://127.0.0.1:9 --missions SIMULATED \
    --http-attempts 2 --out "$work/down.json" --log-level error > /dev/null
rc=$?
set -e
test "$rc" -eq 2
"$py" - "$work/down.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
assert m["summary"]["error"] == 4, m["summary"]
for t in m["targets"]:
    assert t["status"] == "error" and "http://127.0.0.1:9/api/v0/invoke" in t["reason"], t
    assert t["observations"] == []
PY
echo "archive campaign: OK"
