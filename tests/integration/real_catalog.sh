#!/usr/bin/env bash
# The real SAI supernova catalog parses completely (the Python AstrID parser drops 2,398 rows).
set -euo pipefail
: "${ASTRID:?}" "${ASTRID_SHARED_DATA:?}"
cat="$ASTRID_SHARED_DATA/catalogs/sai_sncat_compiled.txt"
if [ ! -f "$cat" ]; then
  echo "SKIPPED: real catalog not found at $cat (../shared/data is beside every checkout and in CI)"
  exit 77
fi
out="$("$ASTRID" catalog "$cat")"
echo "$out"
grep -q "6539 data rows, 6539 targets kept, 0 rejected, 0 excluded" <<<"$out"
out="$("$ASTRID" catalog "$cat" --min-year 2010 --out /tmp/astrid_targets_$$.csv)"
echo "$out"
grep -q "1236 targets kept, 0 rejected, 5303 excluded" <<<"$out"
test "$(wc -l < /tmp/astrid_targets_$$.csv)" -eq 1237
rm -f /tmp/astrid_targets_$$.csv
echo "real catalog: OK"
