# SPDX-License-Identifier: MIT
# Shell pieces bench/run.sh and bench/footprint.sh share (sourced; both keep
# the background processes they start in PIDS).

# stop_pid PID [SIGNAL]: signal, wait up to STOP_PID_WAIT tenths of a second
# (default 50), then SIGKILL; forget it.
stop_pid() {
  local pid=$1 sig=${2:-INT} i
  kill -"$sig" "$pid" 2>/dev/null || true
  for i in $(seq "${STOP_PID_WAIT:-50}"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  local keep=() p
  for p in "${PIDS[@]}"; do [ "$p" = "$pid" ] || keep+=("$p"); done
  PIDS=("${keep[@]}")
}
