"""Round-robin timing: compared commands run in turns (A B C A B C ...) after one uncounted
warm-up each, so drift on the machine hits them alike; each becomes a summarize() result."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harness import Bench, Deadline, NotAvailable, is_ok, na, summarize


@dataclass
class Command:
    """One command to time: argv for run i (0 is the uncounted warm-up), untimed hook after each."""

    label: str
    argv: Callable[[int], list[str]]
    after: Callable[[int, bool], None] | None = None  # (run, failed): clean up between runs
    timeout: float | None = None


MAX_FAILURES = 3  # a command that fails this often is dropped from the rotation


def round_robin(b: Bench, commands: list[Command], runs: int) -> dict[str, dict]:
    """Warm each command up once, then time them in turns: A B C A B C ..."""
    results: dict[str, dict] = {}
    active: list[Command] = []
    for cmd in commands:
        try:
            run_once(b, cmd, 0)
            active.append(cmd)
        except Deadline as exc:
            results[cmd.label] = na(str(exc))
        except NotAvailable as exc:
            results[cmd.label] = na(str(exc))
            b.say(f"  {cmd.label}: n/a: {exc}")
    samples: dict[str, list[float]] = {c.label: [] for c in active}
    failures: dict[str, list[str]] = {c.label: [] for c in active}
    stopped = ""
    for i in range(1, runs + 1):
        for cmd in list(active):
            try:
                samples[cmd.label].append(run_once(b, cmd, i))
            except Deadline as exc:
                stopped = str(exc)
                break
            except NotAvailable as exc:
                failures[cmd.label].append(str(exc))
                if len(failures[cmd.label]) >= MAX_FAILURES:
                    active.remove(cmd)
        if stopped:
            break
    for cmd in commands:
        if cmd.label in samples:
            results[cmd.label] = summarize(samples[cmd.label], failures[cmd.label])
            if stopped and is_ok(results[cmd.label]):
                results[cmd.label]["note"] = f"stopped early: {stopped}"
    return results


def run_once(b: Bench, cmd: Command, i: int) -> float:
    failed = True
    try:
        seconds = b.timed(cmd.argv(i), cmd.timeout)
        failed = False
        return seconds
    finally:
        if cmd.after:
            cmd.after(i, failed)
