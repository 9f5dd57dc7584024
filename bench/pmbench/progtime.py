"""Program time per packet with BPF_PROG_TEST_RUN (`bpftool prog run ... repeat N`):
the veth program itself (`pm_veth_ingress`, as attached to the server pod's
veth by the agent with 0, 10 and 30 rules per direction) beside the no-op
classifier, interleaved (no-op, veth, no-op, veth ...), on a 64-byte TCP frame
that no rule matches (every rule is walked). The test run's `struct
__sk_buff` names the server veth (`ifindex`, offset 40): the kernel resolves it
in the caller's network namespace, so bpftool runs inside the node namespace.
Measured with `kernel.bpf_stats_enabled` off (it adds two clock reads to
every run); `stats_during_test_run` says whether the kernel still counted
(another holder of a BPF_ENABLE_STATS fd on this machine keeps it on)."""

import json
import os
import re
import statistics
import struct
import sys
import tempfile
from pathlib import Path

from . import bpfstats
from .agent import nomatch_files
from .common import CLIENT_IP, NODE, NOOP_PIN_DIR, PIN_DIR, ROOT, SERVER_HOST_IF, SERVER_IP, nsx, run


def build_noop(out_dir):
    obj = Path(out_dir, "noop.o")
    arch = "x86_64-linux-gnu" if os.uname().machine == "x86_64" else "aarch64-linux-gnu"
    run(["clang-19", "-target", "bpf", "-O2", "-g", f"-I/usr/include/{arch}", "-c",
         str(ROOT / "bench" / "noop.bpf.c"), "-o", str(obj)])
    return obj


def bpftool_avg_ns(prog_path, data, ctx, repeat):
    """Average ns per run, from inside the node namespace (nsenter keeps /sys/fs/bpf visible)."""
    with tempfile.TemporaryDirectory() as tmp:
        dpath, cpath = Path(tmp, "data"), Path(tmp, "ctx")
        dpath.write_bytes(data)
        cmd = ["nsenter", f"--net=/run/netns/{NODE}", "bpftool", "prog", "run", "pinned", str(prog_path),
               "data_in", str(dpath), "repeat", str(repeat)]
        if ctx is not None:
            cpath.write_bytes(ctx)
            cmd += ["ctx_in", str(cpath)]
        out = run(cmd)
    m = re.search(r"duration \(average\): (\d+)ns", out)
    if not m:
        raise RuntimeError(f"unexpected bpftool output: {out}")
    return int(m.group(1))


def run_count(prog_path):
    """The kernel's run_cnt of a pinned program (0 while never counted)."""
    info = json.loads(run(["bpftool", "-j", "prog", "show", "pinned", str(prog_path)]))
    return info.get("run_cnt", 0)


def bench_frame():
    """A 64-byte Ethernet/IPv4/TCP frame client -> server:5201 (matches none of the no-match rules)."""
    eth = bytes.fromhex("020000000002" "020000000001") + struct.pack("!H", 0x0800)
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
    payload = b"x" * 10
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0x4000, 64, 6, 0,
                     bytes(map(int, CLIENT_IP.split("."))), bytes(map(int, SERVER_IP.split("."))))
    return eth + ip + tcp + payload


def prog_times(agent, noop_obj, stats=None, repeat=200000, rounds=3):
    """{"noop", "0", "10", "30": median ns; "<n>_x_noop": median of the per-round ratios; ...}."""
    frame = bench_frame()
    NOOP_PIN_DIR.mkdir(parents=True, exist_ok=True)
    noop = NOOP_PIN_DIR / "prog"
    if not noop.exists():
        run(["bpftool", "prog", "load", str(noop_obj), str(noop), "type", "classifier"])
    ifindex = int(nsx(NODE, "cat", f"/sys/class/net/{SERVER_HOST_IF}/ifindex").strip())
    # struct __sk_buff up to cb[4] (68 bytes): ifindex at offset 40, the rest zero.
    ctx = bytearray(68)
    ctx[40:44] = ifindex.to_bytes(4, sys.byteorder)
    results, noops = {"program": "pm_veth_ingress", "repeat": repeat, "rounds": rounds}, []
    counted_before = run_count(noop)
    with bpfstats.suspended(stats):
        for rules in (0, 10, 30):
            agent.start(nomatch_files(rules))
            try:
                prog = PIN_DIR / "prog-pm_veth_ingress"
                pairs = []
                for _ in range(rounds):
                    n = bpftool_avg_ns(noop, frame, None, repeat)
                    v = bpftool_avg_ns(prog, frame, bytes(ctx), repeat)
                    pairs.append((n, v))
            finally:
                agent.stop()
            noops += [n for n, _ in pairs]
            results[str(rules)] = statistics.median(v for _, v in pairs)
            results[f"{rules}_x_noop"] = statistics.median(v / n for n, v in pairs if n)
        results["stats_during_test_run"] = run_count(noop) != counted_before
    results["noop"] = statistics.median(noops)
    return results
