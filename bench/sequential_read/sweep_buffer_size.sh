#!/usr/bin/env bash
# How the default cache buffer size was chosen: cold sequential reads of one file through the
# direct provider at several buffer sizes (read-ahead fixed at 4 MiB), interleaved with dd
# iflag=direct bs=1M as the reference, REPS rounds. Prints the median MB/s and CPU-s/GiB per size.
# Usage: bench/sequential_read/sweep_buffer_size.sh [SIZE_MIB=1024] [REPS=5]
source "$(dirname "$0")/../lib.sh"
size_mib=${1:-1024}
reps=${2:-5}
sizes=(64 128 256 512 1024)
ensure_built
file=$(make_file "seq_${size_mib}M.bin" $((size_mib * 1024 * 1024)))
bytes=$((size_mib * 1024 * 1024))
machine_line
declare -A mbps cpu
dd_mbps=()
for ((i = 0; i < reps; i++)); do
  drop_caches
  read -r wall _ < <(timed dd if="$file" iflag=direct bs=1M of=/dev/null)
  dd_mbps+=("$(awk -v b="$bytes" -v t="$wall" 'BEGIN {printf "%.1f", b / t / 1e6}')")
  for kib in "${sizes[@]}"; do
    drop_caches
    out=$("$datapump" read --root "$(dirname "$file")" "$(basename "$file")" --provider direct --no-checksum \
          --machine --buffer-kib "$kib" --readahead $((4096 / kib)) --cache-mib 256)
    mbps[$kib]+="$(kv MBps "$out") "
    cpu[$kib]+="$(kv cpu_s_per_gib "$out") "
  done
done
printf 'dd iflag=direct bs=1M: median %.0f MB/s\n' "$(printf '%s\n' "${dd_mbps[@]}" | median)"
for kib in "${sizes[@]}"; do
  printf 'buffer %5d KiB: median %6.0f MB/s (%s), %.3f CPU-s/GiB\n' "$kib" \
    "$(tr ' ' '\n' <<<"${mbps[$kib]}" | grep . | median)" "$(tr ' ' '\n' <<<"${mbps[$kib]}" | grep . | spread)" \
    "$(tr ' ' '\n' <<<"${cpu[$kib]}" | grep . | median)"
done
