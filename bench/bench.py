#!/usr/bin/env python3
"""podmirror datapath benchmark (`make bench`), one run on one topology.

Topology, configurations and measures: bench/pmbench/ (topology.py draws the
namespaces, configs.py lists the configurations, report.py says how spreads
and goals are decided). Per configuration, interleaved over --rounds rounds:
TCP throughput (iperf3), 64-byte UDP packets received per second (iperf3 -u
-l 64 -b 0), the programs' live time per packet (kernel.bpf_stats_enabled),
copies delivered at the target vs copies decided, outer IP fragments at the
target. Then BPF_PROG_TEST_RUN program times, the many-pods scenario and the
restart-under-load scenario. Writes bench/results/latest.json,
latest-details.json and bench/RESULTS.md.
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import time

from pmbench import bpfstats, manypods, progtime, report, restart, results, topology
from pmbench.agent import Agent
from pmbench.common import log
from pmbench.configs import CONFIGS, measure_once

SCENARIOS = ["throughput", "progtime", "manypods", "restart"]


def parse_args():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agent", required=True, help="podmirror-agent binary")
    ap.add_argument("--rounds", type=int, default=5, help="rounds per configuration (interleaved)")
    ap.add_argument("--seconds", type=int, default=5, help="seconds of each iperf3 run")
    ap.add_argument("--only", nargs="*", choices=CONFIGS, help="subset of configurations (for trying the bench)")
    ap.add_argument("--pods", type=int, default=1000, help="source veths of the many-pods scenario")
    ap.add_argument("--pods-rounds", type=int, default=3,
                    help="rounds of the many-pods scenario (each: a cold start and a cleanup of every veth)")
    ap.add_argument("--restart-seconds", type=int, default=12, help="traffic time of the restart scenario")
    ap.add_argument("--scenarios", nargs="*", choices=SCENARIOS, default=SCENARIOS)
    return ap.parse_args()


def is_default(args):
    return (not args.only and args.rounds == 5 and args.seconds == 5 and args.pods == 1000 and args.pods_rounds == 3
            and args.restart_seconds == 12 and args.scenarios == SCENARIOS)


def throughput(ctx, names, rounds):
    rows = {}
    for rnd in range(rounds):
        for name in names:
            row = measure_once(name, ctx)
            rows.setdefault(name, []).append(row)
            log(f"round {rnd + 1}/{rounds} {name}: " + json.dumps(
                {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}))
    return rows


def run_all(args, agent, tmp, stats):
    out = {"rows": {}, "prog": {}, "many_rows": None, "restart": None}
    ctx = {"agent": agent, "seconds": args.seconds, "noop_obj": progtime.build_noop(tmp)}
    servers = topology.start_iperf_servers((5201, restart.UDP_PORT))
    time.sleep(0.5)
    phases = {"throughput": lambda: out.update(rows=throughput(ctx, args.only or CONFIGS, args.rounds)),
              "progtime": lambda: out.update(prog=progtime.prog_times(agent, ctx["noop_obj"], stats)),
              "manypods": lambda: out.update(many_rows=manypods.scenario(agent, args.pods, args.pods_rounds,
                                                                          args.seconds)),
              "restart": lambda: out.update(restart=restart.scenario(agent, args.restart_seconds))}
    try:
        for name in SCENARIOS:
            if name in args.scenarios:
                started = time.time()
                phases[name]()
                log(f"{name}: done in {time.time() - started:.0f} s")
    finally:
        for s in servers:
            s.terminate()
            s.wait()
    return out


def main():
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit("bench: needs root")
    command = "make bench" if is_default(args) else " ".join(sys.argv)
    started = time.time()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    agent = Agent(args.agent)
    previous = bpfstats.enable_stats()
    try:
        with tempfile.TemporaryDirectory(prefix="pmbench-") as tmp:
            topology.create()
            try:
                out = run_all(args, agent, tmp, previous)
            finally:
                agent.stop()
                topology.destroy(args.agent)
    finally:
        bpfstats.restore_stats(previous)
    configs, details = report.summarize(out["rows"])
    many = manypods.summary(out["many_rows"], args.pods) if out["many_rows"] else None
    details["many_pods"], details["restart"] = out["many_rows"], out["restart"]
    lines = results.write(configs, details, out["prog"], report.ratios(out["rows"]), out["rows"], many,
                          out["restart"], command, time.time() - started)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
