#!/usr/bin/env bash
# The arena's pages and its send path (issue 16, "Cold, 64 x 64 MiB"; docs/benchmarks.md, "Huge
# pages for the arena"): the sending thread's CPU per GiB of cold bytes read with O_DIRECT into
# the arena and sent over TCP loopback, by send from a memfd arena (today), send from an arena in
# transparent huge pages, and sendfile from the memfd (safe: each recycled buffer punched out;
# and unsafe, the floor). See arena_send.cpp.
#
# Usage: bench/arena_send/run.sh [ROUNDS=5] [GIB=2]
# Env:   ARENA_SEND   the program (default build/release/bench/arena_send/arena_send)
#        DATAPUMP_BENCH_DIR  where the 512 MiB input is made once (default /var/tmp/datapump-bench)
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "$0")/../lib.sh"
rounds=${1:-5}
gib=${2:-2}
bin=${ARENA_SEND:-${top}/build/release/bench/arena_send/arena_send}
[ -x "$bin" ] || { echo "run.sh: no $bin (cmake --preset release && cmake --build --preset release)" >&2; exit 2; }
input=$(make_file arena_send/input.bin $((512 * 1024 * 1024)))
machine_line
echo "transparent huge pages: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo unknown)"
"$bin" "$input" --gib "$gib" --rounds "$rounds"
