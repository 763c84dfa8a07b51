#!/usr/bin/env bash
# datapumpd against nginx, serving the same files over HTTP/1.1 on loopback, one after the other
# in the same run: nginx (Debian's, sendfile on, worker_processes auto), datapumpd --provider posix
# (sendfile), and beside it datapumpd --provider direct --send-path send-zc.
#
# Scenarios (each alone with --only NAME; default all, in this order):
#   single  one curl downloads the 1 GiB file (warm cache): MB/s, server CPU-s per GiB
#   wrk     wrk -t2 -c{1,16,64,256} -d5s --latency over 32 files of 8 MiB (warm): MB/s, req/s,
#           p99 latency, server CPU-s per GiB
#   paced   100 clients stream the same 1 GiB title at 5 MB/s (40 Mbit/s) for 20 s, cold cache:
#           on-time fraction (clients with >= 97% of rate x elapsed), bytes the server read from
#           storage / title size, CPU-s/GiB
#   cold    cold cache: 64 clients each download a distinct 64 MiB file once: MB/s (target:
#           datapumpd direct >= 1.3x nginx), disk bytes / data, CPU-s/GiB
#   small   wrk -t2 -c{16,256} -d5s --latency over 10,000 files of 4-64 KiB (a web / HLS segment
#           mix; warm page cache, each server's first pass over the set not measured): req/s
#           (target >= 1.2x nginx), p99 latency (target <= nginx), CPU-s/GiB
#   clients the wrk set again, but 64 clients of one connection each (64 wrk -t1 -c1 processes,
#           5 s): no client thread multiplexes connections, so a slow response is the server's
#           doing, not a client thread's that reads one socket while the others wait (which is
#           what wrk -c64's p99 measures once the client is the bottleneck: docs/benchmarks.md,
#           "The tail after huge pages"). req/s, MB/s, the median client's p99, the slowest
#           response of all, CPU-s/GiB
# Prints medians over REPS runs, their spread (min-max) and the ratio datapumpd / nginx.
# Server CPU = utime + stime from /proc/PID/stat (nginx: master + workers; datapumpd: the
# process, which sums its threads), before and after each measurement.
#
# Usage: bench/http_vs_nginx/run.sh [REPS=3] [--only single|wrk|paced|cold|small|clients]... [--servers nginx,dp-posix,dp-direct]
# Env:   DATAPUMP_BIN_DIR   datapumpd's folder (default build/release/src/daemon); without the
#                           binary only nginx runs
#        DATAPUMP_BENCH_DIR where the files are made once (default /var/tmp/datapump-bench; 5.3 GiB)
#        BENCH_CACHE_MIB    datapumpd --cache-mib (default 2048)
#        BENCH_WRK_SECONDS (5), BENCH_PACED_SECONDS (20), BENCH_PACED_CLIENTS (100), BENCH_CLIENTS (64)
#        BENCH_NGINX_OFC=1  adds server nginx-ofc: nginx with `open_file_cache max=16384
#                           inactive=60s; open_file_cache_valid 60s` (datapumpd keeps files open
#                           too: docs/daemon.md, "Open-file cache"), and a table of datapumpd / it
#        DATAPUMP_BASE_BIN_DIR  an older datapumpd's folder: adds servers dp-posix-base and
#                           dp-direct-base (same flags) and a before/after table, so a change's
#                           cost is measured in the same run, rotated with the others
#        BENCH_BASE_FLAGS   more flags for the dp-*-base servers: with DATAPUMP_BASE_BIN_DIR naming
#                           this build, a lever switched off (e.g. "--open-file-cache 0") is "before"
# Needs root (drop_caches) and scripts/deps.sh bench.
source "$(dirname "$0")/../lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"

reps=3
only=()
servers=(nginx dp-posix dp-direct)
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only+=("$2"); shift 2 ;;
    --servers) IFS=, read -ra servers <<<"$2"; shift 2 ;;
    -h|--help) sed -n '2,/^source/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) reps=$1; shift ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#only[@]} -gt 0 ] || only=(single wrk paced cold small clients)
for s in "${only[@]}"; do
  case "$s" in single|wrk|paced|cold|small|clients) ;; *) echo "run.sh: unknown scenario '$s'" >&2; exit 2 ;; esac
done

dpbin="${DATAPUMP_BIN_DIR:-${top}/build/release/src/daemon}/datapumpd"
basebin=""
if [ -n "${DATAPUMP_BASE_BIN_DIR:-}" ]; then
  basebin="${DATAPUMP_BASE_BIN_DIR}/datapumpd"
  [ -x "$basebin" ] || { echo "run.sh: no datapumpd at $basebin (DATAPUMP_BASE_BIN_DIR)" >&2; exit 2; }
  # Each base beside its server, unless --servers named the bases already.
  if ! grep -q -- '-base' <<<"${servers[*]}"; then
    for s in dp-posix dp-direct; do grep -qw -- "$s" <<<"${servers[*]}" && servers+=("$s-base"); done
  fi
fi
if [ -n "${BENCH_NGINX_OFC:-}" ] && ! grep -q 'nginx-ofc' <<<"${servers[*]}"; then servers+=(nginx-ofc); fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cache_mib=${BENCH_CACHE_MIB:-2048}
wrk_s=${BENCH_WRK_SECONDS:-5}
paced_s=${BENCH_PACED_SECONDS:-20}
paced_n=${BENCH_PACED_CLIENTS:-100}
clients_n=${BENCH_CLIENTS:-64}
paced_rate=5000000    # bytes/s, a plain number: nginx would read '5M' as 5 MiB/s
tck=$(getconf CLK_TCK)

for tool in "$nginx_bin" wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: '$tool' is missing: run scripts/deps.sh bench" >&2; exit 2; }
done
if [ ! -x "$dpbin" ]; then
  echo "run.sh: no datapumpd at $dpbin (build: cmake --preset release && cmake --build --preset release);" \
       "running nginx only" >&2
  kept=()
  for s in "${servers[@]}"; do [[ "$s" == dp-* ]] || kept+=("$s"); done
  servers=("${kept[@]}")
fi

# ----- processes ------------------------------------------------------------------------------
work=$(mktemp -d /tmp/datapump-bench-http-XXXXXX)
srv_pid=""
srv_name=""
srv_port=""
bg_pids=()
cleanup() {
  for p in "${bg_pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
  if [ -n "$srv_pid" ]; then kill -TERM "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

http="${bench_dir}/http"
url() { echo "http://127.0.0.1:${srv_port}$1"; }

start_server() {
  srv_name=$1
  srv_port=$(free_port)
  case "$srv_name" in
    nginx|nginx-ofc)
      local ofc=""
      [ "$srv_name" = nginx-ofc ] && ofc="open_file_cache max=16384 inactive=60s; open_file_cache_valid 60s;"
      cat >"$work/nginx.conf" <<EOF
daemon off; worker_processes auto; worker_rlimit_nofile 16384; pid $work/nginx.pid;
error_log $work/nginx.log warn;
events { worker_connections 8192; }
http {
  include /etc/nginx/mime.types; default_type application/octet-stream;
  sendfile on; tcp_nopush on; access_log off; keepalive_requests 1000000; $ofc
  client_body_temp_path $work/body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  map \$arg_rate \$rate { "" 0; default \$arg_rate; }
  server { listen 127.0.0.1:$srv_port; root $http; limit_rate \$rate; }
}
EOF
      "$nginx_bin" -p "$work" -c "$work/nginx.conf" -e "$work/nginx.log" &
      ;;
    dp-posix|dp-posix-base)
      "$([ "$srv_name" = dp-posix ] && echo "$dpbin" || echo "$basebin")" --root "$http" --listen "127.0.0.1:$srv_port" --provider posix --send-path sendfile \
        --access-log off --log-level warn --cache-mib "$cache_mib" $([ "$srv_name" = dp-posix ] || echo "${BENCH_BASE_FLAGS:-}") >>"$work/$srv_name.log" 2>&1 &
      ;;
    dp-direct|dp-direct-base)
      "$([ "$srv_name" = dp-direct ] && echo "$dpbin" || echo "$basebin")" --root "$http" --listen "127.0.0.1:$srv_port" --provider direct --send-path send-zc \
        --access-log off --log-level warn --cache-mib "$cache_mib" $([ "$srv_name" = dp-direct ] || echo "${BENCH_BASE_FLAGS:-}") >>"$work/$srv_name.log" 2>&1 &
      ;;
    *) echo "run.sh: unknown server '$srv_name'" >&2; exit 2 ;;
  esac
  srv_pid=$!
  await_server "$(url /)"
}

# Bytes the server read from storage (/proc/PID/io read_bytes: the process and all its threads,
# io_uring workers included; nginx: master + workers). Server-specific, unlike /proc/diskstats,
# which also counts whatever else the machine reads meanwhile.
disk_bytes() {
  local t=0 p pids="$srv_pid"
  [[ "$srv_name" != nginx* ]] || pids="$pids $(pgrep -P "$srv_pid" || true)"
  for p in $pids; do
    [ -r "/proc/$p/io" ] && t=$((t + $(awk '/^read_bytes/ {print $2}' "/proc/$p/io")))
  done
  echo "$t"
}

# ----- results --------------------------------------------------------------------------------
declare -A res
add() { res["$1|$2"]+="$3 "; }
calc() { awk "BEGIN {printf \"%.${2:-1}f\", $1}"; }

# ----- files ----------------------------------------------------------------------------------
make_files() {
  mkdir -p "$http/w8" "$http/c64"
  make_file http/title_1G.bin $((1024 * 1024 * 1024)) >/dev/null
  local i
  for i in $(seq -w 0 31); do make_file "http/w8/f$i.bin" $((8 * 1024 * 1024)) >/dev/null; done
  for i in $(seq -w 0 63); do make_file "http/c64/f$i.bin" $((64 * 1024 * 1024)) >/dev/null; done
  make_small_files
  chmod -R a+rX "$bench_dir"   # nginx's workers run as nobody
}
# 10,000 files of 4-64 KiB (sizes uniform, from a fixed seed; random bytes), made once.
make_small_files() {
  [ -f "$http/s10k/.complete" ] && return 0
  python3 - "$http/s10k" <<'PY'
import os, random, sys
d = sys.argv[1]
os.makedirs(d, exist_ok=True)
rng = random.Random(10000)
for i in range(10000):
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(rng.randint(4096, 65536)))
open(os.path.join(d, ".complete"), "w").close()
PY
}
warm() { cat "$@" >/dev/null; }
# The virtual disk's host may cache what the guest reads: whichever server ran first after a
# drop_caches would pay for everyone. Read the files once with O_DIRECT so every server meets the
# same host state; only the guest's page cache (and datapumpd's arena) start cold.
host_warm() { local f; for f in "$@"; do dd if="$f" of=/dev/null bs=4M iflag=direct status=none; done; }
# The servers in a different order each repetition, so drift favours none of them.
rotated() { local n=${#servers[@]} i; for ((i = 0; i < n; i++)); do echo "${servers[$(((i + $1) % n))]}"; done; }

# ----- scenarios ------------------------------------------------------------------------------
run_single() {
  local size=$((1024 * 1024 * 1024)) r s c0 c1 out bytes secs
  warm "$http/title_1G.bin"
  for ((r = 0; r < reps; r++)); do
    for s in $(rotated "$r"); do
      start_server "$s"
      curl -s -o /dev/null "$(url /title_1G.bin)"    # warm-up pass: fills datapumpd's cache too
      c0=$(cpu_ticks)
      out=$(curl -s -o /dev/null -w '%{size_download} %{time_total}' "$(url /title_1G.bin)")
      c1=$(cpu_ticks)
      survived "single" || continue
      stop_server
      read -r bytes secs <<<"$out"
      [ "$bytes" -eq "$size" ] || echo "run.sh: single/$s: $bytes bytes, want $size" >&2
      add single.MBps "$s" "$(calc "$bytes / $secs / 1e6" 0)"
      add single.cpu "$s" "$(calc "($c1 - $c0) / $tck / ($bytes / 2^30)" 3)"
    done
  done
}

# wrk's output -> "MB/s req/s p99_ms errors bytes" (wrk prints binary units: 1 MB = 2^20 B).
parse_wrk() {
  awk '
    function bytes(v,  u) { u = v; sub(/^[0-9.]+/, "", u); return (v + 0) * (u == "KB" ? 2^10 : u == "MB" ? 2^20 : u == "GB" ? 2^30 : u == "TB" ? 2^40 : 1) }
    function ms(v,  u) { u = v; sub(/^[0-9.]+/, "", u); return (v + 0) * (u == "us" ? 0.001 : u == "ms" ? 1 : u == "s" ? 1000 : u == "m" ? 60000 : 1) }
    / requests in / { secs = $4 + 0; rd = bytes($5) }
    $1 == "99%" { p99 = ms($2) }
    /^Requests\/sec:/ { rps = $2 }
    /^  Socket errors:/ { gsub(/,/, ""); err += $4 + $6 + $8 + $10 }
    /^  Non-2xx/ { err += $NF }
    END { printf "%.0f %.0f %.1f %d %.0f\n", rd / secs / 1e6, rps, p99, err, rd }'
}

# wrk_point NAME SERVER C FILE_ARGS...: one measured wrk run at C connections with rotate.lua
# over the files FILE_ARGS name; adds NAME.cC.{MBps,rps,p99,cpu} for SERVER.
wrk_point() {
  local name=$1 s=$2 c=$3 t c0 c1 out mbps rps p99 err bytes
  shift 3
  [ -n "$srv_pid" ] || start_server "$s"
  t=$((c < 2 ? 1 : 2))
  c0=$(cpu_ticks)
  out=$(wrk -t"$t" -c"$c" -d"${wrk_s}s" --latency --timeout 10s -s "$here/rotate.lua" "$(url "")" -- "$@")
  c1=$(cpu_ticks)
  survived "$name -c$c" || return 0
  read -r mbps rps p99 err bytes <<<"$(parse_wrk <<<"$out")"
  [ "$err" -eq 0 ] || echo "run.sh: $name -c$c against $s: $err errors" >&2
  add "$name.c$c.MBps" "$s" "$mbps"
  add "$name.c$c.rps" "$s" "$rps"
  add "$name.c$c.p99" "$s" "$p99"
  add "$name.c$c.cpu" "$s" "$(calc "($c1 - $c0) / $tck / ($bytes / 2^30)" 3)"
}

run_wrk() {
  local r s c i
  warm "$http"/w8/*.bin
  for ((r = 0; r < reps; r++)); do
    for s in $(rotated "$r"); do
      start_server "$s"
      for i in $(seq -w 0 31); do curl -s -o /dev/null "$(url "/w8/f$i.bin")"; done   # warm-up pass
      for c in 1 16 64 256; do wrk_point wrk "$s" "$c" /w8/f 32; done
      stop_server
    done
  done
}

# The small files: 10,000 names of 5 digits, walked with a stride of 7919 (prime, not a divisor of
# the count: every file before any repeats), in the same order for every server.
run_small() {
  local r s c
  warm "$http"/s10k/*.bin
  for ((r = 0; r < reps; r++)); do
    for s in $(rotated "$r"); do
      start_server "$s"
      # Warm-up: one pass over the set (datapumpd's cache, nginx's first opens), not measured.
      wrk -t2 -c16 -d"${wrk_s}s" -s "$here/rotate.lua" "$(url "")" -- /s10k/f 10000 5 7919 >/dev/null
      for c in 16 256; do wrk_point small "$s" "$c" /s10k/f 10000 5 7919; done
      stop_server
    done
  done
}

# wrk's output -> its slowest response in ms (the Latency line's Max column).
wrk_max_ms() {
  awk '$1 == "Latency" && NF >= 4 { v = $4; u = v; sub(/^[0-9.]+/, "", u)
         printf "%.1f\n", (v + 0) * (u == "us" ? 0.001 : u == "ms" ? 1 : u == "s" ? 1000 : u == "m" ? 60000 : 1); exit }'
}

run_clients() {
  local r s i c0 c1 mbps rps p99 err bytes sum_mbps sum_rps total errs worst p99s
  warm "$http"/w8/*.bin
  for ((r = 0; r < reps; r++)); do
    for s in $(rotated "$r"); do
      start_server "$s"
      for i in $(seq -w 0 31); do curl -s -o /dev/null "$(url "/w8/f$i.bin")"; done   # warm-up pass
      c0=$(cpu_ticks)
      bg_pids=()
      for ((i = 0; i < clients_n; i++)); do
        wrk -t1 -c1 -d"${wrk_s}s" --latency --timeout 10s -s "$here/rotate.lua" "$(url "")" -- /w8/f 32 \
          >"$work/clients.$i" 2>&1 &
        bg_pids+=($!)
      done
      for i in "${bg_pids[@]}"; do wait "$i" || true; done
      bg_pids=()
      c1=$(cpu_ticks)
      survived "clients" || continue
      stop_server
      sum_mbps=0; sum_rps=0; total=0; errs=0; worst=0; p99s=""
      for ((i = 0; i < clients_n; i++)); do
        read -r mbps rps p99 err bytes <<<"$(parse_wrk <"$work/clients.$i")"
        sum_mbps=$((sum_mbps + mbps)); sum_rps=$((sum_rps + rps)); total=$((total + bytes)); errs=$((errs + err))
        p99s+="$p99 "
        worst=$(awk -v a="$worst" -v b="$(wrk_max_ms <"$work/clients.$i")" 'BEGIN {print (b > a ? b : a)}')
      done
      [ "$errs" -eq 0 ] || echo "run.sh: clients against $s: $errs errors" >&2
      add clients.MBps "$s" "$sum_mbps"
      add clients.rps "$s" "$sum_rps"
      add clients.p99 "$s" "$(tr ' ' '\n' <<<"$p99s" | sed '/^$/d' | median)"
      add clients.max "$s" "$worst"
      add clients.cpu "$s" "$(calc "($c1 - $c0) / $tck / ($total / 2^30)" 3)"
    done
  done
}

run_paced() {
  local title=$((1024 * 1024 * 1024)) r s i c0 c1 d0 d1 on total bytes secs
  host_warm "$http/title_1G.bin"
  for ((r = 0; r < reps; r++)); do
    for s in $(rotated "$r"); do
      start_server "$s"
      drop_caches
      d0=$(disk_bytes); c0=$(cpu_ticks)
      bg_pids=()
      for ((i = 0; i < paced_n; i++)); do
        curl -s -o /dev/null --max-time "$paced_s" -w '%{size_download} %{time_total}\n' \
          "$(url "/title_1G.bin?rate=$paced_rate")" >"$work/paced.$i" &
        bg_pids+=($!)
      done
      for i in "${bg_pids[@]}"; do wait "$i" || true; done   # curl exits 28 at --max-time
      bg_pids=()
      d1=$(disk_bytes); c1=$(cpu_ticks)
      survived "paced" || continue
      stop_server
      on=0; total=0
      for ((i = 0; i < paced_n; i++)); do
        read -r bytes secs <"$work/paced.$i" || { bytes=0; secs=1; }
        total=$((total + bytes))
        if awk -v b="$bytes" -v t="$secs" -v r="$paced_rate" 'BEGIN {exit !(b >= 0.97 * r * t)}'; then on=$((on + 1)); fi
      done
      add paced.ontime "$s" "$(calc "$on / $paced_n" 2)"
      add paced.MBps "$s" "$(calc "$total / $paced_s / 1e6" 0)"
      add paced.disk "$s" "$(calc "($d1 - $d0) / $title" 3)"
      add paced.cpu "$s" "$(calc "($c1 - $c0) / $tck / ($total / 2^30)" 3)"
    done
  done
}

run_cold() {
  local want=$((64 * 64 * 1024 * 1024)) r s i c0 c1 d0 d1 t0 t1 total b
  host_warm "$http"/c64/*.bin
  for ((r = 0; r < reps; r++)); do
    for s in $(rotated "$r"); do
      start_server "$s"
      drop_caches
      d0=$(disk_bytes); c0=$(cpu_ticks)
      t0=$(date +%s%N)
      bg_pids=()
      for i in $(seq -w 0 63); do
        curl -s -o /dev/null --max-time 300 -w '%{size_download}\n' "$(url "/c64/f$i.bin")" >"$work/cold.$i" &
        bg_pids+=($!)
      done
      for i in "${bg_pids[@]}"; do wait "$i" || true; done
      bg_pids=()
      t1=$(date +%s%N)
      d1=$(disk_bytes); c1=$(cpu_ticks)
      survived "cold" || continue
      stop_server
      total=0
      for i in $(seq -w 0 63); do read -r b <"$work/cold.$i" || b=0; total=$((total + b)); done
      [ "$total" -eq "$want" ] || echo "run.sh: cold/$s: $total bytes, want $want" >&2
      add cold.MBps "$s" "$(calc "$total / (($t1 - $t0) / 1e9) / 1e6" 0)"
      add cold.disk "$s" "$(calc "($d1 - $d0) / $want" 3)"
      add cold.cpu "$s" "$(calc "($c1 - $c0) / $tck / ($total / 2^30)" 3)"
    done
  done
}

# ----- report ---------------------------------------------------------------------------------
cell() {  # key server -> "median (min-max)" or "-"
  local v=${res["$1|$2"]:-}
  if [ -z "$v" ]; then printf '%-26s' "-"; return; fi
  printf '%-26s' "$(tr ' ' '\n' <<<"$v" | sed '/^$/d' | median) ($(tr ' ' '\n' <<<"$v" | sed '/^$/d' | spread))"
}
ratio() {  # key server -> median(server) / median(nginx)
  local a=${res["$1|$2"]:-} b=${res["$1|nginx"]:-} ma mb
  if [ -z "$a" ] || [ -z "$b" ]; then printf '%-7s' "-"; return; fi
  ma=$(tr ' ' '\n' <<<"$a" | sed '/^$/d' | median); mb=$(tr ' ' '\n' <<<"$b" | sed '/^$/d' | median)
  printf '%-7s' "$(awk -v a="$ma" -v b="$mb" 'BEGIN {if (b == 0) print "-"; else printf "%.2fx", a / b}')"
}
row() {  # label key
  printf '%-30s %s %s %s %s %s\n' "$1" "$(cell "$2" nginx)" "$(cell "$2" dp-posix)" "$(ratio "$2" dp-posix)" \
    "$(cell "$2" dp-direct)" "$(ratio "$2" dp-direct)"
}

# ----- main -----------------------------------------------------------------------------------
make_files
machine_line
echo "files: $http (1 GiB title, 32 x 8 MiB, 64 x 64 MiB, 10,000 x 4-64 KiB); $reps runs; servers: ${servers[*]}"
echo "nginx: $("$nginx_bin" -v 2>&1 | sed 's/.*: //'), worker_processes auto, sendfile on, tcp_nopush on, access_log off"
echo "datapumpd: $dpbin --access-log off --cache-mib $cache_mib (posix/sendfile; direct/send-zc)"
for s in "${only[@]}"; do
  echo "running: $s" >&2
  "run_$s"
done

echo
printf '%-30s %-26s %-26s %-7s %-26s %-7s\n' "median (min-max) over $reps runs" nginx "datapumpd posix" ratio \
  "datapumpd direct" ratio
for s in "${only[@]}"; do
  case "$s" in
    single)
      row "single 1 GiB: MB/s" single.MBps
      row "single 1 GiB: CPU-s/GiB" single.cpu ;;
    wrk)
      for c in 1 16 64 256; do
        row "wrk -c$c 8 MiB: MB/s" "wrk.c$c.MBps"
        row "wrk -c$c: req/s" "wrk.c$c.rps"
        row "wrk -c$c: p99 ms" "wrk.c$c.p99"
        row "wrk -c$c: CPU-s/GiB" "wrk.c$c.cpu"
      done ;;
    paced)
      row "paced ${paced_n}x5MB/s: on time" paced.ontime
      row "paced: delivered MB/s" paced.MBps
      row "paced: disk bytes / title" paced.disk
      row "paced: CPU-s/GiB" paced.cpu ;;
    cold)
      row "cold 64x64 MiB: MB/s" cold.MBps
      row "cold: disk bytes / data" cold.disk
      row "cold: CPU-s/GiB" cold.cpu ;;
    small)
      for c in 16 256; do
        row "small -c$c 4-64 KiB: req/s" "small.c$c.rps"
        row "small -c$c: p99 ms" "small.c$c.p99"
        row "small -c$c: MB/s" "small.c$c.MBps"
        row "small -c$c: CPU-s/GiB" "small.c$c.cpu"
      done ;;
    clients)
      row "clients ${clients_n}x1 8 MiB: req/s" clients.rps
      row "clients: MB/s" clients.MBps
      row "clients: p99 ms (median client)" clients.p99
      row "clients: slowest response ms" clients.max
      row "clients: CPU-s/GiB" clients.cpu ;;
  esac
done
if grep -q 'nginx-ofc' <<<"${servers[*]}"; then
  echo
  echo "against nginx with open_file_cache max=16384 inactive=60s, open_file_cache_valid 60s (ratio = datapumpd / it)"
  ratio_ofc() {  # key server -> median(server) / median(nginx-ofc)
    local a=${res["$1|$2"]:-} b=${res["$1|nginx-ofc"]:-} ma mb
    if [ -z "$a" ] || [ -z "$b" ]; then printf '%-7s' "-"; return; fi
    ma=$(tr ' ' '\n' <<<"$a" | sed '/^$/d' | median); mb=$(tr ' ' '\n' <<<"$b" | sed '/^$/d' | median)
    printf '%-7s' "$(awk -v a="$ma" -v b="$mb" 'BEGIN {if (b == 0) print "-"; else printf "%.2fx", a / b}')"
  }
  for s in "${only[@]}"; do
    case "$s" in
      small) for c in 16 256; do
          for k in rps p99 cpu; do
            printf '%-30s %s %s %s %s %s\n' "small -c$c: $k" "$(cell "small.c$c.$k" nginx-ofc)" \
              "$(cell "small.c$c.$k" dp-posix)" "$(ratio_ofc "small.c$c.$k" dp-posix)" \
              "$(cell "small.c$c.$k" dp-direct)" "$(ratio_ofc "small.c$c.$k" dp-direct)"
          done
        done ;;
    esac
  done
fi
if [ -n "$basebin" ]; then
  echo
  echo "before/after: $basebin -> $dpbin (ratio = after / before)"
  ab() {  # label key: posix before, after, ratio; direct before, after, ratio
    local k=$2 a b r out=""
    for pair in "dp-posix-base dp-posix" "dp-direct-base dp-direct"; do
      read -r b a <<<"$pair"
      local mb ma
      mb=$(tr ' ' '\n' <<<"${res["$k|$b"]:-}" | sed '/^$/d' | median)
      ma=$(tr ' ' '\n' <<<"${res["$k|$a"]:-}" | sed '/^$/d' | median)
      r=$(awk -v a="$ma" -v b="$mb" 'BEGIN {if (b == 0 || a == "") print "-"; else printf "%.3fx", a / b}')
      out+=$(printf '%-12s %-12s %-8s ' "${mb:--}" "${ma:--}" "$r")
    done
    printf '%-30s %s\n' "$1" "$out"
  }
  printf '%-30s %-12s %-12s %-8s %-12s %-12s %-8s\n' "median over $reps runs" "posix before" "after" ratio \
    "direct before" "after" ratio
  for s in "${only[@]}"; do
    case "$s" in
      single) ab "single 1 GiB: MB/s" single.MBps; ab "single: CPU-s/GiB" single.cpu ;;
      wrk) for c in 1 16 64 256; do ab "wrk -c$c: req/s" "wrk.c$c.rps"; ab "wrk -c$c: MB/s" "wrk.c$c.MBps"; ab "wrk -c$c: p99 ms" "wrk.c$c.p99"; ab "wrk -c$c: CPU-s/GiB" "wrk.c$c.cpu"; done ;;
      paced) ab "paced: on time" paced.ontime; ab "paced: CPU-s/GiB" paced.cpu ;;
      cold) ab "cold: MB/s" cold.MBps; ab "cold: CPU-s/GiB" cold.cpu ;;
      small) for c in 16 256; do ab "small -c$c: req/s" "small.c$c.rps"; ab "small -c$c: p99 ms" "small.c$c.p99"; done ;;
      clients) ab "clients: req/s" clients.rps; ab "clients: p99 ms" clients.p99; ab "clients: slowest ms" clients.max
               ab "clients: CPU-s/GiB" clients.cpu ;;
    esac
  done
fi
echo "ratio = datapumpd / nginx (higher is better for MB/s, req/s, on time; lower for ms, CPU, disk)." \
     "Targets: cold direct >= 1.30x; small req/s >= 1.20x with p99 <= 1.00x."
