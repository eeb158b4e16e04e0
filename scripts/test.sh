#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install, build and run every test tier (unit, bpf, e2e, compat, kernels) with ctest.
# As root all tiers run; otherwise the privileged tiers report themselves skipped.
#   scripts/test.sh [CTEST ARGS]             everything
#   scripts/test.sh --kernels [CTEST ARGS]   only the kernel matrix (tests/kernels/run.sh):
#                                            builds just what it boots, runs ctest -L kernels
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--kernels" ]; then
  shift
  bash scripts/setup.sh
  cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build build -j"$(nproc)" --target tcptrack bpf_tests tt_conn
  cd build
  # -V: the per-kernel lines ("kernel 5.10...: N passed, M failed") are the point.
  exec ctest -L kernels -V --timeout 900 "$@"
fi
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
