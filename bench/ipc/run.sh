#!/usr/bin/env bash
# Command channel: datapump's ipc channel and loans against pipes, AF_UNIX sockets, busy-polled
# atomics and a raw SPSC ring, client on CPU 0 and server on CPU 1, in one run. Prints medians
# over ROUNDS (default 3) and the ratios against the targets, then `figure ...` lines for scripts.
# Usage: bench/ipc/run.sh [ROUNDS] [extra ipc_bench options, e.g. --only latency]
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "$0")/../lib.sh"
rounds="${1:-3}"
shift || true
bin="${top}/build/release/bench/ipc/ipc_bench"
# Ninja makes the build step a no-op when nothing changed, so it runs every time; its output is
# shown only when it fails.
build() {
  local out
  out=$(cd "$top" && { [ -f build/release/build.ninja ] || cmake --preset release; } &&
        cmake --build --preset release --target ipc_bench 2>&1) ||
    { echo "$out" >&2; echo "ipc_bench did not build (cmake --build --preset release --target ipc_bench)" >&2; exit 2; }
}
build
# Random bytes (zeros would flatter the disk); made here so DATAPUMP_BENCH_DIR is honoured.
bulk=$(make_file ipc_bulk_1g $((1 << 30)))
echo "machine: $(nproc) vCPU, $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), kernel $(uname -r)"
# No taskset: ipc_bench pins client and server itself.
"$bin" --rounds "$rounds" --bulk-file "$bulk" "$@"
