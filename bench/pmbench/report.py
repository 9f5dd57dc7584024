"""Medians, spreads, ratios and the goals of issue 14.

Spread = min..max over the rounds. With 5 rounds an interquartile range is
two order statistics away from min..max anyway, and min..max is the honest
one: a goal is *met* only when every round meets it. A ratio is computed per
round (configurations are interleaved, so round i of A and round i of B ran
minutes apart at most) and summarized the same way: median and min..max.
A goal whose spread straddles its threshold is "not settled".
"""

import statistics

from .configs import CONFIGS, target_mtu


def _values(rows, getter):
    out = []
    for r in rows:
        try:
            v = getter(r)
        except (KeyError, TypeError):
            v = None
        out.append(v)
    return out


def median_spread(values):
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return statistics.median(vals), [min(vals), max(vals)]


def metric(name):
    """A getter for a row: `tcp_gbps`, `udp64_kpps` or `prog_ns_live.decision|copy`."""
    if name.startswith("prog_ns_live."):
        group = name.split(".", 1)[1]
        return lambda r: r["prog_ns_live"][group]
    return lambda r: r[name]


def summarize(rows):
    configs, details = {}, {}
    for name in CONFIGS:
        rs = rows.get(name, [])
        mirrored = target_mtu(name) is not None
        c = {"spread": {}}
        for key in ("tcp_gbps", "udp64_kpps"):
            c[key], c["spread"][key] = median_spread(_values(rs, metric(key)))
        c["delivered_ratio"] = median_spread(_values(rs, metric("delivered_ratio")))[0] if mirrored else None
        c["outer_fragments"] = median_spread(_values(rs, metric("outer_fragments")))[0] if mirrored else None
        c["prog_ns_live"] = {}
        for group in ("decision", "copy"):
            med, spread = median_spread(_values(rs, metric(f"prog_ns_live.{group}")))
            if med is not None:
                c["prog_ns_live"][group] = med
                c["spread"][f"prog_ns_live.{group}"] = spread
        failures = {}
        for r in rs:
            for k, v in r.get("failures", {}).items():
                failures[k] = failures.get(k, 0) + v
        configs[name] = c
        details[name] = {"runs": rs, "failures_total": failures}
    return configs, details


def paired_ratio(rows, num, den, key):
    """Per-round ratios num/den of `key`, summarized: (median, [min, max])."""
    get = metric(key)
    a, b = _values(rows.get(num, []), get), _values(rows.get(den, []), get)
    return median_spread([x / y if x is not None and y else None for x, y in zip(a, b)])


def verdict(spread, op, threshold):
    if spread is None:
        return "n/a"
    lo, hi = spread
    if op == ">=":
        return "met" if lo >= threshold else ("not met" if hi < threshold else "not settled")
    return "met" if hi <= threshold else ("not met" if lo > threshold else "not settled")


# (key, goal text, numerator config, denominator config, metric, op, threshold)
RATIO_GOALS = [
    ("live_30_rules_x_noop", "nothing matching, 30 rules: live program time <= 2.5x the no-op program",
     "nomatch_30_rules", "noop_program", "prog_ns_live.decision", "<=", 2.5),
    ("live_0_rules_x_noop", "nothing matching, 0 rules: live program time <= 1.5x the no-op program",
     "nomatch_0_rules", "noop_program", "prog_ns_live.decision", "<=", 1.5),
    ("nomatch_tcp_x_no_program", "nothing matching, 30 rules: TCP >= 0.99x no program",
     "nomatch_30_rules", "no_program", "tcp_gbps", ">=", 0.99),
    ("all1500_tcp_x_no_program", "mirror everything at MTU 1500: source TCP >= 0.95x no mirroring",
     "podmirror_all_mtu1500", "no_program", "tcp_gbps", ">=", 0.95),
    ("all9000_tcp_x_peer", "9000 underlay: TCP >= 1.3x the peer (tc mirred into vxlan)",
     "podmirror_all_mtu9000", "peer_tc_mirred_mtu9000", "tcp_gbps", ">=", 1.3),
    ("all9000_udp64_x_peer", "9000 underlay: 64-byte UDP pps >= 1.3x the peer",
     "podmirror_all_mtu9000", "peer_tc_mirred_mtu9000", "udp64_kpps", ">=", 1.3),
] + [
    (f"cut96_{m}_x_full_{mtu}", f"cut to 96 never slower than full length: {label}, MTU {mtu} (>= 1.0x)",
     f"podmirror_cut96_mtu{mtu}", f"podmirror_all_mtu{mtu}", m, ">=", 1.0)
    for mtu in (1500, 9000) for m, label in (("tcp_gbps", "TCP"), ("udp64_kpps", "64-byte UDP pps"))
]

# Ratios shown beside the goals (no threshold of their own).
INFO_RATIOS = [
    ("all1500_udp64_x_no_program", "podmirror_all_mtu1500", "no_program", "udp64_kpps"),
    ("peer1500_tcp_x_no_program", "peer_tc_mirred_mtu1500", "no_program", "tcp_gbps"),
]


def ratios(rows):
    out = {}
    for key, text, num, den, m, op, thr in RATIO_GOALS:
        value, spread = paired_ratio(rows, num, den, m)
        out[key] = {"goal": text, "value": value, "spread": spread, "status": verdict(spread, op, thr)}
    for key, num, den, m in INFO_RATIOS:
        value, spread = paired_ratio(rows, num, den, m)
        out[key] = {"goal": None, "value": value, "spread": spread, "status": None}
    return out


def fragments_goal(rows):
    frags = [r.get("outer_fragments") for r in rows.get("podmirror_all_mtu1500", [])]
    frags = [f for f in frags if f is not None]
    status = "n/a" if not frags else ("met" if max(frags) == 0 else "not met")
    return {"goal": "mirror everything at MTU 1500: zero outer fragments (every round)",
            "value": sum(frags) if frags else None, "spread": [min(frags), max(frags)] if frags else None,
            "status": status}
