#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Kernel matrix: boots Debian's own cloud kernels under QEMU (TCG, no KVM needed)
# and runs tcptrack's BPF tier plus one real IPv4 and one IPv6 connection watched
# by the real tcptrack binary inside each (tests/kernels/init.sh).
#
#   tests/kernels/run.sh BUILD_DIR        (needs tcptrack, bpf_tests, tt_conn built)
#
# Kernels: 5.10 (bullseye; the floor, no TCX), 6.1 (bookworm; no TCX), 6.12
# (bookworm-backports; TCX), newest of each on the machine's own Debian mirror.
# All three load the same datapath and slot store; only the attach mode differs
# (legacy tc before 6.6). The .debs are fetched with apt-get download through a
# private sources list (the host's apt configuration is not touched), cached in
# $TCPTRACK_KERNEL_CACHE (default /var/cache/tcptrack-kernels) and extracted,
# never installed. Guest logs are kept in BUILD_DIR/tests/kernels/logs/.
#
# Environment:
#   TCPTRACK_KERNELS="5.10 6.1 6.12"   which series to run
#   TCPTRACK_KERNEL_CACHE=DIR          download cache
#   TCPTRACK_KERNEL_REFRESH=1          refresh the package lists now (default: daily)
#   TCPTRACK_DISABLE=...               passed on to tcptrack and bpf_tests in the guest
#   TCPTRACK_KERNEL_GTEST_FILTER=...   bpf_tests --gtest_filter in the guest (default: all)
#   TCPTRACK_KERNEL_TIMEOUT=SECONDS    per-kernel QEMU timeout (default 300)
#   TCPTRACK_KERNEL_JOBS=N             kernels booted at once (default: all)
#   TCPTRACK_KERNEL_KEEP=1             keep the work directory (initramfs) for debugging
# Prints "kernel <release>: N passed, M failed (T s)" per kernel, then "N passed,
# M failed"; exits 0 only if every kernel passed, 77 when it cannot run here.
set -uo pipefail

skip() { echo "SKIP: $*"; exit 77; }
die() { echo "kernel matrix: $*" >&2; exit 1; }

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
build=$(cd "$1" && pwd) || die "no build directory $1"
here=$(cd "$(dirname "$0")" && pwd)

[ "$(id -u)" -eq 0 ] || skip "needs root (loads BPF programs in the guest, writes the kernel cache)"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 not installed (scripts/setup.sh installs qemu-system-x86)"
busybox=$(command -v busybox) || skip "busybox not installed (scripts/setup.sh installs busybox-static)"
ldd "$busybox" >/dev/null 2>&1 && skip "$busybox is dynamically linked; install busybox-static"
command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || skip "needs apt-get and dpkg-deb (Debian)"

tcptrack=$build/tcptrack
bpf_tests=$build/tests/bpf/bpf_tests
tt_conn=$build/tests/kernels/tt_conn
ipbin=$(command -v ip) || skip "iproute2 'ip' not installed"
tcbin=$(command -v tc) || skip "iproute2 'tc' not installed"
for f in "$tcptrack" "$bpf_tests" "$tt_conn"; do [ -x "$f" ] || die "$f not built"; done

series=${TCPTRACK_KERNELS:-5.10 6.1 6.12}
cache=${TCPTRACK_KERNEL_CACHE:-/var/cache/tcptrack-kernels}
qtimeout=${TCPTRACK_KERNEL_TIMEOUT:-300}
logs=$build/tests/kernels/logs
mkdir -p "$cache" "$logs" || die "cannot create $cache or $logs"
work=$(mktemp -d /tmp/tt-kernels.XXXXXX)
pids=()
cleanup() {
    local f p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done  # our run_kernel subshells
    for f in "$work"/*.qpid; do  # QEMUs still running (interrupted run), by their timeout's pid
        [ -e "$f" ] || continue
        p=$(cat "$f")
        [ "$(cat "/proc/$p/comm" 2>/dev/null)" = timeout ] && kill -TERM "$p"
    done
    if [ "${TCPTRACK_KERNEL_KEEP:-0}" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- kernels: newest of each series from the host's Debian mirror, cached ----

# The URI of the host's Debian archive (the stanza/line serving this release).
mirror_uri() {
    local cn f
    cn=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        awk -v cn="$cn" 'BEGIN { RS=""; FS="\n" }
            { uri=""; ok=0
              for (i = 1; i <= NF; i++) {
                if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uri=u[1] }
                if ($i ~ /^Suites:/) { n=split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == cn) ok=1 } }
              if (ok && uri != "") { print uri; exit } }' "$f"
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -e "$f" ] || continue
        awk -v cn="$cn" '$1 == "deb" { for (i = 2; i < NF; i++) if ($i ~ /^[a-z]+:\/\// && $(i+1) == cn) { print $i; exit } }' "$f"
    done
}

aptdir=$cache/apt
apt_opts=(-o Dir::Etc::SourceList="$aptdir/sources.list" -o Dir::Etc::SourceParts=/dev/null
          -o Dir::State::Lists="$aptdir/lists" -o Dir::Cache="$aptdir/cache"
          -o Dir::State::Status=/dev/null -o Debug::NoLocking=1 -o APT::Sandbox::User=root
          -o Acquire::http::Timeout=30 -o Acquire::Retries=1)
lists_ok=0
refresh_lists() {
    local uri keyring opt=""
    uri=$(mirror_uri | head -n 1)
    [ -n "$uri" ] || { echo "kernel matrix: cannot find the host's Debian mirror in /etc/apt/sources*" >&2; return 1; }
    keyring=/usr/share/keyrings/debian-archive-keyring.gpg
    [ -e "$keyring" ] && opt="[signed-by=$keyring] "
    mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial"
    local suite
    for suite in bullseye bookworm bookworm-backports; do
        printf 'deb %s%s %s main\n' "$opt" "$uri" "$suite"
    done >"$aptdir/sources.list"
    local stamp=$aptdir/lists/.updated
    if [ "${TCPTRACK_KERNEL_REFRESH:-0}" != 1 ] && [ -n "$(find "$stamp" -mmin -1440 2>/dev/null)" ]; then
        lists_ok=1
        return 0
    fi
    echo "kernel matrix: refreshing package lists from $uri (bullseye, bookworm, bookworm-backports)"
    if timeout 300 apt-get -qq "${apt_opts[@]}" update >"$work/apt-update.log" 2>&1 &&
        ! grep -q '^[WE]:' "$work/apt-update.log"; then
        touch "$stamp"
        lists_ok=1
    else
        echo "kernel matrix: apt-get update failed:" >&2
        sed 's/^/  /' "$work/apt-update.log" >&2
    fi
}

# Prints the path of an extracted kernel package for series $1 (e.g. 6.1), or fails
# with a message. Newest on the mirror when the lists are available, else newest cached.
fetch_kernel() {
    local ser=$1 re pkg deb
    re="^linux-image-${ser//./\\.}\\.[0-9][^ ]*-cloud-amd64\$"
    if [ $lists_ok = 1 ]; then
        pkg=$(apt-cache "${apt_opts[@]}" search --names-only "$re" 2>/dev/null | awk '{print $1}' | sort -V | tail -n 1)
        [ -n "$pkg" ] || { echo "no linux-image-$ser.*-cloud-amd64 on the mirror" >&2; return 1; }
        deb=$(ls "$cache/${pkg}"_*.deb 2>/dev/null | sort -V | tail -n 1)
        if [ -z "$deb" ]; then
            echo "kernel matrix: downloading $pkg" >&2
            (cd "$cache" && timeout 300 apt-get -qq "${apt_opts[@]}" download "$pkg") >"$work/dl.log" 2>&1 ||
                { echo "apt-get download $pkg failed: $(tr '\n' ' ' <"$work/dl.log")" >&2; return 1; }
            deb=$(ls "$cache/${pkg}"_*.deb 2>/dev/null | sort -V | tail -n 1)
            [ -n "$deb" ] || { echo "apt-get download $pkg left no .deb in $cache" >&2; return 1; }
            # A newer kernel of this series replaces the cached ones.
            local old
            for old in "$cache"/linux-image-"$ser".*-cloud-amd64_*.deb; do
                [ -e "$old" ] && [ "$old" != "$deb" ] || continue
                case ${old#"$cache"/linux-image-"$ser".} in [0-9]*) ;; *) continue ;; esac
                rm -rf "$old" "$cache/x/$(basename "$old" .deb)"
            done
        fi
    else
        deb=$(ls "$cache"/linux-image-*-cloud-amd64_*.deb 2>/dev/null |
              grep -E "/linux-image-${ser//./\\.}\\.[0-9][^/]*-cloud-amd64_" | sort -V | tail -n 1)
        [ -n "$deb" ] || { echo "package lists unavailable and no cached linux-image-$ser.*-cloud-amd64 in $cache" >&2; return 1; }
        echo "kernel matrix: lists unavailable, using cached $(basename "$deb")" >&2
    fi
    local x=$cache/x/$(basename "$deb" .deb)
    if [ ! -e "$x/.extracted" ]; then
        rm -rf "$x"
        mkdir -p "$x"
        dpkg-deb -x "$deb" "$x" || { echo "dpkg-deb -x $deb failed" >&2; return 1; }
        touch "$x/.extracted"
    fi
    echo "$x"
}

# ---- initramfs: busybox, the test binaries and their libraries, /init ----

root=$work/root
mkdir -p "$root"/{bin,usr/sbin,etc,modules,lib64,lib/x86_64-linux-gnu}
cp "$busybox" "$root/bin/busybox"
cp "$tcptrack" "$bpf_tests" "$tt_conn" "$root/bin/"
cp "$ipbin" "$root/usr/sbin/ip"
cp "$tcbin" "$root/usr/sbin/tc"
cp "$here/init.sh" "$root/init"
chmod 755 "$root/init"
for b in "$tcptrack" "$bpf_tests" "$ipbin" "$tcbin"; do
    ldd "$b" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
done | sort -u | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || die "ldd found no /lib64/ld-linux-x86-64.so.2"
{
    echo "TT_BPF=1"
    echo "TT_BPF_TIMEOUT=200"
    echo "TT_LOAD_TIMEOUT=60"
    echo "TT_CLOSE_TIMEOUT=20"
    echo "TT_FWD=300007"   # client -> server payload; odd sizes, not multiples of the MSS
    echo "TT_REV=120011"   # server -> client payload
    echo "TT_LOSS_FWD=2000003"  # conn_loss: client -> server payload under netem loss
    echo "TT_GTEST_FILTER='${TCPTRACK_KERNEL_GTEST_FILTER:-}'"
    [ -n "${TCPTRACK_DISABLE:-}" ] && echo "export TCPTRACK_DISABLE='$TCPTRACK_DISABLE'"
} >"$root/etc/tt.env"
(cd "$root" && find . -mindepth 1 | sed 's|^\./||' | "$busybox" cpio -o -H newc 2>/dev/null) >"$work/base.cpio" ||
    die "cpio failed"

# Modules tcptrack needs that Debian builds as modules, with their dependencies,
# decompressed (busybox insmod cannot read .ko.xz/.ko.zst), in load order.
modules_cpio() {
    local kx=$1 d=$2 mdir mroot=$2/mods order=()
    mdir=$(ls -d "$kx"/lib/modules/* | head -n 1)
    rm -rf "$mroot"
    mkdir -p "$mroot/modules" "$mroot/etc"
    add_mod() {
        local name=$1 f dep
        for m in "${order[@]}"; do [ "$m" = "$name.ko" ] && return 0; done
        if grep -qE "/${name//[-_]/[-_]}\.ko(\.[a-z]+)?\$" "$mdir/modules.builtin" 2>/dev/null; then return 0; fi
        f=$(find "$mdir/kernel" -regextype posix-extended -regex ".*/${name//[-_]/[-_]}\.ko(\.(xz|zst|gz))?" | head -n 1)
        [ -n "$f" ] || { echo "module $name not in $(basename "$mdir")" >&2; return 1; }
        case $f in
            *.xz) xz -dc "$f" >"$mroot/modules/$name.ko" ;;
            *.zst) zstd -qdc "$f" >"$mroot/modules/$name.ko" ;;
            *.gz) gzip -dc "$f" >"$mroot/modules/$name.ko" ;;
            *) cp "$f" "$mroot/modules/$name.ko" ;;
        esac
        for dep in $(tr '\0' '\n' <"$mroot/modules/$name.ko" | sed -n 's/^depends=//p' | tr ',' ' '); do
            add_mod "$dep" || return 1
        done
        order+=("$name.ko")
    }
    for m in veth sch_ingress cls_bpf; do add_mod "$m" || return 1; done
    # Loss for the retransmission oracle (init.sh skips it without netem).
    add_mod sch_netem || echo "sch_netem not in $(basename "$mdir"): conn_loss skipped" >&2
    printf '%s\n' "${order[@]}" >"$mroot/etc/tt.modules"
    (cd "$mroot" && find . -mindepth 1 | sed 's|^\./||' | "$busybox" cpio -o -H newc 2>/dev/null) >"$d/mods.cpio"
}

# ---- run ----

# Boots one kernel series; writes its report to $work/$ser.out and "PASS FAIL" to
# $work/$ser.count. Runs in a background subshell; the QEMU pid goes to $work/$ser.qpid.
run_kernel() {
    local ser=$1 t0 kx vmlinuz rel log d=$work/k-$1 qpid timed_out=0 pass=0 fail=0 p f
    t0=$(date +%s)
    mkdir -p "$d"
    exec >"$work/$ser.out" 2>&1
    finish() {
        echo "kernel $1: $pass passed, $fail failed ($(($(date +%s) - t0)) s)"
        echo "$pass $fail" >"$work/$ser.count"
    }
    cat "$work/$ser.fetch"
    if ! kx=$(cat "$work/$ser.kx" 2>/dev/null) || [ -z "$kx" ]; then
        fail=1
        finish "$ser"
        return
    fi
    vmlinuz=$(ls "$kx"/boot/vmlinuz-* | head -n 1)
    rel=${vmlinuz##*/vmlinuz-}
    if ! modules_cpio "$kx" "$d" 2>"$d/mods.err"; then
        echo "  FAIL: $(tr '\n' ' ' <"$d/mods.err")"
        fail=1
        finish "$rel"
        return
    fi
    cat "$work/base.cpio" "$d/mods.cpio" >"$d/initrd.cpio"
    log=$logs/$rel.log
    # -cpu qemu64,-cx16: with CMPXCHG16B, QEMU 7.2's TCG intermittently double-faults
    # these kernels in SLUB's per-CPU cmpxchg16b (seen at boot and under load); without
    # it the kernel takes its non-cx16 path. -net none: no NIC to probe.
    # timeout(1) kills QEMU even if this script is killed outright; cleanup() sends it
    # TERM (which it passes on) when the run is interrupted.
    timeout -s KILL "$qtimeout" qemu-system-x86_64 -nographic -monitor none -no-reboot \
        -m 1G -smp 2 -cpu qemu64,-cx16 -net none -kernel "$vmlinuz" -initrd "$d/initrd.cpio" \
        -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" </dev/null >"$log" 2>&1 &
    qpid=$!
    echo "$qpid" >"$work/$ser.qpid"
    wait "$qpid"
    [ $? -eq 137 ] && timed_out=1
    rm -f "$work/$ser.qpid"
    tr -d '\r' <"$log" >"$log.tmp" && mv "$log.tmp" "$log"

    while read -r _ _ p f; do
        pass=$((pass + p))
        fail=$((fail + f))
    done < <(grep -a '^TT-COUNT ' "$log")
    pass=$((pass + $(grep -ac '^TT-RESULT [^ ]* PASS' "$log")))
    fail=$((fail + $(grep -ac '^TT-RESULT [^ ]* FAIL' "$log")))
    grep -a -E '^TT-(CHECK|TCPTRACK-ERR|ROW|VERIFIER)' "$log" | sed 's/^/  /'
    # BPF tier: the failed tests (at most 8 named) and their distinct reasons, counted.
    grep -a -E '^TT-BPF \[  FAILED  \] [^ ]+(, where .*)? \([0-9]+ ms\)$' "$log" | awk '
        { n++; sub(/,$/, "", $5); if (n <= 8) names = names " " $5 } END { if (n) print "  bpf_tests failed (" n "):" names (n > 8 ? " ..." : "") }'
    grep -a -E '^TT-BPF (.*exception with description|.*: Failure$|invalid func|unknown func|bpf_tests exited|[0-9]+ tests skipped)' "$log" |
        grep -av ': Failure$' | sort | uniq -c | sort -rn | head -n 6 | sed 's/^ */  /'
    grep -a -E '^TT-BPF [^ ]+:[0-9]+: Failure$' -A3 "$log" | head -n 12 | sed 's/^/  /'
    grep -a '^TT-RESULT' "$log" | sed 's/^/  /'
    if ! grep -aq '^TT-END' "$log"; then
        fail=$((fail + 1))
        if [ $timed_out = 1 ]; then
            echo "  guest timed out after ${qtimeout}s; last lines of $log:"
        else
            echo "  guest stopped before TT-END (crash or panic); last lines of $log:"
        fi
        tail -n 15 "$log" | sed 's/^/    /'
    fi
    finish "$rel"
}

refresh_lists
for ser in $series; do  # downloads one at a time, before any guest competes for the CPU
    if kx=$(fetch_kernel "$ser" 2>"$work/$ser.fetch"); then
        echo "$kx" >"$work/$ser.kx"
    else
        sed -i 's/^/  FAIL: /' "$work/$ser.fetch"
    fi
done
# Guests spend much of their time idle (sleeps, timers), so all of them at once is
# fastest even on 2 CPUs (measured: 120 s for three at once, 181 s two at a time).
jobs=${TCPTRACK_KERNEL_JOBS:-$(wc -w <<<"$series")}
for ser in $series; do
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n; done
    echo "kernel matrix: starting $ser"
    run_kernel "$ser" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
pids=()
total_pass=0
total_fail=0
for ser in $series; do
    cat "$work/$ser.out" 2>/dev/null
    read -r p f <"$work/$ser.count" 2>/dev/null || { echo "kernel $ser: runner died"; p=0 f=1; }
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
done
echo "$total_pass passed, $total_fail failed"
[ $total_fail -eq 0 ]
