"""Program time per packet with BPF_PROG_TEST_RUN (`bpftool prog run ... repeat N`):
the no-op classifier and the agent's decision program with 0, 10 and 30 rules,
on a 64-byte TCP frame that no rule matches (every rule is walked)."""

import os
import re
import statistics
import struct
import sys
import tempfile
from pathlib import Path

from .agent import nomatch_files
from .common import CLIENT_IP, NODE, NOOP_PIN_DIR, PIN_DIR, ROOT, SERVER_HOST_IF, SERVER_IP, nsx, run


def build_noop(out_dir):
    obj = Path(out_dir, "noop.o")
    arch = "x86_64-linux-gnu" if os.uname().machine == "x86_64" else "aarch64-linux-gnu"
    run(["clang-19", "-target", "bpf", "-O2", "-g", f"-I/usr/include/{arch}", "-c",
         str(ROOT / "bench" / "noop.bpf.c"), "-o", str(obj)])
    return obj


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
    eth = bytes.fromhex("020000000002" "020000000001") + struct.pack("!H", 0x0800)
    tcp = struct.pack("!HHIIBBHHH", 40000, 5201, 1, 0, 5 << 4, 0x18, 65535, 0, 0)
    payload = b"x" * 10
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(payload), 1, 0x4000, 64, 6, 0,
                     bytes(map(int, CLIENT_IP.split("."))), bytes(map(int, SERVER_IP.split("."))))
    return eth + ip + tcp + payload


def prog_times(agent, noop_obj, repeat=200000, rounds=3):
    frame = bench_frame()
    NOOP_PIN_DIR.mkdir(parents=True, exist_ok=True)
    pin = NOOP_PIN_DIR / "prog"
    if not pin.exists():
        run(["bpftool", "prog", "load", str(noop_obj), str(pin), "type", "classifier"])
    results = {"noop": statistics.median(bpftool_avg_ns(pin, frame, None, repeat) for _ in range(rounds))}
    ifindex = int(nsx(NODE, "cat", f"/sys/class/net/{SERVER_HOST_IF}/ifindex").strip())
    # struct __sk_buff up to cb[4]: cb[0] = direction (0 = inbound), cb[1] = ifindex.
    ctx = bytearray(68)
    ctx[52:56] = ifindex.to_bytes(4, sys.byteorder)
    for rules in (0, 10, 30):
        agent.start(nomatch_files(rules))
        try:
            prog = PIN_DIR / "prog-pm_test_decide"
            results[str(rules)] = statistics.median(
                bpftool_avg_ns(prog, frame, bytes(ctx), repeat) for _ in range(rounds))
        finally:
            agent.stop()
    return results
