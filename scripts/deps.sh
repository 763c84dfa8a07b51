#!/usr/bin/env bash
# Installs the Debian 12 packages datapump needs, only those that are missing.
# Usage: scripts/deps.sh [build|test|bench|run]...   (default: build)
set -euo pipefail

build_pkgs=(g++ cmake ninja-build pkg-config liburing-dev libspdlog-dev libfmt-dev libcli11-dev
            libgtest-dev libgmock-dev libbenchmark-dev
            libhttp-parser-dev libtomlplusplus-dev nlohmann-json3-dev
            libssl-dev libsystemd-dev)
# pkg: the man pages are made from the built programs' --help (cmake/package.cmake).
build_pkgs+=(help2man)
# clang-16 builds the code a second way (the fuzzers need it); clang-tidy-16 checks it (.clang-tidy).
test_pkgs=(clang-16 libclang-rt-16-dev clang-tidy-16)
# The HTTP integration and browser tests (tests/integration/http, tests/browser) use real clients.
test_pkgs+=(curl wrk ffmpeg chromium nodejs npm python3)
# logs: the HTTP checks run promtool (Debian's prometheus) over /metrics, read the access log
# with goaccess and fail2ban's stock nginx filters, and rotate both logs with logrotate.
test_pkgs+=(prometheus goaccess fail2ban logrotate)
# pkg: the Debian package's checks (lintian; systemd-analyze and systemd-socket-activate from
# systemd).
test_pkgs+=(lintian systemd)
bench_pkgs=(coreutils nginx wrk curl)
# The main job (scripts/run.sh) makes its demo video with ffmpeg.
run_pkgs=(ffmpeg curl)

want=("${build_pkgs[@]}")
for kind in "$@"; do
  case "$kind" in
    build) ;;
    test) want+=("${test_pkgs[@]}") ;;
    bench) want+=("${bench_pkgs[@]}") ;;
    run) want+=("${run_pkgs[@]}") ;;
    *) echo "deps.sh: unknown kind '$kind' (build, test, bench, run)" >&2; exit 2 ;;
  esac
done

# A name is also satisfied by an installed package that Provides it: NodeSource's nodejs provides
# (and conflicts with) npm, so asking apt for Debian's npm beside it would fail.
provided=" $(dpkg-query -W -f='${db:Status-Abbrev} ${Provides},\n' 2>/dev/null | sed -n 's/^ii  *//p' |
            tr ',' '\n' | awk '{print $1}' | sort -u | tr '\n' ' ') "
missing=()
for p in "${want[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" &&
     [[ "$provided" != *" $p "* ]]; then
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
