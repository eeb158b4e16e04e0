#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs dependencies (Debian packages) and builds tcptrack into ./build.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh "$@"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)"
