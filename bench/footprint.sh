#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# tcptrack's footprint as a Kubernetes node agent: what deploy/kubernetes's
# requests and limits come from. Run as root from anywhere:
#
#   bench/footprint.sh [BUILD_DIR]     (default ./build; bench/run.sh runs it as section 8)
#
# The real binary as the DaemonSet runs it (--format none --no-process
# --prometheus ADDR:PORT, the default 2 s interval) with -i 'ttfp*', in a
# network namespace of its own (the "node", ttfp-n<N>) whose ttfp* interfaces
# are veths into a second one (the "pods", ttfp-p<N>). Per scenario: a fresh
# tcptrack, attached (its programs on every ttfp* interface: /healthz answers
# 200 before the first report), then the load (bench/reqgen: connections
# opened and held, each sending 16 B now and then, paced on the clock), a
# warm-up, then a window in which /metrics is scraped once per interval, as
# Prometheus would:
#   CPU     utime + stime of /proc/PID/stat (every thread) over the window,
#           against the monotonic clock
#   memory  VmRSS at each scrape, VmHWM (RssAnon/RssFile/RssShmem) at the end;
#           the kernel memory of its maps (memlock, bpftool), also projected
#           to a 64-CPU node with the kernel's own formulas (bench_util.py)
# Scenarios: idle (one interface), 1,000 connections, 100,000 connections
# (--max-flows 131072: the default 65,536 cannot hold them), 100 interfaces
# with 10 connections each. The connections are real sockets, split over
# client/server process pairs of at most 15,000 (one fd each; the fd hard
# limit bounds a process), server k on its own port.
# Markdown on stdout, progress on stderr. Everything it makes is named ttfp-*:
# its processes are stopped by PID and both namespaces (so every veth) deleted
# on any exit (trap). TTFP_WINDOW=S (default 30) and TTFP_WARMUP=S (default
# 10: every connection has sent once) set the times, TTFP_SCENARIOS="idle 1k
# 100k 100if" a subset. Not part of ctest (about 4 minutes).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
BUILD=$(realpath -m "${1:-./build}")
UTIL=(python3 "$HERE/bench_util.py")
WINDOW=${TTFP_WINDOW:-30}
WARMUP=${TTFP_WARMUP:-10}
SCENARIOS=${TTFP_SCENARIOS:-"idle 1k 100k 100if"}
INTERVAL=2   # tcptrack's default --interval: not passed, only used to pace the scrapes

log() { printf '[footprint %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (netns, BPF)"
for t in ip bpftool python3; do command -v "$t" >/dev/null || die "$t not found"; done
TT=$BUILD/tcptrack
REQGEN=$BUILD/bench/reqgen
if [ ! -x "$TT" ] || [ ! -x "$REQGEN" ]; then
  [ -f "$BUILD/CMakeCache.txt" ] || cmake -S "$ROOT" -B "$BUILD" >&2
  cmake --build "$BUILD" --target tcptrack reqgen -j"$(nproc)" >&2
fi

SUF=$(($$ % 100000))
NS_N=ttfp-n$SUF   # the node: tcptrack, the server, the host ends ttfp0..ttfp99
NS_P=ttfp-p$SUF   # the pods: the other ends ttfpp0..ttfpp99, the clients
PORT=9464         # in NS_N only
METRICS=http://127.0.0.1:$PORT
SRV_PORT=7100
TMP=$(mktemp -d /tmp/ttfp.XXXXXX)
TSV=$TMP/footprint.jsonl
PIDS=()
NETNS_MADE=()

STOP_PID_WAIT=100  # tcptrack with 100,000 connections takes longer to stop
# shellcheck source=bench/common.sh
source "$HERE/common.sh"  # stop_pid

cleanup() {
  local rc=$? p ns
  set +e
  trap - EXIT INT TERM
  for p in "${PIDS[@]}"; do stop_pid "$p" TERM; done
  for ns in "${NETNS_MADE[@]}"; do ip netns del "$ns" 2>/dev/null; done
  for ns in "${NETNS_MADE[@]}"; do
    [ -e "/run/netns/$ns" ] && log "WARNING: namespace $ns still exists"
  done
  [ ${#NETNS_MADE[@]} -gt 0 ] && log "teardown: namespaces ${NETNS_MADE[*]} deleted"
  if [ -n "${TTBENCH_KEEP:-}" ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

ns_n() { ip netns exec "$NS_N" "$@"; }

# bg NS IN OUT ERR CMD...: CMD in NS in the background, its fd limit raised to
# the hard limit; sets BG_PID (CMD's own: both exec).
bg() {
  local ns=$1 in=$2 out=$3 err=$4
  shift 4
  ( ulimit -n "$(ulimit -Hn)" && exec ip netns exec "$ns" "$@" ) <"$in" >"$out" 2>"$err" &
  BG_PID=$!
  PIDS+=("$BG_PID")
}

# wait_line FILE REGEX PID SECONDS: until FILE has a line matching REGEX.
wait_line() {
  local i
  for i in $(seq $(($4 * 10))); do
    grep -q "$2" "$1" && return 0
    kill -0 "$3" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# veths FIRST LAST: ttfpI in NS_N (10.252.I.1/24) <-> ttfppI in NS_P (10.252.I.2/24).
veths() {
  local i
  for i in $(seq "$1" "$2"); do
    echo "link add ttfp$i netns $NS_N type veth peer name ttfpp$i netns $NS_P"
  done | ip -batch -
  for i in $(seq "$1" "$2"); do
    echo "addr add 10.252.$i.1/24 dev ttfp$i"
    echo "link set ttfp$i up"
  done | ip -n "$NS_N" -batch -
  for i in $(seq "$1" "$2"); do
    echo "addr add 10.252.$i.2/24 dev ttfpp$i"
    echo "link set ttfpp$i up"
  done | ip -n "$NS_P" -batch -
}

ip netns add "$NS_N" || die "cannot create netns $NS_N"
NETNS_MADE+=("$NS_N")
ip netns add "$NS_P" || die "cannot create netns $NS_P"
NETNS_MADE+=("$NS_P")
ip -n "$NS_N" link set lo up
ip -n "$NS_P" link set lo up
ns_n sysctl -q -w net.core.somaxconn=4096 net.ipv4.tcp_max_syn_backlog=8192
ip netns exec "$NS_P" sysctl -q -w net.ipv4.ip_local_port_range="1024 65535"
veths 0 0
log "namespaces $NS_N (tcptrack) / $NS_P (clients), veth ttfp0 <-> ttfpp0"

# Connections per load process (client and server each): a process holds one fd
# per socket, and the fd limit may not be raised past its hard limit here.
PER_PROC=$(( $(ulimit -Hn) - 1000 ))
[ "$PER_PROC" -gt 15000 ] && PER_PROC=15000
[ "$PER_PROC" -gt 100 ] || die "fd hard limit $(ulimit -Hn) is too low"

# scenario NAME CONNECTIONS INTERFACES RATE ADDRS TRAFFIC [TCPTRACK-ARGS...]
# CONNECTIONS are split over ceil(CONNECTIONS / PER_PROC) client/server pairs
# (server k on port SRV_PORT + k), the RATE in proportion.
scenario() {
  local name=$1 conns=$2 ifaces=$3 rate=$4 addrs=$5 traffic=$6 i k
  shift 6
  local args=(--format none --no-process --prometheus "127.0.0.1:$PORT" -i 'ttfp*' "$@")
  local groups=$(( (conns + PER_PROC - 1) / PER_PROC ))
  [ "$groups" -ge 1 ] || groups=1
  log "scenario $name: $conns connections ($groups client/server pairs), $ifaces interfaces, tcptrack ${args[*]}"
  local srvs=() clis=() fds=()
  for k in $(seq 0 $((groups - 1))); do
    bg "$NS_N" /dev/null "$TMP/srv$k.out" "$TMP/srv$k.err" "$REQGEN" server --bind 0.0.0.0 \
      --port $((SRV_PORT + k))
    srvs+=("$BG_PID")
    wait_line "$TMP/srv$k.out" listening "$BG_PID" 10 || die "reqgen server: $(cat "$TMP/srv$k.err")"
  done
  bg "$NS_N" /dev/null /dev/null "$TMP/tt.err" "$TT" "${args[@]}"
  local tt=$BG_PID
  ns_n "${UTIL[@]}" fp-wait-attached ttfp "$ifaces" 60 ||
    die "tcptrack did not attach: $(cat "$TMP/tt.err")"
  ns_n "${UTIL[@]}" fp-wait-healthz "$METRICS/healthz" 30 ||
    die "tcptrack not healthy: $(cat "$TMP/tt.err")"
  local gen="none" f n
  if [ "$conns" -gt 0 ]; then
    for k in $(seq 0 $((groups - 1))); do
      n=$(( conns / groups + (k < conns % groups ? 1 : 0) ))
      rm -f "$TMP/ctl$k"
      mkfifo "$TMP/ctl$k"
      bg "$NS_P" "$TMP/ctl$k" "$TMP/cli$k.out" "$TMP/cli$k.err" "$REQGEN" client \
        --connect "$addrs" --port $((SRV_PORT + k)) --connections "$n" --size 16 \
        --rate "$(awk -v r="$rate" -v n="$n" -v c="$conns" 'BEGIN { print r * n / c }')" \
        --duration $((WARMUP + WINDOW + 5)) --control
      clis+=("$BG_PID")
      exec {f}>"$TMP/ctl$k"
      fds+=("$f")
    done
    for k in $(seq 0 $((groups - 1))); do
      wait_line "$TMP/cli$k.out" '^ready' "${clis[$k]}" 300 ||
        die "reqgen client $k: $(cat "$TMP/cli$k.err")"
    done
    log "  $(cat "$TMP"/cli*.out | awk '{ split($2, a, "="); n += a[2] } END { print n " connections ready" }')"
    for f in "${fds[@]}"; do echo go >&"$f"; done
  fi
  log "  warm-up ${WARMUP} s, then a ${WINDOW} s window, /metrics every ${INTERVAL} s"
  ns_n "${UTIL[@]}" fp-measure "$tt" "$METRICS/metrics" $INTERVAL "$WARMUP" "$WINDOW" \
    "scenario=$name" "connections=$conns" "interfaces=$ifaces" "traffic=$traffic" \
    "args=tcptrack ${args[*]}" >"$TMP/row.json" || die "measuring failed"
  kill -0 "$tt" 2>/dev/null || die "tcptrack exited: $(cat "$TMP/tt.err")"
  stop_pid "$tt"
  if [ "$conns" -gt 0 ]; then
    for k in $(seq 0 $((groups - 1))); do
      wait_line "$TMP/cli$k.out" '^done' "${clis[$k]}" 30 ||
        die "reqgen client $k: $(cat "$TMP/cli$k.err")"
    done
    gen=$(cat "$TMP"/cli*.out | awk '/^done/ { c++; for (i = 2; i <= NF; i++) { split($i, a, "="); v[a[1]] += a[2] } }
      END { printf "%d sends (%.0f/s) from %d client processes, %d skipped (send buffer full)", v["writes"], v["rate"], c, v["blocked"] }')
    for f in "${fds[@]}"; do exec {f}>&-; done  # the clients close their connections and exit
    for k in "${clis[@]}"; do
      for i in $(seq 300); do kill -0 "$k" 2>/dev/null || break; sleep 0.1; done
      stop_pid "$k"
    done
    rm -f "$TMP"/cli*.out
  fi
  for k in "${srvs[@]}"; do stop_pid "$k"; done
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); r["gen"] = sys.argv[2]; print(json.dumps(r))' \
    "$TMP/row.json" "$gen" >>"$TSV"
  log "  $(python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); print(" ".join(f"{k}={r[k]}" for k in ("tracked", "cpu_pct", "rss_kb_median", "hwm_kb", "kmem")))' "$TMP/row.json")"
}

: >"$TSV"
for s in $SCENARIOS; do
  case $s in
    idle) scenario "idle" 0 1 0 "" "none" ;;
    1k) scenario "1,000 connections" 1000 1 1000 10.252.0.1 \
          "16 B per connection per second (1,000 sends/s)" ;;
    100k) scenario "100,000 connections" 100000 1 10000 10.252.0.1 \
            "16 B per connection every 10 s (10,000 sends/s)" --max-flows 131072 ;;
    100if)
      ip -n "$NS_N" link show ttfp99 >/dev/null 2>&1 || veths 1 99
      scenario "100 interfaces" 1000 100 1000 "$(seq -s, -f '10.252.%g.1' 0 99)" \
        "10 connections per interface, 16 B per connection per second (1,000 sends/s)" ;;
    *) die "unknown scenario $s (idle 1k 100k 100if)" ;;
  esac
done

echo "## 8. Footprint as a node agent (bench/footprint.sh)"
echo
echo "The real tcptrack as deploy/kubernetes runs it (\`--format none --no-process --prometheus ADDR:PORT\`, the default 2 s interval, \`-i 'ttfp*'\`), in a network namespace of its own whose ttfp* interfaces are veths into a second namespace holding the clients; a fresh tcptrack per scenario, attached to every ttfp* interface (checked with bpftool) before the connections open, so it sees their handshakes. Load: bench/reqgen, real sockets opened and held, each sending 16 B (TCP_NODELAY) at the paced rate shown, to reqgen servers beside tcptrack that only read; split over client/server process pairs of at most $PER_PROC connections (a process's fd hard limit here is $(ulimit -Hn)), each pair on its own server port. After a ${WARMUP} s warm-up, a ${WINDOW} s window with /metrics scraped every ${INTERVAL} s (as Prometheus would; the warm-up is scraped too). CPU: utime + stime of /proc/PID/stat (all threads) over the window against the monotonic clock, as % of one core and in millicores; the classifiers' own time is not in it (the kernel charges it to whoever runs the packet's softirq, here the sender: bench/run.sh section 1 measures it per packet), and it is what the pod's CPU cgroup would be charged. RSS: VmRSS at each scrape (median), peak = VmHWM (the whole run, load included); anon = RssAnon at the end. Maps: memlock of the process's maps as bpftool reports it, allocated at load (so it depends on --max-flows and the CPU count, not on the connections), and projected to 64 CPUs with the kernel's formulas (section 7): since Linux 5.11 it is charged to the pod's memory cgroup with the RSS. The store's mmapped pages tcptrack reads (about 3 MB at a time) are counted in both RSS (as file/shmem) and maps, so RSS + maps overstates by that much. Tracked = tcptrack_store_flows at the last scrape."
echo
"${UTIL[@]}" fp-table "$TSV"
echo
