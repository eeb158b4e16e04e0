#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Peak RSS (VmHWM) of the real tcptrack binary holding N flows (issue 20): a
# tcptrack on one end of a veth pair in a throwaway namespace, its slot store
# filled with N distinct SYNs through its own classifier (bench/fill_flows,
# BPF_PROG_TEST_RUN) while tcptrack is stopped (SIGSTOP), then left to print
# REPORTS reports: the first sees every flow new. Prints a markdown table: one row per set of arguments.
#
#   sudo bench/peak_rss.sh [BUILD_DIR [TCPTRACK ARGS...]]   (env: FLOWS=1000000 REPORTS=3)
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
BUILD=${1:-$HERE/../build}
TT=$BUILD/tcptrack
FILL=$BUILD/bench/fill_flows
FLOWS=${FLOWS:-1000000}
REPORTS=${REPORTS:-3}
MAX=$((FLOWS + FLOWS / 8))
NS=ttrep-peak$$
PID=

cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  ip netns del "$NS" 2>/dev/null || true
}
trap cleanup EXIT
ip netns add "$NS"
ip -n "$NS" link add ttp0 type veth peer name ttp1
ip -n "$NS" link set ttp0 up
ip -n "$NS" link set ttp1 up

kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/status"; }

# measure ARGS...: one tcptrack with these arguments; prints a table row.
measure() {
  ip netns exec "$NS" "$TT" -i ttp0 --interval 1 --max-flows "$MAX" --idle-timeout 3600 \
    --unassured-timeout 3600 "$@" >/dev/null 2>"/tmp/$NS.err" &
  PID=$!
  local id= i
  for i in $(seq 100); do
    id=$(ip netns exec "$NS" bpftool net show dev ttp0 -j |
      python3 -c 'import json,sys
for e in json.load(sys.stdin):
    for t in e.get("tc", []):
        if t["name"].startswith("tcptrack_in"): print(t["prog_id"])')
    [ -n "$id" ] && break
    sleep 0.1
  done
  [ -n "$id" ] || { echo "tcptrack did not attach: $(cat "/tmp/$NS.err")" >&2; exit 1; }
  sleep 1.5
  local before fill
  before=$(kb VmHWM)
  # Stopped while filling, so its next report sees every flow new at once.
  kill -STOP "$PID"
  fill=$("$FILL" --prog-id "$id" --count "$FLOWS")
  kill -CONT "$PID"
  sleep $((REPORTS + 1))
  printf '| `%s` | %s | %.0f | %.0f | %.0f |\n' "$*" "${fill##*holds }" "$((before / 1024))" \
    "$(($(kb VmRSS) / 1024))" "$(($(kb VmHWM) / 1024))"
  kill "$PID"
  wait "$PID" 2>/dev/null || true
  PID=
}

echo "| tcptrack arguments (+ --interval 1 --max-flows $MAX --idle-timeout 3600 --unassured-timeout 3600) | after fill_flows --count $FLOWS | VmHWM before, MB | VmRSS after $REPORTS reports, MB | VmHWM, MB |"
echo "|---|---|---:|---:|---:|"
if [ $# -gt 1 ]; then  # one set of arguments given after BUILD_DIR
  measure "${@:2}"
else
  measure --format json --changed
  measure --format json --changed --no-process
  measure --format json
  measure --format csv
fi
