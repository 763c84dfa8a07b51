#!/usr/bin/env bash
# The main job: installs what is missing, builds the release preset, makes a demo folder with a
# demo file, and reads it through the shared cache with four concurrent readers, printing what
# the cache did (bytes, buffers, hits, disk reads). The HTTP daemon takes this place when it lands.
# Usage: scripts/run.sh [extra `datapump read` options...]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build
cmake --preset release >/dev/null
cmake --build --preset release -j "$(nproc)" --target datapump
demo=build/demo
mkdir -p "$demo"
if [ ! -f "$demo/sample.bin" ]; then
  echo "making $demo/sample.bin (96 MiB of random bytes)"
  head -c $((96 * 1024 * 1024 + 4321)) /dev/urandom >"$demo/sample.bin.tmp"
  mv "$demo/sample.bin.tmp" "$demo/sample.bin"
fi
echo "\$ datapump providers"
build/release/src/cli/datapump providers
echo
echo "\$ datapump read --root $demo sample.bin --readers 4 --verify $*"
exec build/release/src/cli/datapump read --root "$demo" sample.bin --readers 4 --verify "$@"
