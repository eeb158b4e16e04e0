#!/bin/busybox sh
# SPDX-License-Identifier: MIT
# /init of the kernel-matrix initramfs (packed by tests/kernels/run.sh). Runs as
# PID 1 under QEMU: mounts what tcptrack needs, loads the modules, runs the BPF
# tier and one real IPv4 and one IPv6 connection watched by tcptrack, prints
# machine-readable lines to the serial console and powers off:
#   TT-COUNT <name> <passed> <failed>   tests counted (bpf_tests: gtest's summary)
#   TT-RESULT <name> PASS|FAIL <why>    one check
#   TT-END                              everything ran (missing = crash or timeout)
/bin/busybox mkdir -p /proc /sys /dev /tmp /run /usr/bin /usr/sbin
/bin/busybox --install -s /bin
export PATH=/bin:/usr/sbin
IP=/usr/sbin/ip  # iproute2; a bare "ip" would be busybox's applet (standalone shell)
export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t bpf bpf /sys/fs/bpf
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
ulimit -l unlimited 2>/dev/null  # 5.10 charges BPF maps to RLIMIT_MEMLOCK
. /etc/tt.env

echo "TT-BOOT $(uname -r) $(cut -d' ' -f1 /proc/uptime)s"
for m in $(cat /etc/tt.modules); do
    insmod "/modules/$m" || echo "TT-RESULT insmod_$m FAIL insmod failed"
done

step() { echo "TT-STEP $* at $(cut -d' ' -f1 /proc/uptime)s"; }
result() { echo "TT-RESULT $1 $2 $3"; }

# Probed features, the store and the attach mode this kernel gets (for the log;
# older tcptrack builds have no --check).
step check
if tcptrack --help 2>&1 | grep -q -- '--check'; then
    tcptrack --check 2>&1 | sed 's/^/TT-CHECK /'
    # A refused load: the verifier's last words, to fix it from the host.
    if tcptrack --check 2>&1 | grep -q 'load.*failed'; then
        tcptrack -v --check >/tmp/tt-verifier.log 2>&1
        grep -n -E 'processed [0-9]+ insns|END PROG LOAD LOG|is not allowed' /tmp/tt-verifier.log |
            head -n 1 | cut -d: -f1 >/tmp/tt-verifier.at
        at=$(cat /tmp/tt-verifier.at)
        [ -n "$at" ] || at=$(wc -l </tmp/tt-verifier.log)
        head -n "$at" /tmp/tt-verifier.log | tail -n 60 | sed 's/^/TT-VERIFIER /'
    fi
else
    echo "TT-CHECK tcptrack has no --check"
fi

# BPF tier: PROG_TEST_RUN on handcrafted frames.
if [ "$TT_BPF" = 1 ]; then
    step bpf_tests
    timeout -s KILL "$TT_BPF_TIMEOUT" bpf_tests --gtest_brief=1 ${TT_GTEST_FILTER:+--gtest_filter=$TT_GTEST_FILTER} \
        >/tmp/bpf.out 2>&1
    rc=$?
    sed 's/^/TT-BPF /' /tmp/bpf.out
    # Brief mode prints one "[  FAILED  ] Suite.Test[, where GetParam() = ...] (N ms)"
    # per failure and no
    # failure summary; "[==========] N tests ... ran" must add up.
    ran=$(sed -n 's/^\[==========\] \([0-9]*\) tests\{0,1\} from .* ran\..*/\1/p' /tmp/bpf.out)
    passed=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) tests\{0,1\}\..*/\1/p' /tmp/bpf.out)
    skipped=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) tests\{0,1\}[.,].*/\1/p' /tmp/bpf.out)
    failed=$(grep -c '^\[  FAILED  \] [^ ]*\(, where .*\)\{0,1\} ([0-9]* ms)$' /tmp/bpf.out)
    passed=${passed:-0}
    if [ -z "$ran" ] || [ "$ran" -ne $((passed + failed + ${skipped:-0})) ]; then
        failed=$((failed + 1))  # crashed, killed, or the summary does not add up
        echo "TT-BPF bpf_tests exited $rc: ran '${ran}', passed $passed, failed $failed, skipped ${skipped:-0}"
    elif [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then
        failed=1
        echo "TT-BPF bpf_tests exited $rc with no failed test"
    fi
    [ -n "$skipped" ] && echo "TT-BPF $skipped tests skipped"
    echo "TT-COUNT bpf_tests $passed $failed"
fi

# Real connections: client in netns a, server in netns b, tcptrack on a's veth.
step netns
$IP netns add a && $IP netns add b &&
    $IP link add va type veth peer name vb &&
    $IP link set va netns a && $IP link set vb netns b &&
    $IP -n a link set lo up && $IP -n b link set lo up &&
    $IP -n a addr add 10.9.0.1/24 dev va && $IP -n b addr add 10.9.0.2/24 dev vb &&
    $IP -n a -6 addr add fd00:9::1/64 dev va nodad && $IP -n b -6 addr add fd00:9::2/64 dev vb nodad &&
    $IP -n a link set va up && $IP -n b link set vb up
netrc=$?

summaries() { grep -c '"type":"summary"' /tmp/tt.json 2>/dev/null || echo 0; }
# TcpRetransSegs of a namespace (the kernel's own count of segments it sent again).
retrans_segs() {
    $IP netns exec "$1" awk '$1 == "Tcp:" { if (!c) { for (i = 1; i <= NF; i++) if ($i == "RetransSegs") c = i } else print $c }' /proc/net/snmp
}
# wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s while tcptrack runs.
wait_for() {
    local n=$(($1 * 10))
    shift
    while [ $n -gt 0 ]; do
        "$@" && return 0
        kill -0 "$ttpid" 2>/dev/null || return 1
        sleep 0.1
        n=$((n - 1))
    done
    return 1
}
has_closed() { grep "\"sport\":$1," /tmp/tt.json | grep -q '"state":"CLOSED"'; }
more_summaries() { [ "$(summaries)" -ge "$1" ]; }

conn_ok=""
if [ $netrc -ne 0 ]; then
    result conn_ipv4 FAIL "veth/netns setup failed"
    result conn_ipv6 FAIL "veth/netns setup failed"
else
    step tcptrack
    $IP netns exec a tcptrack -i va --format json --summary --interval 0.5 >/tmp/tt.json 2>/tmp/tt.err &
    ttpid=$!
    if ! wait_for "$TT_LOAD_TIMEOUT" more_summaries 1; then
        why="tcptrack did not report within ${TT_LOAD_TIMEOUT}s"
        kill -0 "$ttpid" 2>/dev/null || { wait "$ttpid"; why="tcptrack exited $? before its first report"; }
        result conn_ipv4 FAIL "$why"
        result conn_ipv6 FAIL "$why"
    else
        step traffic
        for fam in ipv4 ipv6; do
            if [ $fam = ipv4 ]; then cli=10.9.0.1 srv=10.9.0.2; else cli=fd00:9::1 srv=fd00:9::2; fi
            $IP netns exec b tt_conn serve $srv 5201 "$TT_FWD" "$TT_REV" 2>/tmp/srv.err &
            spid=$!
            out=$($IP netns exec a tt_conn connect $srv 5201 "$TT_FWD" "$TT_REV" 2>/tmp/cli.err)
            crc=$?
            wait $spid
            src=$?
            sport=${out#sport=}
            if [ $crc -ne 0 ] || [ $src -ne 0 ] || [ -z "$sport" ]; then
                result conn_$fam FAIL "traffic: client rc $crc server rc $src: $(cat /tmp/cli.err /tmp/srv.err | tr '\n' ' ')"
                continue
            fi
            # The CLOSED row, then two more reports so a repeated CLOSED row would show.
            if wait_for "$TT_CLOSE_TIMEOUT" has_closed "$sport"; then
                target=$(($(summaries) + 2))
                wait_for 10 more_summaries $target
            fi
            conn_ok="$conn_ok $fam,$cli,$sport,$srv"
        done
        # Retransmissions against the kernel: netem drops 2% of what the client
        # sends after tcptrack's egress hook saw it; each end's TcpRetransSegs
        # delta must equal the retransmitted segments tcptrack counted that way.
        loss=""
        if $IP netns exec a /usr/sbin/tc qdisc add dev va root netem loss 2% 2>/tmp/netem.err; then
            step loss
            f0=$(retrans_segs a) r0=$(retrans_segs b)
            $IP netns exec b tt_conn serve 10.9.0.2 5202 "$TT_LOSS_FWD" 11 2>/tmp/srv.err &
            spid=$!
            out=$($IP netns exec a tt_conn connect 10.9.0.2 5202 "$TT_LOSS_FWD" 11 2>/tmp/cli.err)
            crc=$?
            wait $spid
            src=$?
            sport=${out#sport=}
            if [ $crc -ne 0 ] || [ $src -ne 0 ] || [ -z "$sport" ]; then
                result conn_loss FAIL "traffic: client rc $crc server rc $src: $(cat /tmp/cli.err /tmp/srv.err | tr '\n' ' ')"
            elif wait_for "$TT_CLOSE_TIMEOUT" has_closed "$sport"; then
                wait_for 10 more_summaries $(($(summaries) + 2))
                loss="$sport $(($(retrans_segs a) - f0)) $(($(retrans_segs b) - r0))"
            else
                result conn_loss FAIL "no CLOSED row for port $sport"
            fi
            $IP netns exec a /usr/sbin/tc -s qdisc show dev va | tr '\n' ' ' | sed 's/^/TT-NETEM /'; echo
            $IP netns exec a /usr/sbin/tc qdisc del dev va root
        else
            echo "TT-RESULT conn_loss SKIP no netem: $(head -c 200 /tmp/netem.err | tr '\n' ' ')"
        fi
    fi
    if kill -0 "$ttpid" 2>/dev/null; then
        kill -INT "$ttpid"
        n=100
        while kill -0 "$ttpid" 2>/dev/null && [ $n -gt 0 ]; do sleep 0.1; n=$((n - 1)); done
        if kill -0 "$ttpid" 2>/dev/null; then
            echo "tcptrack still running 10 s after SIGINT; killed" >>/tmp/tt.err
            kill -KILL "$ttpid"
        fi
    fi
    wait "$ttpid"
    ttrc=$?
    grep -v '^$' /tmp/tt.err | sed 's/^/TT-TCPTRACK-ERR /' | head -n 40
    for c in $conn_ok; do
        IFS=, read -r fam cli sport srv <<EOF
$c
EOF
        if msg=$(tt_conn check /tmp/tt.json $fam $cli $sport $srv 5201 "$TT_FWD" "$TT_REV" 2>&1); then
            if [ $ttrc -eq 0 ]; then
                result conn_$fam PASS "$msg"
            else
                result conn_$fam FAIL "$msg; but tcptrack exited $ttrc on SIGINT"
            fi
        else
            result conn_$fam FAIL "$msg"
            grep "\"sport\":$sport," /tmp/tt.json | sed 's/^/TT-ROW /' | tail -n 5
        fi
    done
    if [ -n "$loss" ]; then
        set -- $loss
        if msg=$(tt_conn check /tmp/tt.json ipv4 10.9.0.1 "$1" 10.9.0.2 5202 "$TT_LOSS_FWD" 11 "$2" "$3" 2>&1); then
            # No loss, nothing to compare: said so, not counted (see the TT-NETEM line).
            if [ "$2" -gt 0 ]; then result conn_loss PASS "$msg"; else echo "TT-RESULT conn_loss SKIP netem dropped nothing here: $msg"; fi
        else
            result conn_loss FAIL "$msg"
            grep "\"sport\":$1," /tmp/tt.json | sed 's/^/TT-ROW /' | tail -n 3
        fi
    fi
fi

step done
echo "TT-END"
sync
poweroff -f
