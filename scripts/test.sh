#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the debug build (all tests), the
# ASan+UBSan build (all tests), the TSan build (the concurrent tests), a clang-16 build (all
# tests), plain Release builds with GCC and clang-16 (what a user builds), and clang-tidy-16 over
# src/ with .clang-tidy (warnings are errors), and the Debian package of the plain GCC build
# (tests/package/package_test.sh). The debug build's tests include
# install_examples_out_of_tree: install, then the examples built against the installed package.
# Exit code 0 only if every build and every test passed. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build test

jobs=$(nproc)
summary=()
status=0
run_preset() {
  local preset=$1
  echo "=== ${preset}: configure and build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  echo "=== ${preset}: test"
  local log
  log=$(mktemp)
  if ctest --preset "$preset" -j "$jobs" 2>&1 | tee "$log"; then
    summary+=("${preset}: $(grep -E 'tests passed' "$log" | tail -n 1)")
  else
    summary+=("${preset}: FAILED $(grep -E 'tests passed' "$log" | tail -n 1)")
    status=1
  fi
  # ctest's closing line: "NN% tests passed, F tests failed out of T"
  local counts f t
  counts=$(sed -nE 's/.*tests passed, ([0-9]+) tests? failed out of ([0-9]+).*/\1 \2/p' "$log" | tail -n 1)
  if [ -n "$counts" ]; then
    read -r f t <<<"$counts"
    passed=$((passed + t - f))
    failed=$((failed + f))
  else
    failed=$((failed + 1))  # the preset did not even report: count it as a failure
    status=1
  fi
  rm -f "$log"
}

passed=0
failed=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
for preset in ${DATAPUMP_PRESETS:-debug asan tsan clang}; do
  run_preset "$preset"
done

# The build a user runs (README, "Building by hand"): plain CMake, -DCMAKE_BUILD_TYPE=Release
# (-O3), no preset, with GCC and with clang. The library, the programs and the examples, with
# warnings as errors here (a plain build does not make them errors; CI must see them).
run_plain_release() {
  local cxx=$1
  local dir=build/plain-release-${cxx}
  echo "=== plain Release build with ${cxx}"
  if cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER="$cxx" \
       -DDATAPUMP_WERROR=ON -DDATAPUMP_BUILD_TESTS=OFF -DDATAPUMP_BUILD_BENCH=OFF >/dev/null &&
     cmake --build "$dir" -j "$jobs"; then
    summary+=("plain Release (${cxx}): built")
    passed=$((passed + 1))
  else
    summary+=("plain Release (${cxx}): FAILED")
    failed=$((failed + 1))
    status=1
  fi
}
for cxx in ${DATAPUMP_PLAIN_COMPILERS-g++ clang++-16}; do
  run_plain_release "$cxx"
done

# pkg: the Debian package of the plain Release GCC build just made (cpack, no other build):
# dpkg-deb, lintian, systemd-analyze verify/security of the units, and the installed daemon run
# once from a scratch root (tests/package/package_test.sh).
run_package() {
  local dir=build/plain-release-g++
  echo "=== Debian package from ${dir}"
  if tests/package/package_test.sh "$dir" .; then
    summary+=("Debian package: checked")
    passed=$((passed + 1))
  else
    summary+=("Debian package: FAILED")
    failed=$((failed + 1))
    status=1
  fi
}
case " ${DATAPUMP_PLAIN_COMPILERS-g++ clang++-16} " in
  *" g++ "*) run_package ;;
esac

run_tidy() {
  echo "=== clang-tidy: src/ against .clang-tidy (compile commands of the clang preset)"
  local log
  log=$(mktemp)
  find src -name '*.cpp' -print0 | xargs -0 -P "$jobs" -n 4 clang-tidy-16 -p build/clang --quiet >"$log" 2>&1 || true
  if grep -qE '(warning|error): ' "$log"; then
    grep -E '(warning|error): ' "$log" | sort -u
    summary+=("clang-tidy: FAILED ($(grep -cE '(warning|error): ' "$log") findings)")
    failed=$((failed + 1))
    status=1
  else
    summary+=("clang-tidy: clean")
    passed=$((passed + 1))
  fi
  rm -f "$log"
}
case " ${DATAPUMP_PRESETS:-clang} " in
  *" clang "*) run_tidy ;;
esac

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
echo "${passed} passed, ${failed} failed"
exit "$status"
