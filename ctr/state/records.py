"""ctr's record of each container, whatever its backend.

One directory per container under paths.containers/<name>: the record JSON
(spec, backend, status, times) plus whatever the backend keeps there (native:
the writable layer). Names are reserved by mkdir, which is atomic, so two
concurrent `ctr run --name x` cannot both win. Records are written to a temp
file and renamed; changes to one container serialize on an flock.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ctr.errors import Conflict, CtrError, NotFound
from ctr.spec import validate_name
from ctr.state.files import flock, write_json_atomic
from ctr.state.names import generate_name, new_id
from ctr.state.paths import Paths

RECORD_FILE = "record.json"


@dataclass
class Record:
    id: str
    name: str
    backend: str
    spec: dict
    image: str = ""
    image_digest: str = ""
    status: str = "created"
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    pid: int | None = None
    pid_start: int | None = None  # /proc/PID/stat field 22: tells a reused pid apart
    exit_code: int | None = None
    oom_killed: bool = False
    cgroup: str = ""
    extra: dict = field(default_factory=dict)  # the backend's own bookkeeping

    @property
    def short_id(self) -> str:
        return self.id[:12]


class RecordStore:
    def __init__(self, paths: Paths) -> None:
        self.paths = paths
        self.root = paths.containers

    def dir(self, name: str) -> Path:
        return self.root / validate_name(name)

    def reserve(self, name: str | None, backend: str, spec: dict) -> Record:
        """Claim a name (generated when None) and write the first record."""
        self.root.mkdir(parents=True, exist_ok=True)
        for _ in range(100):
            candidate = name or generate_name()
            try:
                os.mkdir(self.dir(candidate), 0o700)
            except FileExistsError:
                if name:
                    raise Conflict(f'container name "{name}" is already in use') from None
                continue
            record = Record(id=new_id(), name=candidate, backend=backend, spec=spec)
            self.save(record)
            return record
        raise Conflict("could not generate a free container name")

    def save(self, record: Record) -> None:
        write_json_atomic(self.dir(record.name) / RECORD_FILE, asdict(record))

    def load(self, name: str) -> Record:
        try:
            with open(self.dir(name) / RECORD_FILE) as f:
                return Record(**json.load(f))
        except FileNotFoundError:
            raise NotFound(f"no such container: {name}") from None

    def exit_code(self, name: str) -> int:
        """The exit code a container's keeper recorded, for `wait` once the keeper is done."""
        try:
            record = self.load(name)
        except NotFound:
            raise NotFound(f"container {name} was removed when it exited (--rm)") from None
        if record.exit_code is None:
            why = "it never ran" if record.status == "created" else "its monitor died"
            raise CtrError(f"container {name} has no exit code: {why}")
        return record.exit_code

    def list(self) -> list[Record]:
        out = []
        if self.root.is_dir():
            for entry in sorted(self.root.iterdir()):
                try:
                    out.append(self.load(entry.name))
                except (NotFound, ValueError, TypeError):
                    continue  # a name being reserved right now, or a foreign directory
        return out

    def remove(self, name: str) -> None:
        shutil.rmtree(self.dir(name), ignore_errors=True)

    @contextmanager
    def lock(self, name: str) -> Iterator[int]:
        """Serialize changes to one container across ctr processes (liblxc's lxclock idea).

        Yields the lock's fd: a process forked while holding it shares the lock and must
        close that fd, or it would hold the lock for as long as it lives."""
        with flock(self.paths.run / "locks" / validate_name(name), 0o600) as fd:
            yield fd


def process_start_time(pid: int) -> int | None:
    """Start time of pid in clock ticks since boot, or None when there is no such live process.

    A zombie counts as gone: it has exited, and its reaper (perhaps a slow init) has
    simply not collected it yet."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])
