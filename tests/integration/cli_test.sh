#!/usr/bin/env bash
# The command-line tools as a shell and a script see them: `datapump` in usage (not the path it
# was started by), --version from the project for datapump and datapumpd, exit code 2 for usage
# errors, human units in the report, --json that parses, the deprecated --machine still working,
# and the progress line: on a terminal (a pseudo-terminal here), never in a pipe.
set -euo pipefail
bin=$1
daemon=$2
version=$3
dir=$(mktemp -d /tmp/datapump-cli-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# --version: the project's version, exit 0, on stdout.
[ "$("$bin" --version)" = "datapump $version" ] || fail "datapump --version: '$("$bin" --version)'"
[ "$("$daemon" --version)" = "datapumpd $version" ] || fail "datapumpd --version: '$("$daemon" --version)'"

# Usage names the program, not its path.
help=$("$bin" --help)
grep -q "^Usage: datapump " <<<"$help" || fail "usage line: $(grep -m1 Usage <<<"$help")"
grep -q "$(dirname "$bin")" <<<"$help" && fail "--help shows the program's path"

# Usage errors exit 2, with a message on stderr.
expect_usage_error() {  # args...
  local rc=0 err
  err=$("$bin" "$@" 2>&1 >/dev/null) || rc=$?
  [ "$rc" -eq 2 ] || fail "'$*': exit $rc, want 2"
  [ -n "$err" ] || fail "'$*': no message on stderr"
}
expect_usage_error                                   # no subcommand
expect_usage_error read                              # path missing
expect_usage_error read x --readers 0                # out of range
expect_usage_error read x --buffer-kib 6             # not a multiple of 4
expect_usage_error read x --no-such-flag
expect_usage_error read x --progress sometimes
expect_usage_error read x --json --machine
expect_usage_error --log loud providers

head -c $((3 * 1024 * 1024)) /dev/urandom >"$dir/data.bin"
size=$(stat -c %s "$dir/data.bin")

# Human units: sizes in MiB, the rate in a binary unit per second.
human=$("$bin" read --root "$dir" data.bin --readers 2 2>"$dir/err")
grep -q "2 reader(s), 3.00 MiB each" <<<"$human" || fail "human size: $human"
grep -qE "delivered   6.00 MiB in [0-9]+ loans \(buffers of 256 KiB\), [0-9.]+ s, [0-9.]+ [KMGT]?i?B/s" <<<"$human" \
  || fail "human delivered line: $(grep delivered <<<"$human")"
# stderr is a file, not a terminal: no progress line.
[ ! -s "$dir/err" ] || fail "progress or noise on a non-terminal stderr: $(cat -v "$dir/err")"

# --json: one object scripts can read.
"$bin" read --root "$dir" data.bin --readers 2 --verify --json >"$dir/out.json"
python3 - "$dir/out.json" "$size" <<'PY' || fail "--json report"
import json, sys
r = json.load(open(sys.argv[1]))
size = int(sys.argv[2])
assert r["ok"] is True, r
assert r["file_bytes"] == size and r["bytes"] == 2 * size, r
assert r["readers"] == 2 and r["mismatches"] == 0 and r["readers_agree"] is True, r
assert r["disk_read_bytes"] == size, r
assert isinstance(r["bytes_per_second"], (int, float)) and r["path"] == "data.bin", r
PY
"$bin" providers --json | python3 -c 'import json,sys; n=[p["name"] for p in json.load(sys.stdin)]; assert "direct" in n and "posix" in n, n' \
  || fail "providers --json"

# --machine: still the key=value lines, with a note on stderr.
machine=$("$bin" read --root "$dir" data.bin --machine 2>"$dir/err")
grep -qx "bytes=$size" <<<"$machine" || fail "--machine output"
grep -q "deprecated" "$dir/err" || fail "--machine without its deprecation note"

# On a terminal, the progress line; then erased, and the report on stdout untouched.
python3 - "$bin" "$dir" <<'PY' || fail "progress line on a terminal"
import os, pty, subprocess, sys
binary, root = sys.argv[1], sys.argv[2]
master, slave = pty.openpty()
p = subprocess.Popen([binary, "read", "--root", root, "data.bin"], stdout=subprocess.PIPE, stderr=slave)
os.close(slave)
seen = b""
while True:
    try:
        chunk = os.read(master, 4096)
    except OSError:  # EIO: the terminal's last writer closed it
        break
    if not chunk:
        break
    seen += chunk
out, _ = p.communicate(timeout=60)
assert p.returncode == 0, p.returncode
assert b"\rreading data.bin: " in seen and b"of 3.00 MiB" in seen, seen
assert b"(100%)" in seen and seen.endswith(b"\r\x1b[K"), seen
assert b"\r" not in out and b"delivered" in out, out
PY
echo "cli_test: all checks passed"
