"""Program time on live traffic: the kernel's own accounting
(`kernel.bpf_stats_enabled=1`: every run of a program adds its duration to
`run_time_ns` and one to `run_cnt`), read before and after a round."""

import contextlib
import json
import os
from pathlib import Path

from . import tcx
from .common import NODE, NOOP_PIN_DIR, ROOT, SERVER_HOST_IF, run

SYSCTL = Path("/proc/sys/kernel/bpf_stats_enabled")
COPY_PROGRAM = "pm_copy_egress"


def enable_stats():
    """Turns the accounting on; returns what `restore_stats` needs. Besides the
    sysctl, a BPF_ENABLE_STATS fd is held for the run: the sysctl is one
    global switch, and another user of this machine writing 0 to it mid-run
    would otherwise stop the accounting (the fd keeps its own reference)."""
    previous = SYSCTL.read_text().strip()
    SYSCTL.write_text("1")
    return {"previous": previous, "fd": tcx.enable_stats_fd()}


def restore_stats(saved):
    os.close(saved["fd"])
    SYSCTL.write_text(saved["previous"])


@contextlib.contextmanager
def suspended(saved):
    """The accounting off for a while (it adds two clock reads to every run,
    BPF_PROG_TEST_RUN's included), then on again as `enable_stats` left it.
    `saved` None: the caller never turned it on; only the sysctl is set."""
    if saved is not None:
        os.close(saved["fd"])
    before = SYSCTL.read_text().strip()
    SYSCTL.write_text("0")
    try:
        yield
    finally:
        SYSCTL.write_text(before)
        if saved is not None:
            saved["fd"] = tcx.enable_stats_fd()


def stats_on():
    return SYSCTL.read_text().strip() != "0"


def _tcx(*args):
    # nsenter, not `ip netns exec`: that remounts /sys, hiding bpffs and the pins.
    return run(["nsenter", f"--net=/run/netns/{NODE}", "env", f"PYTHONPATH={ROOT / 'bench'}",
                "python3", "-m", "pmbench.tcx", *args])


def attached():
    """{device: {hook: [prog ids]}} in the node namespace."""
    return json.loads(_tcx("query"))


def prog_info():
    """{prog id: bpftool's record} for every program of the machine."""
    return {p["id"]: p for p in json.loads(run(["bpftool", "-j", "prog", "show"]))}


def groups(source_dev=SERVER_HOST_IF):
    """The programs to account, by role: `decision` = everything on the source
    veth's hooks, `copy` = the copy program wherever it is attached."""
    info = prog_info()
    out = {"decision": [], "copy": []}
    for dev, hooks in attached().items():
        for ids in hooks.values():
            for pid in ids:
                if info.get(pid, {}).get("name") == COPY_PROGRAM:
                    out["copy"].append(pid)
                elif dev == source_dev:
                    out["decision"].append(pid)
    return {k: sorted(set(v)) for k, v in out.items() if v}


def counters(ids_by_group):
    """{group: [run_time_ns, run_cnt]} summed over the group's programs."""
    info = prog_info()
    return {g: [sum(info.get(i, {}).get("run_time_ns", 0) for i in ids),
                sum(info.get(i, {}).get("run_cnt", 0) for i in ids)] for g, ids in ids_by_group.items()}


def ns_per_run(before, after):
    """{group: ns per packet between two `counters` readings} (None without runs)."""
    out = {}
    for g, (ns1, cnt1) in after.items():
        ns0, cnt0 = before.get(g, [0, 0])
        out[g] = (ns1 - ns0) / (cnt1 - cnt0) if cnt1 > cnt0 else None
    return out


def attach_noop(obj):
    """The no-op classifier on both TCX hooks of the server veth, as the agent attaches its programs."""
    NOOP_PIN_DIR.mkdir(parents=True, exist_ok=True)
    prog = NOOP_PIN_DIR / "prog"
    if not prog.exists():
        run(["bpftool", "prog", "load", str(obj), str(prog), "type", "classifier"])
    for hook in ("ingress", "egress"):
        _tcx("attach", str(prog), SERVER_HOST_IF, hook, str(NOOP_PIN_DIR / f"link-{hook}"))


def detach_noop():
    for hook in ("ingress", "egress"):
        (NOOP_PIN_DIR / f"link-{hook}").unlink(missing_ok=True)
