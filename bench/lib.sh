# Shared helpers for bench/*/run.sh. Source it; do not run it.
set -euo pipefail
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
datapump="${DATAPUMP_BIN:-${top}/build/release/src/cli/datapump}"
bench_dir="${DATAPUMP_BENCH_DIR:-/var/tmp/datapump-bench}"

ensure_built() {
  if [ ! -x "$datapump" ] || [ -n "${DATAPUMP_REBUILD:-}" ]; then
    "${top}/scripts/deps.sh" build
    (cd "$top" && cmake --preset release >/dev/null && cmake --build --preset release -j "$(nproc)" >/dev/null)
  fi
}

# make_file NAME BYTES: random bytes (zeros would flatter this virtual disk).
make_file() {
  local f="${bench_dir}/$1"
  mkdir -p "$(dirname "$f")"  # NAME may have a folder: soak/title_64M.bin
  if [ ! -f "$f" ] || [ "$(stat -c %s "$f")" -ne "$2" ]; then
    head -c "$2" /dev/urandom >"$f.tmp" && mv "$f.tmp" "$f"
  fi
  echo "$f"
}

drop_caches() {
  sync
  if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
    echo "bench: cannot drop the page cache (needs root); cold-cache figures would be wrong" >&2
    exit 2
  fi
}

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.4f\n", (a[NR/2]+a[NR/2+1])/2}'; }
spread() { sort -g | awk 'NR==1{min=$1} {max=$1} END {printf "%s-%s", min, max}'; }

# timed CMD...: prints "wall_seconds cpu_seconds" of the command (children included).
# Wall time from a nanosecond clock (/usr/bin/time's %e has 10 ms steps: too coarse for a
# 40 ms cat); CPU time from /usr/bin/time.
timed() {
  local t start end
  t=$(mktemp)
  start=$(date +%s%N)
  /usr/bin/time -o "$t" -f '%U %S' "$@" >/dev/null 2>&1
  end=$(date +%s%N)
  awk -v s="$start" -v e="$end" '{printf "%.6f %.4f\n", (e - s) / 1e9, $1 + $2}' "$t"
  rm -f "$t"
}

# kv KEY TEXT: the value of KEY=value in datapump --machine output.
kv() { sed -nE "s/^$1=(.*)$/\1/p" <<<"$2"; }

machine_line() {
  echo "machine: $(nproc) vCPU, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r), disk $(df --output=source "$bench_dir" | tail -n 1)"
}

# The server a bench/*/run.sh started: its pid in $srv_pid, its kind in $srv_name (nginx or a
# datapumpd flavour). stop_server: TERM, up to 10 s, then KILL.
stop_server() {
  [ -n "$srv_pid" ] || return 0
  kill -TERM "$srv_pid" 2>/dev/null || true
  local i
  for i in $(seq 100); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$srv_pid" 2>/dev/null || true
  wait "$srv_pid" 2>/dev/null || true
  srv_pid=""
}

# CPU ticks of the server: the process (all its threads, io_uring workers included) and, for
# nginx, its workers.
cpu_ticks() {
  local t=0 p pids="$srv_pid"
  [[ "$srv_name" != nginx* ]] || pids="$pids $(pgrep -P "$srv_pid" || true)"
  for p in $pids; do
    [ -r "/proc/$p/stat" ] && t=$((t + $(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
  done
  echo "$t"
}

# For scripts that run one server at a time in $srv_pid / $srv_name, logging to $work/$srv_name.log
# (and nginx to $work/nginx.log):
# await_server URL: waits (10 s at most) until the server answers URL; exits with its log if not.
await_server() {
  local i
  for i in $(seq 100); do
    if curl -s -o /dev/null --max-time 1 "$@"; then return 0; fi
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "$(basename "$0"): $srv_name did not answer on port $srv_port; its log:" >&2
  tail -n 20 "$work/$srv_name.log" "$work/nginx.log" 2>/dev/null >&2 || true
  exit 1
}

# survived [WHAT]: after a measurement, a server that died meanwhile gives no figures (say so,
# show its log).
survived() {
  kill -0 "$srv_pid" 2>/dev/null && return 0
  echo "$(basename "$0"): $srv_name died during ${1:-the run}; that run's figures are dropped. Its log:" >&2
  tail -n 5 "$work/$srv_name.log" "$work/nginx.log" 2>/dev/null >&2 || true
  wait "$srv_pid" 2>/dev/null || true
  srv_pid=""
  return 1
}
