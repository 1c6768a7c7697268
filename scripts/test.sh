#!/usr/bin/env bash
# Set up (Debian packages, configure, build) and run the whole test suite, then the same suite
# again under AddressSanitizer + UndefinedBehaviorSanitizer (separate build tree).
# Usage: bash scripts/test.sh [BUILD_DIR]
#   CTEST_ARGS="-L unit"      extra ctest arguments (both passes)
#   ASTRID_SANITIZERS=0       skip the sanitizer pass
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$here/build}"
bash "$here/scripts/setup.sh" "$build"
echo "== test suite"
(cd "$build" && ctest --output-on-failure -j "$(nproc)" ${CTEST_ARGS:-})
if [ "${ASTRID_SANITIZERS:-1}" != 0 ]; then
  echo "== test suite under ASan + UBSan"
  cmake -S "$here" -B "$build-asan" -DCMAKE_BUILD_TYPE=Debug -DASTRID_SANITIZE=ON -DASTRID_BUILD_BENCH=OFF > /dev/null
  cmake --build "$build-asan" -j "$(nproc)"
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # Open MPI's own allocations look like leaks to LeakSanitizer: leak checking for the non-MPI tests only.
  # The SLURM test (label slurm) runs once, in the pass above: it exercises the job scripts and
  # daemons, not new astrid code paths, and its daemons and timing do not belong under ASan.
  (cd "$build-asan" && ASAN_OPTIONS=detect_leaks=0 ctest --output-on-failure -j "$(nproc)" -L mpi -LE 'slurm|durability' ${CTEST_ARGS:-})
  (cd "$build-asan" && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j "$(nproc)" -LE 'mpi|slurm|durability' ${CTEST_ARGS:-})
fi
