#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# The bash completion: parses (bash -n), offers exactly the options of
# `tcptrack --help`, completes the values of -i/--format/--attach/--sort/--netns
# (also as --opt=value) and the filter's words after the options.
set -u
binary=$1 comp=$2
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

bash -n "$comp" || { echo "FAIL: bash -n $comp"; exit 1; }
# shellcheck source=/dev/null
source "$comp"
complete -p tcptrack >/dev/null 2>&1 || fail "no 'complete' registered for tcptrack"

# complete WORD... : the command line up to the cursor, the last word being completed.
complete_words() {
    COMP_WORDS=(tcptrack "$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="${COMP_WORDS[*]}"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _tcptrack
    printf '%s\n' "${COMPREPLY[@]}" | sed '/^$/d' | sort | tr '\n' ' ' | sed 's/ $//'
}
expect() {  # expect "want" word...
    local want=$1 got
    shift
    got=$(complete_words "$@")
    [ "$got" = "$want" ] || fail "tcptrack $* <TAB>: got '$got', want '$want'"
}

# Every option of --help, and nothing else.
help_opts=$("$binary" --help | sed -n 's/^ \{1,\}\(-[^ ]*\).*/\1/p' | tr ',' '\n' | grep '^-' | sort | tr '\n' ' ' | sed 's/ $//')
[ "$(wc -w <<<"$help_opts")" -ge 10 ] || fail "cannot read --help's options: '$help_opts'"
expect "$help_opts" -

expect "--format" --for
expect "csv json none table" --format ""
expect "json" --format = j
expect "json" --format = "j"
expect "auto tc tcx" --attach ""
expect "rate retrans rtt" --sort r
expect "" --top ""
expect "" --interval ""
expect "" --unassured-timeout ""

ifaces=$(ls /sys/class/net | sort | tr '\n' ' ' | sed 's/ $//')
expect "$ifaces" -i ""
expect "lo" --interface l
netns=$( (ls /run/netns 2>/dev/null || true) | sort | tr '\n' ' ' | sed 's/ $//')
expect "$netns" --netns ""
expect "/proc/self/ns/net" --netns /proc/self/ns/ne

# The filter after the options.
expect "port portrange" -i lo po
expect "and" -i lo port 80 a
expect "" -i lo port ""
expect "dst" --format json d
expect "net not" -i lo n
# After "--" words starting with '-' are the filter's, not options.
expect "" -- -
expect "--once" --on
# A flag, not a value: after it the next option (or the filter) completes.
expect "--prometheus --prometheus-pods" --prometheus
expect "--prometheus-pods" --prometheus 127.0.0.1:9464 --prometheus-

if [ "$fails" -gt 0 ]; then
    echo "$fails completion check(s) failed"
    exit 1
fi
echo "bash completion: $(wc -w <<<"$help_opts") options of --help, values and filter words complete"
