#!/usr/bin/env python3
"""podmirror datapath benchmark (`make bench`), one run on one topology.

Topology (all network namespaces created here, removed on exit):

    client pod 192.168.0.161 --veth-- node --veth-- server pod 192.168.0.230 (mirrored source)
                                       |--underlay MTU 1500-- target15 10.77.0.2
                                       `--underlay MTU 9000-- target90 10.78.0.2

Configurations, measured round-robin (every round runs each configuration
once, so drift of a shared machine spreads over all of them), medians kept:
  no_program                 nothing attached
  nomatch_30_rules           the agent, 3 sessions x 10 rules per direction, none matching
  peer_tc_mirred_mtuN        the kernel's tc (match-all u32) + mirred into a vxlan device (kokotap)
  podmirror_all_mtuN         the agent, one session copying everything
  podmirror_cut96_mtuN       the same, packetLength 96
Per configuration: TCP throughput (iperf3), 64-byte UDP packets received per
second (iperf3 -u -l 64 -b 0), copies delivered at the target (UDP datagrams
to 4789 the target's stack counted) vs copies decided (the agent's
podmirror_matched_packets_total, or the mirred action's packet count), and
outer IP fragments the target had to reassemble (IpReasmReqds).
Program time: BPF_PROG_TEST_RUN (bpftool prog run ... repeat N) of a no-op
classifier and of the agent's decision program with 0, 10 and 30 rules.
"""

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TAG = f"pmsab{os.getpid() % 100000}"
NODE = f"{TAG}-node"
CLIENT = f"{TAG}-client"
SERVER = f"{TAG}-server"
TARGETS = {1500: (f"{TAG}-t15", "10.77.0.2", "10.77.0.1", f"{TAG}u15"),
           9000: (f"{TAG}-t90", "10.78.0.2", "10.78.0.1", f"{TAG}u90")}
SERVER_HOST_IF = f"{TAG}h1"
PIN_DIR = Path(f"/sys/fs/bpf/{TAG}")
VXLAN_IF = f"{TAG}vx"
CLIENT_IP, SERVER_IP = "192.168.0.161", "192.168.0.230"

CONFIGS = ["no_program", "nomatch_30_rules",
           "peer_tc_mirred_mtu1500", "peer_tc_mirred_mtu9000",
           "podmirror_all_mtu1500", "podmirror_all_mtu9000",
           "podmirror_cut96_mtu1500", "podmirror_cut96_mtu9000"]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, check=True, timeout=60):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def nsx(ns, *cmd, **kw):
    return run(["ip", "netns", "exec", ns, *cmd], **kw)


# --------------------------------------------------------------------------- topology

def create_topology():
    run(["ip", "netns", "add", NODE])
    nsx(NODE, "ip", "link", "set", "lo", "up")
    nsx(NODE, "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for i, (ns, ip) in enumerate([(CLIENT, CLIENT_IP), (SERVER, SERVER_IP)]):
        host = f"{TAG}h{i}"
        run(["ip", "netns", "add", ns])
        nsx(ns, "ip", "link", "set", "lo", "up")
        nsx(NODE, "ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
        nsx(NODE, "sysctl", "-qw", f"net.ipv4.conf.{host}.proxy_arp=1")
        nsx(NODE, "sysctl", "-qw", f"net.ipv4.neigh.{host}.proxy_delay=0")
        nsx(NODE, "ip", "link", "set", host, "up")
        nsx(ns, "ip", "link", "set", "eth0", "up")
        nsx(ns, "ip", "addr", "add", f"{ip}/32", "dev", "eth0")
        nsx(ns, "ip", "route", "add", "default", "dev", "eth0")
        nsx(NODE, "ip", "route", "add", f"{ip}/32", "dev", host)
    for mtu, (ns, ip, node_ip, ul) in TARGETS.items():
        run(["ip", "netns", "add", ns])
        nsx(ns, "ip", "link", "set", "lo", "up")
        nsx(NODE, "ip", "link", "add", ul, "mtu", str(mtu), "type", "veth", "peer", "name", "eth0", "netns", ns, "mtu", str(mtu))
        nsx(NODE, "ip", "addr", "add", f"{node_ip}/24", "dev", ul)
        nsx(NODE, "ip", "link", "set", ul, "up")
        nsx(ns, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
        nsx(ns, "ip", "link", "set", "eth0", "up")
        nsx(ns, "ip", "route", "add", "default", "via", node_ip)
        # Answer nothing back for the copies (no listener on 4789): keep the
        # ICMP port-unreachable replies from loading the node.
        nsx(ns, "sysctl", "-qw", "net.ipv4.icmp_ratelimit=100000")
        # Neighbour entries both ways now, so the first copies are not lost to ARP.
        nsx(NODE, "ip", "neigh", "replace", ip, "lladdr", link_mac(ns, "eth0"), "dev", ul, "nud", "permanent")


def link_mac(ns, ifname):
    data = json.loads(nsx(ns, "ip", "-j", "link", "show", "dev", ifname))
    return data[0]["address"]


def destroy_topology(agent):
    stop_agent()
    if os.path.exists(f"/run/netns/{NODE}"):
        subprocess.run(["nsenter", f"--net=/run/netns/{NODE}", agent, "--cleanup", "--pin-dir", str(PIN_DIR),
                        "--device-prefix", TAG], capture_output=True)
    for ns in [CLIENT, SERVER, NODE] + [t[0] for t in TARGETS.values()]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    shutil.rmtree(PIN_DIR, ignore_errors=True)


# --------------------------------------------------------------------------- the agent

AGENT_PROC = None
AGENT_DIR = None


def filter_yaml(name, inbound, outbound):
    return json.dumps({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorFilter",
                       "metadata": {"name": name, "namespace": "default"},
                       "spec": {"inboundRules": inbound, "outboundRules": outbound}})


def session_yaml(name, priority, vni, filter_name, target_ip, packet_length=None):
    spec = {"priority": priority, "vni": vni, "filterRef": {"name": filter_name},
            "sources": [{"podName": "server"}], "target": {"ip": target_ip}}
    if packet_length:
        spec["packetLength"] = packet_length
    return json.dumps({"apiVersion": "podmirror.io/v1alpha1", "kind": "MirrorSession",
                       "metadata": {"name": name, "namespace": "default"}, "spec": spec})


def nomatch_rules(session_index, count):
    """Rules that never match the benchmark's traffic (destinations in 10.200/16)."""
    return [{"priority": i + 1, "action": "Accept", "protocol": "TCP", "ipFamily": "IPv4",
             "destinationCIDR": f"10.200.{session_index * 10 + i}.0/24",
             "destinationPorts": {"from": 1000 + i, "to": 1000 + i}} for i in range(count)]


def all_rules():
    return [{"priority": 1, "action": "Accept", "protocol": "All", "ipFamily": "IPv4"}]


def start_agent(agent, files):
    """Start the standalone agent with `files` ({name: json-as-yaml}) and wait
    until the server pod's veth is programmed."""
    global AGENT_PROC, AGENT_DIR
    AGENT_DIR = tempfile.mkdtemp(prefix=f"{TAG}-agent-")
    Path(AGENT_DIR, "standalone.yaml").write_text(json.dumps({"pods": [{"name": "server", "ips": [SERVER_IP]}]}))
    for name, text in files.items():
        Path(AGENT_DIR, name).write_text(text)
    AGENT_PROC = subprocess.Popen(
        ["nsenter", f"--net=/run/netns/{NODE}", agent, "--standalone", AGENT_DIR, "--pin-dir", str(PIN_DIR),
         "--device-prefix", TAG, "--metrics-addr", "127.0.0.1:9090", "--poll-interval", "500ms", "--cleanup-on-exit"],
        stdout=subprocess.DEVNULL, stderr=open(Path(AGENT_DIR, "agent.log"), "w"))
    deadline = time.time() + 30
    while time.time() < deadline:
        if AGENT_PROC.poll() is not None:
            raise RuntimeError("agent exited: " + Path(AGENT_DIR, "agent.log").read_text())
        if metric_sum(scrape(), "podmirror_programmed_interfaces") >= 1:
            return
        time.sleep(0.2)
    raise RuntimeError("agent did not program the veth: " + Path(AGENT_DIR, "agent.log").read_text())


def stop_agent():
    global AGENT_PROC, AGENT_DIR
    if AGENT_PROC is not None:
        AGENT_PROC.send_signal(signal.SIGTERM)
        try:
            AGENT_PROC.wait(timeout=15)
        except subprocess.TimeoutExpired:
            AGENT_PROC.kill()
            AGENT_PROC.wait()
        AGENT_PROC = None
    if AGENT_DIR:
        shutil.rmtree(AGENT_DIR, ignore_errors=True)
        AGENT_DIR = None


def scrape():
    code = ("import urllib.request,sys\n"
            "try:\n print(urllib.request.urlopen('http://127.0.0.1:9090/metrics', timeout=5).read().decode())\n"
            "except Exception as e:\n print('', end='')\n")
    return nsx(NODE, "python3", "-c", code, check=False)


def metric_sum(text, name, label_filter=""):
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            if label_filter in line:
                try:
                    total += float(line.rsplit(" ", 1)[1])
                except ValueError:
                    pass
    return total


def failures_by_reason(text):
    out = {}
    for line in text.splitlines():
        m = re.match(r'podmirror_mirror_failures_total\{.*reason="([^"]+)"\} (\S+)', line)
        if m:
            out[m.group(1)] = out.get(m.group(1), 0) + int(float(m.group(2)))
    return out


# --------------------------------------------------------------------------- the peer

def start_peer(mtu):
    ns, ip, node_ip, ul = TARGETS[mtu]
    nsx(NODE, "ip", "link", "add", VXLAN_IF, "type", "vxlan", "id", "1", "remote", ip, "local", node_ip,
        "dstport", "4789", "dev", ul)
    nsx(NODE, "ip", "link", "set", VXLAN_IF, "up")
    nsx(NODE, "tc", "qdisc", "add", "dev", SERVER_HOST_IF, "clsact")
    for hook in ("ingress", "egress"):
        # `u32 match u32 0 0` matches every packet: this kernel has no
        # cls_matchall, which kokotap would use; the action is the same.
        nsx(NODE, "tc", "filter", "add", "dev", SERVER_HOST_IF, hook, "protocol", "all", "u32", "match", "u32", "0", "0",
            "action", "mirred", "egress", "mirror", "dev", VXLAN_IF)


def peer_decided():
    total = 0
    for hook in ("ingress", "egress"):
        text = nsx(NODE, "tc", "-s", "filter", "show", "dev", SERVER_HOST_IF, hook, check=False)
        for m in re.finditer(r"Sent \d+ bytes (\d+) pkt", text):
            total += int(m.group(1))
    return total


def stop_peer():
    nsx(NODE, "tc", "qdisc", "del", "dev", SERVER_HOST_IF, "clsact", check=False)
    nsx(NODE, "ip", "link", "del", VXLAN_IF, check=False)


# --------------------------------------------------------------------------- measurements

def target_counters(ns):
    text = nsx(ns, "nstat", "-asz")
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    return {"udp": values.get("UdpInDatagrams", 0) + values.get("UdpNoPorts", 0) + values.get("UdpInErrors", 0),
            "frags": values.get("IpReasmReqds", 0)}


def iperf(args, seconds):
    out = nsx(CLIENT, "iperf3", "-c", SERVER_IP, "-t", str(seconds), "-J", *args, check=False, timeout=seconds + 30)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return {}


def tcp_gbps(seconds):
    data = iperf([], seconds)
    return data.get("end", {}).get("sum_received", {}).get("bits_per_second", 0.0) / 1e9


def udp64_kpps(seconds):
    data = iperf(["-u", "-l", "64", "-b", "0"], seconds)
    s = data.get("end", {}).get("sum", {})
    received = s.get("packets", 0) - s.get("lost_packets", 0)
    return received / max(s.get("seconds", seconds), 1e-9) / 1e3


def config_target_mtu(name):
    m = re.search(r"mtu(\d+)$", name)
    return int(m.group(1)) if m else None


def setup(name, agent):
    mtu = config_target_mtu(name)
    if name == "no_program":
        return
    if name == "nomatch_30_rules":
        files = {}
        for s in range(3):
            files[f"f{s}.yaml"] = filter_yaml(f"nomatch{s}", nomatch_rules(2 * s, 10), nomatch_rules(2 * s + 1, 10))
            files[f"s{s}.yaml"] = session_yaml(f"nomatch{s}", s + 1, s + 1, f"nomatch{s}", TARGETS[9000][1])
        start_agent(agent, files)
    elif name.startswith("peer_tc_mirred"):
        start_peer(mtu)
    elif name.startswith("podmirror_"):
        cut = 96 if "cut96" in name else None
        start_agent(agent, {"f.yaml": filter_yaml("all", all_rules(), all_rules()),
                            "s.yaml": session_yaml("all", 1, 1, "all", TARGETS[mtu][1], cut)})


def teardown(name):
    if name.startswith("peer_tc_mirred"):
        stop_peer()
    else:
        stop_agent()


def measure_once(name, agent, seconds):
    mtu = config_target_mtu(name)
    setup(name, agent)
    try:
        before = target_counters(TARGETS[mtu][0]) if mtu else None
        tcp = tcp_gbps(seconds)
        udp = udp64_kpps(seconds)
        time.sleep(1.5)  # in-flight copies land; the agent publishes its counters
        row = {"tcp_gbps": tcp, "udp64_kpps": udp}
        if mtu:
            after = target_counters(TARGETS[mtu][0])
            delivered = after["udp"] - before["udp"]
            row["outer_fragments"] = after["frags"] - before["frags"]
            if name.startswith("peer_tc_mirred"):
                row["decided"] = peer_decided()
                row["failures"] = {}
            else:
                text = scrape()
                row["decided"] = int(metric_sum(text, "podmirror_matched_packets_total"))
                row["copied"] = int(metric_sum(text, "podmirror_mirrored_packets_total"))
                row["truncated"] = int(metric_sum(text, "podmirror_truncated_packets_total"))
                row["failures"] = failures_by_reason(text)
            row["delivered"] = delivered
            row["delivered_ratio"] = delivered / row["decided"] if row["decided"] else None
        elif name == "nomatch_30_rules":
            row["decided"] = int(metric_sum(scrape(), "podmirror_matched_packets_total"))
        return row
    finally:
        teardown(name)


# --------------------------------------------------------------------------- program time

def bpftool_avg_ns(prog_path, data, ctx, repeat):
    with tempfile.TemporaryDirectory() as tmp:
        dpath, cpath = Path(tmp, "data"), Path(tmp, "ctx")
        dpath.write_bytes(data)
        cmd = ["bpftool", "prog", "run", "pinned", str(prog_path), "data_in", str(dpath), "repeat", str(repeat)]
        if ctx is not None:
            cpath.write_bytes(ctx)
            cmd += ["ctx_in", str(cpath)]
        out = run(cmd)
    m = re.search(r"duration \(average\): (\d+)ns", out)
    if not m:
        raise RuntimeError(f"unexpected bpftool output: {out}")
    return int(m.group(1))


def bench_frame():
    """A 64-byte Ethernet/IPv4/TCP frame client -> server:5201 (matches none of the no-match rules)."""
    import struct
    eth = bytes.fromhex("020000000002" "020000000001") + struct.pack("!H", 0x0800)
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
    payload = b"x" * 10
    total = 20 + len(tcp) + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, 6, 0,
                     bytes(map(int, CLIENT_IP.split("."))), bytes(map(int, SERVER_IP.split("."))))
    return eth + ip + tcp + payload


def prog_times(agent, repeat=200000, rounds=3):
    frame = bench_frame()
    results = {}
    # The no-op baseline: our own one-instruction classifier.
    with tempfile.TemporaryDirectory() as tmp:
        obj = Path(tmp, "noop.o")
        arch = "x86_64-linux-gnu" if os.uname().machine == "x86_64" else "aarch64-linux-gnu"
        run(["clang-19", "-target", "bpf", "-O2", "-g", f"-I/usr/include/{arch}", "-c",
             str(ROOT / "bench" / "noop.bpf.c"), "-o", str(obj)])
        pin = Path(f"/sys/fs/bpf/{TAG}-noop")
        run(["bpftool", "prog", "load", str(obj), str(pin), "type", "classifier"])
        try:
            results["noop"] = statistics.median(bpftool_avg_ns(pin, frame, None, repeat) for _ in range(rounds))
        finally:
            pin.unlink(missing_ok=True)
    ifindex = int(nsx(NODE, "cat", f"/sys/class/net/{SERVER_HOST_IF}/ifindex").strip())
    # struct __sk_buff up to cb[4]: cb[0] = direction (0 = inbound), cb[1] = ifindex.
    ctx = bytearray(68)
    ctx[52:56] = ifindex.to_bytes(4, sys.byteorder)
    for rules in (0, 10, 30):
        files = {}
        sessions = 1 if rules <= 10 else 3
        for s in range(sessions):
            per = rules if rules <= 10 else 10
            files[f"f{s}.yaml"] = filter_yaml(f"r{s}", nomatch_rules(2 * s, per), nomatch_rules(2 * s + 1, per))
            files[f"s{s}.yaml"] = session_yaml(f"r{s}", s + 1, s + 1, f"r{s}", TARGETS[9000][1])
        start_agent(agent, files)
        try:
            prog = PIN_DIR / "prog-pm_test_decide"
            results[str(rules)] = statistics.median(bpftool_avg_ns(prog, frame, bytes(ctx), repeat) for _ in range(rounds))
        finally:
            stop_agent()
    return results


# --------------------------------------------------------------------------- report

def median_or_none(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(rows):
    configs, details = {}, {}
    for name in CONFIGS:
        rs = rows.get(name, [])
        mirrored = config_target_mtu(name) is not None
        configs[name] = {
            "tcp_gbps": median_or_none([r["tcp_gbps"] for r in rs]),
            "udp64_kpps": median_or_none([r["udp64_kpps"] for r in rs]),
            "delivered_ratio": median_or_none([r.get("delivered_ratio") for r in rs]) if mirrored else None,
            "outer_fragments": median_or_none([r.get("outer_fragments") for r in rs]) if mirrored else None,
        }
        failures = {}
        for r in rs:
            for k, v in r.get("failures", {}).items():
                failures[k] = failures.get(k, 0) + v
        details[name] = {"runs": rs, "failures_total": failures}
    return configs, details


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def fmt(v, digits=3):
    return "n/a" if v is None else (f"{v:.{digits}f}" if isinstance(v, float) else str(v))


def goals(c, prog, details):
    g = []
    def add(text, value, ok):
        g.append((text, value, None if value is None else ok(value)))
    add("nothing matching >= 0.98x no program on TCP",
        ratio(c["nomatch_30_rules"]["tcp_gbps"], c["no_program"]["tcp_gbps"]), lambda v: v >= 0.98)
    add("mirror everything at equal MTU (1500): source TCP >= 0.8x no mirroring",
        ratio(c["podmirror_all_mtu1500"]["tcp_gbps"], c["no_program"]["tcp_gbps"]), lambda v: v >= 0.8)
    add("mirror everything at equal MTU (1500): zero outer fragments",
        c["podmirror_all_mtu1500"]["outer_fragments"], lambda v: v == 0)
    add("9000 underlay: TCP >= 1.0x the peer",
        ratio(c["podmirror_all_mtu9000"]["tcp_gbps"], c["peer_tc_mirred_mtu9000"]["tcp_gbps"]), lambda v: v >= 1.0)
    add("9000 underlay: 64-byte UDP pps >= 1.1x the peer",
        ratio(c["podmirror_all_mtu9000"]["udp64_kpps"], c["peer_tc_mirred_mtu9000"]["udp64_kpps"]), lambda v: v >= 1.1)
    for mtu in (1500, 9000):
        add(f"cut to 96 never slower than full length (TCP, mtu {mtu})",
            ratio(c[f"podmirror_cut96_mtu{mtu}"]["tcp_gbps"], c[f"podmirror_all_mtu{mtu}"]["tcp_gbps"]), lambda v: v >= 0.98)
        add(f"cut to 96 never slower than full length (UDP64, mtu {mtu})",
            ratio(c[f"podmirror_cut96_mtu{mtu}"]["udp64_kpps"], c[f"podmirror_all_mtu{mtu}"]["udp64_kpps"]), lambda v: v >= 0.98)
    for name in CONFIGS:
        if name.startswith("podmirror_"):
            add(f"delivered/decided >= 0.999 ({name})", c[name]["delivered_ratio"], lambda v: v >= 0.999)
    add("30 rules <= 3x the no-op program time", ratio(prog.get("30"), prog.get("noop")), lambda v: v <= 3.0)
    return g


def write_results(configs, details, prog, command, elapsed):
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "latest.json").write_text(json.dumps({"configs": configs, "prog_ns": prog}, indent=2) + "\n")
    (out_dir / "latest-details.json").write_text(json.dumps(details, indent=2) + "\n")
    base_tcp = configs["no_program"]["tcp_gbps"]
    base_udp = configs["no_program"]["udp64_kpps"]
    lines = ["# podmirror benchmark results", "",
             f"Command: `{command}` (as root; `make bench` runs `bench/run.sh`, which builds the release agent first).",
             f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, kernel {os.uname().release}, "
             f"{os.cpu_count()} CPUs (shared with other work: expect noise), {elapsed:.0f} s.",
             "Medians of the rounds; ratios within this run. Raw runs: `results/latest-details.json`.", "",
             "| configuration | TCP Gbit/s | x no_program | UDP 64 B kpps | x no_program | delivered/decided | outer fragments |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in CONFIGS:
        c = configs[name]
        lines.append(f"| {name} | {fmt(c['tcp_gbps'])} | {fmt(ratio(c['tcp_gbps'], base_tcp))} | {fmt(c['udp64_kpps'], 1)} | "
                     f"{fmt(ratio(c['udp64_kpps'], base_udp))} | {fmt(c['delivered_ratio'], 4)} | {fmt(c['outer_fragments'])} |")
    lines += ["", "Misses by reason (summed over rounds, the agent's `podmirror_mirror_failures_total`):", ""]
    for name in CONFIGS:
        if name.startswith("podmirror_"):
            lines.append(f"- {name}: {details[name]['failures_total'] or 'none'}")
    lines += ["", "Program time per packet, BPF_PROG_TEST_RUN (`bpftool prog run ... repeat`), decision program on a",
              "64-byte TCP frame that no rule matches (every rule is walked):", "",
              "| program | ns/packet | x noop |", "| --- | ---: | ---: |"]
    for k in ("noop", "0", "10", "30"):
        label = "no-op classifier" if k == "noop" else f"podmirror, {k} rules"
        lines.append(f"| {label} | {fmt(prog.get(k))} | {fmt(ratio(prog.get(k), prog.get('noop')), 2)} |")
    lines += ["", "## Goals", "", "| goal | value | met |", "| --- | ---: | --- |"]
    for text, value, ok in goals(configs, prog, details):
        lines.append(f"| {text} | {fmt(value, 4)} | {'yes' if ok else ('n/a' if ok is None else '**no**')} |")
    lines += ["", "Definitions: *decided* = packets an Accept rule selected (`podmirror_matched_packets_total`;",
              "for the peer, the mirred action's packet count); *delivered* = UDP datagrams the target's stack",
              "received (`UdpInDatagrams + UdpNoPorts + UdpInErrors`, after reassembly); *outer fragments* =",
              "`IpReasmReqds` at the target. A GSO copy re-segmented by the datapath counts once as decided and",
              "once per segment as delivered, so TCP-heavy runs can exceed 1.", "",
              "The peer's delivered/decided is indicative only and enters no goal: the mirred action counts skbs\non the veth (a GSO skb once) while the target counts reassembled datagrams, and this run's values\n(exactly 0.5 at MTU 1500, ~0.05 at 9000) were not explained within the time of this work.\nThe machine's 2 CPUs were shared with other engineers' builds and tests during the run: the\nround-to-round spread of the same configuration is up to ~30% (see latest-details.json), so\nratios near a goal's threshold are not conclusive.\n"]
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines))
    return lines


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", required=True, help="podmirror-agent binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--only", nargs="*", help="subset of configurations (for trying the bench)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root")
    command = "make bench" if not args.only and args.rounds == 3 and args.seconds == 5 else " ".join(sys.argv)
    started = time.time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows = {}
    try:
        create_topology()
        server = subprocess.Popen(["ip", "netns", "exec", SERVER, "iperf3", "-s"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        try:
            names = args.only or CONFIGS
            for rnd in range(args.rounds):
                for name in names:
                    row = measure_once(name, args.agent, args.seconds)
                    rows.setdefault(name, []).append(row)
                    log(f"round {rnd + 1}/{args.rounds} {name}: " + json.dumps(
                        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
            prog = prog_times(args.agent)
            log(f"program time: {prog}")
        finally:
            server.terminate()
            server.wait()
    finally:
        destroy_topology(args.agent)
    configs, details = summarize(rows)
    lines = write_results(configs, details, prog, command, time.time() - started)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
