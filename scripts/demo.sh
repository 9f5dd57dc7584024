#!/usr/bin/env bash
# podmirror demo: the seed scenario of docs/concepts.md on network namespaces.
#
#   ecs-test 192.168.0.161 --nc--> ecs-source 192.168.0.230:1234 (nc -l 1234)
#   the node (a namespace too) runs podmirror-agent --standalone examples/seed-scenario/
#   ecs-target 192.168.0.164 captures the copies: tcpdump -nne udp port 4789
#
# Everything lives in namespaces this script creates (nothing is routed
# through the machine's own interfaces) and is removed on exit, also on
# Ctrl-C. Exits non-zero when the capture does not show what seed 000
# table 6 shows. Needs root. Environment: PODMIRROR_PROFILE (release|debug),
# CARGO_TARGET_DIR, PODMIRROR_AGENT (a prebuilt binary; skips the build).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

TAG="pmsa$$"
NODE_IP=172.31.255.1
# shellcheck source=scripts/demo-lib.sh
. "$ROOT/scripts/demo-lib.sh"

# --- build what we need -----------------------------------------------------
if [ -z "${PODMIRROR_AGENT:-}" ]; then
  ./scripts/install-deps.sh
  PROFILE="${PODMIRROR_PROFILE:-release}"
  say "building podmirror-agent ($PROFILE)"
  if [ "$PROFILE" = release ]; then
    cargo build -q --release -p podmirror-agent --bin podmirror-agent
  else
    cargo build -q -p podmirror-agent --bin podmirror-agent
  fi
  PODMIRROR_AGENT="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/podmirror-agent"
fi
AGENT="$PODMIRROR_AGENT"
[ -x "$AGENT" ] || die "no agent binary at $AGENT"
for tool in ip nc tcpdump nsenter; do command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh installs it)"; done

TEST="$TAG-ecs-test"; SRC="$TAG-ecs-source"; TGT="$TAG-ecs-target"

# --- the topology -----------------------------------------------------------
say "creating the seed scenario on network namespaces ($TAG-*)"
make_node
i=0
for pod in "$TEST:192.168.0.161" "$SRC:192.168.0.230" "$TGT:192.168.0.164"; do
  make_pod "${pod%%:*}" "${pod##*:}" "${TAG}h$i" 1500
  i=$((i + 1))
done

# --- the agent --------------------------------------------------------------
say "podmirror-agent --standalone examples/seed-scenario/"
ls examples/seed-scenario/
# nsenter --net, not `ip netns exec`: the latter remounts /sys, hiding the
# host's bpffs where the agent pins its datapath.
nsenter --net="/run/netns/$NODE" "$AGENT" --standalone examples/seed-scenario \
  --pin-dir "$PIN_DIR" --device-prefix "$TAG" --node-ipv4 "$NODE_IP" \
  --metrics-addr 127.0.0.1:9090 --cleanup-on-exit >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")

metrics() {
  ip netns exec "$NODE" bash -c 'exec 3<>/dev/tcp/127.0.0.1/9090 && printf "GET /metrics HTTP/1.0\r\n\r\n" >&3 && cat <&3' 2>/dev/null || true
}
programmed=""
for _ in $(seq 1 100); do
  kill -0 "$AGENT_PID" 2>/dev/null || { cat "$WORK/agent.log" >&2; die "the agent exited"; }
  programmed="$(metrics | grep '^podmirror_programmed_interfaces{' || true)"
  [ -n "$programmed" ] && break
  sleep 0.2
done
[ -n "$programmed" ] || { cat "$WORK/agent.log" >&2; die "the agent did not program ecs-source's veth in 20 s"; }
echo "  $programmed"

# --- traffic and capture ----------------------------------------------------
say "ecs-target: tcpdump -nne udp port 4789"
ip netns exec "$TGT" tcpdump -i eth0 -nne -U -w "$WORK/copies.pcap" udp port 4789 2>"$WORK/tcpdump.err" &
PIDS+=("$!")
for _ in $(seq 1 50); do grep -q "listening on" "$WORK/tcpdump.err" 2>/dev/null && break; sleep 0.1; done

say "ecs-source: nc -l 1234    ecs-test: nc 192.168.0.230 1234, typing hello, then 12345"
ip netns exec "$SRC" nc -l 1234 >"$WORK/received.txt" &
NC_PID=$!
PIDS+=("$NC_PID")
sleep 0.3
# Type slowly enough for one segment per line, as a person would.
{ sleep 1; echo hello; sleep 1; echo 12345; sleep 1; } | ip netns exec "$TEST" nc -N -w 5 192.168.0.230 1234
for _ in $(seq 1 30); do kill -0 "$NC_PID" 2>/dev/null || break; sleep 0.1; done
sleep 1.5   # the agent publishes counters every second
kill -INT "${PIDS[1]}" 2>/dev/null || true
wait "${PIDS[1]}" 2>/dev/null || true

say "what ecs-source received (the original, untouched)"
sed 's/^/  /' "$WORK/received.txt"

say "what ecs-target captured (compare seed 000 table 6)"
tcpdump -nne -r "$WORK/copies.pcap" 2>/dev/null | tee "$WORK/capture.txt"

say "the agent's counters"
metrics | grep -E '^podmirror_(matched|mirrored|truncated|mirror_failures)' | sed 's/^/  /' || true

# --- verdict ----------------------------------------------------------------
fail=0
check() { if eval "$2"; then printf '  \033[32mok\033[0m   %s\n' "$1"; else printf '  \033[31mFAIL\033[0m %s\n' "$1"; fail=1; fi; }
payload_copies() { tcpdump -nne -A -r "$WORK/copies.pcap" 2>/dev/null | grep -c "$1" || true; }
say "checks"
check "ecs-source received hello and 12345" '[ "$(cat "$WORK/received.txt")" = "$(printf "hello\n12345")" ]'
check "copies are VXLAN, flags [I] (0x08), vni 1, sent by the node to ecs-target:4789" \
  'grep -q "$NODE_IP\.[0-9]* > 192\.168\.0\.164\.4789: VXLAN, flags \[I\] (0x08), vni 1" "$WORK/capture.txt"'
check "inner packets read 192.168.0.161.* > 192.168.0.230.1234: Flags [P.] ... length 6" \
  '[ "$(grep -cE "192\.168\.0\.161\.[0-9]+ > 192\.168\.0\.230\.1234: Flags \[P\.\].*length 6$" "$WORK/capture.txt")" -ge 2 ]'
check "the copies carry hello and 12345" '[ "$(payload_copies hello)" -ge 1 ] && [ "$(payload_copies 12345)" -ge 1 ]'
check "no copy of ecs-source's replies (no outbound rule)" \
  '! grep -qE "192\.168\.0\.230\.1234 > 192\.168\.0\.161" "$WORK/capture.txt"'
check "every copy is at most 96 bytes of frame + 50 of VXLAN (inner length <= 96)" \
  '! grep -oE "vni 1 [^,]*, ethertype IPv4 \(0x0800\), length [0-9]+" "$WORK/capture.txt" | awk "{ if (\$NF > 96) bad=1 } END { exit !bad }"'
if [ "$fail" -ne 0 ]; then
  echo; echo "agent log:"; sed 's/^/  /' "$WORK/agent.log"
  die "the capture does not show what it should"
fi
say "demo passed; removing everything it created"
