#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Install, build and run every test tier (unit, bpf, e2e) with ctest.
# As root all tiers run; otherwise the privileged tiers report themselves skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
cd build
ctest --output-on-failure --timeout 900 "$@"
