#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tcptrack benchmarks. Run as root from anywhere:
#
#   bench/run.sh [BUILD_DIR]        (default ./build, relative to the current directory)
#
# Builds the bench targets if needed, then runs, on a private pair of network
# namespaces joined by a veth pair (names start with "ttbench-"):
#   1. per-packet datapath cost (bpf_stats run_time_ns/run_cnt) vs an empty TCX floor
#      and a parse-only classifier: bulk, small segments, request-style traffic
#      (bench/reqgen), 100k and 1M resident flows
#   2. iperf3 throughput with and without tcptrack, alternated
#   3. byte exactness vs iperf3 -n, next to iftop and Debian's tcptrack 1.4
#   4. user-space CPU and peak RSS of one report for 1k/100k/1M flows, idle and
#      all-changed reports, every row or --changed rows
#   5. connection churn: every completed connection reported CLOSED exactly once
#   6. classifier cost without traffic (PROG_TEST_RUN)
#   7. kernel memory (memlock) of tcptrack's maps for --max-flows 65,536 and 1M,
#      projected to 64 and 128 CPUs
#   8. footprint as a Kubernetes node agent (bench/footprint.sh, its own "ttfp-"
#      namespaces): RSS, CPU and map memory of tcptrack run as the DaemonSet runs
#      it, idle, at 1,000 and 100,000 connections and with 100 interfaces
# Markdown tables go to stdout and to bench/results.md; progress goes to stderr.
# Everything it starts is stopped by PID, the namespaces are deleted and
# kernel.bpf_stats_enabled is restored on any exit (trap).
# TTBENCH_SECTIONS="1 3" runs a subset; TTBENCH_KEEP=1 keeps the raw files in /tmp;
# TTBENCH_RESULTS=FILE writes the markdown there instead of bench/results.md
# (a subset run otherwise replaces results.md with just its sections);
# TTBENCH_SECOND=parse-only|proto-shared|proto-delta picks section 1's third
# classifier (see s1_attach).
# Not part of ctest.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=$(realpath -m "${1:-./build}")
SECTIONS=${TTBENCH_SECTIONS:-"3 1 6 2 4 5 7 8"}  # 3 first: iftop (pcap) has been seen to stall after the long bulk runs
RESULTS=$(realpath -m "${TTBENCH_RESULTS:-$HERE/results.md}")
UTIL=(python3 "$HERE/bench_util.py")
export TTBENCH_GEOMETRY_TOOL=$BUILD/bench/report_cost  # the store's sizes for other CPU counts

log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (netns, BPF)"
for t in iperf3 bpftool ip python3 cmake; do
  command -v "$t" >/dev/null || die "$t not found (scripts/setup.sh installs it)"
done

# ------------------------------------------------------------------ build
if [ ! -d "$BUILD/bench/CMakeFiles" ]; then
  log "configuring $BUILD"
  cmake -S "$ROOT" -B "$BUILD" -DTCPTRACK_BENCH=ON >&2
fi
log "building bench targets in $BUILD"
cmake --build "$BUILD" --target bench_tools -j"$(nproc)" >&2
TT=$BUILD/tcptrack
FLOOR=$BUILD/bench/floor_attach
FILL=$BUILD/bench/fill_flows
COST=$BUILD/bench/report_cost
CHURN=$BUILD/bench/churn
MICRO=$BUILD/bench/datapath_micro
REQGEN=$BUILD/bench/reqgen
for b in "$TT" "$FLOOR" "$FILL" "$COST" "$CHURN" "$MICRO" "$REQGEN"; do [ -x "$b" ] || die "missing $b"; done

# ------------------------------------------------------------------ setup / teardown
SUF=$(($$ % 100000))
NS_C=ttbench-c$SUF   # client side (iperf3 -c, churn client)
NS_S=ttbench-s$SUF   # server side: tcptrack watches IF_S here (the receiver)
IF_C=ttbench-c$SUF
IF_S=ttbench-s$SUF
IP_C=10.251.$((SUF % 250)).1
IP_S=10.251.$((SUF % 250)).2
IP6_C=fd7a:7b00:$(printf %x $((SUF % 65536)))::1
IP6_S=fd7a:7b00:$(printf %x $((SUF % 65536)))::2
TMP=$(mktemp -d /tmp/ttbench.XXXXXX)
STATS_PREV=$(sysctl -n kernel.bpf_stats_enabled)
PIDS=()          # every background process we started
SEEN_PROGS=()    # BPF program ids we attached (checked for removal at the end)
TMUX_SOCK=ttbench-$SUF
NETNS_MADE=0

# shellcheck source=bench/common.sh
source "$HERE/common.sh"  # stop_pid

cleanup() {
  local rc=$? p
  set +e
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
  for p in "${PIDS[@]}"; do stop_pid "$p" TERM; done
  if [ "$NETNS_MADE" = 1 ]; then
    ip netns del "$NS_C" 2>/dev/null
    ip netns del "$NS_S" 2>/dev/null
  fi
  sysctl -q -w kernel.bpf_stats_enabled="$STATS_PREV" >/dev/null
  if [ ${#SEEN_PROGS[@]} -gt 0 ]; then
    sleep 0.5
    local left
    left=$("${UTIL[@]}" prog-exists "${SEEN_PROGS[@]}" 2>/dev/null)
    if [ -n "$left" ]; then log "WARNING: BPF programs still loaded: $left"
    else log "teardown ok: namespaces deleted, none of our ${#SEEN_PROGS[@]} BPF programs remains"; fi
  fi
  if [ -n "${TTBENCH_KEEP:-}" ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  rm -f "$RESULTS.tmp"  # only a complete run replaces results.md
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

ns_c() { ip netns exec "$NS_C" "$@"; }
ns_s() { ip netns exec "$NS_S" "$@"; }

# bg_ns NS OUT ERR CMD...: start CMD in NS in the background; sets BG_PID.
# (ip netns exec execs CMD, so the PID is CMD's own.)
bg_ns() {
  local ns=$1 out=$2 err=$3
  shift 3
  ip netns exec "$ns" "$@" >"$out" 2>"$err" &
  BG_PID=$!
  PIDS+=("$BG_PID")
}

ip netns add "$NS_C" || die "cannot create netns $NS_C"
NETNS_MADE=1
ip netns add "$NS_S" || die "cannot create netns $NS_S"
ip link add "$IF_C" netns "$NS_C" type veth peer name "$IF_S" netns "$NS_S"
for side in C S; do
  ns=NS_$side; ifn=IF_$side; a4=IP_$side; a6=IP6_$side
  ip -n "${!ns}" link set lo up
  ip -n "${!ns}" addr add "${!a4}/24" dev "${!ifn}"
  ip -n "${!ns}" addr add "${!a6}/64" dev "${!ifn}" nodad
  ip -n "${!ns}" link set "${!ifn}" up
done
ns_c sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"
ns_s sysctl -q -w net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=8192
for i in $(seq 50); do ns_c ping -c1 -W1 "$IP_S" >/dev/null 2>&1 && break; sleep 0.1; done
log "namespaces $NS_C / $NS_S, veth $IF_C <-> $IF_S ($IP_C -> $IP_S, $IP6_C -> $IP6_S)"

bg_ns "$NS_S" /dev/null "$TMP/iperf3-server.err" iperf3 -s -p 5201
IPERF_SRV=$BG_PID
for i in $(seq 50); do ns_s ss -Hltn 'sport = :5201' | grep -q . && break; sleep 0.1; done

# CPU seconds (user + sys) a process has used so far.
proc_cpu_s() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# start_tcptrack OUT ARGS...: our tcptrack on IF_S; waits for its TCX programs.
# Sets TT_PID, TT_IN, TT_EG (program ids).
start_tcptrack() {
  local out=$1 i ids=
  shift
  bg_ns "$NS_S" "$out" "$TMP/tcptrack.err" "$TT" -i "$IF_S" "$@"
  TT_PID=$BG_PID
  TT_IN=; TT_EG=
  for i in $(seq 100); do
    kill -0 "$TT_PID" 2>/dev/null || die "tcptrack exited: $(cat "$TMP/tcptrack.err")"
    ids=$("${UTIL[@]}" tcx-ids "$NS_S" "$IF_S")
    TT_IN=$(sed -n 's/^tcptrack_in[a-z0-9_]*=//p' <<<"$ids")
    TT_EG=$(sed -n 's/^tcptrack_eg[a-z0-9_]*=//p' <<<"$ids")
    [ -n "$TT_IN" ] && [ -n "$TT_EG" ] && break
    sleep 0.1
  done
  [ -n "$TT_IN" ] && [ -n "$TT_EG" ] || die "tcptrack did not attach"
  SEEN_PROGS+=("$TT_IN" "$TT_EG")
  # A veth has an L2 header: the L2 classifiers, and nothing else of ours.
  [ "$(grep -c '^tcptrack_' <<<"$ids")" = 2 ] && grep -qx "tcptrack_in=$TT_IN" <<<"$ids" &&
    grep -qx "tcptrack_eg=$TT_EG" <<<"$ids" ||
    die "tcptrack attached $(tr '\n' ' ' <<<"$ids"), not tcptrack_in and tcptrack_eg"
}

# start_nohealth ARGS...: a second tcptrack on IF_S with --no-health (the same
# datapath without connection health), appended after the first one's programs.
# Sets NH_PID, NH_IN, NH_EG.
start_nohealth() {
  local i before ids new
  before=$("${UTIL[@]}" tcx-ids "$NS_S" "$IF_S")
  bg_ns "$NS_S" /dev/null "$TMP/nohealth.err" "$TT" -i "$IF_S" --no-health "$@"
  NH_PID=$BG_PID
  NH_IN=; NH_EG=
  for i in $(seq 100); do
    kill -0 "$NH_PID" 2>/dev/null || die "tcptrack --no-health exited: $(cat "$TMP/nohealth.err")"
    ids=$("${UTIL[@]}" tcx-ids "$NS_S" "$IF_S")
    new=$(grep -vxF -f <(printf '%s\n' "$before") <<<"$ids" || true)
    NH_IN=$(sed -n 's/^tcptrack_in[a-z0-9_]*=//p' <<<"$new")
    NH_EG=$(sed -n 's/^tcptrack_eg[a-z0-9_]*=//p' <<<"$new")
    [ -n "$NH_IN" ] && [ -n "$NH_EG" ] && break
    sleep 0.1
  done
  [ -n "$NH_IN" ] && [ -n "$NH_EG" ] || die "tcptrack --no-health did not attach"
  SEEN_PROGS+=("$NH_IN" "$NH_EG")
}

# TCP OutSegs (wire segments sent, GSO counted per segment) of a namespace.
out_segs() {
  ip netns exec "$1" awk '$1 == "Tcp:" { if (!c) { for (i = 1; i <= NF; i++) if ($i == "OutSegs") c = i } else print $c }' /proc/net/snmp
}

: >"$RESULTS.tmp"
emit() { tee -a "$RESULTS.tmp"; }  # markdown: stdout + results file

{
  echo "# tcptrack benchmarks"
  echo
  echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), kernel $(uname -r), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')), $("$TT" --version 2>/dev/null | head -1) (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$ROOT" diff --quiet HEAD -- src bpf include 2>/dev/null || echo ', src/bpf/include modified')), veth pair between two network namespaces, tcptrack on the receiver-side veth. Command: \`bench/run.sh${1:+ $1}\`."
  echo
} | emit

# ================================================================== 1. datapath cost
# s1_attach MAX_FLOWS: tcptrack, then the empty floor, the parse-only
# classifier and issue 20's anchors (bench/anchors.bpf.c: the seed-style
# shared hash, sized MAX_FLOWS, and the one-line floor), appended to IF_S's
# TCX hooks in that order (the run order).
# Sets TT_*, FL_*, PO_*, SD_*, LN_* (_IN/_EG/_PID) and S1_ORDER.
# TTBENCH_SECOND=proto-shared|proto-delta puts bench/store_proto.bpf.c (a
# candidate store for issue 9) in the parse-only classifier's place: its
# columns then measure the prototype (request-style scenarios only are
# meaningful: it has 65,536 slots and no lifecycle).
case "${TTBENCH_SECOND:-parse-only}" in
  parse-only) SECOND_ARGS=(--parse-only)
              SECOND_DESC="a parse-only classifier (bench/parse_only.bpf.c: tcptrack's own tt_parse from bpf/lib/parse.h plus ifindex and key normalisation, no map access)" ;;
  proto-shared|proto-delta) SECOND_ARGS=(--store-proto "${TTBENCH_SECOND#proto-}")
              SECOND_DESC="in the parse-only columns: the store prototype bench/store_proto.bpf.c (${TTBENCH_SECOND#proto-} variant; TTBENCH_SECOND=$TTBENCH_SECOND)" ;;
  *) echo "TTBENCH_SECOND: parse-only, proto-shared or proto-delta" >&2; exit 2 ;;
esac
s1_attach() {
  # Resident SYN flows are unassured: kept for the whole section, not 30 s.
  start_tcptrack /dev/null --format json --interval 1 --max-flows "$1" --idle-timeout 3600 \
    --unassured-timeout 3600
  start_nohealth --format json --interval 1 --max-flows "$1" --idle-timeout 3600 \
    --unassured-timeout 3600
  local kind i out
  for kind in FL PO SD LN; do
    out=$TMP/floor-$kind.out
    : >"$out"
    case $kind in
      FL) bg_ns "$NS_S" "$out" "$TMP/floor.err" "$FLOOR" "$IF_S" ;;
      PO) bg_ns "$NS_S" "$out" "$TMP/floor.err" "$FLOOR" "${SECOND_ARGS[@]}" "$IF_S" ;;
      SD) bg_ns "$NS_S" "$out" "$TMP/floor.err" "$FLOOR" --anchor seed --flows "$1" "$IF_S" ;;
      LN) bg_ns "$NS_S" "$out" "$TMP/floor.err" "$FLOOR" --anchor line "$IF_S" ;;
    esac
    printf -v "${kind}_PID" '%s' "$BG_PID"
    for i in $(seq 100); do
      grep -q ingress_id "$out" && break
      kill -0 "$BG_PID" 2>/dev/null || break
      sleep 0.1
    done
    printf -v "${kind}_IN" '%s' "$(sed -n 's/.*ingress_id=\([0-9]*\).*/\1/p' "$out")"
    printf -v "${kind}_EG" '%s' "$(sed -n 's/.*egress_id=\([0-9]*\).*/\1/p' "$out")"
    local vin=${kind}_IN veg=${kind}_EG
    [ -n "${!vin}" ] && [ -n "${!veg}" ] || die "floor_attach ($kind) failed: $(cat "$TMP/floor.err")"
    SEEN_PROGS+=("${!vin}" "${!veg}")
  done
  S1_ORDER=$("${UTIL[@]}" tcx-ids "$NS_S" "$IF_S" | tr '\n' ' ')
  log "  attached (in run order): $S1_ORDER"
}

s1_detach() {
  stop_pid "$LN_PID"
  stop_pid "$SD_PID"
  stop_pid "$PO_PID"
  stop_pid "$FL_PID"
  stop_pid "$NH_PID"
  stop_pid "$TT_PID"
}

s1_snap() {
  "${UTIL[@]}" progstats "$TT_IN" "$TT_EG" "$FL_IN" "$FL_EG" "$PO_IN" "$PO_EG" "$NH_IN" "$NH_EG" \
    "$SD_IN" "$SD_EG" "$LN_IN" "$LN_EG"
}

# s1_begin / s1_end SCENARIO REP GBPS MSGS_PER_S: one measured window; s1_end
# appends a row to S1_TSV.
s1_begin() {
  S1_B=$(s1_snap)
  S1_SC0=$(out_segs "$NS_C"); S1_SS0=$(out_segs "$NS_S")
  S1_CPU0=$(proc_cpu_s "$TT_PID"); S1_T0=$(date +%s.%N)
}
s1_end() {
  local a sc1 ss1 cpu1 t1
  a=$(s1_snap)
  sc1=$(out_segs "$NS_C"); ss1=$(out_segs "$NS_S")
  cpu1=$(proc_cpu_s "$TT_PID"); t1=$(date +%s.%N)
  python3 - "$1" "$2" "$3" "$S1_B" "$a" $((sc1 - S1_SC0)) $((ss1 - S1_SS0)) \
    "$S1_CPU0" "$cpu1" "$S1_T0" "$t1" "$4" >>"$S1_TSV" <<'PY'
import sys
scen, rep, gbps, b, a, sc, ss, c0, c1, t0, t1, mps = sys.argv[1:]
d = [int(y) - int(x) for x, y in zip(b.split(), a.split())]
cpu = 100 * (float(c1) - float(c0)) / (float(t1) - float(t0))
print("\t".join([scen, rep, gbps] + [str(x) for x in d] + [sc, ss, f"{cpu:.0f}", mps]))
PY
  log "  $1 #$2: $(tail -1 "$S1_TSV")"
}

s1_iperf() {  # s1_iperf SCENARIO REP IPERF3-ARGS...
  local scen=$1 rep=$2
  shift 2
  s1_begin
  ns_c iperf3 -J "$@" >"$TMP/s1-iperf.json"
  s1_end "$scen" "$rep" "$("${UTIL[@]}" iperf "$TMP/s1-iperf.json" | cut -d' ' -f1)" ""
}

# s1_req SCENARIO REP CONNECTIONS: bench/reqgen, N connections taking turns with
# 100-byte NODELAY sends for S1_DUR s to the reqgen server; only the sending
# phase is measured (the client waits on a FIFO before sending and before closing).
s1_req() {
  local scen=$1 rep=$2 n=$3 ctl=$TMP/reqgen.ctl out=$TMP/reqgen.out fd pid i
  rm -f "$ctl"
  mkfifo "$ctl"
  : >"$out"
  ip netns exec "$NS_C" "$REQGEN" client --connect "$IP_S" --port "$REQ_PORT" --connections "$n" \
    --size 100 --duration "$S1_DUR" --control <"$ctl" >"$out" 2>"$TMP/reqgen.err" &
  pid=$!
  PIDS+=("$pid")
  exec {fd}>"$ctl"
  for i in $(seq 600); do
    grep -q '^ready' "$out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^ready' "$out" || die "reqgen client not ready: $(cat "$TMP/reqgen.err")"
  s1_begin
  echo go >&"$fd"
  for i in $(seq $(((S1_DUR + 30) * 10))); do
    grep -q '^done' "$out" && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  grep -q '^done' "$out" || die "reqgen client did not finish: $(cat "$TMP/reqgen.err")"
  local kv gbps mps
  kv=$(grep '^done' "$out")
  gbps=$(awk '{ for (i = 2; i <= NF; i++) { split($i, f, "="); v[f[1]] = f[2] }
               printf "%.3f", v["bytes"] * 8 / v["seconds"] / 1e9 }' <<<"$kv")
  mps=$(sed -n 's/.* rate=\([0-9]*\).*/\1/p' <<<"$kv")
  s1_end "$scen" "$rep" "$gbps" "$mps"
  exec {fd}>&-  # end of input: the client closes its connections and exits
  for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$pid"
}

# s1_fill N: N distinct SYNs through tcptrack_in (PROG_TEST_RUN); sets FILL_MSG.
s1_fill() {
  log "  filling tcptrack's maps with $1 flows"
  FILL_MSG=$(ns_s "$FILL" --prog-id "$TT_IN" --count "$1") || die "fill_flows: $FILL_MSG"
  log "  $FILL_MSG"
  local nh
  nh=$(ns_s "$FILL" --prog-id "$NH_IN" --count "$1") || die "fill_flows (--no-health): $nh"
  log "  --no-health: $nh"
  local kind
  for kind in SD LN; do  # the anchors hold them too (the line floor keeps what fits)
    local v=${kind}_IN
    nh=$(ns_s "$FILL" --prog-id "${!v}" --count "$1" --no-count) || die "fill_flows ($kind): $nh"
    log "  $kind: $nh"
  done
}

# s1_resident: how many live flows the store still holds (fill_flows --count 0).
s1_resident() {
  ns_s "$FILL" --prog-id "$TT_IN" --count 0 | sed -n 's/.*store holds \([0-9]*\) live flows.*/\1/p'
}

section1() {
  log "section 1: per-packet datapath cost"
  sysctl -q -w kernel.bpf_stats_enabled=1
  REQ_PORT=7002
  bg_ns "$NS_S" "$TMP/reqgen-server.out" "$TMP/reqgen-server.err" \
    "$REQGEN" server --bind "$IP_S" --port $REQ_PORT
  local req_srv=$BG_PID i
  for i in $(seq 50); do grep -q listening "$TMP/reqgen-server.out" && break; sleep 0.1; done
  grep -q listening "$TMP/reqgen-server.out" || die "reqgen server: $(cat "$TMP/reqgen-server.err")"
  section1_runs
  stop_pid "$req_srv"
  sysctl -q -w kernel.bpf_stats_enabled="$STATS_PREV"
}

section1_runs() {
  S1_TSV=$TMP/s1.tsv
  : >"$S1_TSV"
  local reps=3 r order1 order2 fill1 fill2 big=1000000 big_max=1100000 res1 res2 t0 t1
  S1_DUR=3
  local dur=$S1_DUR
  s1_attach 200000
  order1=$S1_ORDER
  for r in $(seq $reps); do s1_iperf "IPv4 bulk" "$r" -c "$IP_S" -t $dur; done
  for r in $(seq $reps); do s1_iperf "IPv6 bulk" "$r" -6 -c "$IP6_S" -t $dur; done
  for r in $(seq $reps); do
    s1_iperf "IPv4 small (-N -l 200 -b 200M)" "$r" -c "$IP_S" -t $dur -N -l 200 -b 200M
  done
  for r in $(seq $reps); do
    s1_iperf "IPv4 small, full rate (-N -l 200)" "$r" -c "$IP_S" -t $dur -N -l 200
  done
  for r in $(seq $reps); do s1_req "Requests, 2 conns (100 B NODELAY)" "$r" 2; done
  for r in $(seq $reps); do s1_req "Requests, 1,000 conns (100 B NODELAY)" "$r" 1000; done
  s1_fill 100000
  fill1=${FILL_MSG#fill_flows: }
  sleep 2  # let tcptrack's user space see them once before measuring
  for r in $(seq $reps); do s1_iperf "IPv4 bulk + 100k flows resident" "$r" -c "$IP_S" -t $dur; done
  for r in $(seq $reps); do s1_req "Requests, 1,000 conns + 100k flows resident" "$r" 1000; done
  res1=$(s1_resident)
  s1_detach

  # 1M resident: a fresh tcptrack (and floor, parse-only: same run order) with room for them.
  s1_attach $big_max
  order2=$S1_ORDER
  t0=$(date +%s.%N)
  s1_fill $big
  t1=$(date +%s.%N)
  fill2="${FILL_MSG#fill_flows: }; $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s wall including the count"
  local kmem
  kmem=$("${UTIL[@]}" proc-maps-memlock "$TT_PID")
  for r in $(seq $reps); do s1_iperf "IPv4 bulk + 1M flows resident" "$r" -c "$IP_S" -t $dur; done
  for r in $(seq $reps); do s1_req "Requests, 1,000 conns + 1M flows resident" "$r" 1000; done
  res2=$(s1_resident)
  local rss
  rss=$(awk '/^VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$TT_PID/status" 2>/dev/null || echo '?')
  s1_detach
  {
    echo "## 1. Per-packet datapath cost (bpf_stats)"
    echo
    echo "tcptrack (\`--format json --interval 1 --max-flows 200000 --idle-timeout 3600 --unassured-timeout 3600 > /dev/null\`; 1M scenarios: a fresh one with \`--max-flows $big_max\`), the same tcptrack with \`--no-health\` (a second instance, same arguments: the datapath without connection health; its programs are the second tcptrack_in/_eg in the run order), an empty TCX classifier (bench/empty.bpf.c, returns TCX_NEXT: the floor, i.e. program dispatch + bpf_stats accounting), $SECOND_DESC, and issue 20's two anchors (bench/anchors.bpf.c, each after tcptrack's own parse and key normalisation: \`seed\`, the naive design, one shared BPF hash map sized like tcptrack's --max-flows, looked up or inserted per segment, two atomic adds, no lifecycle, no payload, no health; \`line\`, the one-line floor, a per-CPU direct-mapped table of 8,192 64-byte entries holding the key and counters, a colliding flow taking the line: one line of flow state per segment and nothing else) attached to the same TCX hooks of the receiver veth in the same runs, run order: $order1(1M: $order2). run_time_ns / run_cnt deltas per program over each run (${dur} s), median of $reps runs. Runs = skbs (a GSO skb is one run); wire segments = TCP OutSegs of the sending namespace (client for ingress, server for egress) over the same window. Requests: bench/reqgen, N connections opened first, then one 100-byte send (TCP_NODELAY) per connection in turn for ${dur} s; the server only reads (its segments are ACKs); only the sending phase is measured. 100k scenarios: \`fill_flows\` ran tcptrack_in via BPF_PROG_TEST_RUN on 100k distinct SYNs first, each a new flow in the slot store (SYN_SENT, never answered: like SYNs to addresses nobody routes) ($fill1; live flows still in the store after the runs, counted from its slots: $res1). 1M scenarios: the same with 1M SYNs ($fill2; live after the runs: $res2; tcptrack peak RSS ${rss} MB; its maps' memlock: $kmem). Last column: CPU of tcptrack's user-space process over the window (a report every second; see section 4 for the cost of one). Issue 9 target: tcptrack/floor ≤ 1.5× per packet. Issue 20 targets: request-style tcptrack/line ≤ 1.2× and below seed; bulk and small segments tcptrack/floor ≤ 2.0× and below seed. Issue 18 target: health adds ≤ 15% (tcptrack / no-health ≤ 1.15); the no-health instance runs second, on packet data the first one already brought into the cache, which if anything overstates health's share."
    echo
    "${UTIL[@]}" s1-table "$S1_TSV"
    echo
  } | emit
}

# ================================================================== 2. throughput
section2() {
  log "section 2: throughput with / without tcptrack (bpf_stats at its previous value $STATS_PREV)"
  local pairs=7 dur=4 i mode
  local tsv=$TMP/s2.tsv
  : >"$tsv"
  run_one() {  # run_one off|on: sets GBPS_off / GBPS_on (no subshell: PIDs stay tracked)
    local mode=$1
    if [ "$mode" = on ]; then start_tcptrack /dev/null --format json --interval 1; fi
    ns_c iperf3 -J -c "$IP_S" -t $dur -O 1 >"$TMP/s2-iperf.json"
    if [ "$mode" = on ]; then stop_pid "$TT_PID"; fi
    printf -v "GBPS_$mode" '%s' "$("${UTIL[@]}" iperf "$TMP/s2-iperf.json" | cut -d' ' -f1)"
  }
  for i in $(seq $pairs); do
    if [ $((i % 2)) -eq 1 ]; then run_one off; run_one on
    else run_one on; run_one off; fi
    local off=$GBPS_off on=$GBPS_on
    echo "$i $off $on" >>"$tsv"
    log "  pair $i: off $off on $on Gbit/s"
  done
  {
    echo "## 2. Throughput overhead (iperf3 IPv4 bulk, -t $dur -O 1, receiver-reported)"
    echo
    echo "Each pair: one run without anything attached and one with tcptrack (\`--format json --interval 1 > /dev/null\`, started fresh) attached to the receiver veth; order alternates (odd pairs: off first). kernel.bpf_stats_enabled left at its previous value ($STATS_PREV)."
    echo
    python3 - "$tsv" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
print("| Pair | Order | Without tcptrack Gbit/s | With tcptrack Gbit/s | With / without |")
print("|---:|---|---:|---:|---:|")
ratios = []
for i, off, on in rows:
    r = float(on) / float(off)
    ratios.append(r)
    order = "off, on" if int(i) % 2 else "on, off"
    print(f"| {i} | {order} | {float(off):.2f} | {float(on):.2f} | {r:.3f} |")
offs = [float(r[1]) for r in rows]; ons = [float(r[2]) for r in rows]
print(f"| median | | {statistics.median(offs):.2f} | {statistics.median(ons):.2f} | "
      f"**{statistics.median(ratios):.3f}** |")
EOF
    echo
  } | emit
}

# ================================================================== 3. exactness
section3() {
  log "section 3: exactness under load"
  local bytes=$((2 * 1024 * 1024 * 1024)) ift_secs=9 bport=7001
  bg_ns "$NS_S" "$TMP/bulk-server.out" "$TMP/bulk-server.err" \
    "$CHURN" server --bind "$IP_S" --port $bport --request $bytes --reply 0 --threads 1
  local bulk_srv=$BG_PID i
  for i in $(seq 50); do grep -q listening "$TMP/bulk-server.out" && break; sleep 0.1; done
  start_tcptrack "$TMP/s3-tcptrack.json" --format json --interval 1
  local tt_pid=$TT_PID
  bg_ns "$NS_S" "$TMP/s3-iftop.txt" "$TMP/s3-iftop.err" iftop -t -s $ift_secs -n -N -P -B -L 100 -i "$IF_S"
  local iftop_pid=$BG_PID
  # iftop only advances its -s clock when a packet arrives: keep a trickle (ICMP, ignored by
  # tcptrack) flowing until it has printed.
  bg_ns "$NS_C" /dev/null /dev/null ping -q -i 0.2 "$IP_S"
  local ping_pid=$BG_PID
  local t14=$TMP/s3-tcptrack14.txt tmux_pid="" pane_pid="" cap_pid=""
  : >"$t14"
  if command -v tmux >/dev/null && [ -x /usr/bin/tcptrack ]; then
    tmux -L "$TMUX_SOCK" -f /dev/null new-session -d -s tt -x 160 -y 50 \
      "ip netns exec $NS_S /usr/bin/tcptrack -i $IF_S"
    tmux_pid=$(tmux -L "$TMUX_SOCK" display -p '#{pid}')
    pane_pid=$(tmux -L "$TMUX_SOCK" display -p '#{pane_pid}')
    PIDS+=("$pane_pid" "$tmux_pid")
    ( while :; do tmux -L "$TMUX_SOCK" capture-pane -p -t tt >>"$t14" 2>/dev/null; sleep 0.25; done ) &
    cap_pid=$!
    PIDS+=("$cap_pid")
  else
    log "  tmux or /usr/bin/tcptrack (Debian tcptrack 1.4) missing: it is reported as not run"
  fi
  sleep 2  # iftop (pcap) and tcptrack 1.4 are up
  mibs() { ip netns exec "$1" cat /proc/net/snmp /proc/net/netstat >"$2"; }
  mibs "$NS_C" "$TMP/s3-c0"; mibs "$NS_S" "$TMP/s3-s0"
  ns_c iperf3 -J -c "$IP_S" -n $bytes >"$TMP/s3-iperf.json"
  mibs "$NS_C" "$TMP/s3-c1"; mibs "$NS_S" "$TMP/s3-s1"
  log "  iperf3 -n done: $("${UTIL[@]}" iperf "$TMP/s3-iperf.json")"
  sleep 1
  mibs "$NS_C" "$TMP/s3-c2"; mibs "$NS_S" "$TMP/s3-s2"
  local bulk
  bulk=$(ns_c "$CHURN" client --connect "$IP_S" --port $bport --request $bytes --reply 0 \
    --threads 1 --connections 1 --duration 60 --log "$TMP/s3-bulk.log")
  mibs "$NS_C" "$TMP/s3-c3"; mibs "$NS_S" "$TMP/s3-s3"
  log "  bulk transfer done: $bulk"
  sleep 2.5  # tcptrack prints the close in its next report
  local iftop_note=""
  kill -0 "$iftop_pid" 2>/dev/null ||
    iftop_note=" WARNING: iftop's -s window ended before both transfers were over; its totals may be short."
  [ -n "$cap_pid" ] && stop_pid "$cap_pid" TERM
  if [ -n "$tmux_pid" ]; then
    tmux -L "$TMUX_SOCK" capture-pane -p -t tt >>"$t14" 2>/dev/null || true
    stop_pid "$pane_pid" TERM
    stop_pid "$tmux_pid" TERM
  fi
  stop_pid "$tt_pid"
  stop_pid "$bulk_srv"
  # iftop's -s clock runs slow while it digests a pcap backlog: give it time to print.
  for i in $(seq 600); do kill -0 "$iftop_pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$iftop_pid" 2>/dev/null && iftop_note+=" iftop had not printed after 60 s and was stopped."
  stop_pid "$iftop_pid"
  stop_pid "$ping_pid"
  {
    echo "## 3. Exactness under load (2 GiB at full speed; tcptrack, iftop and tcptrack 1.4 all watching the receiver veth)"
    echo
    "${UTIL[@]}" s3-table "$TMP/s3-iperf.json" "$TMP/s3-bulk.log" "$TMP/s3-tcptrack.json" \
      "$TMP/s3-iftop.txt" "$t14" 5201 $bport \
      "$TMP/s3-c0" "$TMP/s3-c1" "$TMP/s3-s0" "$TMP/s3-s1" \
      "$TMP/s3-c2" "$TMP/s3-c3" "$TMP/s3-s2" "$TMP/s3-s3"
    echo
    echo "tcptrack: \`--format json --interval 1\`, last row of the connection. iftop: \`iftop -t -s $ift_secs -n -N -P -B -L 100\` (pcap, counts each packet's IP total length — a GSO skb once with one set of headers — and prints 3 significant digits, 1024-based, so ± is its display resolution).$iftop_note tcptrack 1.4: \`/usr/bin/tcptrack -i IFACE\` in a detached tmux pane, captured every 0.25 s."
    echo
  } | emit
}

# ================================================================== 4. report cost
section4() {
  log "section 4: user-space cost per report"
  local n line mode out reps=5
  local tsv=$TMP/s4.txt
  : >"$tsv"
  for n in 1000 100000 1000000; do
    for mode in idle changed; do
      for out in all changed; do
        line=$("$COST" --flows $n --reports $reps --mode $mode --output $out) ||
          die "report_cost --flows $n --mode $mode --output $out failed"
        log "  $line"
        echo "$line" >>"$tsv"
      done
    done
  done
  {
    echo "## 4. User-space cost per report (bench/report_cost, one process per N, mode and output)"
    echo
    echo "tcptrack::Skeleton loaded for N + 1,024 flows (not attached), its slot store filled through the classifier: BPF_PROG_TEST_RUN of tcptrack_in on real IPv4 frames, per connection SYN, SYN-ACK, ACK, one data segment from the client (1–1,448 B) and one reply (1–1,448 B), so every flow is ESTABLISHED and settled, with an RTT and payload both ways (checked after the first report). Per report, what src/report/assembler.cpp does per interval with \`--format json > /dev/null\`: Collector::collect (mmap windows over the used slots, close events), ReportBuilder::build (rates, stats, display order; **every row** = every sample, as tcptrack prints by default; **--changed** = only Collector::changed(), as \`--changed\` does), Collector::forget(idle) and the report's stats (\"build\" below), render_json streamed to /dev/null (\"render\"). One unmeasured first report (every flow new: its CPU is the \"first report\" column), then $reps measured reports: **idle** = nothing in the store changed since the previous report; **all changed** = before each report one more data segment per flow went through tcptrack_in (not timed), so every flow has a non-zero rate. CPU = getrusage user+sys, median of $reps; split shown for the median report. Peak RSS = ru_maxrss of the process (the slot store is in the kernel: user space maps ~3 MB of it at a time); steady RSS = resident after the last report (samples kept between reports). Refused = connections the store did not take (untracked: both index buckets of the key full)."
    echo
    "${UTIL[@]}" s4-table "$tsv"
    echo
    section4_cpus
    echo "Peak RSS of the real binary at 1M flows (bench/peak_rss.sh): a tcptrack on a veth in its own namespace, stopped (SIGSTOP) while bench/fill_flows puts 1M SYN flows through its classifier, then 3 reports; the first sees every flow new. Issue 20 target: VmHWM ≤ 256 MB."
    echo
    "$HERE/peak_rss.sh" "$BUILD"
    echo
  } | emit
}

# The per-CPU counter cache on bigger hosts: sized for C CPUs here (report_cost --cpus).
section4_cpus() {
  local tsv=$TMP/s4c.txt mf n c line extra
  : >"$tsv"
  for spec in "65536 1000" "1000000 1000" "1000000 1000000"; do
    read -r mf n <<<"$spec"
    for c in 2 64 128; do
      extra=(--close)
      [ "$n" -gt 1000 ] && extra=(--full-cache)
      line=$("$COST" --flows $n --max-flows $mf --cpus $c --reports 3 --mode idle \
        --output all "${extra[@]}") || die "report_cost --flows $n --max-flows $mf --cpus $c failed"
      log "  $line"
      echo "$line" >>"$tsv"
    done
  done
  echo "### The counter cache at 2, 64 and 128 CPUs"
  echo
  echo "The same report, idle, every row, with the per-CPU counter cache sized, and walked by the reports and the closes, as on a host of C CPUs (\`report_cost --cpus C\`: LoadConfig::cache_cpus; the classifiers here still count on this host's $(nproc) CPUs). Its size comes from --max-flows and C (2 × max-flows / C entries per CPU, 128 to 8,192). With 1M flows, \`--full-cache\` plants copies of this host's CPUs' entries in every other CPU's, as on a host whose every CPU counted as many flows (their counts show C times over). Collect = the collector's scan of the cache and the slots; peak RSS includes the cache's mapping. Close: after the reports, 1,000 connections end (FIN each way, last ACK) through tcptrack_in on one thread; the closing ACK's own run time (BPF_PROG_TEST_RUN's), mean, median and 90th percentile: the close event and the fold of the CPUs' entries."
  echo
  "${UTIL[@]}" s4-cpus-table "$tsv"
  echo
}

# ================================================================== 6. PROG_TEST_RUN micro
section6() {
  log "section 6: classifier cost on one CPU (PROG_TEST_RUN)"
  {
    echo "## 1b. Classifier cost without traffic (bench/datapath_micro)"
    echo
    echo "BPF_PROG_TEST_RUN on CPU 0, settled flows' 1448-byte data segments: repeat 2,000,000 (median of 7) for one flow; flows in turn with one run per call (median of 7 × 20,000 calls, so the per-call overhead is in every column alike, the empty one included). Columns: tcptrack_in as built (slot store and per-CPU counter cache), the prototype store of bench/store_proto.bpf.c (a per-CPU direct-mapped cache in front of a BPF hash index; atomic adds into the slot, or per-CPU deltas), the parse-only classifier and the empty one. The last table runs one flow on two CPUs at once, data on CPU 0 and its ACKs on CPU 1: what sharing a flow's counters across CPUs costs. No bpf_stats and no traffic, so this isolates the program's own work; the runs are noisy on this shared VM (±20 %)."
    echo
    "$MICRO"
    echo
  } | emit
}

# ================================================================== 5. churn
section5() {
  log "section 5: connection churn"
  local dur=8 port=7000 req=64 rep=512 threads=4
  bg_ns "$NS_S" "$TMP/churn-server.out" "$TMP/churn-server.err" \
    "$CHURN" server --bind "$IP_S" --port $port --request $req --reply $rep --threads $threads
  local srv=$BG_PID i
  for i in $(seq 50); do grep -q listening "$TMP/churn-server.out" && break; sleep 0.1; done
  start_tcptrack "$TMP/s5-tcptrack.json" --format json --interval 1 --summary
  local tt_pid=$TT_PID
  local summary
  summary=$(ns_c "$CHURN" client --connect "$IP_S" --port $port --request $req --reply $rep \
    --threads $threads --duration $dur --log "$TMP/churn.log")
  log "  churn client: $summary"
  sleep 3.5  # last closes: 1 s last-ACK grace + one report interval
  stop_pid "$tt_pid"
  stop_pid "$srv"
  log "  churn server: $(cat "$TMP/churn-server.out" | tail -1)"
  {
    echo "## 5. Connection churn (bench/churn, $threads client + $threads server threads, ${dur} s, $req B request / $rep B reply, server closes first)"
    echo
    echo "tcptrack \`--format json --interval 1 --summary\` on the server veth. A generator connection is accounted for when a CLOSED/RESET row with the same client port and exactly $req B client→server / $rep B server→client payload appears; per client port, min(generated, rows) count as exactly once, the excess of generated as missing, the excess of rows as duplicated."
    echo
    "${UTIL[@]}" s5-table "$TMP/churn.log" "$TMP/s5-tcptrack.json" $port $req $rep "$summary"
    echo
  } | emit
}

# ================================================================== 7. kernel memory
section7() {
  log "section 7: kernel memory of tcptrack's maps"
  local mf tsv=$TMP/s7.txt
  : >"$tsv"
  for mf in 65536 1000000; do
    start_tcptrack /dev/null --format json --interval 1 --max-flows $mf
    "${UTIL[@]}" proc-maps "$TT_PID" "$mf" >>"$tsv"
    stop_pid "$TT_PID"
  done
  local p0
  p0=$("${UTIL[@]}" possible-cpus)
  {
    echo "## 7. Kernel memory of tcptrack's maps (bpftool memlock)"
    echo
    echo "A running tcptrack (\`--format json --interval 1 --max-flows N\`, attached, no traffic) per N; its maps found through /proc/PID/fdinfo (map_id), memlock as \`bpftool map show id\` reports it (the kernel's map_mem_usage: all of it allocated at load, so it does not depend on how many flows are live). Measured with $(cat /sys/devices/system/cpu/possible) possible CPUs ($p0). Projection to P CPUs: the kernel's own map_mem_usage formulas (kernel/bpf/arraymap.c, hashtab.c, queue_stack_maps.c, ringbuf.c) evaluated for P, with the struct sizes read from this kernel's BTF; the \"model\" column checks that the formula gives exactly the measured memlock for $p0 CPUs. Only per-CPU arrays (round_up(value, 8) × entries per CPU) and the preallocated hash (one spare element, an element pointer and HASHTAB_MAP_LOCK_COUNT ints per CPU) grow with CPUs. The percpu allocator's own chunk overhead is not in memlock and not projected. Issue 9 target: ≤ 200 B per max-flow in total at \`--max-flows 1000000\`, whatever the CPU count."
    echo
    "${UTIL[@]}" s7-table "$tsv"
    echo
  } | emit
}

# ================================================================== 8. footprint
section8() {
  log "section 8: footprint as a node agent (bench/footprint.sh)"
  "$HERE/footprint.sh" "$BUILD" | emit
}

for s in $SECTIONS; do "section$s"; done
stop_pid "$IPERF_SRV"
mv "$RESULTS.tmp" "$RESULTS"
log "results written to $RESULTS"
