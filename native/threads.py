"""Helper threads that never take the process's signals.

The kernel hands a process-directed signal (Ctrl-C, `kill PID`) to any thread that does
not block it. CPython runs handlers only in the main thread, and a signal that lands on a
helper thread sets a flag without interrupting the main thread's blocking call (select,
read, waitpid): ctr would sit out a 60 s `wait` before it noticed Ctrl-C. A thread started
here inherits a mask that blocks every signal, so each one goes to the main thread.
"""

from __future__ import annotations

import _thread
import signal
from collections.abc import Callable
from typing import Any


def start_quiet(target: Callable[..., Any], *args: Any) -> None:
    """_thread.start_new_thread with every signal blocked in the new thread (set before it
    exists, so there is no window in which it could take one)."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        _thread.start_new_thread(target, args)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def start_quiet_thread(thread: Any) -> None:
    """threading.Thread.start() with every signal blocked in the new thread."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
    try:
        thread.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
