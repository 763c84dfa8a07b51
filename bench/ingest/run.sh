#!/usr/bin/env bash
# Uploads (ingest): datapumpd receiving HTTP PUT against its peers, one after the other in the same
# run: dd writing the same bytes with bs=1M oflag=direct (the disk's ceiling), nginx (Debian's,
# WebDAV PUT: body to a temp file, then rename) and datapumpd --writable --provider direct.
#
# Scenarios (each alone with --only NAME; default both, in this order):
#   single    one upload of a 1 GiB file: MB/s, writer CPU-s per GiB
#   parallel  8 parallel uploads of distinct 256 MiB files (dd: 8 parallel dd's): MB/s (all bytes /
#             wall time of the whole scenario), writer CPU-s per GiB
# Sources are random bytes read from the page cache (warmed with cat after the caches are
# dropped), so only the write side is measured; curl uploads them (default Expect: 100-continue).
# Each run: the peer's warm-up upload (untimed), its uploads deleted, sync, caches dropped, sources
# warmed, then the timed uploads. MB/s counts until every answer; "MB/s incl. fsync" until a
# following fsync of the uploaded files returns too (nginx answers before its bytes reach the disk).
# Every upload is compared with its source (cmp): a mismatch stops the run with no figures.
# Prints medians over REPS runs, their spread (min-max) and the ratios datapumpd/dd and
# datapumpd/nginx beside their targets. CPU: dd's own (its rusage); servers: utime + stime from
# /proc/PID/stat (nginx: master + workers; datapumpd: the process, which sums its threads) before
# and after the uploads. The kernel's writeback threads are nobody's: see the note printed below.
#
# Usage: bench/ingest/run.sh [REPS=3] [--only single|parallel]... [--peers dd,nginx,datapumpd]
# Env:   DATAPUMP_BIN_DIR   datapumpd's folder (default build/release/src/daemon); without the
#                           binary, or one without --writable or PUT, only dd and nginx run
#        DATAPUMP_BENCH_DIR where the sources are made once (default /var/tmp/datapump-bench; 3 GiB)
#        BENCH_UPLOAD_DIR   the fresh upload folder is made in it, removed at exit (default /var/tmp)
#        BENCH_CACHE_MIB    datapumpd --cache-mib (default 512)
#        BENCH_NGINX_BODY_BUFFER  nginx client_body_buffer_size (default nginx's: 8k on x86-64, so
#                           one pwrite per 8 KiB of body; 1m writes 1 MiB at a time)
#        BENCH_SINGLE_MIB (1024), BENCH_PARALLEL_MIB (256), BENCH_PARALLEL_N (8): smaller for trials
#        BENCH_DP_FLAGS     more datapumpd flags (e.g. "--buffer-kib 1024 --upload-windows 2")
# Needs root (drop_caches) and scripts/deps.sh bench.
source "$(dirname "$0")/../lib.sh"

command_line="$0 $*"
for v in DATAPUMP_BIN_DIR DATAPUMP_BENCH_DIR BENCH_UPLOAD_DIR BENCH_CACHE_MIB BENCH_NGINX_BODY_BUFFER \
         BENCH_SINGLE_MIB BENCH_PARALLEL_MIB BENCH_PARALLEL_N BENCH_DP_FLAGS; do
  [ -z "${!v:-}" ] || command_line="$v=${!v} $command_line"
done

reps=3
only=()
peers=(dd nginx datapumpd)
while [ $# -gt 0 ]; do
  case "$1" in
    --only) only+=("$2"); shift 2 ;;
    --peers) IFS=, read -ra peers <<<"$2"; shift 2 ;;
    -h|--help) sed -n '2,/^source/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) reps=$1; shift ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
[ ${#only[@]} -gt 0 ] || only=(single parallel)
for s in "${only[@]}"; do
  case "$s" in single|parallel) ;; *) echo "run.sh: unknown scenario '$s'" >&2; exit 2 ;; esac
done
for p in "${peers[@]}"; do
  case "$p" in dd|nginx|datapumpd) ;; *) echo "run.sh: unknown peer '$p'" >&2; exit 2 ;; esac
done

dpbin="${DATAPUMP_BIN_DIR:-${top}/build/release/src/daemon}/datapumpd"
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
cache_mib=${BENCH_CACHE_MIB:-512}
nginx_body_buffer=${BENCH_NGINX_BODY_BUFFER:-}
single_mib=${BENCH_SINGLE_MIB:-1024}
par_mib=${BENCH_PARALLEL_MIB:-256}
par_n=${BENCH_PARALLEL_N:-8}
tck=$(getconf CLK_TCK)

for tool in "$nginx_bin" curl dd cmp python3; do
  command -v "$tool" >/dev/null || { echo "run.sh: '$tool' is missing: run scripts/deps.sh bench" >&2; exit 2; }
done
if [[ " ${peers[*]} " == *" nginx "* ]] && ! "$nginx_bin" -V 2>&1 | grep -q http_dav_module; then
  echo "run.sh: $nginx_bin has no http_dav_module (no PUT); Debian's nginx package has it built in" >&2
  exit 2
fi

# drop_peer NAME WHY: the run goes on without it.
drop_peer() {
  echo "run.sh: $2; running without $1" >&2
  local kept=() p
  for p in "${peers[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  peers=("${kept[@]}")
}
if [[ " ${peers[*]} " == *" datapumpd "* ]]; then
  if [ ! -x "$dpbin" ]; then
    drop_peer datapumpd "no datapumpd at $dpbin (build: cmake --preset release && cmake --build --preset release)"
  elif ! "$dpbin" --help 2>&1 | grep -q -- '--writable'; then
    drop_peer datapumpd "$dpbin does not accept --writable yet (no upload support)"
  fi
fi

# ----- processes ------------------------------------------------------------------------------
work=$(mktemp -d /tmp/datapump-bench-ingest-XXXXXX)
up=$(mktemp -d "${BENCH_UPLOAD_DIR:-/var/tmp}/datapump-ingest-XXXXXX")   # the upload file system
srv_pid=""
srv_name=""
srv_port=""
bg_pids=()
# An upload runs in a subshell: its dd or curl is a child (or grandchild) of the pid we keep.
kill_tree() { local c; for c in $(pgrep -P "$1" || true); do kill_tree "$c"; done; kill -KILL "$1" 2>/dev/null || true; }
cleanup() {
  for p in "${bg_pids[@]}"; do kill_tree "$p"; done
  if [ -n "$srv_pid" ]; then kill -TERM "$srv_pid" 2>/dev/null || true; wait "$srv_pid" 2>/dev/null || true; fi
  rm -rf "$work" "$up"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

die() { echo "run.sh: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
url() { echo "http://127.0.0.1:${srv_port}/$1"; }
root_of() { echo "$up/$1"; }   # each peer writes into its own folder

# nginx's workers run as nobody: they create the files and the body temp files. The temp files
# live on the upload file system, so the final rename moves no bytes (across file systems nginx
# would copy the whole body once more).
mkdir -p "$up/dd" "$up/nginx" "$up/nginx-body" "$up/datapumpd"
chmod 711 "$up"   # mktemp's 0700 would keep nobody out
chown nobody "$up/nginx" "$up/nginx-body"

start_server() {
  srv_name=$1
  srv_port=$(free_port)
  case "$srv_name" in
    nginx)
      cat >"$work/nginx.conf" <<EOF
daemon off; worker_processes auto; pid $work/nginx.pid;
error_log $work/nginx.log warn;
events { worker_connections 1024; }
http {
  default_type application/octet-stream;
  sendfile on; access_log off;${nginx_body_buffer:+ client_body_buffer_size $nginx_body_buffer;}
  client_body_temp_path $up/nginx-body; proxy_temp_path $work/proxy; fastcgi_temp_path $work/fastcgi;
  uwsgi_temp_path $work/uwsgi; scgi_temp_path $work/scgi;
  server {
    listen 127.0.0.1:$srv_port; root $(root_of nginx);
    dav_methods PUT DELETE; create_full_put_path on; client_max_body_size 0;
  }
}
EOF
      "$nginx_bin" -p "$work" -c "$work/nginx.conf" -e "$work/nginx.log" &
      ;;
    datapumpd)
      "$dpbin" --root "$(root_of datapumpd)" --listen "127.0.0.1:$srv_port" --writable --provider direct \
        --cache-mib "$cache_mib" --access-log off --log-level warn ${BENCH_DP_FLAGS:-} >>"$work/datapumpd.log" 2>&1 &
      ;;
    *) echo "run.sh: unknown server '$srv_name'" >&2; exit 2 ;;
  esac
  srv_pid=$!
  local i
  for i in $(seq 100); do
    if curl -s -o /dev/null --max-time 1 "$(url "")"; then return 0; fi
    kill -0 "$srv_pid" 2>/dev/null || break
    sleep 0.1
  done
  echo "run.sh: $srv_name did not answer on port $srv_port; its log:" >&2
  tail -n 20 "$work/$srv_name.log" 2>/dev/null >&2 || true
  exit 1
}

# ----- results --------------------------------------------------------------------------------
declare -A res
add() { res["$1|$2"]+="$3 "; }
calc() { awk "BEGIN {printf \"%.${2:-1}f\", $1}"; }

# ----- files ----------------------------------------------------------------------------------
single_src=""
par_srcs=()
make_files() {
  mkdir -p "$bench_dir/ingest"
  local i
  [[ " ${only[*]} " != *" single "* ]] ||
    single_src=$(make_file "ingest/single_${single_mib}M.bin" $((single_mib * 1024 * 1024)))
  if [[ " ${only[*]} " == *" parallel "* ]]; then
    for ((i = 0; i < par_n; i++)); do
      par_srcs+=("$(make_file "ingest/par_${par_mib}M_$i.bin" $((par_mib * 1024 * 1024)))")
    done
  fi
}
srcs_of() { if [ "$1" = single ]; then echo "$single_src"; else printf '%s\n' "${par_srcs[@]}"; fi; }
dst_name() { basename "$1"; }
# The peers in a different order each repetition, so drift favours none of them.
rotated() { local n=${#peers[@]} i; for ((i = 0; i < n; i++)); do echo "${peers[$(((i + $1) % n))]}"; done; }

# upload PEER SRC NAME STATUSFILE: one write of SRC as NAME, in the foreground; STATUSFILE gets
# "exit_status http_code" (dd: "exit_status cpu_seconds").
upload() {
  local rc=0 out TIMEFORMAT='%3U %3S'
  if [ "$1" = dd ]; then
    # bash's time: the rusage to the millisecond. /usr/bin/time prints 10 ms steps, truncated:
    # up to 20 ms low per dd, a third of the 60 ms that one dd of 256 MiB takes.
    { time dd if="$2" of="$(root_of dd)/$3" bs=1M oflag=direct status=none 2>"$4.err"; } 2>"$4.time" || rc=$?
    echo "$rc $(awk '{printf "%.4f", $1 + $2}' "$4.time" 2>/dev/null || echo 0)" >"$4"
  else
    out=$(curl -sS -T "$2" "$(url "$3")" -o /dev/null -w '%{http_code} %{time_total}' 2>"$4.err") || rc=$?
    echo "$rc ${out%% *}" >"$4"
  fi
}

# check_upload PEER STATUSFILE WHAT: dies unless the write finished and (servers) answered 2xx;
# a 2xx other than 201 for a new name is only reported.
check_upload() {
  local rc code
  read -r rc code <"$2"
  [ "$rc" -eq 0 ] || die "$3 through $1 failed (exit $rc): $(head -c 300 "$2.err")"
  [ "$1" != dd ] || return 0
  [[ "$code" == 2?? ]] || die "$3 through $1: HTTP $code, want 201"
  [ "$code" = 201 ] || echo "run.sh: $3 through $1: HTTP $code for a new file, want 201" >&2
}

# verify PEER SRC...: every upload byte-exact, and nothing else left in the root (temp files).
verify() {
  local p=$1 s d n=0 extra
  shift
  for s in "$@"; do
    d="$(root_of "$p")/$(dst_name "$s")"
    [ -f "$d" ] || die "$p: $(basename "$s") was not stored at $d; no figures for a wrong upload"
    cmp "$s" "$d" >"$work/cmp.out" 2>&1 ||
      die "$p stored $(basename "$s") wrong ($(head -c 200 "$work/cmp.out")); no figures for a wrong upload"
    n=$((n + 1))
  done
  extra=$(find "$(root_of "$p")" -mindepth 1 | wc -l)
  [ "$extra" -eq "$n" ] || echo "run.sh: $p left $((extra - n)) more file(s) in its root:" \
    "$(find "$(root_of "$p")" -mindepth 1 | head -n 3 | tr '\n' ' ')" >&2
  [ "$p" != nginx ] || [ -z "$(ls -A "$up/nginx-body")" ] ||
    echo "run.sh: nginx left body temp files: $(ls -A "$up/nginx-body" | head -n 3 | tr '\n' ' ')" >&2
}

clean_root() { find "$(root_of "$1")" -mindepth 1 -delete; }

# probe NAME: before any figure, each server stores a small file (201), replaces it (204), and
# is seen to answer curl's Expect: 100-continue (else curl waits 1 s before every body).
probe() {
  local p=$1 src="$work/probe.bin" code1 code2 rc=0
  head -c $((2 * 1024 * 1024)) /dev/urandom >"$src"
  start_server "$p"
  code1=$(curl -sS -v -T "$src" "$(url probe.bin)" -o /dev/null -w '%{http_code}' 2>"$work/probe.err") || rc=$?
  code2=$(curl -sS -T "$src" "$(url probe.bin)" -o /dev/null -w '%{http_code}' 2>/dev/null) || rc=$?
  stop_server
  if [ "$rc" -ne 0 ] || [[ "$code1" != 2?? ]]; then
    if [ "$p" = datapumpd ]; then
      drop_peer datapumpd "datapumpd answers PUT with HTTP ${code1:-none} (curl exit $rc), no upload support yet"
      return 0
    fi
    die "$p answers PUT with HTTP ${code1:-none} (curl exit $rc); its log: $(tail -n 3 "$work/$p.log" 2>/dev/null)"
  fi
  [ "$code1" = 201 ] && [ "$code2" = 204 ] ||
    echo "run.sh: $p answered PUT new/replace with $code1/$code2, want 201/204" >&2
  grep -q '^< HTTP/1.1 100' "$work/probe.err" ||
    echo "run.sh: $p sent no 100 Continue to curl's Expect: 100-continue (curl waits 1 s per upload)" >&2
  cmp -s "$src" "$(root_of "$p")/probe.bin" || die "$p stored the probe upload wrong"
  clean_root "$p"
}

# ----- scenarios ------------------------------------------------------------------------------
# measure SCENARIO PEER: one timed run (the peer's server already started and warmed).
measure() {
  local sc=$1 p=$2 s i c0 c1 t0 t1 t2 bytes=0 cpu rc c
  local -a srcs
  mapfile -t srcs < <(srcs_of "$sc")
  for s in "${srcs[@]}"; do bytes=$((bytes + $(stat -c %s "$s"))); done
  clean_root "$p"
  drop_caches
  cat "${srcs[@]}" >/dev/null
  [ "$p" = dd ] || c0=$(cpu_ticks)
  t0=$(date +%s%N)
  bg_pids=()
  for i in "${!srcs[@]}"; do
    upload "$p" "${srcs[$i]}" "$(dst_name "${srcs[$i]}")" "$work/st.$i" &
    bg_pids+=($!)
  done
  for i in "${bg_pids[@]}"; do wait "$i" || true; done
  bg_pids=()
  t1=$(date +%s%N)
  [ "$p" = dd ] || c1=$(cpu_ticks)
  (cd "$(root_of "$p")" && sync -- * 2>/dev/null) || true   # fsync of each uploaded file
  t2=$(date +%s%N)
  if [ "$p" != dd ]; then survived "$sc" || return 0; fi
  for i in "${!srcs[@]}"; do check_upload "$p" "$work/st.$i" "upload of $(basename "${srcs[$i]}")"; done
  verify "$p" "${srcs[@]}"
  clean_root "$p"
  if [ "$p" = dd ]; then
    cpu=0
    for i in "${!srcs[@]}"; do read -r rc c <"$work/st.$i"; cpu=$(calc "$cpu + $c" 4); done
  else
    cpu=$(calc "($c1 - $c0) / $tck" 4)
  fi
  add "$sc.MBps" "$p" "$(calc "$bytes / (($t1 - $t0) / 1e9) / 1e6" 0)"
  add "$sc.MBps_sync" "$p" "$(calc "$bytes / (($t2 - $t0) / 1e9) / 1e6" 0)"
  add "$sc.cpu" "$p" "$(calc "$cpu / ($bytes / 2^30)" 3)"
}

run_scenario() {
  local sc=$1 r p first
  first=$(srcs_of "$sc" | head -n 1)
  for ((r = 0; r < reps; r++)); do
    for p in $(rotated "$r"); do
      [ "$p" = dd ] || start_server "$p"
      upload "$p" "$first" warmup.bin "$work/st.warm"      # warm-up: untimed, then deleted
      check_upload "$p" "$work/st.warm" "warm-up upload"
      measure "$sc" "$p"
      stop_server
    done
  done
}

# ----- report ---------------------------------------------------------------------------------
vals() { tr ' ' '\n' <<<"${res["$1|$2"]:-}" | sed '/^$/d'; }
cell() {  # key peer -> "median (min-max)" or "-"
  if [ -z "${res["$1|$2"]:-}" ]; then printf '%-20s' "-"; return; fi
  printf '%-20s' "$(vals "$1" "$2" | median) ($(vals "$1" "$2" | spread))"
}
ratio() {  # key peer target(e.g. ">=0.9" or "") -> "1.05x" and, with a target, whether it is met
  local ma mb r=""
  if [ -z "${res["$1|datapumpd"]:-}" ] || [ -z "${res["$1|$2"]:-}" ]; then printf '%-22s' "-"; return; fi
  ma=$(vals "$1" datapumpd | median); mb=$(vals "$1" "$2" | median)
  r=$(awk -v a="$ma" -v b="$mb" -v t="$3" 'BEGIN {
        if (b == 0) { print "-"; exit }
        x = a / b; s = sprintf("%.2fx", x)
        if (t ~ /^>=/) s = s sprintf(" (%s %s)", t, x >= substr(t, 3) + 0 ? "met" : "missed")
        if (t ~ /^<=/) s = s sprintf(" (%s %s)", t, x <= substr(t, 3) + 0 ? "met" : "missed")
        print s }')
  printf '%-22s' "$r"
}
row() {  # label key dd_target nginx_target
  printf '%-28s %s %s %s %s %s\n' "$1" "$(cell "$2" dd)" "$(cell "$2" nginx)" "$(cell "$2" datapumpd)" \
    "$(ratio "$2" dd "$3")" "$(ratio "$2" nginx "$4")"
}

# ----- main -----------------------------------------------------------------------------------
make_files
need_mib=$(( (single_mib > par_n * par_mib ? single_mib : par_n * par_mib) + 1024 ))
avail_mib=$(df --output=avail -B1M "$up" | tail -n 1 | tr -d ' ')
[ "$avail_mib" -ge "$need_mib" ] || die "$up has $avail_mib MiB free; the uploads need $need_mib MiB"
machine_line
echo "command: $command_line"
sizes=()
[ -z "$single_src" ] || sizes+=("single ${single_mib} MiB")
[ ${#par_srcs[@]} -eq 0 ] || sizes+=("parallel ${par_n} x ${par_mib} MiB")
echo "sources: $bench_dir/ingest (random bytes, $(IFS=,; echo "${sizes[*]}" | sed 's/,/, /g'))," \
     "read from the page cache; uploads to $up ($(df --output=source,fstype "$up" | tail -n 1 | tr -s ' '))"
has_peer() { [[ " ${peers[*]} " == *" $1 "* ]]; }
! has_peer dd || echo "dd: dd if=SRC of=FILE bs=1M oflag=direct, ${par_n} at once for parallel"
! has_peer nginx ||
  echo "nginx: $("$nginx_bin" -v 2>&1 | sed 's/.*: //'), worker_processes auto, dav_methods PUT DELETE," \
       "create_full_put_path on, client_max_body_size 0, client_body_temp_path on the upload file system," \
       "sendfile on, access_log off, client_body_buffer_size ${nginx_body_buffer:-default (8k)}"
! has_peer datapumpd ||
  echo "datapumpd: $dpbin --writable --provider direct --cache-mib $cache_mib --access-log off"
echo "client: curl -sS -T SRC http://127.0.0.1:PORT/NAME -o /dev/null -w '%{http_code} %{time_total}'" \
     "($(curl --version | head -n 1 | cut -d' ' -f1-2))"
for p in "${peers[@]}"; do [ "$p" = dd ] || probe "$p"; done
echo "$reps runs of: ${only[*]}; peers: ${peers[*]}"
for s in "${only[@]}"; do
  echo "running: $s" >&2
  run_scenario "$s"
done

echo
printf '%-28s %-20s %-20s %-20s %-22s %-22s\n' "median (min-max), $reps runs" dd nginx datapumpd \
  "datapumpd / dd" "datapumpd / nginx"
for s in "${only[@]}"; do
  case "$s" in
    single) label="single ${single_mib} MiB" ;;
    parallel) label="parallel ${par_n}x${par_mib} MiB" ;;
  esac
  row "$label: MB/s" "$s.MBps" ">=0.9" ">=1.2"
  row "$s: MB/s incl. fsync" "$s.MBps_sync" ">=0.9" ">=1.2"
  row "$s: CPU-s/GiB" "$s.cpu" "" "<=0.7"
done
echo "MB/s: bytes / wall time until every upload is answered (dd: has returned); incl. fsync: until a"
echo "following fsync of the uploaded files returns (the fair figure: nginx answers with its bytes"
echo "still in the page cache). CPU-s/GiB: dd's own; servers' utime + stime. The kernel's writeback of"
echo "nginx's page-cache writes runs in kworker threads, charged to no peer."
