#!/usr/bin/env python3
"""Copies the collector benchmark's summary (the "Highest achieved rate" lines,
the receive-cost table and the replay row of bench/collector/RESULTS.md) into the "## Collector"
section of bench/RESULTS.md, so that bench/RESULTS.md holds every result;
the rest of that section (the pointer) stays. Run by bench/collector/run.sh."""
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def summary(collector_md: str) -> list[str]:
    lines = collector_md.splitlines()
    run = next((l for l in lines if l.startswith("Command:")), "")
    start = next((i for i, l in enumerate(lines) if l.startswith("Highest achieved rate")), None)
    if start is None:
        return []
    block = [lines[start]] + [l for l in lines[start + 1:] if l.startswith("- ")][:4]
    costs = []
    for i, l in enumerate(lines):
        if l.startswith("Receive cost at") or l.startswith("Capture cost at"):
            rows = []
            for t in lines[i + 2:]:
                if not t.startswith("|"):
                    break
                rows.append(t)
            costs += [l, "", *rows, ""]
    at = next((i for i, l in enumerate(lines) if l.startswith("| replay |")), None)
    replay = lines[at : at + 3] if at is not None else []
    return [run, "", *block, "", *costs, *replay]


def main() -> int:
    results = ROOT / "bench" / "RESULTS.md"
    collector = ROOT / "bench" / "collector" / "RESULTS.md"
    if not results.exists() or not collector.exists():
        return 0
    text = results.read_text()
    head, sep, _ = text.partition("## Collector")
    if not sep:
        return 0
    body = ["## Collector", "", "`make bench` also runs `bench/collector/run.sh`; details and what limits the rate in",
            "[`bench/collector/RESULTS.md`](collector/RESULTS.md). Its last run:", "", *summary(collector.read_text()), ""]
    results.write_text(head + "\n".join(body))
    return 0


if __name__ == "__main__":
    sys.exit(main())
