"""Container logs as JSON lines, in Docker's json-file format.

One line per chunk: {"log": "...", "stream": "stdout"|"stderr", "time": RFC 3339 with
nanoseconds}. Keeping Docker's format means stdout and stderr stay apart, times
are kept, and anyone who has read a Docker log file can read ours.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

LOG_FILE = "ctr-json.log"


@dataclass(frozen=True)
class LogEntry:
    stream: str
    time: str
    data: bytes


def rfc3339(t: float | None = None) -> str:
    t = time.time() if t is None else t
    whole = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t)))
    return f"{whole}.{int((t % 1) * 1e9):09d}Z"


def encode(stream: str, data: bytes, t: float | None = None) -> bytes:
    """One log line per output line (Docker splits on newlines too), each ending in \\n."""
    out = []
    stamp = rfc3339(t)
    for line in data.splitlines(keepends=True):
        out.append(json.dumps({"log": line.decode("utf-8", "replace"), "stream": stream, "time": stamp}) + "\n")
    return "".join(out).encode()


def read(path: Path, tail: int | None = None) -> list[LogEntry]:
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return []
    if tail is not None:
        lines = lines[-tail:] if tail > 0 else []
    return [_decode(line) for line in lines if line.strip()]


def _decode(line: bytes) -> LogEntry:
    d = json.loads(line)
    return LogEntry(d["stream"], d["time"], d["log"].encode())


def follow(path: Path, offset: int, alive) -> Iterator[LogEntry]:
    """Entries appended after byte `offset`, until `alive()` is false and the file is drained.

    Waits with inotify when the kernel offers it, so an idle log costs no CPU.
    """
    from ctr.native.inotify import Watch

    with Watch(path) as watch, open(path, "rb") as f:
        f.seek(offset)
        pending = b""
        while True:
            chunk = f.read()
            if chunk:
                pending += chunk
                *complete, pending = pending.split(b"\n")
                for line in complete:
                    if line.strip():
                        yield _decode(line)
                continue
            if not alive():
                return
            watch.wait(timeout=0.5)  # bounded: re-check liveness twice a second
