#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install, build and run every test tier (unit, bpf, e2e, compat, kernels) with ctest.
# As root all tiers run; otherwise the privileged tiers report themselves skipped.
# Then the unit, BPF and e2e tiers again in build-asan (-DTCPTRACK_SANITIZE=ON: ASan + UBSan).
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
rc=0
(cd build && ctest --output-on-failure --timeout 900 "$@") || rc=$?
# The sanitizer tier: the same unit, BPF and e2e tiers (not compat, the kernel matrix,
# packaging, or the e2e suites rerun through legacy tc: label tc_fallback, see
# tests/e2e/CMakeLists.txt) built with AddressSanitizer + UBSan in build-asan; any
# sanitizer report fails. TCPTRACK_SKIP_SANITIZE=1 leaves it out.
if [ "${TCPTRACK_SKIP_SANITIZE:-0}" != 1 ]; then
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTCPTRACK_SANITIZE=ON >/dev/null
  cmake --build build-asan -j"$(nproc)"
  (cd build-asan && ctest --output-on-failure --timeout 900 -LE tc_fallback "$@") || rc=$?
fi
exit "$rc"
