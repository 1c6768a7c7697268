#!/usr/bin/env bash
# Install astrid's Debian packages (scripts/debian-packages.txt), then configure and build.
# Usage: bash scripts/setup.sh [BUILD_DIR] [extra cmake args...]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$here/build}"; shift || true
pkgs=$(grep -v '^\s*#' "$here/scripts/debian-packages.txt" | grep -v '^\s*$' | tr '\n' ' ')
missing=$(dpkg-query -W -f='${Package} ${Status}\n' $pkgs 2>/dev/null | grep -v 'install ok installed' | cut -d' ' -f1 || true)
# dpkg-query prints nothing for packages it has never heard of: compare the counts too.
known=$(dpkg-query -W -f='${Package}\n' $pkgs 2>/dev/null | wc -l || true)
if [ -n "$missing" ] || [ "$known" -ne "$(echo $pkgs | wc -w)" ]; then
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  echo "== installing Debian packages: $pkgs"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends $pkgs
fi
echo "== configuring $build"
cmake -S "$here" -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
echo "== building"
cmake --build "$build" -j "$(nproc)"
