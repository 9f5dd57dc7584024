# Shared by scripts/demo.sh and scripts/demo-collector.sh (sourced, not run):
# messages, the root check, and a node namespace with routed pods behind
# veths, all removed on exit. The caller sets TAG and NODE_IP first, and
# AGENT before the first pod is made.

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { printf '\033[31mdemo: %s\033[0m\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (network namespaces, eBPF). Try: sudo make demo"

NODE="$TAG-node"
PIN_DIR="/sys/fs/bpf/$TAG"
WORK="$(mktemp -d "/tmp/podmirror-$TAG.XXXXXX")"
PIDS=()
NAMESPACES=()

# Background processes, the agent's datapath, the namespaces and the work
# dir, removed on exit (also on Ctrl-C).
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if ip netns list | grep -qw "$NODE"; then
    nsenter --net="/run/netns/$NODE" "$AGENT" --cleanup --pin-dir "$PIN_DIR" --device-prefix "$TAG" >/dev/null 2>&1 || true
  fi
  for ns in "${NAMESPACES[@]}" "$NODE"; do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "$PIN_DIR" "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The node namespace, forwarding on, with its own address NODE_IP (the
# copies' outer source).
make_node() {
  ip netns add "$NODE"
  ip netns exec "$NODE" ip link set lo up
  ip netns exec "$NODE" sysctl -qw net.ipv4.ip_forward=1
  ip netns exec "$NODE" ip addr add "$NODE_IP/32" dev lo
}

# make_pod NAMESPACE ADDRESS HOST_VETH MTU: a routed CNI in miniature, a
# veth per pod, a /32 route on the node, proxy ARP on the host side (the
# shape Calico uses), answered at once (the default delays it up to 0.8 s).
make_pod() {
  local ns=$1 addr=$2 host=$3 mtu=$4
  NAMESPACES+=("$ns")
  ip netns add "$ns"
  ip netns exec "$ns" ip link set lo up
  ip netns exec "$NODE" ip link add "$host" type veth peer name eth0 netns "$ns"
  ip netns exec "$NODE" sysctl -qw "net.ipv4.conf.$host.proxy_arp=1"
  ip netns exec "$NODE" sysctl -qw "net.ipv4.neigh.$host.proxy_delay=0"
  ip netns exec "$NODE" ip link set "$host" mtu "$mtu" up
  ip netns exec "$ns" ip link set eth0 mtu "$mtu" up
  ip netns exec "$ns" ip addr add "$addr/32" dev eth0
  ip netns exec "$ns" ip route add default dev eth0
  ip netns exec "$NODE" ip route add "$addr/32" dev "$host"
  printf '  %-22s %-15s host veth %s\n' "${ns#"$TAG-"}" "$addr" "$host"
}
