#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# A/B of tcptrack datapaths in the same runs: several tcptrack instances (two
# builds, or one build with different options) attached to one veth at once,
# so every instance sees the very same packets, and bpf_stats gives each its
# ns per run (skb) at each hook. Run as root:
#
#   bench/ab_instances.sh bulk|requests 'LABEL|BINARY|ARGS' ...
#
#   e.g. bench/ab_instances.sh requests 'off|build/tcptrack|--no-health' \
#          'on|build/tcptrack|' 'nolimit|build/tcptrack|--rtt-rate-limit 0'
#
# bulk: iperf3 for TTAB_DUR s (default 4); requests: bench/reqgen, TTAB_CONNS
# connections (default 1,000) sending 100 bytes in turn (the request scenario
# of bench/run.sh section 1). Instances run in the order given (TCX appends):
# a later one runs on packet data the earlier ones brought into the cache, so
# repeat with the order changed before trusting a few percent. One line per
# run: "LABEL: in NS eg NS | ...". Everything it makes is named ttab-*: both
# namespaces (so the veth) are deleted and its processes stopped on any exit,
# and bpf_stats is put back as it was. Not part of ctest.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODE=${1:?usage: $0 bulk|requests 'LABEL|BINARY|ARGS' ...}
shift
[ $# -ge 1 ] || { echo "usage: $0 bulk|requests 'LABEL|BINARY|ARGS' ..." >&2; exit 2; }
DUR=${TTAB_DUR:-4}
CONNS=${TTAB_CONNS:-1000}
REQGEN=${TTAB_REQGEN:-$(dirname "$HERE")/build/bench/reqgen}
NC=ttab-c NS=ttab-s TMP=$(mktemp -d /tmp/ttab.XXXXXX)
PIDS=()
STATS_PREV=$(sysctl -n kernel.bpf_stats_enabled)
# shellcheck source=bench/common.sh
source "$HERE/common.sh"

cleanup() {
  local p
  for p in "${PIDS[@]}"; do stop_pid "$p"; done
  ip netns del "$NC" 2>/dev/null || true
  ip netns del "$NS" 2>/dev/null || true
  sysctl -qw kernel.bpf_stats_enabled="$STATS_PREV"
  rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$NC"
ip netns add "$NS"
ip link add ttab-a netns "$NC" type veth peer name ttab-b netns "$NS"
ip -n "$NC" addr add 10.78.0.1/24 dev ttab-a
ip -n "$NS" addr add 10.78.0.2/24 dev ttab-b
for n in "$NC" "$NS"; do ip -n "$n" link set lo up; done
ip -n "$NC" link set ttab-a up
ip -n "$NS" link set ttab-b up
sysctl -qw kernel.bpf_stats_enabled=1

labels=()
k=0
for spec in "$@"; do
  IFS='|' read -r label bin args <<<"$spec"
  labels+=("$label")
  # shellcheck disable=SC2086  # ARGS is a list of options
  ip netns exec "$NS" "$bin" -i ttab-b --format json --interval 1 --max-flows 200000 \
    --no-process $args >/dev/null 2>"$TMP/err$k" &
  PIDS+=("$!")
  k=$((k + 1))
  for _ in $(seq 150); do  # attached: its tcptrack_in is loaded
    [ "$(bpftool prog show | grep -c 'name tcptrack_in ')" -ge "$k" ] && break
    kill -0 "${PIDS[-1]}" 2>/dev/null || { echo "$label: $(cat "$TMP/err$((k - 1))")" >&2; exit 1; }
    sleep 0.2
  done
done
sleep 1
# The instances' programs in load order: two per instance (ingress, egress).
ids=$(bpftool -j prog show | python3 -c '
import json, sys
p = sorted((x["id"] for x in json.load(sys.stdin)
            if x.get("name") in ("tcptrack_in", "tcptrack_eg")))
print(" ".join(map(str, p)))')
snap() {
  local id
  for id in $ids; do
    bpftool -j prog show id "$id" |
      python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["id"], d.get("run_time_ns", 0), d.get("run_cnt", 0))'
  done
}

if [ "$MODE" = bulk ]; then
  ip netns exec "$NS" iperf3 -s -1 >/dev/null 2>&1 &
  PIDS+=("$!")
  sleep 0.5
  snap >"$TMP/s0"
  ip netns exec "$NC" iperf3 -c 10.78.0.2 -t "$DUR" >/dev/null
  snap >"$TMP/s1"
elif [ "$MODE" = requests ]; then
  ip netns exec "$NS" "$REQGEN" server --bind 10.78.0.2 --port 9100 >/dev/null 2>&1 &
  PIDS+=("$!")
  sleep 0.5
  mkfifo "$TMP/ctl"
  ip netns exec "$NC" "$REQGEN" client --connect 10.78.0.2 --port 9100 --connections "$CONNS" \
    --size 100 --duration "$DUR" --control <"$TMP/ctl" >"$TMP/rq.out" 2>"$TMP/rq.err" &
  PIDS+=("$!")
  exec {ctl}>"$TMP/ctl"
  for _ in $(seq 300); do grep -q '^ready' "$TMP/rq.out" && break; sleep 0.1; done
  grep -q '^ready' "$TMP/rq.out" || { echo "reqgen: $(cat "$TMP/rq.err")" >&2; exit 1; }
  snap >"$TMP/s0"
  echo go >&"$ctl"
  for _ in $(seq $(((DUR + 20) * 10))); do grep -q '^done' "$TMP/rq.out" && break; sleep 0.1; done
  snap >"$TMP/s1"
  echo go >&"$ctl"
  exec {ctl}>&-
else
  echo "mode: bulk or requests, not '$MODE'" >&2
  exit 2
fi

python3 - "$TMP" "${labels[@]}" <<'PY'
import sys
tmp, labels = sys.argv[1], sys.argv[2:]
def read(name):
    return {l.split()[0]: list(map(int, l.split()[1:])) for l in open(f"{tmp}/{name}")}
a, b = read("s0"), read("s1")
ids = sorted(a, key=int)
out = []
for k, lab in enumerate(labels):
    ns = []
    for i in ids[2 * k:2 * k + 2]:
        runs = b[i][1] - a[i][1]
        ns.append((b[i][0] - a[i][0]) / max(runs, 1))
    out.append(f"{lab}: in {ns[0]:.0f} eg {ns[1]:.0f}")
print(" | ".join(out))
PY
