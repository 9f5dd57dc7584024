#!/usr/bin/env bash
# `make bench`: build the agent (release) and run bench/bench.py as root.
# Writes bench/results/latest.json and bench/RESULTS.md. about 20 minutes (5 rounds).
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces, eBPF)" >&2; exit 1; }
./scripts/install-deps.sh
command -v bpftool >/dev/null || { apt-get install -y -qq --no-install-recommends bpftool >/dev/null; }
if [ -z "${PODMIRROR_AGENT:-}" ]; then
  cargo build -q --release -p podmirror-agent --bin podmirror-agent
  PODMIRROR_AGENT="${CARGO_TARGET_DIR:-$PWD/target}/release/podmirror-agent"
fi
exec python3 bench/bench.py --agent "$PODMIRROR_AGENT" "$@"
