#!/usr/bin/env bash
# Sequential read of one file into the cache, against its peer in the same run:
#   direct (O_DIRECT into the arena, cold page cache)  vs  dd if=FILE iflag=direct bs=1M of=/dev/null
#   posix  (page cache, warm)                          vs  cat FILE >/dev/null
# Runs alternate peer and datapump REPS times; prints medians, spread, and ratios.
# Usage: bench/sequential_read/run.sh [SIZE_MIB=1024] [REPS=5]
source "$(dirname "$0")/../lib.sh"
size_mib=${1:-1024}
reps=${2:-5}
ensure_built
file=$(make_file "seq_${size_mib}M.bin" $((size_mib * 1024 * 1024)))
bytes=$((size_mib * 1024 * 1024))
gib=$(awk -v b="$bytes" 'BEGIN {print b / 1073741824}')
machine_line
echo "file: $file (${size_mib} MiB, random bytes); $reps runs each, alternating"

declare -a dd_mbps dd_cpu dp_mbps dp_cpu cat_mbps cat_cpu px_mbps px_cpu
for ((i = 0; i < reps; i++)); do
  drop_caches
  read -r wall cpu < <(timed dd if="$file" iflag=direct bs=1M of=/dev/null)
  dd_mbps+=("$(awk -v b="$bytes" -v t="$wall" 'BEGIN {printf "%.1f", b / t / 1e6}')")
  dd_cpu+=("$(awk -v c="$cpu" -v g="$gib" 'BEGIN {printf "%.4f", c / g}')")
  drop_caches
  out=$("$datapump" read --root "$(dirname "$file")" "$(basename "$file")" --provider direct --no-checksum --machine)
  dp_mbps+=("$(kv MBps "$out")")
  dp_cpu+=("$(kv cpu_s_per_gib "$out")")
done
cat "$file" >/dev/null  # warm the page cache for the posix pair
for ((i = 0; i < reps; i++)); do
  read -r wall cpu < <(timed cat "$file")
  cat_mbps+=("$(awk -v b="$bytes" -v t="$wall" 'BEGIN {printf "%.1f", b / t / 1e6}')")
  cat_cpu+=("$(awk -v c="$cpu" -v g="$gib" 'BEGIN {printf "%.4f", c / g}')")
  out=$("$datapump" read --root "$(dirname "$file")" "$(basename "$file")" --provider posix --no-checksum --machine)
  px_mbps+=("$(kv MBps "$out")")
  px_cpu+=("$(kv cpu_s_per_gib "$out")")
done

report() {  # name peer_name ours[] peers[] ours_cpu[] peer_cpu[]
  local m_o m_p c_o c_p
  m_o=$(printf '%s\n' "${!3}" | median); m_p=$(printf '%s\n' "${!4}" | median)
  c_o=$(printf '%s\n' "${!5}" | median); c_p=$(printf '%s\n' "${!6}" | median)
  printf '%-8s %9.0f MB/s (%s)  %-6s %9.0f MB/s (%s)  ratio %.2fx   CPU-s/GiB %.3f vs %.3f\n' \
    "$1" "$m_o" "$(printf '%s\n' "${!3}" | spread)" "$2" "$m_p" "$(printf '%s\n' "${!4}" | spread)" \
    "$(awk -v a="$m_o" -v b="$m_p" 'BEGIN {print a / b}')" "$c_o" "$c_p"
}
report direct dd 'dp_mbps[@]' 'dd_mbps[@]' 'dp_cpu[@]' 'dd_cpu[@]'
report posix cat 'px_mbps[@]' 'cat_mbps[@]' 'px_cpu[@]' 'cat_cpu[@]'
echo "datapump figures are the read phase (cache set-up excluded: a daemon pays it once); peers are whole-command wall time."
