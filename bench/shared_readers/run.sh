#!/usr/bin/env bash
# Eight concurrent readers of one file (cold page cache): datapump's direct provider shares one
# copy in its cache, against eight dd iflag=direct processes reading the same file at once.
# Prints disk bytes read / file size (target 1.0) and aggregate throughput, medians of REPS runs.
# Usage: bench/shared_readers/run.sh [SIZE_MIB=1024] [REPS=3] [READERS=8]
source "$(dirname "$0")/../lib.sh"
size_mib=${1:-1024}
reps=${2:-3}
readers=${3:-8}
ensure_built
file=$(make_file "seq_${size_mib}M.bin" $((size_mib * 1024 * 1024)))
bytes=$((size_mib * 1024 * 1024))
machine_line
echo "file: $file (${size_mib} MiB); $readers readers; $reps runs each, alternating"

declare -a dd_mbps dd_ratio dp_mbps dp_ratio dp_os_ratio
for ((i = 0; i < reps; i++)); do
  drop_caches
  before=$(awk '/vda |sda |nvme0n1 / {print $6; exit}' /proc/diskstats)
  start=$(date +%s.%N)
  for ((r = 0; r < readers; r++)); do
    dd if="$file" iflag=direct bs=1M of=/dev/null 2>/dev/null &
  done
  wait
  end=$(date +%s.%N)
  after=$(awk '/vda |sda |nvme0n1 / {print $6; exit}' /proc/diskstats)
  dd_mbps+=("$(awk -v b="$bytes" -v n="$readers" -v s="$start" -v e="$end" 'BEGIN {printf "%.1f", b * n / (e - s) / 1e6}')")
  dd_ratio+=("$(awk -v s="$before" -v a="$after" -v b="$bytes" 'BEGIN {printf "%.3f", (a - s) * 512 / b}')")
  drop_caches
  out=$("$datapump" read --root "$(dirname "$file")" "$(basename "$file")" --provider direct --readers "$readers" \
        --cache-mib 512 --no-checksum --machine)
  dp_mbps+=("$(kv MBps "$out")")
  dp_ratio+=("$(awk -v d="$(kv disk_read_bytes "$out")" -v b="$bytes" 'BEGIN {printf "%.3f", d / b}')")
  dp_os_ratio+=("$(awk -v d="$(kv os_read_bytes "$out")" -v b="$bytes" 'BEGIN {printf "%.3f", d / b}')")
done
m_dp=$(printf '%s\n' "${dp_mbps[@]}" | median); m_dd=$(printf '%s\n' "${dd_mbps[@]}" | median)
printf 'datapump: %8.0f MB/s aggregate (%s), disk bytes / file = %s (cache counter), %s (kernel, /proc/self/io)\n' \
  "$m_dp" "$(printf '%s\n' "${dp_mbps[@]}" | spread)" "$(printf '%s\n' "${dp_ratio[@]}" | median)" \
  "$(printf '%s\n' "${dp_os_ratio[@]}" | median)"
printf '%d x dd:  %8.0f MB/s aggregate (%s), disk bytes / file = %s (/proc/diskstats)\n' \
  "$readers" "$m_dd" "$(printf '%s\n' "${dd_mbps[@]}" | spread)" "$(printf '%s\n' "${dd_ratio[@]}" | median)"
awk -v a="$m_dp" -v b="$m_dd" 'BEGIN {printf "ratio datapump / dd: %.2fx\n", a / b}'
