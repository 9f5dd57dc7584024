"""Writes bench/results/latest.json, latest-details.json and bench/RESULTS.md."""

import json
import os
import time

from . import restart
from .common import ROOT
from .configs import CONFIGS
from .report import fragments_goal


def fmt(v, digits=3):
    if v is None:
        return "n/a"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def span(spread, digits=3):
    return "n/a" if not spread else f"{fmt(spread[0], digits)}..{fmt(spread[1], digits)}"


def all_goals(ratios, rows, many, restart_row):
    """Issue 14's goals in its order: (goal, value, spread, status)."""
    g = [ratios[k] for k in ("live_30_rules_x_noop", "live_0_rules_x_noop", "nomatch_tcp_x_no_program",
                             "all1500_tcp_x_no_program")]
    g.append(fragments_goal(rows))
    g += [r for k, r in ratios.items() if k.startswith("all9000_") or k.startswith("cut96_")]
    g += many["goals"] if many else []
    g += [{"goal": t, "value": v, "spread": None, "status": s} for t, v, s in restart.goals(restart_row)]
    return g


def config_table(configs):
    lines = ["| configuration | TCP Gbit/s (min..max) | UDP 64 B kpps (min..max) | live ns/pkt decision (min..max) | "
             "live ns/pkt copy (min..max) | delivered/decided | outer fragments |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name in CONFIGS:
        c, sp = configs[name], configs[name]["spread"]
        live = c["prog_ns_live"]
        cells = [f"{fmt(c['tcp_gbps'])} ({span(sp.get('tcp_gbps'))})",
                 f"{fmt(c['udp64_kpps'], 1)} ({span(sp.get('udp64_kpps'), 1)})"]
        cells += [f"{fmt(live.get(g), 1)} ({span(sp.get(f'prog_ns_live.{g}'), 1)})" for g in ("decision", "copy")]
        cells += [fmt(c["delivered_ratio"], 4), fmt(c["outer_fragments"])]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def scenario_lines(many, restart_row):
    lines = ["", "## Many pods", ""]
    if many:
        lines += [f"{many['sources']} source veths (pod namespaces, discovery by IP), "
                  f"{many['sources'] // 10} sessions of 10 sources to one Service, 10+10 non-matching rules.", "",
                  "| | median | min..max |", "| --- | ---: | ---: |"]
        for key, label in (("prog_ns_live_single", "live ns/pkt, 1 source veth"),
                           ("prog_ns_live_many", f"live ns/pkt, {many['sources']} source veths"),
                           ("vmrss_mib_many", "agent VmRSS MiB after traffic"),
                           ("programmed_s_single", "agent start to 1 veth programmed, s"),
                           ("programmed_s_many_tcx", f"agent start to {many['sources']} veths programmed (TCX), s"),
                           ("programmed_s_many_clsact",
                            f"agent start to {many['sources']} veths programmed (clsact), s"),
                           ("agent_cpu_share_many", f"agent CPU share (of one CPU), {many['sources']} sources"),
                           ("cleanup_s_many", f"SIGTERM with --cleanup-on-exit, {many['sources']} sources, s")):
            lines.append(f"| {label} | {fmt(many[key][0], 3)} | {span(many[key][1], 3)} |")
    else:
        lines.append("not run")
    lines += ["", "## Restart under load", ""]
    if restart_row:
        runs = [restart_row.get("control") or {}, restart_row.get("restart") or {}]
        keys = list(dict.fromkeys(k for r in runs for k in r))
        lines += ["| measure | control (no restart) | SIGKILL + restart |", "| --- | ---: | ---: |"]
        lines += [f"| {k} | {fmt(runs[0].get(k))} | {fmt(runs[1].get(k))} |" for k in keys]
    else:
        lines.append("not run")
    return lines


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return os.uname().machine


def markdown(configs, prog, goals, many, restart_row, command, elapsed):
    lines = ["# podmirror benchmark results", "",
             f"Command: `{command}` (as root; `make bench` runs `bench/run.sh`, which builds the release agent first).",
             f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, kernel {os.uname().release}, "
             f"{os.cpu_count()} CPUs ({cpu_model()}), {elapsed:.0f} s.",
             "iperf3 client pinned to CPU 0, server to the last CPU.",
             "Configurations interleaved (every round runs each once); medians of the rounds with min..max.",
             "Ratios are taken per round and summarized the same way; a goal whose min..max straddles its",
             "threshold is *not settled*. Raw rounds: `results/latest-details.json`.", ""]
    lines += config_table(configs)
    lines += ["", "Live ns/pkt: `run_time_ns / run_cnt` deltas (`kernel.bpf_stats_enabled=1`) of the programs on the",
              "server veth's TCX hooks (decision) and of `pm_copy_egress` (copy), over the round's iperf3 traffic",
              "(TCP then 64-byte UDP; a GSO skb is one run). `bpf_clone_redirect` transmits the copy from inside the",
              "decision program, so where a packet is copied the decision time includes the copy program's run.", "",
              "Program time per packet, BPF_PROG_TEST_RUN (`bpftool prog run ... repeat`): `pm_veth_ingress` as",
              "attached to the server veth (the test run's ifindex), interleaved with the no-op classifier, on a",
              "64-byte TCP frame that no rule matches; " + (
                  "**kernel.bpf_stats_enabled was on during these runs (its clock reads are included)**:"
                  if prog.get("stats_during_test_run") else "measured with kernel.bpf_stats_enabled off:"),
              "", "| program | ns/packet | x no-op (per round) |", "| --- | ---: | ---: |"]
    for k in ("noop", "0", "10", "30"):
        label = "no-op classifier" if k == "noop" else f"pm_veth_ingress, {k} rules"
        lines.append(f"| {label} | {fmt(prog.get(k))} | {fmt(prog.get(f'{k}_x_noop'), 2)} |")
    lines += ["", "## Goals (issue 14)", "", "| goal | value (median) | min..max | status |",
              "| --- | ---: | ---: | --- |"]
    for g in goals:
        status = g["status"] if g["status"] in ("met", "n/a") else f"**{g['status']}**"
        lines.append(f"| {g['goal']} | {fmt(g['value'], 3)} | {span(g['spread'])} | {status} |")
    lines += scenario_lines(many, restart_row)
    lines += ["", "## What limits it", "", "(to be filled in by hand after a quiet run)", "",
              "## Collector", "", "`make bench` also runs `bench/collector/run.sh`; results in",
              "[`bench/collector/RESULTS.md`](collector/RESULTS.md).", ""]
    return lines


def write(configs, details, prog, ratios, rows, many, restart_row, command, elapsed):
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    goals = all_goals(ratios, rows, many, restart_row)
    doc = {"configs": configs, "prog_ns": prog, "ratios": ratios, "many_pods": many, "restart": restart_row,
           "goals": goals}
    (out_dir / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out_dir / "latest-details.json").write_text(json.dumps(details, indent=2) + "\n")
    lines = markdown(configs, prog, goals, many, restart_row, command, elapsed)
    (ROOT / "bench" / "RESULTS.md").write_text("\n".join(lines))
    return lines
