"""What the native and lxc backends share: containers that ctr keeps itself.

Their PID 1 is watched by a keeper of ctr's (ctr's monitor, or the ctr running it in the
foreground), which records how it ended. ctr signals PID 1 through a pidfd, checked
against the start time in the record, so a reused pid is never signalled; and it waits
for the keeper, not just for PID 1, so that `wait` finds the exit code recorded and `rm`
does not race with the keeper's own tidying up. (The docker engine does all this for the
docker backend.)
"""

from __future__ import annotations

import os
import select
import signal
from abc import abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ctr.backends.base import Backend
from ctr.errors import Conflict, NotFound
from ctr.state.records import Record, RecordStore, process_start_time

if TYPE_CHECKING:
    from ctr.state.logs import LogEntry

MONITOR_EXIT_TIMEOUT = 10.0  # seconds a keeper may take to record an end it has seen


class KeptBackend(Backend):
    records: RecordStore

    @abstractmethod
    def _refresh(self, record: Record) -> Record:
        """`record` with its status read live (running, paused, exited)."""

    @abstractmethod
    def _thaw(self, record: Record) -> None:
        """Thaw a paused container, so that a signal sent to it can act."""

    @abstractmethod
    def _wait_keeper(self, name: str, timeout: float | None) -> None:
        """Until the keeper of container `name` has recorded its end (or `timeout` seconds);
        at once when there is nothing to wait for."""

    def get(self, name: str) -> Record:
        return self._refresh(self.records.load(name))

    def list(self) -> list[Record]:
        return [self._refresh(r) for r in self.records.list() if r.backend == self.name]

    def _alive(self, name: str) -> bool:
        try:
            return self.get(name).status in ("running", "paused")
        except NotFound:
            return False  # removed as it ended (--rm)

    def stop(self, name: str, timeout: float | None = None) -> None:
        """The stop signal, then SIGKILL after the grace period (stop_plan), as `docker stop`;
        returns once the keeper has recorded the end."""
        from ctr.process import stop_plan

        record = self.get(name)
        sig, grace = stop_plan(record.spec, timeout)
        if record.status in ("running", "paused") and not self._signal_and_wait(record, sig, grace):
            self._signal_and_wait(record, signal.SIGKILL, MONITOR_EXIT_TIMEOUT)
        self._wait_keeper(name, MONITOR_EXIT_TIMEOUT)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        record = self.get(name)
        if record.status not in ("running", "paused"):
            raise Conflict(f"cannot kill container {name}: it is not running")
        self._signal_and_wait(record, sig, 0)

    def wait(self, name: str) -> int:
        self.get(name)  # NotFound
        self._wait_keeper(name, None)
        return self.records.exit_code(name)

    def _end_for_removal(self, record: Record, force: bool) -> None:
        """`rm`'s first half: refuse a running container unless forced, else kill it; then
        let its keeper finish (PID 1 may have just ended by itself, too)."""
        if record.status in ("running", "paused"):
            if not force:
                raise Conflict(
                    f"cannot remove container {record.name}: it is {record.status}: stop it first or use --force"
                )
            self._signal_and_wait(record, signal.SIGKILL, MONITOR_EXIT_TIMEOUT)
        self._wait_keeper(record.name, MONITOR_EXIT_TIMEOUT)

    def _signal_and_wait(self, record: Record, sig: int, timeout: float | None) -> bool:
        """Signal PID 1 (thawing a paused container so it can act), wait up to `timeout` for it
        to exit (None: for ever, 0: not at all); True when it has (or was gone already)."""
        from ctr.native import syscalls as sc

        try:
            pidfd = sc.pidfd_open(record.pid)
        except OSError:
            return True
        try:
            if process_start_time(record.pid) != record.pid_start:
                return True  # the pid was reused: our container is gone
            try:
                signal.pidfd_send_signal(pidfd, sig)
            except ProcessLookupError:
                return True
            if record.status == "paused":
                self._thaw(record)
            return bool(select.select([pidfd], [], [], timeout)[0]) if timeout != 0 else False
        finally:
            os.close(pidfd)

    def logs(self, name: str, follow: bool = False, tail: int | None = None) -> Iterator[LogEntry]:
        from ctr.state import logs

        record = self.records.load(name)
        path = self.records.dir(record.name) / logs.LOG_FILE
        if not path.exists():
            path.touch()
        size = path.stat().st_size
        yield from logs.read(path, tail)
        if follow:
            yield from logs.follow(path, size, lambda: self._alive(name))


def wait_pid(pid: int | None, start: int | None, timeout: float | None) -> None:
    """Until process `pid` (the one that started at `start`) has ended, or `timeout` seconds."""
    from ctr.native import syscalls as sc

    if not pid or start is None:
        return
    try:
        pidfd = sc.pidfd_open(pid)
    except OSError:
        return
    try:
        if process_start_time(pid) == start:
            select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
