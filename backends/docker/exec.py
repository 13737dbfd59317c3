"""One `ctr exec` on the docker backend: the engine's exec, with the process decided as on
native, ctr's stdio joined to it, ctr's signals passed to its process, its exit code returned.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ctr.backends.docker.engine import engine_call, exec_failure
from ctr.backends.docker.streams import FORWARDED_SIGNALS, HoldingOutput, Stdio, in_thread, raw_socket, terminal_size
from ctr.process import ExecSpec, merge_env
from ctr.state.records import Record

if TYPE_CHECKING:
    import docker


class Exec:
    """One `ctr exec`: the engine's exec, with the process decided as on native (the
    container's env with the exec's on top, its workdir and user unless given), ctr's
    stdio joined to it, and its exit code returned."""

    def __init__(self, api: docker.APIClient, record: Record, spec: ExecSpec) -> None:
        self.api = api
        self.record = record
        self.spec = spec
        self.exec_id = ""
        self._old_handlers: dict[int, Any] = {}
        self._wrapper: Any = None

    def run(self) -> int:
        record, spec = self.record, self.spec
        process = record.extra.get("process") or {}
        doing = f"cannot exec in container {record.name}"
        created = engine_call(
            doing,
            self.api.exec_create,
            record.extra["docker_id"],
            list(spec.args),
            stdout=True,
            stderr=True,
            stdin=spec.stdin,
            tty=spec.tty,
            environment=list(merge_env(process.get("env") or (), spec.env)),
            workdir=spec.workdir or process.get("cwd") or None,
            user=spec.user if spec.user is not None else process.get("user") or "",
        )
        self.exec_id = created["Id"]
        handle_signals = threading.current_thread() is threading.main_thread()
        if handle_signals:
            self._install_signal_handlers()
        try:
            sock = engine_call(doing, self._start)
            out = HoldingOutput()
            try:
                if spec.tty:
                    self._resize()
                engine_call(f"lost exec in container {record.name}", Stdio(spec.tty, spec.stdin).relay, sock, out)
            finally:
                sock.close()
            info = engine_call(doing, self._finished)
        finally:
            if handle_signals:
                for signum, handler in self._old_handlers.items():
                    signal.signal(signum, handler)
        if out.held and not info.get("Pid"):  # the runtime could not exec: its message, not output
            error = exec_failure(out.held.decode("utf-8", "replace"))
            if error is not None:
                raise error
        out.release()
        return int(info.get("ExitCode") or 0)

    def _start(self) -> socket.socket:
        self._wrapper = self.api.exec_start(self.exec_id, tty=self.spec.tty, socket=True)
        return raw_socket(self._wrapper)

    def _finished(self) -> dict:
        """The exec's inspect once it has ended: the output may close a moment before."""
        delay = 0.01
        while True:
            info = self.api.exec_inspect(self.exec_id)
            if not info.get("Running"):
                return info
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def _resize(self) -> None:
        size = terminal_size()
        if size is None:
            return
        rows, cols = size

        def resize() -> None:
            # The engine starts the process after the stream is set up: retry briefly, as docker's CLI does.
            for attempt in range(10):
                try:
                    self.api.exec_resize(self.exec_id, height=rows, width=cols)
                    return
                except Exception:
                    time.sleep(0.01 * (attempt + 1))

        in_thread("resize", resize)

    def _install_signal_handlers(self) -> None:
        for signum in FORWARDED_SIGNALS:
            self._old_handlers[signum] = signal.signal(signum, lambda s, f: in_thread("kill", lambda: self._signal(s)))
        if self.spec.tty:
            self._old_handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda s, f: self._resize())

    def _signal(self, signum: int) -> None:
        """The engine cannot signal an exec; its process is signalled on the host, once it
        exists, and only when /proc shows it in this container (not a pid of another pid
        namespace, were the engine elsewhere)."""
        cid = self.record.extra["docker_id"]
        for _ in range(100):
            info = self.api.exec_inspect(self.exec_id)
            pid = info.get("Pid")
            if pid:
                try:
                    if cid in Path(f"/proc/{pid}/cgroup").read_text():
                        os.kill(pid, signum)
                except (FileNotFoundError, ProcessLookupError):
                    pass
                return
            if not info.get("Running") and info.get("ExitCode") is not None:
                return
            time.sleep(0.02)
