#!/usr/bin/env bash
# Collector benchmark: the collector's capture sink against tcpdump -w on a
# kernel VXLAN device (highest rate kept with zero loss, both fed by the same
# multi-threaded sender, interleaved rate by rate), and the replay's rate.
# Root; builds the release collector and the benchmark; runs them in a fresh
# network namespace with a kernel VXLAN device; files on tmpfs.
#
#   bench/collector/run.sh           full run, writes bench/collector/RESULTS.md
#   bench/collector/run.sh --quick   short steps, one trial, prints only
#
# Extra arguments go to the benchmark (see its --help), e.g.
# --sender-threads 2 --sender-cpus 0,1 --receiver-cpus 1.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
cargo build -q --release -p podmirror-collector --example bench --bin podmirror-collector
OUT="${CARGO_TARGET_DIR:-$PWD/target}/release"
NS="pmcb$$"
DIR="$(mktemp -d /dev/shm/podmirror-bench.XXXXXX)"
trap 'ip netns del "$NS" 2>/dev/null || true; rm -rf "$DIR"' EXIT
ip netns add "$NS"
ip netns exec "$NS" ip link set lo up
# The kernel's VXLAN device on port 4789: what a user sets up to run tcpdump.
ip netns exec "$NS" ip link add vx0 type vxlan id 1 local 127.0.0.1 dstport 4789 nolearning
ip netns exec "$NS" ip link set vx0 up
args=(vx0 "$DIR" --collector-bin "$OUT/podmirror-collector")
if [ "$QUICK" = 1 ]; then
  # Quick defaults, unless given on the command line.
  for kv in --rates=200000,300000,400000,500000,600000,800000 --step-secs=0.5 --trials=1 --replay-posts=50; do
    case " $* " in *" ${kv%%=*} "*) ;; *) args+=("${kv%%=*}" "${kv#*=}") ;; esac
  done
fi
started="$(date -u '+%Y-%m-%d %H:%M UTC')"
t0=$SECONDS
report="$(ip netns exec "$NS" "$OUT/examples/bench" "${args[@]}" "$@")"
took=$((SECONDS - t0))
text="$(
  echo "# podmirror-collector benchmark"
  echo
  echo "Command: \`bench/collector/run.sh $*\` (root). Run: $started, ${took}s, kernel $(uname -r), $(nproc) CPUs (shared: expect noise)."
  echo "Copies on loopback in a network namespace, to the kernel VXLAN device (tcpdump) or the collector's socket."
  echo
  echo "$report"
)"
if [ "$QUICK" = 1 ]; then
  echo "$text"
else
  # The reference replayer's section is measured by hand: keep it.
  kept="$(sed -n '/^## Reference replayer/,$p' bench/collector/RESULTS.md 2>/dev/null || true)"
  { echo "$text"; [ -z "$kept" ] || printf '\n%s\n' "$kept"; } >bench/collector/RESULTS.md
  cat bench/collector/RESULTS.md
fi
