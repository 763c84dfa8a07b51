#!/usr/bin/env bash
# Many small uploads: what batched durability buys. wrk PUTs distinct 64 KiB files (random bytes)
# over 16 connections for a few seconds, against, one after the other in the same run:
#   nginx           WebDAV PUT (body to a temp file, rename; it never fsyncs: not durable)
#   dp-upload       datapumpd --writable --provider direct --durability upload (fsync of each file
#                   and of its folder before each answer)
#   dp-batch        the same with --durability batch (one syncfs before and one after the renames
#                   of the uploads finishing within --durability-window-ms, default 5)
# Prints uploads/s (median of REPS runs and the spread), mean latency, fsync/syncfs calls per
# upload (datapumpd's /metrics), and the ratios dp-batch/dp-upload and dp-batch/nginx. Each run
# starts from an empty folder with the caches dropped; the first 1 s of each server is a warm-up.
# Every stored file is compared with the body (its size and a sample) before figures count.
#
# Usage: bench/ingest/small.sh [REPS=3]
# Env:   DATAPUMP_BIN_DIR (default build/release/src/daemon), BENCH_UPLOAD_DIR (default /var/tmp),
#        BENCH_SMALL_KIB (64), BENCH_SMALL_SECONDS (5), BENCH_SMALL_CONNS (16)
# Needs root (drop_caches) and scripts/deps.sh bench (nginx, wrk).
source "$(dirname "$0")/../lib.sh"

reps=${1:-3}
dpbin="${DATAPUMP_BIN_DIR:-${top}/build/release/src/daemon}/datapumpd"
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
kib=${BENCH_SMALL_KIB:-64}
seconds=${BENCH_SMALL_SECONDS:-5}
conns=${BENCH_SMALL_CONNS:-16}
command_line="$0 $*"
for v in DATAPUMP_BIN_DIR BENCH_UPLOAD_DIR BENCH_SMALL_KIB BENCH_SMALL_SECONDS BENCH_SMALL_CONNS; do
  [ -z "${!v:-}" ] || command_line="$v=${!v} $command_line"
done
for tool in "$nginx_bin" wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "small.sh: '$tool' is missing: run scripts/deps.sh bench" >&2; exit 2; }
done
[ -x "$dpbin" ] || { echo "small.sh: no datapumpd at $dpbin (cmake --preset release && cmake --build --preset release)" >&2; exit 2; }
"$dpbin" --help 2>&1 | grep -q -- '--durability' || { echo "small.sh: $dpbin has no --durability" >&2; exit 2; }

work=$(mktemp -d /tmp/datapump-bench-small-XXXXXX)
up=$(mktemp -d "${BENCH_UPLOAD_DIR:-/var/tmp}/datapump-small-XXXXXX")
srv_pid=""
srv_name=""
srv_port=""
adm_port=""
cleanup() { stop_server; rm -rf "$work" "$up"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
chmod 711 "$up"
mkdir -p "$up/root" "$up/nginx-body"
chown nobody "$up/root" "$up/nginx-body"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_server() {
  srv_name=$1
  srv_port=$(free_port)
  adm_port=$(free_port)  # datapumpd's admin listener: /metrics
  case "$srv_name" in
    nginx)
      cat >"$work/nginx.conf" <<EOF
daemon off; worker_processes auto; pid $work/nginx.pid;
error_log $work/nginx.log warn;
events { worker_connections 1024; }
http {
  access_log off; client_body_temp_path $up/nginx-body; proxy_temp_path $work/proxy;
  fastcgi_temp_path $work/fastcgi; uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  server { listen 127.0.0.1:$srv_port; root $up/root; dav_methods PUT; client_max_body_size 0; }
}
EOF
      "$nginx_bin" -p "$work" -c "$work/nginx.conf" -e "$work/nginx.log" >>"$work/nginx.log" 2>&1 &
      ;;
    dp-upload|dp-batch)
      "$dpbin" --root "$up/root" --listen "127.0.0.1:$srv_port" --admin-listen "127.0.0.1:$adm_port" --writable --provider direct \
        --durability "${srv_name#dp-}" --access-log off --log-level warn >>"$work/$srv_name.log" 2>&1 &
      ;;
  esac
  srv_pid=$!
  local i
  for i in $(seq 100); do
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$srv_port/" && return 0
    sleep 0.1
  done
  echo "small.sh: $srv_name did not start; its log:" >&2
  tail -n 5 "$work/$srv_name.log" >&2 || true
  exit 1
}

# The wrk script: distinct names per thread (setup() gives each thread's state a global `prefix`)
# and request, one random body for all.
cat >"$work/put.lua" <<EOF
local counter = 0
local threads = 0
math.randomseed(42)
local parts = {}
for i = 1, $((kib * 4)) do
  local b = {}
  for j = 1, 256 do b[j] = string.char(math.random(0, 255)) end
  parts[i] = table.concat(b)
end
local body = table.concat(parts)
function setup(thread)
  threads = threads + 1
  thread:set("prefix", tostring(threads) .. "-")
end
local tag = "t"
function init(args) tag = args[1] or "t" end
function request()
  counter = counter + 1
  return wrk.format("PUT", "/" .. tag .. "-" .. (prefix or "x-") .. tostring(counter) .. ".bin", nil, body)
end
EOF

metric() { curl -s "http://127.0.0.1:$adm_port/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

declare -A res
add() { res["$1|$2"]+="$3 "; }
calc() { awk "BEGIN {printf \"%.${2:-1}f\", $1}"; }

# run PEER: one timed wrk run; adds uploads/s, latency and syncs per upload.
run() {
  local p=$1 out n rate lat bad syncs0 syncs1 done0 done1 i
  find "$up/root" -mindepth 1 -delete
  drop_caches
  start_server "$p"
  wrk -t2 -c"$conns" -d1s -s "$work/put.lua" "http://127.0.0.1:$srv_port/" -- w >/dev/null 2>&1 || true  # warm-up
  # Uploads the warm-up left in flight finish (their temp files go) before its files are removed.
  for i in $(seq 100); do [ -z "$(find "$up/root" -name '*.dp-upload-*' -print -quit)" ] && break; sleep 0.1; done
  find "$up/root" -mindepth 1 -delete
  if [ "$p" != nginx ]; then syncs0=$(metric datapump_publish_syncs_total); done0=$(metric 'datapump_uploads_total{outcome="completed"}'); fi
  out=$(wrk -t2 -c"$conns" -d"${seconds}s" --latency -s "$work/put.lua" "http://127.0.0.1:$srv_port/" -- t 2>&1)
  if [ "$p" != nginx ]; then syncs1=$(metric datapump_publish_syncs_total); done1=$(metric 'datapump_uploads_total{outcome="completed"}'); fi
  stop_server
  bad=$(sed -nE 's/.*Non-2xx or 3xx responses: ([0-9]+).*/\1/p' <<<"$out")
  [ -z "$bad" ] || { echo "small.sh: $p answered $bad uploads with an error; no figures" >&2; echo "$out" >&2; exit 1; }
  # Every stored file has the body's size; a sample of them its bytes.
  n=$(find "$up/root" -type f -name '*.bin' | wc -l)
  [ "$n" -gt 0 ] || { echo "small.sh: $p stored nothing" >&2; exit 1; }
  [ -z "$(find "$up/root" -type f -name '*.bin' ! -size "$((kib * 1024))c" -print -quit)" ] ||
    { echo "small.sh: $p stored a file of the wrong size" >&2; exit 1; }
  local first f; first=$(find "$up/root" -type f -name '*.bin' -print -quit)
  for f in $(find "$up/root" -type f -name '*.bin' | shuf -n 20); do
    cmp -s "$first" "$f" || { echo "small.sh: $p stored $f with other bytes than $first" >&2; exit 1; }
  done
  rate=$(sed -nE 's/^Requests\/sec: *([0-9.]+).*/\1/p' <<<"$out")
  lat=$(awk '/^    Latency/ {print $2; exit}' <<<"$out")
  add rate "$p" "$(calc "$rate" 0)"
  add lat "$p" "$lat"
  if [ "$p" != nginx ]; then add syncs "$p" "$(calc "($syncs1 - $syncs0) / ($done1 - $done0)" 3)"; fi
}

peers=(nginx dp-upload dp-batch)
for ((r = 0; r < reps; r++)); do
  for ((i = 0; i < ${#peers[@]}; i++)); do run "${peers[$(((i + r) % ${#peers[@]}))]}"; done
done

med() { tr ' ' '\n' <<<"${res[$1|$2]}" | sed '/^$/d' | median; }
spr() { tr ' ' '\n' <<<"${res[$1|$2]}" | sed '/^$/d' | spread; }
echo "command: $command_line"
echo "$(machine_line), upload folder on $(df --output=source "$up" | tail -n 1)"
echo "${kib} KiB bodies, ${conns} connections, ${seconds} s per run, median of ${reps} (min-max)"
printf '%-10s %18s %12s %16s\n' peer uploads/s latency syncs/upload
for p in "${peers[@]}"; do
  s="-"; [ "$p" = nginx ] || s=$(med syncs "$p")
  printf '%-10s %9s (%s) %12s %16s\n' "$p" "$(med rate "$p")" "$(spr rate "$p")" \
    "$(tr ' ' '\n' <<<"${res[lat|$p]}" | sed '/^$/d' | head -n 1)" "$s"
done
echo "dp-batch / dp-upload: $(calc "$(med rate dp-batch) / $(med rate dp-upload)" 2)x"
echo "dp-batch / nginx:     $(calc "$(med rate dp-batch) / $(med rate nginx)" 2)x   (nginx does not fsync)"
