"""ctr's helper threads block every signal, so Ctrl-C and `kill` always reach the main
thread, the only one in which CPython runs handlers (issue 13: a compare interrupted while
the cgroup-priming thread ran sat out its container's `sleep 60`)."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from ctr.native.threads import start_quiet, start_quiet_thread


def _blocked(tid: int) -> int:
    for line in Path(f"/proc/self/task/{tid}/status").read_text().splitlines():
        if line.startswith("SigBlk:"):
            return int(line.split()[1], 16)
    raise KeyError("SigBlk")


def _every_signal_blocked(start) -> None:
    seen: dict[str, int] = {}
    done = threading.Event()

    def body() -> None:
        seen["mask"] = _blocked(threading.get_native_id())
        done.set()

    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    start(body)
    assert done.wait(5)
    wanted = sum(1 << (s - 1) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1))
    assert seen["mask"] & wanted == wanted
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before  # the caller's own mask is back


def test_start_quiet_blocks_every_signal_in_the_new_thread() -> None:
    _every_signal_blocked(lambda body: start_quiet(body))


def test_start_quiet_thread_blocks_every_signal_in_the_new_thread() -> None:
    _every_signal_blocked(lambda body: start_quiet_thread(threading.Thread(target=body, daemon=True)))
