"""The foreground run (`ctr run` without -d): the container's stdio is ctr's, its exit code
is ctr's. It attaches and registers its wait before the start, so that no output and no exit
can be missed, and forwards ctr's signals and terminal size to the container.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ctr.backends.docker.engine import engine_call, engine_exceptions, open_stream, start_error
from ctr.backends.docker.streams import FORWARDED_SIGNALS, Output, Stdio, in_thread, raw_socket, terminal_size
from ctr.errors import CtrError
from ctr.spec import ContainerSpec
from ctr.state.records import Record

if TYPE_CHECKING:
    import docker


class _Interrupted(BaseException):
    """A signal arrived before the container started: clean up, exit 128+N.

    A BaseException like KeyboardInterrupt, so no `except Exception` mistakes it for an engine error.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Foreground:
    """One `ctr run` without -d: the container's stdio is ctr's, its exit code is ctr's.

    Its record exists from create on, so `ctr ps` and `ctr inspect` see it while it runs;
    --rm, or a start that failed or never happened, removes record and engine container.
    The backend hands in how: `create()` makes both, `discard(record, engine_removed)`
    removes both (`engine_removed`: the engine said it removed its container already)."""

    def __init__(
        self, api: docker.APIClient, spec: ContainerSpec, create: Callable[[], Record], discard: Callable[..., None]
    ) -> None:
        self.spec = spec
        self.api = api
        self.create = create
        self.discard = discard
        self.record: Record | None = None
        self.container_id: str | None = None
        self.name = spec.name or ""
        self.started = False
        self._old_handlers: dict[int, Any] = {}
        self._attach_wrapper: Any = None
        self.engine_removed = False  # the wait for condition "removed" (--rm) has answered

    def run(self) -> int:
        # Signal handlers can only be set from the main thread; a library caller elsewhere
        # gets no forwarding, the rest works the same.
        handle_signals = threading.current_thread() is threading.main_thread()
        if handle_signals:
            self._install_signal_handlers()
        try:
            return self._run()
        except _Interrupted as exc:
            return 128 + exc.signum
        finally:
            try:
                # --rm, or a start that failed or never happened: leave nothing behind.
                if self.record is not None and (self.spec.auto_remove or not self.started):
                    self.discard(self.record, engine_removed=self.engine_removed)
            finally:
                if handle_signals:
                    self._restore_signal_handlers()

    def _run(self) -> int:
        self.record = self.create()
        self.container_id, self.name = self.record.extra["docker_id"], self.record.name
        # Attach and register the wait before starting: no output and no exit can be missed.
        sock = engine_call(f"cannot attach to container {self.name}", self._attach)
        waiter = None
        try:
            waiter = engine_call(f"cannot wait for container {self.name}", self._wait_request)
            try:
                self.api.start(self.container_id)
            except engine_exceptions() as exc:
                raise start_error(exc, self.name, self.spec.privileged) from exc
            self.started = True
            return engine_call(f"lost container {self.name}", self._stream_until_exit, sock, waiter)
        finally:
            sock.close()
            if waiter is not None:
                waiter.close()

    # --- engine calls ---

    def _attach(self) -> socket.socket:
        params = {"stdin": int(self.spec.stdin), "stdout": 1, "stderr": 1, "stream": 1}
        wrapper = self.api.attach_socket(self.container_id, params=params)
        self._attach_wrapper = wrapper  # the SocketIO must live as long as its socket
        return raw_socket(wrapper)

    def _wait_request(self):
        """POST /wait with stream=True returns as soon as the engine sent its headers, i.e.
        once the waiter is registered; the body, the exit status, comes when the container
        is done (or, with --rm, removed)."""
        condition = "removed" if self.spec.auto_remove else "next-exit"
        return open_stream(self.api, "POST", "/containers/{0}/wait", self.container_id, {"condition": condition}, None)

    def _forward(self, signum: int) -> None:
        in_thread("kill", lambda: self.api.kill(self.container_id, signal=int(signum)))

    def _resize(self) -> None:
        size = terminal_size()
        if size is not None and self.started:
            rows, cols = size
            in_thread("resize", lambda: self.api.resize(self.container_id, height=rows, width=cols))

    # --- signals ---

    def _install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame) -> None:
            if self.started:
                self._forward(signum)
            else:  # not running yet: give up, and let run() remove what was created
                raise _Interrupted(signum)

        for signum in FORWARDED_SIGNALS:
            self._old_handlers[signum] = signal.signal(signum, on_signal)
        if self.spec.tty:
            self._old_handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda s, f: self._resize())

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()

    # --- streams ---

    def _stream_until_exit(self, sock: socket.socket, waiter) -> int:
        if self.spec.tty:
            self._resize()
        status = Stdio(self.spec.tty, self.spec.stdin).relay(sock, Output(), until=waiter.json)
        error = (status.get("Error") or {}).get("Message")
        if error:
            raise CtrError(f"cannot wait for container {self.name}: {error}")
        self.engine_removed = self.spec.auto_remove
        return int(status["StatusCode"])
