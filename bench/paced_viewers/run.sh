#!/usr/bin/env bash
# Many paced viewers (issue 16): N clients (default 1000) each download one of 50 titles (round
# robin) at 1 MB/s = 1,000,000 B/s (8 Mbit/s) for S seconds (default 60), from datapumpd and from
# nginx's limit_rate, one server after the other in each round (the order alternates), the same
# client program for both (bench/paced_viewers/paced_client.cpp: one process, epoll, the body
# discarded in the kernel with recv(MSG_TRUNC); the connects spread linearly over 1.5 s).
#
# Per server and round: on-time clients (bytes >= 0.97 x rate x time since the first body byte;
# see paced_client.cpp for why), server CPU-s per GiB delivered (utime + stime from /proc of the
# server's processes: datapumpd's threads, nginx's master and workers, before and after the
# client's run), delivered MB/s, the worst and 1st-percentile client's bytes / (rate x elapsed),
# time to first byte, the client's own CPU, the load average before the round. Prints medians
# (min-max) over ROUNDS and the ratio datapumpd / nginx, against the issue's targets: on time
# >= 99.9 %, CPU-s/GiB <= 0.8 x nginx.
#
# The same bytes/s on both sides: datapumpd gets `?rate=1M` (its RATE grammar is SI: 1M = 10^6
# B/s); nginx gets `limit_rate 1000000;` (nginx's `1m` would be 1 MiB/s = 1,048,576 B/s, 4.9 %
# more). Both: sendfile from the page cache (datapumpd --provider posix --send-path sendfile;
# nginx sendfile on, tcp_nopush on), access log off, the same number of event loops / worker
# processes (--loops = worker_processes = the CPU count). All clients come from 127.0.0.1, so
# datapumpd's per-address limits (256 streams, 512 connections by default) are lifted
# (--max-streams-per-ip 0 --max-connections-per-ip 0) and --capacity is set to twice N x rate.
# The titles are 64 MiB of random bytes (60 s at 1 MB/s is 60 MB: no title ends within a run),
# read once before the rounds so both servers start from a warm page cache.
#
# Usage: bench/paced_viewers/run.sh [ROUNDS=3] [--clients N] [--seconds S] [--servers nginx,datapumpd,...]
#        servers: nginx, datapumpd, datapumpd-1s (datapumpd with --default-burst = one second of the
#        rate: pieces as large as nginx's one-second allowance, for comparison; not the default)
# Env:   DATAPUMP_BIN_DIR    datapumpd's folder (default build/release/src/daemon)
#        PACED_CLIENT        the client (default build/release/bench/paced_viewers/paced_client)
#        DATAPUMP_BENCH_DIR  where the titles are made once (default /var/tmp/datapump-bench; 3.2 GiB)
#        PACED_DP_FLAGS      extra datapumpd flags (e.g. "--rt-vps 2")
#        DATAPUMP_BASE_BIN_DIR  an older datapumpd's folder: adds the server datapumpd-base (same
#                            flags) to every round and a before/after column, so that a change is
#                            measured in the same run, rotated with the others
#        PACED_PERF_DIR      record `perf record -g` of each server's run there (costs CPU: the
#                            figures of such a run are for the profile only)
# shellcheck source=SCRIPTDIR/../lib.sh
source "$(dirname "$0")/../lib.sh"

reps=3
clients=1000
seconds=60
servers=(nginx datapumpd)
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --servers) IFS=, read -ra servers <<<"$2"; shift 2 ;;
    -h|--help) sed -n '2,/^# shellcheck/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) reps=$1; shift ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

dpbin="${DATAPUMP_BIN_DIR:-${top}/build/release/src/daemon}/datapumpd"
client="${PACED_CLIENT:-${top}/build/release/bench/paced_viewers/paced_client}"
basebin=""
if [ -n "${DATAPUMP_BASE_BIN_DIR:-}" ]; then
  basebin="${DATAPUMP_BASE_BIN_DIR}/datapumpd"
  [ -x "$basebin" ] || { echo "run.sh: no datapumpd at $basebin (DATAPUMP_BASE_BIN_DIR)" >&2; exit 2; }
  [[ " ${servers[*]} " == *" datapumpd-base "* ]] || servers+=(datapumpd-base)
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
rate=1000000          # bytes/s: datapumpd ?rate=1M, nginx limit_rate 1000000
titles=50
title_bytes=$((64 * 1024 * 1024))
ramp=1.5
loops=$(nproc)
tck=$(getconf CLK_TCK)
root="${bench_dir}/paced"

for tool in "$nginx_bin" curl python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: '$tool' is missing: run scripts/deps.sh bench" >&2; exit 2; }
done
bins=("$client")
[[ " ${servers[*]} " != *" datapumpd "* ]] || bins+=("$dpbin")
for bin in "${bins[@]}"; do
  [ -x "$bin" ] || { echo "run.sh: no $bin (build: cmake --preset release && cmake --build --preset release)" >&2; exit 2; }
done

# ----- processes ------------------------------------------------------------------------------
work=$(mktemp -d /tmp/datapump-bench-paced-XXXXXX)
srv_pid=""
srv_name=""
srv_port=""
admin_port=""
perf_pid=""
cleanup() {
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2>/dev/null || true; wait "$perf_pid" 2>/dev/null || true; fi
  if [ -n "$srv_pid" ]; then kill -TERM "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_server() {
  srv_name=$1
  srv_port=$(free_port)
  case "$srv_name" in
    nginx)
      local conns=$((clients * 2 + 1024))
      cat >"$work/nginx.conf" <<EOF
daemon off; worker_processes $loops; worker_rlimit_nofile $((conns * 2)); pid $work/nginx.pid;
error_log $work/nginx.log warn;
events { worker_connections $conns; }
http {
  include /etc/nginx/mime.types; default_type application/octet-stream;
  sendfile on; tcp_nopush on; access_log off; keepalive_requests 1000000;
  client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  server { listen 127.0.0.1:$srv_port backlog=4096; root $root; limit_rate $rate; }
}
EOF
      "$nginx_bin" -p "$work" -c "$work/nginx.conf" -e "$work/nginx.log" &
      ;;
    datapumpd|datapumpd-base|datapumpd-1s)
      admin_port=$(free_port)
      local bin=$dpbin extra=""
      [ "$srv_name" != datapumpd-base ] || bin=$basebin
      [ "$srv_name" != datapumpd-1s ] || extra="--default-burst $rate"
      # shellcheck disable=SC2086  # PACED_DP_FLAGS and extra are lists of flags
      "$bin" --root "$root" --listen "127.0.0.1:$srv_port" --admin-listen "127.0.0.1:$admin_port" \
        --provider posix --send-path sendfile --loops "$loops" --access-log off --log-level warn \
        --capacity $((clients * rate * 2)) --max-connections $((clients * 2 + 1024)) \
        --max-streams-per-ip 0 --max-connections-per-ip 0 $extra ${PACED_DP_FLAGS:-} >>"$work/$srv_name.log" 2>&1 &
      ;;
    *) echo "run.sh: unknown server '$srv_name'" >&2; exit 2 ;;
  esac
  srv_pid=$!
  await_server "http://127.0.0.1:$srv_port/title_00.bin" -r 0-0
}

# ----- results --------------------------------------------------------------------------------
declare -A res
add() { res["$1|$2"]+="$3 "; }
calc() { awk "BEGIN {printf \"%.${2:-1}f\", $1}"; }
vals() { tr ' ' '\n' <<<"${res["$1|$2"]:-}" | sed '/^$/d'; }
cell() {  # key server -> "median (min-max)" or "-"
  if [ -z "${res["$1|$2"]:-}" ]; then printf '%-24s' "-"; return; fi
  printf '%-24s' "$(vals "$1" "$2" | median) ($(vals "$1" "$2" | spread))"
}
ratio() {  # key a b -> median(a) / median(b)
  if [ -z "${res["$1|$2"]:-}" ] || [ -z "${res["$1|$3"]:-}" ]; then printf '%-7s' "-"; return; fi
  printf '%-7s' "$(awk -v a="$(vals "$1" "$2" | median)" -v b="$(vals "$1" "$3" | median)" \
    'BEGIN {if (b == 0) print "-"; else printf "%.2fx", a / b}')"
}
# Columns: nginx, then each datapumpd flavour with its ratio to nginx; with a base, new/base last.
row() {
  local s
  printf '%-34s %s' "$1" "$(cell "$2" nginx)"
  for s in "${servers[@]}"; do
    [ "$s" = nginx ] || printf ' %s %s' "$(cell "$2" "$s")" "$(ratio "$2" "$s" nginx)"
  done
  [ -z "$basebin" ] || printf ' %s' "$(ratio "$2" datapumpd datapumpd-base)"
  echo
}

# ----- the scenario ---------------------------------------------------------------------------
make_titles() {
  local i
  for i in $(seq -w 0 $((titles - 1))); do make_file "paced/title_$i.bin" "$title_bytes" >/dev/null; done
  chmod -R a+rX "$root"   # nginx's workers run as nobody
  cat "$root"/title_*.bin >/dev/null
}

one_run() {  # server round
  local s=$1 r=$2 c0 c1 out load
  load=$(cut -d' ' -f1 /proc/loadavg)
  start_server "$s"
  if [ -n "${PACED_PERF_DIR:-}" ]; then
    local pids="$srv_pid"
    [ "$s" != nginx ] || pids="$pids,$(pgrep -P "$srv_pid" | paste -sd,)"
    mkdir -p "$PACED_PERF_DIR"
    perf record -g -o "$PACED_PERF_DIR/$s.r$r.perf.data" -p "$pids" 2>"$work/perf.log" &
    perf_pid=$!
  fi
  c0=$(cpu_ticks)
  out=$("$client" --port "$srv_port" --clients "$clients" --seconds "$seconds" --ramp "$ramp" --rate "$rate" \
          --titles "$titles" --query "?rate=1M" 2>"$work/client.err")
  c1=$(cpu_ticks)
  if [ -n "$perf_pid" ]; then kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true; perf_pid=""; fi
  local rt=""
  if [[ "$s" == datapumpd* ]]; then
    rt=$(curl -s "http://127.0.0.1:$admin_port/metrics" |
         awk '/^datapump_(rt_deadline_misses_total|rt_refusals_total|rt_overruns_total|admission_refusals_total|send_timeouts_total|stall_releases_total) / {sub(/^datapump_/, ""); printf "%s=%s ", $1, $2}')
  fi
  survived || return 0
  stop_server
  sed 's/^/    /' "$work/client.err" >&2
  local bytes
  bytes=$(kv_line bytes "$out")
  echo "  round $r $s (load $load): server_cpu_s=$(calc "($c1 - $c0) / $tck" 2) $out ${rt}" >&2
  add ontime "$s" "$(kv_line on_time_pct "$out")"
  [ "$bytes" -gt 0 ] && add cpu "$s" "$(calc "($c1 - $c0) / $tck / ($bytes / 2^30)" 3)"
  add cpus "$s" "$(calc "($c1 - $c0) / $tck" 2)"
  add MBps "$s" "$(calc "$bytes / $seconds / 1e6" 0)"  # every client reads for $seconds
  add minratio "$s" "$(kv_line min_ratio "$out")"
  add p1ratio "$s" "$(kv_line p1_ratio "$out")"
  add ttfb "$s" "$(kv_line ttfb_p99_ms "$out")"
  add failures "$s" "$(($(kv_line connect_failures "$out") + $(kv_line http_errors "$out") + $(kv_line errors "$out")))"
  add clientcpu "$s" "$(kv_line client_cpu_s "$out")"
  add load "$s" "$load"
}
kv_line() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }

# ----- main -----------------------------------------------------------------------------------
make_titles
machine_line
echo "titles: $root ($titles x 64 MiB, warm page cache); $clients clients x $rate B/s for $seconds s (ramp $ramp s); $reps rounds"
echo "nginx: $("$nginx_bin" -v 2>&1 | sed 's/.*: //'), worker_processes $loops, sendfile on, tcp_nopush on, access_log off, limit_rate $rate"
echo "datapumpd: $dpbin --provider posix --send-path sendfile --loops $loops --access-log off," \
     "--max-streams-per-ip 0 --max-connections-per-ip 0 --capacity $((clients * rate * 2)) ${PACED_DP_FLAGS:-}; ?rate=1M"
[ -z "$basebin" ] || echo "datapumpd-base: $basebin, the same flags"
[[ " ${servers[*]} " != *" datapumpd-1s "* ]] || echo "datapumpd-1s: datapumpd, the same flags and --default-burst $rate"
for ((r = 0; r < reps; r++)); do
  n=${#servers[@]}
  for ((i = 0; i < n; i++)); do
    one_run "${servers[$(((i + r) % n))]}" "$r"
  done
done

echo
printf '%-34s %-24s' "median (min-max) over $reps rounds" nginx
for s in "${servers[@]}"; do [ "$s" = nginx ] || printf ' %-24s %-7s' "$s" "/nginx"; done
[ -z "$basebin" ] || printf ' %-7s' "new/base"
echo
row "on time, % of clients" ontime
row "server CPU-s/GiB" cpu
row "server CPU-s" cpus
row "delivered MB/s" MBps
row "worst client: bytes/(rate x t)" minratio
row "p1 client: bytes/(rate x t)" p1ratio
row "time to first byte p99, ms" ttfb
row "failed clients" failures
row "client CPU-s" clientcpu
row "load average before" load
echo "/nginx = that server / nginx; new/base = datapumpd / datapumpd-base. Targets: on time >= 99.9 % (both), CPU-s/GiB ratio <= 0.80x."
