#!/usr/bin/env bash
# Installs the Debian 12 packages datapump needs, only those that are missing.
# Usage: scripts/deps.sh [build|test|bench]...   (default: build)
set -euo pipefail

build_pkgs=(g++ cmake ninja-build pkg-config liburing-dev libspdlog-dev libfmt-dev libcli11-dev
            libgtest-dev libgmock-dev libbenchmark-dev)
# clang-16 builds the code a second way (the fuzzers need it); clang-tidy-16 checks it (.clang-tidy).
test_pkgs=(clang-16 libclang-rt-16-dev clang-tidy-16)
bench_pkgs=(coreutils)

want=("${build_pkgs[@]}")
for kind in "$@"; do
  case "$kind" in
    build) ;;
    test) want+=("${test_pkgs[@]}") ;;
    bench) want+=("${bench_pkgs[@]}") ;;
    *) echo "deps.sh: unknown kind '$kind' (build, test, bench)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "deps.sh: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
