#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Quick start: install, build, and run tcptrack on the default-route interface.
# Extra arguments go to tcptrack (e.g. --once --format json).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >&2
exec ./build/tcptrack "$@"
