#!/usr/bin/env bash
# Set up (Debian packages, configure, build) and run the whole test suite.
# Usage: bash scripts/test.sh [BUILD_DIR]     (extra ctest arguments via CTEST_ARGS, e.g. "-L unit")
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$here/build}"
bash "$here/scripts/setup.sh" "$build"
cd "$build"
# shellcheck disable=SC2086
ctest --output-on-failure -j "$(nproc)" ${CTEST_ARGS:-}
