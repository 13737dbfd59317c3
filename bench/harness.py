"""The benchmark's run context and its vocabulary of results.

Bench holds what one run shares: its arguments, its temp dir and id, the time budget
(--max-seconds, --timeout), the bounded way to run a command, and the cleanup registry that
undoes whatever the run starts. NotAvailable / Deadline / Interrupted are how a measurement
says it cannot go on; na() and summarize() are the two shapes every result takes.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BACKENDS = ("native", "lxc", "docker")
CLEANUP_TIMEOUT = 15  # seconds for one cleanup command
CLEANUP_BUDGET = 60  # seconds for all cleanup commands; the sweep after them is quick


class NotAvailable(Exception):
    """This measurement cannot run here; the message says why."""


class Deadline(NotAvailable):
    """--max-seconds is used up."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwind like Ctrl-C, cleaning up on the way."""


def na(reason: str) -> dict:
    return {"status": "n/a", "reason": reason}


def is_ok(result: dict | None) -> bool:
    return bool(result) and result.get("status") == "ok"


def last_line(data: bytes | str | None) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else (data or "")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile: a value that was actually measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def summarize(seconds: list[float], failures: list[str]) -> dict:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return na(f"every run failed: {failures[-1]}" if failures else "no run completed")
    out = {
        "status": "ok",
        "runs": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(p90(ms), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
        "failures": len(failures),
        "samples_ms": [round(v, 2) for v in ms],
    }
    if failures:
        out["last_error"] = failures[-1]
    return out


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path  # everything the run creates on disk lives under here
    run_id: str  # in every name the run gives, so cleanup finds only its own things
    started: float = field(default_factory=time.monotonic)
    cleanups: dict[str, Callable[[], None]] = field(default_factory=dict)
    skippable: set[str] = field(default_factory=set)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cache: dict = field(default_factory=dict)

    @property
    def root(self) -> Path:
        """ctr's private state root: the user's containers are never touched."""
        return self.tmp / "ctr-root"

    @property
    def ctr(self) -> list[str]:
        script = Path(sys.executable).parent / "ctr"
        base = [str(script)] if script.exists() else [sys.executable, "-m", "ctr.cli.main"]
        return base + ["--root", str(self.root)]

    def ctr_on(self, backend: str) -> list[str]:
        return self.ctr + ["--backend", backend]

    def selected(self, tags: set[str]) -> bool:
        return not self.args.only or bool(tags & self.args.only)

    def say(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def limit(self, timeout: float | None = None) -> float:
        """The timeout for the next command: its own bound, cut to what the deadline leaves."""
        left = self.args.max_seconds - (time.monotonic() - self.started)
        if left <= 1:
            raise Deadline(f"deadline reached (--max-seconds {self.args.max_seconds:g})")
        return min(timeout or self.args.timeout, left)

    def sh(
        self, argv: list[str], *, timeout: float | None = None, check: bool = True, stdout=subprocess.PIPE
    ) -> subprocess.CompletedProcess:
        """Run a command, bounded; failures become NotAvailable with the command's last line."""
        limit = self.limit(timeout)
        try:
            r = subprocess.run(
                argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, timeout=limit, env=self.env
            )
        except FileNotFoundError:
            raise NotAvailable(f"{argv[0]} is not installed") from None
        except subprocess.TimeoutExpired:
            raise NotAvailable(f"{short(argv)} timed out after {limit:.0f}s") from None
        if check and r.returncode != 0:
            why = last_line(r.stderr) or last_line(r.stdout if stdout == subprocess.PIPE else b"")
            raise NotAvailable(f"{short(argv)} exited {r.returncode}: {why}")
        return r

    def quiet(self, argv: list[str], timeout: float = CLEANUP_TIMEOUT) -> subprocess.CompletedProcess | None:
        """A cleanup command: bounded, outside the deadline, never raises (None if it could not run)."""
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=self.env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.say(f"cleanup: {short(argv)}: {exc}")
            return None

    def timed(self, argv: list[str], timeout: float | None = None) -> float:
        """Wall seconds of one successful run (stdout discarded, stderr kept for the reason)."""
        t0 = time.perf_counter()
        self.sh(argv, timeout=timeout, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    def defer(self, key: str, fn: Callable[[], None], skippable: bool = False) -> None:
        """Register cleanup for something about to be started; done(key) once it is gone.

        `skippable`: a backstop catches it too (one `ctr rm -f` per container: the
        docker label sweep and remove_tree's process sweep), so it may be dropped
        when the cleanup budget is spent."""
        self.cleanups[key] = fn
        if skippable:
            self.skippable.add(key)

    def done(self, key: str) -> None:
        self.cleanups.pop(key, None)

    def cleanup(self) -> None:
        """Undo everything still registered, newest first, within CLEANUP_BUDGET; never raises.

        What a hung `ctr rm -f` leaves (or what the budget cut short) is caught by the
        backstops: the docker label sweep, and remove_tree()'s sweep of processes tied
        to the run's temp dir and of native cgroups.
        """
        t0 = time.monotonic()
        for key in reversed(list(self.cleanups)):
            fn = self.cleanups.pop(key)
            if key in self.skippable and time.monotonic() - t0 > CLEANUP_BUDGET:
                continue  # a backstop later in the list catches it
            try:
                fn()
            except Exception as exc:  # keep going: the next item may still be cleanable
                self.say(f"cleanup of {key} failed: {exc}")


def short(argv: list[str]) -> str:
    """A command for a message: program name, no paths, no --root DIR."""
    words = [Path(argv[0]).name]
    for prev, word in zip(argv, argv[1:]):
        if word != "--root" and prev != "--root" and not word.startswith("/"):
            words.append(word)
    return " ".join(words[:7])
