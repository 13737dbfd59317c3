"""What the seccomp filter adds to `ctr run --rm busybox true` (issue 14; target < 3 ms).

Two measures, since the end-to-end spread of a whole run (~10-20 ms) hides a few ms:

1. in-process, the steps a native run adds: reading the profile and looking its compiled
   program up in the cache (every run), compiling it with libseccomp (the first run of a
   profile and capability set only), installing it (in a forked child, every run);
2. end to end, medians of alternated `ctr run --rm busybox true` with the default profile
   and with `--security-opt seccomp=unconfined`, on native and lxc.

    python bench/seccomp.py [--runs N] [--backends native,lxc]      (as root)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def in_process(runs: int) -> dict[str, float]:
    from ctr.native import seccomp, syscalls
    from ctr.security import seccomp_program
    from ctr.spec import ContainerSpec
    from ctr.state.paths import Paths

    spec = ContainerSpec("busybox")
    tmp = Path(tempfile.mkdtemp(prefix="ctr-bench-seccomp-"))
    try:
        paths = Paths(tmp, tmp / "run")
        cold, warm, install = [], [], []
        for _ in range(runs):
            shutil.rmtree(tmp / "cache", ignore_errors=True)
            t = time.perf_counter()
            seccomp_program(paths, spec, None)
            cold.append(time.perf_counter() - t)
            t = time.perf_counter()
            program = seccomp_program(paths, spec, None)
            warm.append(time.perf_counter() - t)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                syscalls.prctl(syscalls.PR_SET_NO_NEW_PRIVS, 1)
                t = time.perf_counter()
                syscalls.seccomp_filter(program)
                os.write(w, str(time.perf_counter() - t).encode())
                os._exit(0)
            os.close(w)
            install.append(float(os.read(r, 64)))
            os.close(r)
            os.waitpid(pid, 0)
        del seccomp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ms = lambda xs: round(statistics.median(xs) * 1000, 2)  # noqa: E731
    return {
        "compile (first run of a profile)": ms(cold),
        "cache lookup (every run)": ms(warm),
        "install (every run)": ms(install),
    }


def end_to_end(backend: str, runs: int) -> dict[str, float]:
    ctr = [sys.executable, "-m", "ctr.cli.main", "--backend", backend]
    variants = {"default": [], "unconfined": ["--security-opt", "seccomp=unconfined"]}
    samples: dict[str, list[float]] = {k: [] for k in variants}
    for flags in variants.values():  # warm: image, cache, page cache
        subprocess.run([*ctr, "run", "--rm", *flags, "busybox", "true"], check=True)
    for _ in range(runs):
        for name, flags in variants.items():
            t = time.perf_counter()
            subprocess.run([*ctr, "run", "--rm", *flags, "busybox", "true"], check=True)
            samples[name].append(time.perf_counter() - t)
    return {name: round(statistics.median(xs) * 1000, 1) for name, xs in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--backends", default="native,lxc")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (containers need it)", file=sys.stderr)
        return 2
    steps = in_process(args.runs)
    print("| step | median ms |\n|---|---:|")
    for step, value in steps.items():
        print(f"| {step} | {value} |")
    added = steps["cache lookup (every run)"] + steps["install (every run)"]
    print(f"\nadded to every run: {added:.2f} ms (target < 3 ms: {'met' if added < 3 else 'not met'})\n")
    print("| backend | default ms | unconfined ms | difference ms |\n|---|---:|---:|---:|")
    for backend in args.backends.split(","):
        r = end_to_end(backend, args.runs)
        print(f"| {backend} | {r['default']} | {r['unconfined']} | {r['default'] - r['unconfined']:+.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
