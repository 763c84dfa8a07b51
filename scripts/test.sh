#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: a Release build with GCC 12 (all tests;
# -O3, what a user builds with plain CMake, where GCC's optimiser warnings appear), the clang-16
# Debug build with ASan+UBSan (all tests, with assertions, and the libFuzzer targets), the TSan
# build (only the concurrent tests, and only their binaries are built), and clang-tidy-16 over
# src/ with .clang-tidy and the asan build's compile commands. Warnings are errors in every build
# here. The GCC build's tests include install_examples_out_of_tree: install, then the examples
# built against the installed package; then the Debian packages of that build
# (tests/package/package_test.sh: cpack, dpkg-deb, lintian, the units, the installed daemon run
# once). Each phase prints its duration (CI has a time budget: docs/testing.md). Exit code 0 only
# if every build and every test passed. This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build test

jobs=$(nproc)
summary=()
status=0
phase_start=$SECONDS
phase_done() {  # phase_done NAME: how long the phase took, for the CI time budget
  echo "=== ${1}: $((SECONDS - phase_start)) s"
  timings+=("${1}: $((SECONDS - phase_start)) s")
  phase_start=$SECONDS
}
timings=()
phase_done "dependencies"

run_preset() {
  local preset=$1
  echo "=== ${preset}: configure and build"
  cmake --preset "$preset" >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  phase_done "${preset} build"
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
  phase_done "${preset} tests"
}

passed=0
failed=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1
for preset in ${DATAPUMP_PRESETS:-gcc-release asan tsan}; do
  run_preset "$preset"
done

# The Debian packages of the gcc-release build just made (cpack, no other build):
# dpkg-deb, lintian, systemd-analyze verify/security of the units, and the installed daemon run
# once from a scratch root (tests/package/package_test.sh).
run_package() {
  local dir=build/gcc-release
  echo "=== Debian package from ${dir}"
  if tests/package/package_test.sh "$dir" .; then
    summary+=("Debian package: checked")
    passed=$((passed + 1))
  else
    summary+=("Debian package: FAILED")
    failed=$((failed + 1))
    status=1
  fi
  phase_done "Debian package"
}
case " ${DATAPUMP_PRESETS:-gcc-release} " in
  *" gcc-release "*) run_package ;;
esac

run_tidy() {
  echo "=== clang-tidy: src/ against .clang-tidy (compile commands of the asan preset, a clang-16 build)"
  local log
  log=$(mktemp)
  find src -name '*.cpp' -print0 | xargs -0 -P "$jobs" -n 4 clang-tidy-16 -p build/asan --quiet >"$log" 2>&1 || true
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
  phase_done "clang-tidy"
}
case " ${DATAPUMP_PRESETS:-asan} " in
  *" asan "*) run_tidy ;;
esac

echo
echo "=== summary"
printf '%s\n' "${summary[@]}"
echo "time: $SECONDS s in all"
printf '  %s\n' "${timings[@]}"
echo "${passed} passed, ${failed} failed"
exit "$status"
