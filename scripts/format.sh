#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# clang-format over every C/C++ source we write: C++ (src/, tests/unit, tests/bpf, bench/*.cpp)
# in the root .clang-format's style, kernel-side C (bpf/, include/, bench/*.c) in
# bpf/.clang-format's, so one style holds everywhere without anyone hand-formatting.
#   scripts/format.sh           reformat those files in place
#   scripts/format.sh --check   change nothing; list the misformatted files, exit 1 if any
#                               (ctest format_check; CI gets clang-format from scripts/setup.sh)
# Files are found by glob, so new files are covered. CLANG_FORMAT picks another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
cf=${CLANG_FORMAT:-clang-format}
case "$*" in "" | --check) ;; *) echo "usage: scripts/format.sh [--check]" >&2; exit 2 ;; esac
if ! command -v "$cf" >/dev/null 2>&1; then
  echo "format.sh: $cf not found (scripts/setup.sh installs Debian's clang-format 14)" >&2
  exit 1
fi

shopt -s globstar nullglob
cxx=(src/**/*.cpp src/**/*.hpp tests/unit/**/*.cpp tests/unit/**/*.hpp
     tests/bpf/**/*.cpp tests/bpf/**/*.hpp bench/*.cpp bench/*.hpp)
kernel=(bpf/**/*.c bpf/**/*.h include/**/*.h bench/*.c)

if [ "${1:-}" = "--check" ]; then
  # --dry-run --Werror: one "file:line:col: error: ..." per misformatted spot; list the files.
  rc=0
  log=$("$cf" --style=file --dry-run --Werror "${cxx[@]}" 2>&1) || rc=1
  log+=$'\n'$("$cf" --style=file:bpf/.clang-format --dry-run --Werror "${kernel[@]}" 2>&1) || rc=1
  [ $rc -eq 0 ] && exit 0
  bad=$(sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: error: code should be clang-formatted.*/\1/p' \
        <<<"$log" | sort -u)
  if [ -n "$bad" ]; then
    echo "$bad"
    echo "format.sh: $(wc -l <<<"$bad") file(s) not clang-formatted ($("$cf" --version)):" \
         "run scripts/format.sh" >&2
  else
    echo "$log" >&2  # clang-format itself failed (a bad .clang-format, an unreadable file)
  fi
  exit 1
fi
"$cf" --style=file -i "${cxx[@]}"
"$cf" --style=file:bpf/.clang-format -i "${kernel[@]}"
