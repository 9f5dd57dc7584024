#!/usr/bin/env bash
# Collector benchmark: the collector's capture sink against tcpdump -w on a
# kernel VXLAN device (highest rate kept with zero loss, both fed by the same
# sender, interleaved rate by rate), and the replay's rate.
# Root; builds the release collector and the benchmark.
#
# The copies take the path they take to a collector pod: a sender namespace
# (the node) -> veth -> the receivers' namespace (the pod), one datagram per
# packet (the sender's GSO runs are cut at the veth, as a NIC sends them; the
# pod's veth has no GRO, the CNI default). The sender has CPU 0; each
# receiver has the last CPU for all its work, kernel and user: RPS moves the
# veth's receive processing there and the receivers are pinned to it. The
# collector runs three times: with its UDP sockets, with its AF_XDP input
# (--xdp-iface eth0 --xdp-mode generic: generic so that the program runs in
# that same receive processing, on the receivers' CPU), and with its ring
# input (--ring-iface eth0). Files on tmpfs.
#
# Then the receive cost: each receiver's CPU time per copy with its output
# discarded, against the floor (a TC program, bench/collector/floor.bpf.c,
# dropping every copy before any receiver sees it).
#
#   bench/collector/run.sh           full run, writes bench/collector/RESULTS.md
#   bench/collector/run.sh --quick   short steps, one trial, prints only
#
# Extra arguments go to the benchmark (see its --help), e.g. --trials 5.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" -eq 0 ] || { echo "bench: needs root (network namespaces)" >&2; exit 1; }
./scripts/install-deps.sh
QUICK=0
if [ "${1:-}" = "--quick" ]; then QUICK=1; shift; fi
cargo build -q --release -p podmirror-collector --example bench --bin podmirror-collector
OUT="${CARGO_TARGET_DIR:-$PWD/target}/release"
MULTIARCH="$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)"
clang-19 -target bpf -O2 -g -Wall -Werror "-I/usr/include/$MULTIARCH" -c bench/collector/floor.bpf.c -o "$OUT/pm_bench_floor.bpf.o"
NODE="pmcn$$"
NS="pmcb$$"
DIR="$(mktemp -d /dev/shm/podmirror-bench.XXXXXX)"
trap 'ip netns del "$NS" 2>/dev/null || true; ip netns del "$NODE" 2>/dev/null || true; rm -rf "$DIR"' EXIT
RX_CPU=$(($(nproc) - 1))
ip netns add "$NODE"
ip netns add "$NS"
ip link add eth0 netns "$NODE" type veth peer name eth0 netns "$NS"
for ns in "$NODE" "$NS"; do
  ip -n "$ns" link set lo up
  # Room for a VXLAN copy of a 1500-byte frame.
  ip -n "$ns" link set eth0 mtu 1600 up
done
ip -n "$NODE" addr add 10.99.0.1/24 dev eth0
ip -n "$NS" addr add 10.99.0.2/24 dev eth0
ip netns exec "$NODE" ethtool -K eth0 tx-udp-segmentation off >/dev/null
ip netns exec "$NS" sh -c "printf '%x' $((1 << RX_CPU)) > /sys/class/net/eth0/queues/rx-0/rps_cpus"
# The kernel's VXLAN device on port 4789: what a user sets up to run tcpdump.
ip netns exec "$NS" ip link add vx0 type vxlan id 1 local 10.99.0.2 dev eth0 dstport 4789 nolearning
ip netns exec "$NS" ip link set vx0 up
args=(vx0 "$DIR" --collector-bin "$OUT/podmirror-collector" --sender-netns "$NODE" --to 10.99.0.2
  --sender-threads 1 --sender-cpus 0 --receiver-cpus "$RX_CPU" --xdp-iface eth0 --ring-iface eth0
  --floor-obj "$OUT/pm_bench_floor.bpf.o")
if [ "$QUICK" = 1 ]; then
  # Quick defaults, unless given on the command line.
  for kv in --rates=200000,300000,400000,500000,600000,800000 --step-secs=0.5 --trials=1 --replay-posts=50 \
    --cost-rounds=1 --cost-secs=1; do
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
  echo "Copies from a sender namespace over a veth into the receivers' namespace, to the kernel VXLAN device (tcpdump) or the collector (its UDP sockets, its AF_XDP input, its ring input)."
  echo
  echo "$report"
)"
if [ "$QUICK" = 1 ]; then
  echo "$text"
else
  # The reference replayer's section is measured by hand: keep it.
  kept="$(sed -n '/^## Reference replayer/,$p' bench/collector/RESULTS.md 2>/dev/null || true)"
  { echo "$text"; [ -z "$kept" ] || printf '\n%s\n' "$kept"; } >bench/collector/RESULTS.md
  python3 bench/collector/summary.py
  cat bench/collector/RESULTS.md
fi
