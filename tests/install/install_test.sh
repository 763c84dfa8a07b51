#!/usr/bin/env bash
# The installed package, used as its users use it (see tests/install/CMakeLists.txt):
#  1. `cmake --install` into a temporary prefix: libdatapump.so.0 (soname, version), headers
#     without */internal/, the CMake package, datapump.pc, bin/datapump and sbin/datapumpd.
#  2. The installed headers pull in nothing but the standard library, the C library and each other.
#  3. The shared library exports the public API only: no third-party symbol families (spdlog, fmt,
#     nlohmann, toml++, CLI11, http-parser, liburing), none of the engine's private classes, and
#     nothing outside namespace datapump (no std:: instantiation; cmake/datapump.map).
#  4. examples/ configured and built on their own against the prefix (find_package(datapump 0.2)),
#     and fs_provider_demo run; a one-file program built with pkg-config and run.
set -euo pipefail
build=$1
source=$2
cxx=$3
version=$4
launcher=${5:-}
tmp=$(mktemp -d /tmp/datapump-install-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }

# 1. What is installed.
lib=$(find "$prefix" -name "libdatapump.so.$version" -type f)
[ -n "$lib" ] || fail "no libdatapump.so.$version under $prefix: $(cd "$prefix" && find . -type f | head -20)"
libdir=$(dirname "$lib")
[ -L "$libdir/libdatapump.so.0" ] && [ -L "$libdir/libdatapump.so" ] || fail "libdatapump.so.0 / .so links missing"
# (grep -q on a pipe would stop reading early: with pipefail, the writer's SIGPIPE fails the test.)
dynamic=$(readelf -d "$lib")
grep -q 'SONAME.*\[libdatapump\.so\.0\]' <<<"$dynamic" || fail "soname: $(grep SONAME <<<"$dynamic")"
[ -x "$prefix/bin/datapump" ] && [ -x "$prefix/sbin/datapumpd" ] || fail "programs not in bin/ and sbin/"
[ "$("$prefix/bin/datapump" --version)" = "datapump $version" ] || fail "installed datapump --version"
[ "$("$prefix/sbin/datapumpd" --version)" = "datapumpd $version" ] || fail "installed datapumpd --version"
for f in datapumpConfig.cmake datapumpConfigVersion.cmake datapumpTargets.cmake; do
  [ -f "$libdir/cmake/datapump/$f" ] || fail "missing $f"
done
[ -f "$libdir/pkgconfig/datapump.pc" ] || fail "missing datapump.pc"
[ -f "$prefix/include/datapump/fs/registry.hpp" ] || fail "headers not installed"
[ -z "$(find "$prefix/include" -path '*/internal*')" ] || fail "internal headers installed"

# 2. Every installed header, preprocessed together with nothing but -I<prefix>/include: each file
#    the preprocessor opens is one of them or a standard/C library header.
find "$prefix/include" -name '*.hpp' | sed 's|.*/include/||; s|.*|#include <&>|' >"$tmp/all_headers.cpp"
"$cxx" -std=c++2b -fsyntax-only -H -I"$prefix/include" "$tmp/all_headers.cpp" 2>"$tmp/opened" \
  || { cat "$tmp/opened"; fail "the installed headers do not compile on their own"; }
# (clang names them /usr/bin/../lib/gcc/...: canonical paths first.)
foreign=$(sed -nE 's/^\.+ //p' "$tmp/opened" | xargs -r realpath -m | grep -v "^$(realpath -m "$prefix")/include/" |
          grep -vE '^/usr/(lib/gcc|lib/llvm-[0-9]+|include/c\+\+|include/x86_64-linux-gnu|include/[a-z_0-9-]+\.h$|include/(sys|bits|linux|asm|asm-generic|netinet|arpa|net)/)' || true)
[ -z "$foreign" ] || fail "installed headers include non-standard headers: $(sort -u <<<"$foreign" | head)"

# 3. The exports.
nm -D --defined-only --demangle "$lib" >"$tmp/exports"
total=$(wc -l <"$tmp/exports")
ours=$(grep -c ' datapump::' "$tmp/exports" || true)
# Third-party families; the engine's classes that live in src/ headers only (private state
# behind pimpls and detail:: forward declarations, rt's scheduler, HTTP connections, the ipc
# worker pool). A symbol's own name is matched, not its parameter types.
forbidden='spdlog::|fmt::|nlohmann::|toml::|CLI::| http_parser_| _?_?io_uring'
forbidden+='|^[0-9a-f]+ . ((typeinfo (name )?|vtable |guard variable )for )?datapump::([a-z_0-9]+::)*(detail|impl|state)::'
forbidden+='|datapump::http::connection\b|datapump::ipc::worker_pool'
if grep -E "$forbidden" "$tmp/exports" >"$tmp/bad"; then
  fail "libdatapump.so exports what is not its API ($(wc -l <"$tmp/bad") symbols): $(head -5 "$tmp/bad")"
fi
# Nothing but namespace datapump (cmake/datapump.map): no weak std:: instantiation, whichever
# compiler emitted it.
ours_only='^[0-9a-f]+ . ((typeinfo (name )?|vtable |VTT |construction vtable |guard variable )for |(non-)?virtual thunk to )?datapump::'
if grep -vE "$ours_only" "$tmp/exports" >"$tmp/foreign"; then
  fail "libdatapump.so exports symbols outside namespace datapump ($(wc -l <"$tmp/foreign")): $(head -3 "$tmp/foreign")"
fi
echo "libdatapump.so.$version: $total exported symbols, $ours of them in namespace datapump"

# 4. The examples, out of the tree, against the prefix, with the compiler the tree was built with.
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
launch=()
[ -n "$launcher" ] && launch=(-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher")
cmake -S "$source/examples" -B "$tmp/examples" "${gen[@]}" "${launch[@]}" -DCMAKE_BUILD_TYPE=Debug \
      -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/configure.log" 2>&1 \
  || { cat "$tmp/configure.log"; fail "configuring examples/ against the installed package"; }
cmake --build "$tmp/examples" -j 2 >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "building examples/"; }
demo=$tmp/examples/fs_provider/fs_provider_demo
linked=$(ldd "$demo")
grep -q "libdatapump.so.0 => $libdir/" <<<"$linked" || fail "fs_provider_demo does not load the installed library: $linked"
out=$("$demo") || fail "fs_provider_demo failed: $out"
grep -q "read 1000000 bytes of pattern 42/1000000 through the cache, 0 mismatches" <<<"$out" || fail "fs_provider_demo: $out"
[ -x "$tmp/examples/loan_server/loan_server" ] && [ -x "$tmp/examples/loan_checksum/loan_checksum" ] \
  || fail "loan examples not built"

# A version the package does not promise is refused (0.x: a minor release may break the API).
mkdir -p "$tmp/wrong_version"
cat >"$tmp/wrong_version/CMakeLists.txt" <<'CMAKE'
cmake_minimum_required(VERSION 3.25)
project(wrong_version LANGUAGES CXX)
find_package(datapump 0.1 REQUIRED)
CMAKE
if cmake -S "$tmp/wrong_version" -B "$tmp/wrong_version/build" -DCMAKE_CXX_COMPILER="$cxx" \
     -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/wrong.log" 2>&1; then
  fail "find_package(datapump 0.1) accepted version $version"
fi

# pkg-config: flags that build and link a program.
cat >"$tmp/pc.cpp" <<'CPP'
#include <datapump/base/error.hpp>
#include <cstdio>
int main() {
    std::puts(datapump::describe(datapump::error{datapump::errc::not_found, 2}, "x").c_str());
    return 0;
}
CPP
export PKG_CONFIG_PATH=$libdir/pkgconfig
[ "$(pkg-config --modversion datapump)" = "$version" ] || fail "pkg-config --modversion"
# shellcheck disable=SC2046
"$cxx" -o "$tmp/pc" "$tmp/pc.cpp" $(pkg-config --cflags --libs datapump) -Wl,-rpath,"$libdir" \
  || fail "building with pkg-config's flags"
"$tmp/pc" >/dev/null || fail "the pkg-config program did not run"
# The same program from the other compiler (a GCC-built package used from clang, or the reverse):
# the installed headers and the library's ABI work for both.
other=""
case "$("$cxx" --version | head -n 1)" in
  *clang*) command -v g++ >/dev/null && other=g++ ;;
  *) command -v clang++-16 >/dev/null && other=clang++-16 ;;
esac
if [ -n "$other" ]; then
  # shellcheck disable=SC2046
  "$other" -o "$tmp/pc_other" "$tmp/pc.cpp" $(pkg-config --cflags --libs datapump) -Wl,-rpath,"$libdir" \
    || fail "building with pkg-config's flags and $other"
  "$tmp/pc_other" >/dev/null || fail "the pkg-config program built by $other did not run"
fi
echo "install_test: all checks passed"
