"""The measured configurations: what each attaches, and one measurement of it.

  no_program                 nothing attached
  noop_program               the no-op classifier (bench/noop.bpf.c) on the server veth's TCX hooks
  nomatch_0_rules            the agent, one session with an empty filter
  nomatch_30_rules           the agent, 3 sessions x 10 rules per direction, none matching
  peer_tc_mirred_mtuN        the kernel's tc (match-all u32) + mirred into a vxlan device (kokotap)
  podmirror_all_mtuN         the agent, one session copying everything
  podmirror_cut96_mtuN       the same, packetLength 96
"""

import json
import re
import subprocess
import time

from . import bpfstats
from .agent import all_rules, failures_by_reason, filter_yaml, metric_sum, nomatch_files, scrape, session_yaml
from .common import NODE, SERVER_HOST_IF, TARGETS, VXLAN_IF, nsx
from .topology import client_cmd

CONFIGS = ["no_program", "noop_program", "nomatch_0_rules", "nomatch_30_rules",
           "peer_tc_mirred_mtu1500", "peer_tc_mirred_mtu9000",
           "podmirror_all_mtu1500", "podmirror_all_mtu9000",
           "podmirror_cut96_mtu1500", "podmirror_cut96_mtu9000"]


def target_mtu(name):
    m = re.search(r"mtu(\d+)$", name)
    return int(m.group(1)) if m else None


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
        nsx(NODE, "tc", "filter", "add", "dev", SERVER_HOST_IF, hook, "protocol", "all", "u32", "match", "u32", "0",
            "0", "action", "mirred", "egress", "mirror", "dev", VXLAN_IF)


def peer_decided():
    total = 0
    for hook in ("ingress", "egress"):
        text = nsx(NODE, "tc", "-s", "filter", "show", "dev", SERVER_HOST_IF, hook, check=False)
        total += sum(int(m.group(1)) for m in re.finditer(r"Sent \d+ bytes (\d+) pkt", text))
    return total


def stop_peer():
    nsx(NODE, "tc", "qdisc", "del", "dev", SERVER_HOST_IF, "clsact", check=False)
    nsx(NODE, "ip", "link", "del", VXLAN_IF, check=False)


# --------------------------------------------------------------------------- traffic and counters

def target_counters(ns):
    values = {}
    for line in nsx(ns, "nstat", "-asz").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1].isdigit():
            values[parts[0]] = int(parts[1])
    return {"udp": values.get("UdpInDatagrams", 0) + values.get("UdpNoPorts", 0) + values.get("UdpInErrors", 0),
            "frags": values.get("IpReasmReqds", 0)}


def iperf(args, seconds):
    res = subprocess.run(client_cmd("-t", str(seconds), "-J", *args), capture_output=True, text=True,
                         timeout=seconds + 30)
    try:
        return json.loads(res.stdout)
    except json.JSONDecodeError:
        return {}


def tcp_gbps(seconds):
    return iperf([], seconds).get("end", {}).get("sum_received", {}).get("bits_per_second", 0.0) / 1e9


def udp64_kpps(seconds):
    s = iperf(["-u", "-l", "64", "-b", "0"], seconds).get("end", {}).get("sum", {})
    received = s.get("packets", 0) - s.get("lost_packets", 0)
    return received / max(s.get("seconds", seconds), 1e-9) / 1e3


# --------------------------------------------------------------------------- one configuration

def setup(name, ctx):
    mtu = target_mtu(name)
    if name == "noop_program":
        bpfstats.attach_noop(ctx["noop_obj"])
    elif name.startswith("nomatch_"):
        ctx["agent"].start(nomatch_files(int(name.split("_")[1])))
    elif name.startswith("peer_tc_mirred"):
        start_peer(mtu)
    elif name.startswith("podmirror_"):
        cut = 96 if "cut96" in name else None
        ctx["agent"].start({"f.yaml": filter_yaml("all", all_rules(), all_rules()),
                            "s.yaml": session_yaml("all", 1, 1, "all", TARGETS[mtu][1], cut)})


def teardown(name, ctx):
    if name == "noop_program":
        bpfstats.detach_noop()
    elif name.startswith("peer_tc_mirred"):
        stop_peer()
    else:
        ctx["agent"].stop()


def copies(name, before, after):
    """What the target received against what was decided."""
    row = {"outer_fragments": after["frags"] - before["frags"], "delivered": after["udp"] - before["udp"]}
    if name.startswith("peer_tc_mirred"):
        row.update(decided=peer_decided(), failures={})
    else:
        text = scrape()
        row.update(decided=int(metric_sum(text, "podmirror_matched_packets_total")),
                   copied=int(metric_sum(text, "podmirror_mirrored_packets_total")),
                   truncated=int(metric_sum(text, "podmirror_truncated_packets_total")),
                   failures=failures_by_reason(text))
    row["delivered_ratio"] = row["delivered"] / row["decided"] if row["decided"] else None
    return row


def measure_once(name, ctx):
    mtu, seconds = target_mtu(name), ctx["seconds"]
    setup(name, ctx)
    try:
        ids = bpfstats.groups()
        before = target_counters(TARGETS[mtu][0]) if mtu else None
        c0 = bpfstats.counters(ids)
        row = {"tcp_gbps": tcp_gbps(seconds), "udp64_kpps": udp64_kpps(seconds)}
        row["prog_ns_live"] = bpfstats.ns_per_run(c0, bpfstats.counters(ids))
        time.sleep(1.5)  # in-flight copies land; the agent publishes its counters
        if mtu:
            row.update(copies(name, before, target_counters(TARGETS[mtu][0])))
        elif name.startswith("nomatch_"):
            row["decided"] = int(metric_sum(scrape(), "podmirror_matched_packets_total"))
        return row
    finally:
        teardown(name, ctx)
