#!/usr/bin/env bash
# Soak under attack (issue 14): 50 legitimate paced viewers beside abusive clients (non-readers,
# slowloris, trickling uploads, random bytes, connection floods to the fd limit) for ATTACK
# seconds, with a quiet baseline before and a settling phase after. See soak.py for what each
# client does and how on-time is counted.
#
# Prints soak.py's JSON line and a verdict against the issue's figures:
#   viewers >= 99 % on time; RSS and fds at the end within 5 % of the start; the attack's CPU
#   beyond the viewers' < 0.30 of one core.
#
# Usage: bench/soak/run.sh [ATTACK_SECONDS=600]
# Env:   DATAPUMP_BIN_DIR (build/release/src/daemon), SOAK_NOFILE (1024: the daemon's fd limit, so
#        the flood reaches it), SOAK_VIEWERS (50), SOAK_RATE (1000000 B/s), DP_FLAGS (extra flags)
# Needs python3; the title is made once under DATAPUMP_BENCH_DIR.
source "$(dirname "$0")/../lib.sh"
here="$(cd "$(dirname "$0")" && pwd)"

attack=${1:-600}
dpbin="${DATAPUMP_BIN_DIR:-${top}/build/release/src/daemon}/datapumpd"
nofile=${SOAK_NOFILE:-1024}
viewers=${SOAK_VIEWERS:-50}
rate=${SOAK_RATE:-1000000}
token=soak-token-$$
[ -x "$dpbin" ] || { echo "run.sh: no datapumpd at $dpbin (cmake --preset release && cmake --build --preset release)" >&2; exit 2; }

work=$(mktemp -d /tmp/datapump-soak-XXXXXX)
srv_pid=""
cleanup() { stop_server; rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

root="$work/root"
mkdir -p "$root/soak"
cp "$(make_file soak/title_64M.bin $((64 * 1024 * 1024)))" "$root/title.bin"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port=$(free_port)
admin=$(free_port)
# Defaults but for what the soak needs: uploads with a token, the fd limit the flood runs into.
# shellcheck disable=SC2086
prlimit --nofile="$nofile" -- "$dpbin" --root "$root" --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --writable --upload-token "$token" --access-log off --log-level warn ${DP_FLAGS:-} >"$work/datapumpd.log" 2>&1 &
srv_pid=$!
srv_name=datapumpd
for _ in $(seq 100); do
  curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$port/" && break
  sleep 0.1
done
machine_line
echo "datapumpd: $dpbin, fd limit $nofile; $viewers viewers at $rate B/s; attack ${attack}s"
out=$(python3 "$here/soak.py" --pid "$srv_pid" --port "$port" --title title.bin --token "$token" \
  --viewers "$viewers" --rate "$rate" --attack "$attack")
kill -0 "$srv_pid" 2>/dev/null || { echo "run.sh: datapumpd died during the soak; its log:" >&2; tail -n 20 "$work/datapumpd.log" >&2; exit 1; }
echo "$out"
echo "daemon log: $(wc -c <"$work/datapumpd.log") bytes"
python3 - "$out" <<'EOF'
import json, sys
r = json.loads(sys.argv[1])
def within(a, b, tol):
    return abs(a - b) <= tol * max(b, 1)
checks = [
    ("viewers on time >= 99 %", r["on_time"] >= 0.99, f'{r["on_time"]*100:.2f} % (worst viewer {r["worst_viewer_on_time"]*100:.1f} %)'),
    ("RSS end within 5 % of start", within(r["rss_end_mib"], r["rss_start_mib"], 0.05), f'{r["rss_start_mib"]} -> {r["rss_end_mib"]} MiB'),
    ("fds end within 5 % of start", within(r["fds_end"], r["fds_start"], 0.05), f'{r["fds_start"]} -> {r["fds_end"]}'),
    ("attack CPU beyond viewers < 0.30 core", r["cpu_attack_cost"] < 0.30, f'{r["cpu_attack_cost"]:.3f} (viewers alone {r["cpu_viewers_only"]:.3f}, under attack {r["cpu_under_attack"]:.3f})'),
]
for name, ok, fig in checks:
    print(f'{"met " if ok else "MISSED"}  {name}: {fig}')
EOF
