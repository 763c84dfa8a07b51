#!/usr/bin/env bash
# The Debian package, checked as a packager and an operator would (docs/daemon.md, "As a service"):
#  1. `cpack -G DEB` in a built Release tree (no other build): datapump_<version>-1_<arch>.deb,
#     libdatapump0_... and libdatapump-dev_....
#  2. `dpkg-deb -c/-e/-f`: datapump has the programs, man pages, the configuration (a conffile),
#     the systemd units, the sysusers file and its maintainer scripts; libdatapump0 the library,
#     its shlibs and ldconfig trigger; libdatapump-dev the headers, CMake and pkg-config files.
#  3. `lintian`: its tags are printed and counted (docs/daemon.md lists the remaining ones); an
#     error tag not listed in tests/package/lintian-expected fails.
#  4. `dpkg -x` into a scratch root (PID 1 need not be systemd): `systemd-analyze verify` of the
#     units (ExecStart pointed into the scratch root), `systemd-analyze security` (the score).
#  5. A program built with the installed datapump.pc and run on the installed library. The
#     installed daemon run once with the installed configuration: sd_notify, socket
#     activation and the start-up time to the first byte served (tests/integration/service).
# Usage: package_test.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$(realpath "$1")
source=$(realpath "$2")
tmp=$(mktemp -d /tmp/datapump-package-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
version=$(sed -nE 's/^project\(datapump VERSION ([0-9.]+).*/\1/p' "$source/CMakeLists.txt")

# 1. The packages, from the build at hand.
(cd "$build" && cpack -G DEB -B "$tmp/cpack" >"$tmp/cpack.log" 2>&1) || { cat "$tmp/cpack.log"; fail "cpack -G DEB"; }
debs=()
for package in datapump libdatapump0 libdatapump-dev; do
  deb=$(find "$tmp/cpack" -maxdepth 1 -name "${package}_${version}-1_*.deb")
  [ -n "$deb" ] || fail "no ${package}_${version}-1_*.deb: $(ls "$tmp/cpack")"
  debs+=("$deb")
  echo "package: $(basename "$deb"), $(du -k "$deb" | cut -f1) KiB"
  dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' >"$tmp/files.$package"
done

# 2. What is in each.
has() {  # has PACKAGE PATH-REGEX...
  local package=$1
  shift
  for f in "$@"; do
    grep -qxE "$f" "$tmp/files.$package" || fail "$f is not in $package"
  done
}
has datapump /usr/sbin/datapumpd /usr/bin/datapump /etc/datapump/datapumpd.toml /etc/logrotate.d/datapump \
    /usr/lib/systemd/system/datapumpd.service /usr/lib/systemd/system/datapumpd.socket \
    /usr/lib/sysusers.d/datapump.conf /usr/share/man/man8/datapumpd.8.gz /usr/share/man/man1/datapump.1.gz \
    /usr/share/doc/datapump/copyright /usr/share/doc/datapump/changelog.Debian.gz
has libdatapump0 '/usr/lib/(.*/)?libdatapump\.so\.0' "/usr/lib/(.*/)?libdatapump\\.so\\.${version//./\\.}" \
    /usr/share/doc/libdatapump0/copyright
has libdatapump-dev /usr/include/datapump/http/server.hpp '/usr/lib/(.*/)?libdatapump\.so' \
    '/usr/lib/(.*/)?cmake/datapump/datapumpConfig\.cmake' '/usr/lib/(.*/)?pkgconfig/datapump\.pc' \
    /usr/share/doc/libdatapump-dev/copyright
! grep -q '/internal/' "$tmp/files.libdatapump-dev" || fail "internal headers are in libdatapump-dev"
! grep -q 'libdatapump' "$tmp/files.datapump" || fail "the library is in datapump (its programs link the parts)"
deb_of() { printf '%s\n' "${debs[@]}" | grep "/$1_"; }
dpkg-deb -f "$(deb_of datapump)" Depends | grep -q 'libsystemd0' || fail "datapump's Depends lacks libsystemd0"
dpkg-deb -f "$(deb_of datapump)" Recommends | grep -qx 'media-types' ||
  fail "datapump does not recommend media-types (/etc/mime.types, datapumpd's default --mime-types-file)"
dpkg-deb -f "$(deb_of libdatapump-dev)" Depends | grep -qF "libdatapump0 (= ${version}-1)" ||
  fail "libdatapump-dev does not depend on libdatapump0 (= ${version}-1)"
dpkg-deb -e "$(deb_of datapump)" "$tmp/control"
grep -qx /etc/datapump/datapumpd.toml "$tmp/control/conffiles" || fail "datapumpd.toml is not a conffile"
grep -qx /etc/logrotate.d/datapump "$tmp/control/conffiles" || fail "the logrotate rules are not a conffile"
for s in postinst prerm postrm; do
  [ -x "$tmp/control/$s" ] || fail "no executable $s"
  sh -n "$tmp/control/$s" || fail "$s: syntax"
done
dpkg-deb -e "$(deb_of libdatapump0)" "$tmp/control-lib"
grep -q "^libdatapump 0 libdatapump0 (= ${version}-1)" "$tmp/control-lib/shlibs" || fail "libdatapump0's shlibs"
grep -qx 'activate-noawait ldconfig' "$tmp/control-lib/triggers" || fail "libdatapump0 has no ldconfig trigger"
echo "contents: datapump $(wc -l <"$tmp/files.datapump"), libdatapump0 $(wc -l <"$tmp/files.libdatapump0"),"\
     "libdatapump-dev $(wc -l <"$tmp/files.libdatapump-dev") paths; datapump Depends: $(dpkg-deb -f "$(deb_of datapump)" Depends)"

# 3. lintian.
lintian --tag-display-limit 0 "${debs[@]}" >"$tmp/lintian" 2>&1 || true
sed 's/^/  lintian: /' "$tmp/lintian"
errors=$(grep -c '^E: ' "$tmp/lintian" || true)
warnings=$(grep -c '^W: ' "$tmp/lintian" || true)
echo "lintian: $errors errors, $warnings warnings"
expected=$source/tests/package/lintian-expected
unexpected=$(grep '^E: ' "$tmp/lintian" | sed -E 's/^E: [^:]+: ([a-z0-9-]+).*/\1/' | sort -u |
             grep -vxF -f <(grep -v '^#' "$expected") || true)
[ -z "$unexpected" ] || fail "lintian errors not in tests/package/lintian-expected: $unexpected"

# 4. A scratch root, and the units.
root=$tmp/root
for deb in "${debs[@]}"; do
  dpkg -x "$deb" "$root"
done
units=$tmp/units
mkdir -p "$units"
for u in datapumpd.service datapumpd.socket; do
  sed "s|^ExecStart=/usr/sbin/datapumpd --config /etc/|ExecStart=$root/usr/sbin/datapumpd --config $root/etc/|" \
    "$root/usr/lib/systemd/system/$u" >"$units/$u"
done
grep -q "^ExecStart=$root/usr/sbin/datapumpd --config $root/etc/datapump/datapumpd.toml\$" "$units/datapumpd.service" ||
  fail "the unit's ExecStart is not /usr/sbin/datapumpd --config /etc/datapump/datapumpd.toml"
# (The man pages are checked by lintian; verify would look them up on this machine.)
(cd "$units" && systemd-analyze verify --man=no datapumpd.service datapumpd.socket) >"$tmp/verify" 2>&1 ||
  { cat "$tmp/verify"; fail "systemd-analyze verify"; }
[ ! -s "$tmp/verify" ] || { cat "$tmp/verify"; fail "systemd-analyze verify printed warnings"; }
(cd "$units" && systemd-analyze security --offline=yes --no-pager datapumpd.service) >"$tmp/security" 2>&1 || true
score=$(sed -nE 's/.*Overall exposure level for datapumpd.service: ([0-9.]+ [A-Z]+).*/\1/p' "$tmp/security")
[ -n "$score" ] || { cat "$tmp/security"; fail "systemd-analyze security gave no score"; }
echo "systemd-analyze verify: clean; systemd-analyze security: exposure $score"

# 5. The installed programs, run.
[ "$("$root/usr/bin/datapump" --version)" = "datapump $version" ] || fail "installed datapump --version"
[ "$("$root/usr/sbin/datapumpd" --version)" = "datapumpd $version" ] || fail "installed datapumpd --version"
# libdatapump-dev and libdatapump0 together: a program built with the installed datapump.pc (it
# finds its prefix from where it lies) and run on the installed library.
cat >"$tmp/pc.cpp" <<'CPP'
#include <datapump/base/error.hpp>
#include <cstdio>
int main() {
    std::puts(datapump::describe(datapump::error{datapump::errc::not_found, 2}, "x").c_str());
    return 0;
}
CPP
pcdir=$(dirname "$(find "$root/usr/lib" -name datapump.pc)")
libdir=$(dirname "$(find "$root/usr/lib" -name 'libdatapump.so.0')")
# shellcheck disable=SC2046
g++ -o "$tmp/pc" "$tmp/pc.cpp" $(PKG_CONFIG_PATH=$pcdir pkg-config --cflags --libs datapump) \
  || fail "building against libdatapump-dev with pkg-config"
LD_LIBRARY_PATH=$libdir "$tmp/pc" >/dev/null || fail "the program built against libdatapump-dev did not run"
echo "libdatapump-dev: a program built with its datapump.pc runs on libdatapump0"

# /etc/datapump/datapumpd.toml is what the installed daemon prints, and names every option of
# its --help (but those that are not settings).
daemon=$root/usr/sbin/datapumpd
toml=$root/etc/datapump/datapumpd.toml
"$daemon" --print-config-template >"$tmp/template" || fail "datapumpd --print-config-template failed"
cmp -s "$tmp/template" "$toml" || fail "datapumpd.toml differs from datapumpd --print-config-template"
for option in $("$daemon" --help | sed -nE 's/^  (-[a-z],)?--([a-z0-9-]+).*/\2/p'); do
  case "$option" in help | version | config | print-config-template | check-config) continue ;; esac
  grep -q "\b${option//-/_}\b" "$toml" || fail "datapumpd.toml lacks --$option (key ${option//-/_})"
done
echo "datapumpd.toml: $(grep -c . "$toml") lines, every --help option in it"
"$daemon" --check-config --config "$toml" >/dev/null || fail "datapumpd --check-config refuses the packaged datapumpd.toml"
"$source/tests/integration/service/service_test.py" "$root/usr/sbin/datapumpd" \
  --config "$root/etc/datapump/datapumpd.toml" || fail "the installed daemon (tests/integration/service)"
echo "package_test: all checks passed"
