#!/usr/bin/env python3
"""ctr's benchmark (issue 7): what the layer costs on top of the runtimes it drives.

Measured on this machine in one sitting, standard library only:

  1. latency of `ctr --backend B run --rm busybox true` for native, lxc and docker,
     beside references on the same image: unshare+chroot (the kernel's floor),
     `runc run`, `lxc-execute` and `docker run`, and the floor of any Python CLI
     (the interpreter's start, that plus `import click`, and plus the docker SDK);
  2. ratios of those medians (the layer's own overhead);
  3. memory of the process that keeps one detached container (native monitor,
     containerd-shim, LXC's monitor);
  4. time to start, list and remove 10 and 50 detached containers per backend;
  5. `ctr image import` of a ~200 MB tarball against plain `tar -x`;
  6. `ctr --help` wall time and the slowest imports behind it;
  and the issue's targets, each marked met or not met.

Commands that are compared are run round-robin (A B C D A B C D ...) after one
uncounted warm-up each, so drift hits them alike; we report median and p90.
Anything that cannot run here (a backend not written yet, a missing tool) is
reported as "n/a: <reason>" and never stops the run. Every command has a timeout,
the whole run has a deadline (--max-seconds), and whatever the run starts
(containers, runc ids, lxc containers, temp dirs, a private ctr state root) is
cleaned up on the way out, on failure and on Ctrl-C too.

Usage (as root):  .venv/bin/python bench/run.py [--runs N] [--quick] [--only native,help]
Results: bench/results/latest.{md,json} plus timestamped copies (--out DIR elsewhere).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

from harness import BACKENDS, Bench, Interrupted, na
from image_import import measure_image
from keepers import measure_monitors
from latency import measure_latency, ratios
from machine import load_average, machine
from report import empty_report, markdown, targets, write_results
from scale import measure_scale
from startup import measure_help
from sweep import remove_tree

BENCH_DIR = Path(__file__).resolve().parent
SECTIONS = ("latency", "monitor", "scale", "image", "help")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--runs", type=int, help="timed runs per command (default 20; 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny counts: 3 runs, 2 and 4 containers, an 8 MB tarball")
    p.add_argument("--max-seconds", type=float, default=1200, help="deadline for the whole run (default 1200)")
    p.add_argument("--timeout", type=float, default=60, help="bound on any one command, seconds (default 60)")
    p.add_argument("--scale", help="container counts for section 4, comma-separated (default 10,50)")
    p.add_argument(
        "--only",
        help=f"comma-separated tags: any of {', '.join(BACKENDS + SECTIONS)}, refs; "
        "runs every measurement carrying one of them (default: all)",
    )
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="where results go (default bench/results)")
    p.add_argument(
        "--tmpdir", type=Path, default=None, help="where the run's temp dir is made (default $TMPDIR or /tmp)"
    )
    p.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="run ctr with the environment as it is (default: a private PYTHONPYCACHEPREFIX, "
        "so .pyc files are cached even where PYTHONDONTWRITEBYTECODE is set)",
    )
    args = p.parse_args(argv)
    args.runs = args.runs or (3 if args.quick else 20)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    args.scale = sorted(int(n) for n in (args.scale or ("2,4" if args.quick else "10,50")).split(","))
    known = set(BACKENDS + SECTIONS + ("refs",))
    args.only = {t.strip() for t in args.only.split(",") if t.strip()} if args.only else set()
    if args.only - known:
        p.error(f"unknown --only tag(s) {', '.join(sorted(args.only - known))}: choose from {', '.join(sorted(known))}")
    return args


def raise_interrupted(signum: int, _frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: run as root (containers need it)", file=sys.stderr)
        return 2
    report = empty_report(args)
    tmp = Path(tempfile.mkdtemp(prefix="ctr-bench-", dir=args.tmpdir))
    b = Bench(args, tmp, run_id=f"{os.getpid()}{random.randrange(1000):03d}")
    if not args.no_bytecode_cache:
        # ctr is Python: without cached bytecode every run recompiles every module (tens of ms).
        # A private cache dir measures what an installed ctr does without writing into the tree.
        b.env.pop("PYTHONDONTWRITEBYTECODE", None)
        b.env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    b.defer("temp dir", lambda: remove_tree(b, tmp))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupted)
    try:
        b.say(f"bench: private state root {b.root}; results to {args.out}")
        report["machine"] = machine(b)
        report["latency"] = measure_latency(b)
        report["monitor"] = measure_monitors(b)
        report["scale"] = measure_scale(b)
        report["image"] = measure_image(b)
        report["help"] = measure_help(b)
    except (KeyboardInterrupt, Interrupted):
        report["interrupted"] = True
        for section in ("latency", "monitor", "scale", "image", "help"):
            for key, value in report[section].items():
                if value.get("reason") == "not run":
                    report[section][key] = na("interrupted before it ran")
        b.say("interrupted: cleaning up, then writing what was measured")
    finally:
        # A second Ctrl-C must not cut the cleanup short; every step in it is bounded.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        b.say("cleaning up")
        b.cleanup()
    report["ratios"] = ratios(report["latency"])
    report["targets"] = targets(report)
    report["duration_s"] = round(time.monotonic() - b.started, 1)
    if report["machine"]:
        report["machine"]["load average at end"] = load_average()
    for path in write_results(report, args.out):
        b.say(f"wrote {path}")
    print(markdown(report))
    return 130 if report["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
