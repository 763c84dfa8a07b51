#!/usr/bin/env bash
# Cache hit path, one core: datapump's lookup+lock+unlock and loan+return against a mutex-guarded
# unordered_map with pin counts, in one run. Prints medians of 5 repetitions and the ratios.
set -euo pipefail
top="$(cd "$(dirname "$0")/../.." && pwd)"
bin="${top}/build/release/bench/cache_hit/bench_cache_hit"
[ -x "$bin" ] || { echo "build the release preset first: cmake --preset release && cmake --build --preset release" >&2; exit 2; }
out=$(taskset -c 1 "$bin" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
      --benchmark_format=csv 2>/dev/null | grep '_median')
rate() { echo "$out" | grep "^\"$1_median\"" | awk -F, '{print $(NF-3)}'; }
ns() { echo "$out" | grep "^\"$1_median\"" | awk -F, '{print $3}'; }
lk=$(rate bm_lookup_lock_unlock); ln=$(rate bm_loan_and_return); pr=$(rate bm_peer_mutex_map)
printf '%-28s %8.1f ns  %8.1f M/s\n' "lookup+lock+unlock" "$(ns bm_lookup_lock_unlock)" "$(echo "$lk/1000000" | awk -F/ '{print $1/$2}')"
printf '%-28s %8.1f ns  %8.1f M/s\n' "loan+return" "$(ns bm_loan_and_return)" "$(echo "$ln/1000000" | awk -F/ '{print $1/$2}')"
printf '%-28s %8.1f ns  %8.1f M/s\n' "peer: mutex+unordered_map" "$(ns bm_peer_mutex_map)" "$(echo "$pr/1000000" | awk -F/ '{print $1/$2}')"
awk -v a="$lk" -v b="$ln" -v p="$pr" 'BEGIN { printf "ratio lookup/peer %.2fx, loan/peer %.2fx\n", a/p, b/p }'
