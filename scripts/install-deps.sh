#!/usr/bin/env bash
# Installs everything podmirror's build, tests, demo and benchmarks need on a
# fresh Debian 12 machine (root). Idempotent: a second run only checks.
set -euo pipefail

need_apt=()
want() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }
want clang-19 clang-19
want llvm-strip-19 llvm-19
want tcpdump tcpdump
want tshark tshark
want iperf3 iperf3
want ip iproute2
want ethtool ethtool
want nc netcat-openbsd
want jq jq
[ -e /usr/include/bpf/bpf_helpers.h ] || need_apt+=(libbpf-dev)
[ -e /usr/include/linux/bpf.h ] || need_apt+=(linux-libc-dev)
python3 -c 'import yaml' 2>/dev/null || need_apt+=(python3-yaml)

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: need root to apt-get install: ${need_apt[*]}" >&2
    exit 1
  fi
  echo "install-deps: apt-get install ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer no, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
