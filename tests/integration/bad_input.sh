#!/usr/bin/env bash
# Bad input never loses other work: a simulated campaign with a truncated file, a garbage header,
# a NaN-filled image, an image without WCS, a target with no files and garbage catalog lines runs to
# the end; each bad target fails with a reason naming its file; the others succeed. Bad job files
# and a missing catalog stop before any work with an error naming the key or path.
set -uo pipefail
: "${ASTRID:?}" "${MPIEXEC:=mpiexec}" "${MPIEXEC_FLAGS:=--oversubscribe}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "FAILED: $*"; exit 1; }

"$ASTRID" simulate --out "$work/sim" --targets 6 --epochs 2 --size 192 --seed 5 >/dev/null || fail simulate
mapfile -t names < <(ls "$work/sim/archive" | sort)
[ "${#names[@]}" -eq 6 ] || fail "expected 6 target directories"
a="$work/sim/archive"
truncate -s 5000 "$a/${names[1]}/${names[1]}_e1.fits"
printf 'SIMPLE  = garbage garbage garbage' | dd of="$a/${names[2]}/${names[2]}_e2.fits" bs=1 seek=0 conv=notrunc 2>/dev/null
/usr/bin/python3 - "$a/${names[3]}/${names[3]}_e1.fits" "$a/${names[4]}/${names[4]}_e0.fits" <<'PY' || fail "astropy edit"
import sys, numpy as np
from astropy.io import fits
with fits.open(sys.argv[1], mode="update") as h:
    h[0].data[:] = np.nan
with fits.open(sys.argv[2], mode="update") as h:
    for k in list(h[0].header):
        if k.startswith(("CTYPE", "CRVAL", "CRPIX", "CD1_", "CD2_", "CDELT", "PC1_", "PC2_", "CUNIT", "A_", "B_", "AP_", "BP_", "PV")):
            del h[0].header[k]
PY
rm -rf "${a:?}/${names[5]}"
printf 'this line is garbage | not | a | supernova\n' >> "$work/sim/catalog.txt"

# shellcheck disable=SC2086
"$MPIEXEC" $MPIEXEC_FLAGS -n 2 "$ASTRID" run --config "$work/sim/campaign.ini" --output "$work/run.h5" > "$work/run.log" 2>&1
rc=$?
cat "$work/run.log"
[ "$rc" -eq 2 ] || fail "exit status $rc, expected 2 (finished with failed targets)"
grep -q "6 targets: 1 ok, 5 failed" "$work/run.log" || fail "summary line"
"$ASTRID" inspect "$work/run.h5" --failures > "$work/failures.txt" || fail inspect
cat "$work/failures.txt"
grep -q "${names[1]}_e1.fits" "$work/failures.txt" || fail "truncated file not named"
grep -q "${names[2]}_e2.fits" "$work/failures.txt" || fail "garbage header file not named"
grep -q "${names[3]}_e1.fits.*NaN" "$work/failures.txt" || fail "NaN image not named"
grep -q "${names[4]}_e0.fits.*WCS" "$work/failures.txt" || fail "missing WCS not named"
grep -q "${names[5]}.*no observations" "$work/failures.txt" || fail "missing files not reported"
/usr/bin/python3 - "$work/run.h5" <<'PY' || fail "catalog issue not recorded"
import sys, h5py
with h5py.File(sys.argv[1]) as f:
    issues = f["catalog_issues"][:]
    assert len(issues) == 1 and issues["kind"][0] == 0, issues
    assert len(f["targets"]) == 6
PY

# Job-file errors: named key, no output written.
printf 'catalog = catalog.txt\narchive = archive\ndays_befor = 3\n' > "$work/sim/typo.ini"
out="$("$ASTRID" run --config "$work/sim/typo.ini" 2>&1)"; rc=$?
echo "$out"
[ "$rc" -eq 1 ] && grep -q "days_befor" <<<"$out" || fail "unknown key not named"
out="$("$ASTRID" run --config "$work/sim/campaign.ini" --catalog "$work/none.txt" --output "$work/x.h5" 2>&1)"; rc=$?
echo "$out"
[ "$rc" -eq 1 ] && grep -q "$work/none.txt" <<<"$out" || fail "missing catalog not named"
[ ! -e "$work/x.h5" ] || fail "an output was written for a run that could not start"
out="$("$ASTRID" run --config "$work/sim/campaign.ini" --output /nonexistent-dir/x.h5 2>&1)"; rc=$?
echo "$out"
[ "$rc" -ne 0 ] && grep -q "/nonexistent-dir/x.h5" <<<"$out" || fail "unwritable output not named"
# astrid stack: an unreadable input, and one of another size without a WCS, are named; nothing is written.
good="$a/${names[0]}/${names[0]}_e0.fits"
out="$("$ASTRID" stack --out "$work/stack.fits" "$good" "$a/${names[1]}/${names[1]}_e1.fits" 2>&1)"; rc=$?
echo "$out"
[ "$rc" -eq 1 ] && grep -q "${names[1]}_e1.fits" <<<"$out" || fail "stack: unreadable input not named"
/usr/bin/python3 - "$a/${names[4]}/${names[4]}_e0.fits" "$work/small.fits" <<'PY' || fail "astropy crop"
import sys
from astropy.io import fits
with fits.open(sys.argv[1]) as h:
    fits.PrimaryHDU(h[0].data[:150, :150], h[0].header).writeto(sys.argv[2])
PY
out="$("$ASTRID" stack --out "$work/stack.fits" "$good" "$work/small.fits" 2>&1)"; rc=$?
echo "$out"
[ "$rc" -eq 1 ] && grep -q "small.fits is 150x150" <<<"$out" || fail "stack: input of another size without WCS not named"
[ ! -e "$work/stack.fits" ] || fail "a stack was written from bad inputs"
echo "bad input: OK"
