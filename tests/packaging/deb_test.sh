#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The .deb, end to end: cpack builds it from this build tree; its control data
# names the package deliberately (tcptrack-ebpf, Conflicts/Replaces Debian's
# tcptrack 1.4) and depends on the package of every shared library the binary
# needs; `apt-get install ./file.deb` puts the binary, man page, completion and
# example unit in place, and they work; `apt-get purge` leaves nothing behind.
# The machine is put back as found: a Debian tcptrack that the Conflicts
# removed is reinstalled from its saved .deb.
# Usage: deb_test.sh BINARY BUILD_DIR. Root only (exit 77 otherwise).
set -uo pipefail
binary=$1 build=$2
pkg=tcptrack-ebpf
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" -eq 0 ] || skip "needs root (apt-get install/purge)"
for t in cpack dpkg-deb dpkg-query apt-get readelf; do
    command -v "$t" >/dev/null || skip "$t not installed"
done
[ -f "$build/CPackConfig.cmake" ] || { echo "FAIL: no CPackConfig.cmake in $build"; exit 1; }
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=120)

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
installed "$pkg" && skip "$pkg is already installed here; not touching it"

work=$(mktemp -d /tmp/tt-pkg.XXXXXX)
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

# Debian's tcptrack: keep its .deb before our Conflicts removes it.
debian_ver=""
if installed tcptrack; then
    debian_ver=$(dpkg-query -W -f='${Version}' tcptrack)
    debian_auto=$(apt-mark showauto tcptrack)
    arch=$(dpkg-query -W -f='${Architecture}' tcptrack)
    cached=/var/cache/apt/archives/tcptrack_${debian_ver//:/%3a}_${arch}.deb
    if [ -f "$cached" ]; then
        cp "$cached" "$work/"
    else
        (cd "$work" && apt-get download -q "tcptrack=$debian_ver" >/dev/null 2>&1)
    fi
    debian_deb=$(ls "$work"/tcptrack_*.deb 2>/dev/null | head -n 1)
    [ -n "$debian_deb" ] ||
        { rm -rf "$work"; skip "Debian's tcptrack $debian_ver is installed and its .deb cannot be saved to restore it afterwards"; }
fi

cleanup() {
    installed "$pkg" && apt-get purge "${apt_opts[@]}" "$pkg" >/dev/null 2>&1
    if [ -n "$debian_ver" ] && ! installed tcptrack; then
        apt-get install "${apt_opts[@]}" "$debian_deb" >/dev/null 2>&1
        [ -z "$debian_auto" ] || apt-mark auto tcptrack >/dev/null
        if [ "$(dpkg-query -W -f='${Version}' tcptrack 2>/dev/null)" = "$debian_ver" ]; then
            echo "restored Debian's tcptrack $debian_ver"
        else
            echo "FAIL: could not reinstall Debian's tcptrack $debian_ver from $debian_deb"
            fails=$((fails + 1))
        fi
    fi
    rm -rf "$work"
}
trap 'cleanup; trap - EXIT; [ "$fails" -eq 0 ] || exit 1' EXIT

# 1. Build the package from this build tree (cpack installs into its own staging dir).
(cd "$build" && cpack -G DEB -B "$work/out" --config CPackConfig.cmake) >"$work/cpack.log" 2>&1 ||
    { cat "$work/cpack.log"; fail "cpack"; exit 1; }
deb=$(ls "$work"/out/*.deb 2>/dev/null)
[ "$(wc -w <<<"$deb")" -eq 1 ] || { fail "expected one .deb in $work/out, got: $deb"; exit 1; }
echo "built $(basename "$deb") ($(du -k "$deb" | cut -f1) KiB)"

# 2. Control data.
field() { dpkg-deb -f "$deb" "$1"; }
[ "$(field Package)" = "$pkg" ] || fail "Package: $(field Package)"
grep -qw tcptrack <<<"$(field Conflicts)" || fail "Conflicts does not name tcptrack: '$(field Conflicts)'"
grep -qw tcptrack <<<"$(field Replaces)" || fail "Replaces does not name tcptrack: '$(field Replaces)'"
depends=$(field Depends)
echo "Depends: $depends"
dpkg-deb -x "$deb" "$work/root"
packaged="$work/root/usr/sbin/tcptrack"
[ -x "$packaged" ] || fail "no usr/sbin/tcptrack in the package"
# Every shared library the binary itself needs (its NEEDED entries) comes from
# a package it depends on; what those libraries need in turn (libcivetweb under
# prometheus-cpp, libpcre2 under glib) is their packages' own Depends.
direct=$(readelf -d "$packaged" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
[ -n "$direct" ] || fail "readelf found no NEEDED library in $packaged"
dep_names=$(tr ',|' '\n\n' <<<"$depends" | sed 's/^ *//; s/[ (].*//' | sed '/^$/d')
owner_of() {  # the package shipping this library file (usrmerge: /lib or /usr/lib)
    local p o
    for p in "$1" "$(readlink -f "$1")"; do
        for o in "$p" "/usr$p" "${p#/usr}"; do
            o=$(dpkg-query -S "$o" 2>/dev/null) && [ -n "$o" ] && { echo "${o%%:*}"; return; }
        done
    done
}
needed=0
while read -r soname path; do
    grep -qxF "$soname" <<<"$direct" || continue
    needed=$((needed + 1))
    owner=$(owner_of "$path")
    [ -n "$owner" ] || { fail "$soname ($path): no package owns it"; continue; }
    grep -qxF "$owner" <<<"$dep_names" || fail "$soname comes from $owner, which Depends does not name"
done < <(ldd "$packaged" | awk '$2 == "=>" && $3 ~ /^\// { print $1, $3 }')
[ "$needed" -gt 0 ] || fail "ldd found no shared library in $packaged"
grep -q 'NEEDED.*libbpf' <<<"$(readelf -d "$packaged")" && echo "note: libbpf is linked dynamically (TCPTRACK_STATIC_LIBBPF=OFF)"
# A fresh Debian 12 has no backports: every dependency must be met by a version
# from the release's own suites (e.g. libbpf1 >= 1.3 would not be).
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
# (grep reads the whole list: with pipefail, grep -q's early exit would fail the pipe)
if [ -n "$suite" ] && grep -c " $suite/" <<<"$(apt-cache madison libc6 2>/dev/null)" >/dev/null; then
    while read -r dep; do
        name=${dep%% *} op='' ver=''
        if [[ $dep =~ \(([<>=]+)\ ([^\)]+)\) ]]; then op=${BASH_REMATCH[1]} ver=${BASH_REMATCH[2]}; fi
        ok=0
        while read -r v; do
            [ -z "$op" ] && { ok=1; break; }
            dpkg --compare-versions "$v" "$(sed 's/>=/ge/; s/<=/le/; s/>>/gt/; s/<</lt/; s/^=$/eq/' <<<"$op")" "$ver" && { ok=1; break; }
        done < <(apt-cache madison "$name" 2>/dev/null | awk -F' [|] ' -v s="$suite" '$3 ~ (" " s "(-security|-updates)?/") { print $2 }')
        [ "$ok" -eq 1 ] || fail "Depends '$dep' is not met by $suite itself (backports only?): not installable on a fresh Debian"
    done < <(tr ',' '\n' <<<"$depends" | sed 's/^ *//; s/ *$//' | sed '/^$/d')
    echo "Depends: each met by $suite's own suites (no backports needed)"
else
    echo "note: no apt lists for the release suite here, Depends not checked against it"
fi

# 3. Install it as a user would.
files=(/usr/sbin/tcptrack /usr/share/man/man8/tcptrack.8.gz
       /usr/share/bash-completion/completions/tcptrack
       "/usr/share/doc/$pkg/examples/tcptrack-flowlog@.service" "/usr/share/doc/$pkg/copyright")
if ! apt-get install "${apt_opts[@]}" "$deb" >"$work/install.log" 2>&1; then
    cat "$work/install.log"; fail "apt-get install $deb"; exit 1
fi
installed "$pkg" || fail "$pkg not installed after apt-get install"
if [ -n "$debian_ver" ]; then
    installed tcptrack && fail "Debian's tcptrack is still installed beside $pkg (Conflicts ignored)"
fi
listed=$(dpkg -L "$pkg")
for f in "${files[@]}"; do
    [ -e "$f" ] || fail "$f missing after install"
    grep -qxF "$f" <<<"$listed" || fail "dpkg -L $pkg does not list $f"
done
want=$("$binary" --version)
got=$(PATH=/usr/sbin:/usr/bin:/sbin:/bin tcptrack --version 2>&1)
[ "$got" = "$want" ] || fail "installed tcptrack --version: '$got', want '$want'"
# The statically linked libbpf (and everything else) works from the package.
/usr/sbin/tcptrack --check >"$work/check.log" 2>&1 || { cat "$work/check.log"; fail "installed tcptrack --check"; }
if command -v man >/dev/null; then
    page=$(man -w 8 tcptrack 2>&1)
    [ "$page" = /usr/share/man/man8/tcptrack.8.gz ] || fail "man -w 8 tcptrack: '$page'"
    warn=$(MANWIDTH=80 man --warnings=w -l /usr/share/man/man8/tcptrack.8.gz 2>&1 >/dev/null)
    [ -z "$warn" ] || fail "man page warnings: $warn"
fi
bash -c 'source /usr/share/bash-completion/completions/tcptrack && complete -p tcptrack' >/dev/null 2>&1 ||
    fail "the installed completion does not register for tcptrack"
if command -v systemd-analyze >/dev/null; then
    # Offline: an instance of the example unit, the binary now in place.
    mkdir -p "$work/unit"
    cp "/usr/share/doc/$pkg/examples/tcptrack-flowlog@.service" "$work/unit/tcptrack-flowlog@eth0.service"
    out=$(cd "$work/unit" && systemd-analyze verify --man=no ./tcptrack-flowlog@eth0.service 2>&1) ||
        fail "systemd-analyze verify: $out"
    [ -z "$out" ] || fail "systemd-analyze verify said: $out"
    [ -z "$out" ] && echo "systemd-analyze verify tcptrack-flowlog@eth0.service: clean"
else
    echo "note: systemd-analyze not installed, unit not verified"
fi

# 4. Remove it: nothing of it is left.
apt-get purge "${apt_opts[@]}" "$pkg" >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "apt-get purge"; }
installed "$pkg" && fail "$pkg still installed after purge"
[ -z "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -v not-installed)" ] ||
    fail "dpkg still knows $pkg: $(dpkg-query -W -f='${Status}' "$pkg")"
for f in $listed; do
    case $f in /usr | /usr/sbin | /usr/share | /usr/share/man | /usr/share/man/man8 | /usr/share/bash-completion | /usr/share/bash-completion/completions | /usr/share/doc | /.) continue ;; esac
    [ -e "$f" ] && fail "$f left after purge"
done

[ "$fails" -eq 0 ] && echo "packaging: built, installed, checked and purged $pkg; nothing left"
