#!/usr/bin/env bash
# Download throughput on loopback (issue #7): `astrid stage` against the `curl` command on the same
# files from the same server (tests/support/archive_server.py), for many small files and a few
# large ones, one stream and N parallel streams. Prints a markdown table (MB/s = 1e6 bytes/s, the
# median of REPEATS runs, every run into an empty directory).
#
# usage: bench/download.sh [BUILD_DIR] [SMALL_COUNT] [LARGE_COUNT] [STREAMS] [REPEATS]
# astrid verifies each file's FITS checksums (a second read) and fsyncs it before the rename;
# astrid-nofsync is `astrid stage --fsync false`; curl does neither.
# The Python server is one process (threads under the GIL): it caps both clients alike; the
# figures compare the clients, not what a real archive serves.
set -euo pipefail
build="${1:-build}"
nsmall="${2:-300}"
nlarge="${3:-4}"
streams="${4:-4}"
repeats="${5:-3}"
astrid="$(cd "$build" && pwd)/astrid"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="$(mktemp -d)"
server=""
cleanup() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
py=/usr/bin/python3

# Files: small = 128x128 float32 (~70 kB), large = 4096x4096 float32 (67 MB), with checksums.
"$py" - "$work/files" "$nsmall" "$nlarge" <<'PY'
import os, sys
import numpy as np
from astropy.io import fits
root, nsmall, nlarge = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(1)
def write(path, n):
    h = fits.Header()
    for k, v in dict(CTYPE1="RA---TAN", CTYPE2="DEC--TAN", CRVAL1=150.0, CRVAL2=2.0, CRPIX1=n / 2, CRPIX2=n / 2,
                     CD1_1=-7e-5, CD1_2=0.0, CD2_1=0.0, CD2_2=7e-5, TELESCOP="BENCH", INSTRUME="bench",
                     FILTER="r", **{"MJD-OBS": 59000.0}, EXPTIME=60.0).items():
        h[k] = v
    fits.PrimaryHDU(rng.normal(size=(n, n)).astype(np.float32), h).writeto(path, checksum=True)
os.makedirs(f"{root}/small"); os.makedirs(f"{root}/large")
for i in range(nsmall): write(f"{root}/small/s{i:04d}.fits", 128)
for i in range(nlarge): write(f"{root}/large/l{i:02d}.fits", 4096)
PY
"$py" "$here/../tests/support/archive_server.py" --root "$work/files" --port-file "$work/port" > "$work/server.log" 2>&1 &
server=$!
for _ in $(seq 600); do [ -s "$work/port" ] && break; sleep 0.1; done
base="http://127.0.0.1:$(cat "$work/port")"

# One manifest per set, written directly in the documented format (docs/archives.md), and curl's
# config file for the same URLs.
for set in small large; do
  "$py" - "$work/files/$set" "$base" "$work/$set.json" "$work/$set.curl" <<'PY'
import json, os, sys, urllib.parse
d, base, out, curlcfg = sys.argv[1:5]
names = sorted(os.listdir(d))
obs = []
with open(curlcfg, "w") as c:
    for i, n in enumerate(names):
        uri = f"mast:BENCH/product/{n}"
        url = f"{base}/api/v0.1/Download/file?uri={urllib.parse.quote(uri, safe='')}"
        obs.append({"role": "science", "obsid": str(i), "products": [
            {"filename": n, "uri": uri, "url": url, "size": os.path.getsize(os.path.join(d, n))}]})
        c.write(f'url = "{url}"\noutput = "OUT/{n}"\n')
json.dump({"format": "astrid-manifest", "format_version": 1, "targets": [
    {"target_id": 0, "name": "bench", "ra": 150.0, "dec": 2.0, "disc_mjd": 59000.0, "status": "paired",
     "observations": obs}]}, open(out, "w"))
PY
done

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}'; }

echo "| files | streams | client | MB/s (median of $repeats) | files/s |"
echo "|---|---|---|---|---|"
for set in small large; do
  bytes=$(du -sb "$work/files/$set" | cut -f1)
  count=$(ls "$work/files/$set" | wc -l)
  for j in 1 "$streams"; do
    for client in curl astrid astrid-nofsync; do
      times=()
      for r in $(seq "$repeats"); do
        out="$work/out-$set-$j-$client-$r"
        mkdir -p "$out"
        if [ "$client" = curl ]; then
          sed "s#OUT/#$out/#" "$work/$set.curl" > "$work/cfg"
          if [ "$j" = 1 ]; then times+=("$(seconds curl -sf --config "$work/cfg")")
          else times+=("$(seconds curl -sf -Z --parallel-max "$j" --config "$work/cfg")"); fi
        else
          sync=true; [ "$client" = astrid-nofsync ] && sync=false
          times+=("$(seconds "$astrid" stage --manifest "$work/$set.json" --cache "$out" --jobs "$j" \
                    --max-per-host "$j" --fsync "$sync" --progress none --log-level warn)")
          test "$(find "$out/objects" -name '*.fits' | wc -l)" -eq "$count"
        fi
        rm -rf "$out"
      done
      t=$(printf '%s\n' "${times[@]}" | median)
      printf "| %d x %s | %d | %s | %.0f | %.0f |\n" "$count" "$(numfmt --to=si "$((bytes / count))")B" "$j" "$client" \
        "$(awk -v b="$bytes" -v t="$t" 'BEGIN {print b / t / 1e6}')" "$(awk -v n="$count" -v t="$t" 'BEGIN {print n / t}')"
    done
  done
done
