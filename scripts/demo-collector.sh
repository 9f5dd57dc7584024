#!/usr/bin/env bash
# podmirror demo, seed 003: mirror production HTTP traffic and replay it to a
# test environment, on network namespaces.
#
#   ecs-test 192.168.0.161 --curl--> ecs-source 192.168.0.230:80 ("production":
#                                     python3 -m http.server 80)
#   the node runs podmirror-agent --standalone (requests in, responses out)
#   ecs-target 192.168.0.164 runs podmirror-collector: it receives the VXLAN
#   copies, writes them to pcap files and replays each HTTP request to
#   ecs-shadow 192.168.0.170:80 ("test": the same python3 -m http.server 80)
#
# Prints the requests each server received side by side, and exits non-zero
# when they differ. Everything lives in namespaces this script creates and is
# removed on exit. Needs root. Environment: PODMIRROR_PROFILE (release|debug),
# CARGO_TARGET_DIR, PODMIRROR_AGENT and PODMIRROR_COLLECTOR (prebuilt binaries;
# skip the build).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

TAG="pmrp$$"
NODE_IP=172.31.253.1
# shellcheck source=scripts/demo-lib.sh
. "$ROOT/scripts/demo-lib.sh"

# --- build what we need -----------------------------------------------------
PROFILE="${PODMIRROR_PROFILE:-release}"
BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE"
if [ -z "${PODMIRROR_AGENT:-}" ] || [ -z "${PODMIRROR_COLLECTOR:-}" ]; then
  say "building podmirror-agent and podmirror-collector ($PROFILE)"
  flags=(-q -p podmirror-agent -p podmirror-collector --bin podmirror-agent --bin podmirror-collector)
  [ "$PROFILE" = release ] && flags+=(--release)
  cargo build "${flags[@]}"
fi
AGENT="${PODMIRROR_AGENT:-$BIN_DIR/podmirror-agent}"
COLLECTOR="${PODMIRROR_COLLECTOR:-$BIN_DIR/podmirror-collector}"
[ -x "$AGENT" ] || die "no agent binary at $AGENT"
[ -x "$COLLECTOR" ] || die "no collector binary at $COLLECTOR"
for tool in ip curl python3 nsenter tshark; do command -v "$tool" >/dev/null || die "$tool is missing"; done

TEST="$TAG-ecs-test"; SRC="$TAG-ecs-source"; TGT="$TAG-ecs-target"; SHADOW="$TAG-ecs-shadow"

# --- the topology -----------------------------------------------------------
say "creating the seed 003 scenario on network namespaces ($TAG-*)"
make_node
i=0
# Pod MTU 1450, as overlay CNIs set it: room for the 50 bytes of VXLAN, so
# that copies of large segments are re-segmented whole, never cut.
for pod in "$TEST:192.168.0.161" "$SRC:192.168.0.230" "$TGT:192.168.0.164" "$SHADOW:192.168.0.170"; do
  make_pod "${pod%%:*}" "${pod##*:}" "${TAG}h$i" 1450
  i=$((i + 1))
done

# --- production and test: the same program ----------------------------------
mkdir -p "$WORK/www" "$WORK/pcap" "$WORK/config"
echo "hello from the shop" >"$WORK/www/index.html"
say "ecs-source (production) and ecs-shadow (test): python3 -m http.server 80"
for srv in "$SRC:prod" "$SHADOW:test"; do
  ip netns exec "${srv%%:*}" python3 -u -m http.server 80 --directory "$WORK/www" 2>"$WORK/${srv##*:}.log" >/dev/null &
  PIDS+=("$!")
done

# --- the collector ----------------------------------------------------------
say "ecs-target: podmirror-collector --replay-to http://192.168.0.170:80 --replay-ports 80 --files-dir ..."
ip netns exec "$TGT" "$COLLECTOR" --vxlan-listen 0.0.0.0:4789 --http-addr 127.0.0.1:8080 \
  --replay-to http://192.168.0.170:80 --replay-ports 80 --files-dir "$WORK/pcap" >"$WORK/collector.log" 2>&1 &
PIDS+=("$!")
collector_metrics() { ip netns exec "$TGT" curl -s http://127.0.0.1:8080/metrics || true; }

# --- the agent: requests to port 80 in, responses from port 80 out ----------
cat >"$WORK/config/standalone.yaml" <<'YAML'
pods:
- {name: ecs-test, ips: [192.168.0.161]}
- {name: ecs-source, ips: [192.168.0.230]}
- {name: ecs-target, ips: [192.168.0.164]}
YAML
cat >"$WORK/config/filter.yaml" <<'YAML'
apiVersion: podmirror.io/v1alpha1
kind: MirrorFilter
metadata: {name: http}
spec:
  inboundRules:
  - {priority: 1, action: Accept, protocol: TCP, ipFamily: IPv4, destinationPorts: {from: 80, to: 80}}
  outboundRules:
  - {priority: 1, action: Accept, protocol: TCP, ipFamily: IPv4, sourcePorts: {from: 80, to: 80}}
YAML
cat >"$WORK/config/session.yaml" <<'YAML'
apiVersion: podmirror.io/v1alpha1
kind: MirrorSession
metadata: {name: shadow-http}
spec:
  priority: 1
  vni: 1
  filterRef: {name: http}
  sources: [{podName: ecs-source}]
  target: {pod: {name: ecs-target}}
YAML
say "podmirror-agent --standalone (session shadow-http: VNI 1, no packetLength, target ecs-target)"
nsenter --net="/run/netns/$NODE" "$AGENT" --standalone "$WORK/config" \
  --pin-dir "$PIN_DIR" --device-prefix "$TAG" --node-ipv4 "$NODE_IP" \
  --metrics-addr 127.0.0.1:9090 --cleanup-on-exit >"$WORK/agent.log" 2>&1 &
AGENT_PID=$!
PIDS+=("$AGENT_PID")
programmed=""
for _ in $(seq 1 100); do
  kill -0 "$AGENT_PID" 2>/dev/null || { cat "$WORK/agent.log" >&2; die "the agent exited"; }
  programmed="$(ip netns exec "$NODE" curl -s http://127.0.0.1:9090/metrics | grep '^podmirror_programmed_interfaces{' || true)"
  [ -n "$programmed" ] && break
  sleep 0.2
done
[ -n "$programmed" ] || { cat "$WORK/agent.log" >&2; die "the agent did not program ecs-source's veth in 20 s"; }
echo "  $programmed"

# --- a client uses production -----------------------------------------------
say "ecs-test: curl http://192.168.0.230/ (GET, keep-alive, POST, HEAD, a 404)"
P=http://192.168.0.230
ip netns exec "$TEST" curl -s "$P/" "$P/index.html?from=demo" "$P/missing" >/dev/null
ip netns exec "$TEST" curl -s -o /dev/null -H 'Content-Type: application/x-www-form-urlencoded' --data 'order=42&qty=1' "$P/orders"
ip netns exec "$TEST" curl -s -o /dev/null -I "$P/index.html"
SENT=5
for _ in $(seq 1 50); do
  [ "$(grep -c '"' "$WORK/test.log" 2>/dev/null || echo 0)" -ge "$SENT" ] && break
  sleep 0.2
done
sleep 0.5

# --- side by side -------------------------------------------------------------
# http.server logs `addr - - [time] "REQUEST LINE" status -`: keep the rest.
requests() { sed -nE 's/^[^"]*"([^"]*)" ([0-9]+).*$/\1 -> \2/p' "$1" | sort; }
requests "$WORK/prod.log" >"$WORK/prod.txt"
requests "$WORK/test.log" >"$WORK/test.txt"
say "requests received: production (ecs-source) | test (ecs-shadow, replayed by the collector)"
paste -d'|' "$WORK/prod.txt" "$WORK/test.txt" | awk -F'|' '{ printf "  %-44s | %s\n", $1, $2 }'

say "the collector's counters"
collector_metrics | grep -E '^podmirror_collector_(received_packets|replay_requests|replay_paired|replay_status_mismatches|replay_incomplete)' | sed 's/^/  /' || true
say "the copies it recorded (tshark -r $WORK/pcap/vni1-*.pcap)"
kill -TERM "${PIDS[2]}" 2>/dev/null || true   # the collector flushes its files on SIGTERM
wait "${PIDS[2]}" 2>/dev/null || true
tshark -r "$(ls "$WORK"/pcap/vni1-*.pcap | head -1)" -Y http 2>/dev/null | sed 's/^/  /' | head -20

# --- verdict ----------------------------------------------------------------
fail=0
check() { if eval "$2"; then printf '  \033[32mok\033[0m   %s\n' "$1"; else printf '  \033[31mFAIL\033[0m %s\n' "$1"; fail=1; fi; }
say "checks"
check "production received the $SENT requests" '[ "$(wc -l <"$WORK/prod.txt")" -eq "$SENT" ]'
check "the test server received the same requests, with the same answers" 'cmp -s "$WORK/prod.txt" "$WORK/test.txt"'
check "the capture files hold the HTTP requests" \
  '[ "$(tshark -r "$(ls "$WORK"/pcap/vni1-*.pcap | head -1)" -Y http.request 2>/dev/null | wc -l)" -ge "$SENT" ]'
if [ "$fail" -ne 0 ]; then
  echo; echo "collector log:"; sed 's/^/  /' "$WORK/collector.log"
  die "the replay does not match production"
fi
say "demo (seed 003) passed; removing everything it created"
