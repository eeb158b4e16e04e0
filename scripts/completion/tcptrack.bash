# SPDX-License-Identifier: MIT
# bash completion for tcptrack(8). Installed as
# share/bash-completion/completions/tcptrack (loaded on first use); works
# without the bash-completion package too: `source tcptrack.bash`.
# tests/packaging/completion_test.sh fails when an option of --help is missing here.

_tcptrack_options='-h --help -i --interface --interval --count --format --attach
    --max-flows --max-interfaces --all-interfaces --idle-timeout --unassured-timeout --sort --top --netns --once --summary --no-process --no-health --rtt-rate-limit
    -r --resolve --closed --changed --cleanup --check -v --verbose --version
    --prometheus --prometheus-pods --ipfix --ipfix-active-timeout --node-name'
# Words of the filter expression (tcptrack(8) FILTERS).
_tcptrack_filter_words='host net port portrange src dst and or not'

_tcptrack() {
    local cur=${COMP_WORDS[COMP_CWORD]} prev='' i
    ((COMP_CWORD > 0)) && prev=${COMP_WORDS[COMP_CWORD - 1]}
    # "--format=js": bash splits at '=' (COMP_WORDBREAKS), giving "--format" "=" "js".
    if [[ $cur == '=' ]]; then
        cur=''
    elif [[ $prev == '=' ]] && ((COMP_CWORD > 1)); then
        prev=${COMP_WORDS[COMP_CWORD - 2]}
    fi
    COMPREPLY=()

    case $prev in
    -i | --interface)
        local ifaces=() d
        # The interfaces of our own namespace (with --netns they live elsewhere).
        for d in /sys/class/net/*; do [[ -e $d ]] && ifaces+=("${d##*/}"); done
        mapfile -t COMPREPLY < <(compgen -W "${ifaces[*]}" -- "$cur")
        return
        ;;
    --format)
        mapfile -t COMPREPLY < <(compgen -W 'table json csv none' -- "$cur")
        return
        ;;
    --attach)
        mapfile -t COMPREPLY < <(compgen -W 'auto tcx tc' -- "$cur")
        return
        ;;
    --sort)
        mapfile -t COMPREPLY < <(compgen -W 'rate bytes packets age rtt retrans' -- "$cur")
        return
        ;;
    --netns)
        if [[ $cur == */* ]]; then
            # A path to a namespace file (/proc/PID/ns/net, a bind mount).
            compopt -o filenames 2>/dev/null
            mapfile -t COMPREPLY < <(compgen -f -- "$cur")
        else
            local names=() n
            for n in /run/netns/*; do [[ -e $n ]] && names+=("${n##*/}"); done
            mapfile -t COMPREPLY < <(compgen -W "${names[*]}" -- "$cur")
        fi
        return
        ;;
    --interval | --count | --max-flows | --max-interfaces | --idle-timeout | --unassured-timeout | --rtt-rate-limit | --top | --ipfix-active-timeout)
        return # a number
        ;;
    --prometheus)
        return # ADDR:PORT to listen on
        ;;
    --node-name)
        return # a name
        ;;
    --ipfix)
        return # udp://HOST:PORT or tcp://HOST:PORT
        ;;
    host | net | port | portrange)
        return # an address, network or port of the filter
        ;;
    esac

    # After "--" everything is the filter expression.
    local dashes=0
    for ((i = 1; i < COMP_CWORD; i++)); do
        [[ ${COMP_WORDS[i]} == -- ]] && dashes=1
    done
    if [[ $cur == -* && $dashes == 0 ]]; then
        mapfile -t COMPREPLY < <(compgen -W "$_tcptrack_options" -- "$cur")
    else
        mapfile -t COMPREPLY < <(compgen -W "$_tcptrack_filter_words" -- "$cur")
    fi
}
complete -F _tcptrack tcptrack
