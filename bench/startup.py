"""Section 6: what a user waits for before ctr does anything: `ctr --help` wall time, and the
slowest imports behind it (`python -X importtime`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from harness import Bench, NotAvailable, na
from timing import Command, round_robin


def measure_help(b: Bench) -> dict:
    if not b.selected({"help"}):
        return {"wall": na("not selected (--only)"), "importtime": na("not selected (--only)")}
    b.say(f"6. timing ctr --help x {b.args.runs}")
    wall = round_robin(b, [Command("ctr --help", lambda i: b.ctr + ["--help"])], b.args.runs)["ctr --help"]
    return {"wall": wall, "importtime": import_times(b)}


def import_times(b: Bench) -> dict:
    """`python -X importtime` of `ctr --help`: the ten imports with the largest cumulative time."""
    script = Path(sys.executable).parent / "ctr"
    argv = [sys.executable, "-X", "importtime"] + ([str(script)] if script.exists() else ["-m", "ctr.cli.main"])
    try:
        r = b.sh(argv + ["--help"], stdout=subprocess.DEVNULL)
    except NotAvailable as exc:
        return na(str(exc))
    rows = []
    for line in r.stderr.decode().splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append(
                {
                    "module": m.group(4),
                    "self_us": int(m.group(1)),
                    "cumulative_us": int(m.group(2)),
                    "depth": len(m.group(3)) // 2,
                }
            )
    top_level_us = sum(row["cumulative_us"] for row in rows if row["depth"] == 0)
    rows.sort(key=lambda row: row["cumulative_us"], reverse=True)
    return {"status": "ok", "total_ms": round(top_level_us / 1000, 1), "top": rows[:10]}
