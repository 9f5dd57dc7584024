"""Names, command helpers and the logger every part of the benchmark shares."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
NUM = os.getpid() % 100000
TAG = f"pmsab{NUM}"
NODE = f"{TAG}-node"
CLIENT = f"{TAG}-client"
SERVER = f"{TAG}-server"
# mtu -> (namespace, target IP, node IP on the underlay, node-side underlay device)
TARGETS = {1500: (f"{TAG}-t15", "10.77.0.2", "10.77.0.1", f"{TAG}u15"),
           9000: (f"{TAG}-t90", "10.78.0.2", "10.78.0.1", f"{TAG}u90")}
CLIENT_HOST_IF = f"{TAG}h0"
SERVER_HOST_IF = f"{TAG}h1"
PIN_DIR = Path(f"/sys/fs/bpf/{TAG}")
NOOP_PIN_DIR = Path(f"/sys/fs/bpf/{TAG}-noop")
VXLAN_IF = f"{TAG}vx"
CLIENT_IP, SERVER_IP = "192.168.0.161", "192.168.0.230"
# iperf3 ends pinned apart: the client (and the softirq work its sends
# trigger on veths) on CPU 0, the server on the last CPU.
CLIENT_CPU = 0
SERVER_CPU = max((os.cpu_count() or 1) - 1, 0)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, check=True, timeout=60, input_text=None):
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input_text)
    if check and res.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed ({res.returncode}): {res.stderr.strip()}")
    return res.stdout


def nsx(ns, *cmd, **kw):
    return run(["ip", "netns", "exec", ns, *cmd], **kw)


def link_mac(ns, ifname):
    data = json.loads(nsx(ns, "ip", "-j", "link", "show", "dev", ifname))
    return data[0]["address"]
