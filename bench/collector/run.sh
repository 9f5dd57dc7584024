#!/usr/bin/env bash
# Collector benchmark (issue: the collector's capture sink against tcpdump -w
# on a kernel VXLAN device, and the replay's rate). Root; builds the release
# example; runs it in a fresh network namespace with a kernel VXLAN device;
# writes bench/collector/RESULTS.md. About a minute.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
cargo build -q --release -p podmirror-collector --example bench
BIN="${CARGO_TARGET_DIR:-$PWD/target}/release/examples/bench"
NS="pmcb$$"
DIR="$(mktemp -d /dev/shm/podmirror-bench.XXXXXX)"
trap 'ip netns del "$NS" 2>/dev/null || true; rm -rf "$DIR"' EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# The kernel's VXLAN device on port 4789: what a user sets up to run tcpdump.
ip netns exec "$NS" ip link add vx0 type vxlan id 1 local 127.0.0.1 dstport 4789 nolearning
ip netns exec "$NS" ip link set vx0 up
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
report="$(ip netns exec "$NS" "$BIN" vx0 "$DIR")"
{
  echo "# podmirror-collector benchmark"
  echo
  echo "Command: \`bench/collector/run.sh\` (root). Run: $started, kernel $(uname -r), $(nproc) CPUs (shared: expect noise)."
  echo "Copies on loopback in a network namespace; files on tmpfs for both receivers; each rate step sends 1 s of copies"
  echo "(2 of 3 with a 1448-byte TCP payload) to each receiver in turn, up to 3 trials; a rate is kept when a trial loses"
  echo "nothing; a receiver stops at its first rate lost in every trial."
  echo
  echo "$report"
} >bench/collector/RESULTS.md
cat bench/collector/RESULTS.md
