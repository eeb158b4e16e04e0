#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs everything tcptrack needs to build, test and benchmark, from Debian only.
# Idempotent: re-running changes nothing once the packages are in place.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then exec sudo -E bash "$0" "$@"; fi
  echo "setup.sh: must run as root (apt-get install)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")

# Find the Debian mirror this machine already uses, so backports come from the same place.
mirror_uri() {
  local f
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    # deb822: a stanza whose Suites include "$codename" (not -security).
    awk -v cn="$codename" '
      BEGIN { RS=""; FS="\n" }
      {
        uri=""; ok=0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); split($i, u, /[ \t]+/); uri=u[1] }
          if ($i ~ /^Suites:/) { n=split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == cn) ok=1 }
        }
        if (ok && uri != "") { print uri; exit }
      }' "$f"
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    awk -v cn="$codename" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) == cn) { print $i; exit } } }' "$f"
  done
}

bp_list=/etc/apt/sources.list.d/tcptrack-backports.sources
if ! grep -rqs "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  uri=$(mirror_uri | head -n 1)
  if [ -z "$uri" ]; then
    echo "setup.sh: cannot find the Debian mirror for ${codename} in /etc/apt/sources*" >&2
    exit 1
  fi
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  {
    echo "Types: deb"
    echo "URIs: $uri"
    echo "Suites: ${codename}-backports"
    echo "Components: main"
    [ -e "$keyring" ] && echo "Signed-By: $keyring"
  } >"$bp_list"
  echo "setup.sh: added ${codename}-backports from $uri"
fi

# Only hit the network when something is missing. --bench adds the peers bench/ compares against.
pkgs=(build-essential cmake pkg-config clang llvm clang-format libelf-dev zlib1g-dev
      libcli11-dev libfmt-dev nlohmann-json3-dev libmnl-dev libncurses-dev libgtest-dev libgmock-dev googletest
      iproute2 iperf3 python3 procps libcap2-bin qemu-system-x86 busybox-static tmux
      dpkg-dev groff-base man-db libfixbuf-dev nfdump prometheus-cpp-dev libcivetweb-dev prometheus
      buildah umoci skopeo python3-yaml)
[ "${1:-}" = "--bench" ] && pkgs+=(iftop tcptrack)
bp_pkgs=(libbpf-dev bpftool)

missing=()
for p in "${pkgs[@]}"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p"); done
need_bp=0
bpf_ver=$(dpkg-query -W -f='${Version}' libbpf-dev 2>/dev/null || true)
if [ -z "$bpf_ver" ] || dpkg --compare-versions "$bpf_ver" lt 1:1.4; then need_bp=1; fi
command -v bpftool >/dev/null 2>&1 && bpftool version >/dev/null 2>&1 || need_bp=1

if [ ${#missing[@]} -gt 0 ] || [ $need_bp -eq 1 ]; then
  apt-get update -qq
  [ ${#missing[@]} -gt 0 ] && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ $need_bp -eq 1 ]; then
    apt-get install -y -qq --no-install-recommends -t "${codename}-backports" "${bp_pkgs[@]}" >/dev/null
  fi
fi
echo "setup.sh: libbpf $(dpkg-query -W -f='${Version}' libbpf-dev), $(bpftool version 2>/dev/null | head -n 1)"
