"""Restart under load: TCP (iperf3) and a counted UDP stream (iperf3 -u at a
fixed rate; the receiver counts losses from its sequence numbers) run through
the mirrored server veth while the agent is SIGKILLed and started again (3 times).
The datapath stays pinned, so the stream must lose nothing and every copy
decided (the pinned counters, read by the restarted agent) must reach the
target. Segmentation offloads are off on both pods for this run so that one
decided packet is one copy and one datagram at the target (with GSO a copy is
re-segmented and counts several times)."""

import json
import subprocess
import time

from .agent import all_rules, failures_by_reason, filter_yaml, metric_sum, scrape, session_yaml
from .common import TARGETS, log
from .configs import target_counters
from .topology import client_cmd, set_offloads

UDP_PORT = 5202
UDP_RATE = "10M"
UDP_LEN = 1000
# TCP paced below what this path carries with offloads off, so that the
# control run (no restart) loses no copy either: a loss the restart causes
# must not hide among drops of an overloaded target.
TCP_RATE = "500M"
# SIGKILL + start this many times, evenly over the run (a race shows up in some restarts only).
RESTARTS = 3


def _json(proc):
    out, _ = proc.communicate(timeout=120)
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        return {}


def _agent_counts(text):
    return {"decided": int(metric_sum(text, "podmirror_matched_packets_total")),
            "copied": int(metric_sum(text, "podmirror_mirrored_packets_total")),
            "failures": failures_by_reason(text)}


def _traffic(seconds):
    tcp = subprocess.Popen(client_cmd("-b", TCP_RATE, "-t", str(seconds), "-J"), stdout=subprocess.PIPE, text=True)
    udp = subprocess.Popen(client_cmd("-p", str(UDP_PORT), "-u", "-b", UDP_RATE, "-l", str(UDP_LEN), "-w", "4M",
                                      "-t", str(seconds), "-J"), stdout=subprocess.PIPE, text=True)
    return tcp, udp


def _run(agent, seconds, kill):
    """One run of the traffic; with `kill`, the agent is SIGKILLed and restarted RESTARTS times."""
    ns = TARGETS[9000][0]
    agent.write({"f.yaml": filter_yaml("all", all_rules(), all_rules()),
                 "s.yaml": session_yaml("all", 1, 1, "all", TARGETS[9000][1])})
    agent.launch(cleanup_on_exit=not kill)
    agent.wait_programmed()
    before = target_counters(ns)
    tcp, udp = _traffic(seconds)
    row = {"seconds": seconds, "restarts": RESTARTS if kill else 0}
    started, downs = time.time(), []
    for n in range(RESTARTS if kill else 0):
        time.sleep(max(0.0, started + seconds * (n + 1) / (RESTARTS + 1) - time.time()))
        if n == 0:
            row["decided_before_first_kill"] = int(metric_sum(scrape(), "podmirror_matched_packets_total"))
        killed_at = time.time()
        agent.kill()
        agent.launch(cleanup_on_exit=True)
        agent.wait_programmed()
        downs.append(time.time() - killed_at)
    if downs:
        row["agent_down_s_max"] = max(downs)
    tcp_res, udp_res = _json(tcp), _json(udp)
    time.sleep(1.5)  # in-flight copies land; the agent publishes the counters
    after = target_counters(ns)
    udp_sum = udp_res.get("end", {}).get("sum", {})
    row.update({"tcp_gbps": tcp_res.get("end", {}).get("sum_received", {}).get("bits_per_second", 0) / 1e9,
                "tcp_retransmits": tcp_res.get("end", {}).get("sum_sent", {}).get("retransmits"),
                "udp_sent": udp_sum.get("packets"), "udp_lost": udp_sum.get("lost_packets"),
                **_agent_counts(scrape()),
                "delivered": after["udp"] - before["udp"], "outer_fragments": after["frags"] - before["frags"]})
    return row


def scenario(agent, seconds):
    """A control run without the restart (to tell losses of the restart from
    losses of the load), then the run with it."""
    set_offloads(False)
    try:
        out = {}
        for key, kill in (("control", False), ("restart", True)):
            try:
                out[key] = _run(agent, seconds, kill)
            finally:
                agent.stop()
            log(f"restart under load, {key}: {out[key]}")
        return out
    finally:
        set_offloads(True)


def goals(runs):
    """(goal, value, status) rows for the restart scenario."""
    row = (runs or {}).get("restart")
    if not row:
        return [("restart under load: the original stream loses nothing", None, "n/a"),
                ("restart under load: copies delivered == copies decided", None, "n/a")]
    lost, sent = row.get("udp_lost"), row.get("udp_sent")
    control = runs.get("control") or {}
    ok_stream = lost == 0 and bool(sent)
    same = row["decided"] > 0 and row["delivered"] == row["decided"]
    stream = f"{lost} of {sent} lost (control without restart: {control.get('udp_lost')})"
    copies = f"{row['delivered']} / {row['decided']} (control: {control.get('delivered')} / {control.get('decided')})"
    return [("restart under load: the original stream loses nothing", stream,
             "met" if ok_stream else "not met"),
            ("restart under load: copies delivered == copies decided", copies, "met" if same else "not met")]
