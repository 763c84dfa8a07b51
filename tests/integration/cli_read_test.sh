#!/usr/bin/env bash
# `datapump read` end to end: byte-exact reads with several readers through both providers, one
# disk read per block however many readers, and clear errors (exit 1, a message naming the path)
# for a missing file, a path outside the root, a directory and a device.
set -euo pipefail
bin=$1
dir=$(mktemp -d /tmp/datapump-cli-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

head -c $((5 * 1024 * 1024 + 777)) /dev/urandom >"$dir/data.bin"
size=$(stat -c %s "$dir/data.bin")

for provider in direct posix; do
  out=$("$bin" read --root "$dir" data.bin --provider "$provider" --readers 3 --verify --machine --buffer-kib 64 --cache-mib 16)
  grep -qx "mismatches=0" <<<"$out" || fail "$provider: bytes differ from the file"
  grep -qx "bytes=$((size * 3))" <<<"$out" || fail "$provider: wrong byte count: $(grep ^bytes= <<<"$out")"
  # Three readers, one copy: the cache read each byte of the file from storage exactly once.
  grep -qx "disk_read_bytes=$size" <<<"$out" || fail "$provider: disk bytes $(grep ^disk_read_bytes= <<<"$out") != $size"
done

human=$("$bin" read --root "$dir" data.bin --readers 2)
grep -q "every reader saw the same bytes" <<<"$human" || fail "human report lacks the checksum line"

expect_error() {  # path, text the error must contain
  local out rc=0
  out=$("$bin" read --root "$dir" "$1" 2>&1) || rc=$?
  [ "$rc" -eq 1 ] || fail "'$1': exit $rc, want 1"
  grep -q "$2" <<<"$out" || fail "'$1': message '$out' lacks '$2'"
  grep -q -- "$1" <<<"$out" || fail "'$1': message '$out' does not name the path"
}
mkdir "$dir/sub"
ln -s /etc/hostname "$dir/link-out"
expect_error missing.bin "not found"
expect_error ../etc/passwd "escapes"
expect_error link-out "escapes"
expect_error sub "not a regular file"
mkfifo "$dir/fifo"
expect_error fifo "not a regular file"
echo "cli_read_test: all checks passed"
