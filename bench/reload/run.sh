#!/usr/bin/env bash
# Reload under live streams (issue 15, conf): STREAMS paced downloads live through RELOADS
# SIGHUPs, each with a changed --config file; how long until a new request sees the new settings,
# and whether every stream still got every byte (SHA-256). See reload_streams.py.
#
# Usage: bench/reload/run.sh [ROUNDS=3]
# Env:   DATAPUMP_BIN_DIR (build/release/src/daemon), RELOAD_STREAMS (100), RELOAD_RATE (1M),
#        RELOAD_SIZE_MIB (4), RELOAD_RELOADS (5), DP_FLAGS (extra datapumpd flags)
# Needs python3. Exit 1 when a stream lost or changed a byte.
source "$(dirname "$0")/../lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"

rounds=${1:-3}
dpbin="${DATAPUMP_BIN_DIR:-${top}/build/release/src/daemon}/datapumpd"
[ -x "$dpbin" ] || { echo "run.sh: no datapumpd at $dpbin (cmake --preset release && cmake --build --preset release)" >&2; exit 2; }
mkdir -p "$bench_dir"
machine_line
status=0
for round in $(seq "$rounds"); do
  echo "== round $round of $rounds"
  python3 "$here/reload_streams.py" "$dpbin" --streams "${RELOAD_STREAMS:-100}" --rate "${RELOAD_RATE:-1M}" \
    --size-mib "${RELOAD_SIZE_MIB:-4}" --reloads "${RELOAD_RELOADS:-5}" --flags "${DP_FLAGS:-}" || status=1
done
exit "$status"
