"""A container's log as the engine's json-file driver keeps it: read back with each entry's
stream and time, and put in the order the container wrote it (stdout_first).
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ctr.backends.docker.engine import engine_call, engine_iter, engine_time, open_stream
from ctr.native.threads import start_quiet_thread
from ctr.state.logs import LogEntry

if TYPE_CHECKING:
    import docker

LOG_TIE_WINDOW = 0.010  # seconds: stdout and stderr entries this close count as simultaneous (stdout_first)
TAIL_SLACK = 256  # entries read beyond a --tail, so that stdout_first orders the cut right


def read_logs(api: docker.APIClient, name: str, info: dict, follow: bool, tail: int | None) -> Iterator[LogEntry]:
    """The log of the engine container `info` (its inspect), ctr's container `name`."""
    tty = bool(info["Config"].get("Tty"))
    if tail is not None and tail <= 0 and not follow:
        return
    # Without follow, a few entries more than asked for, so that the order fixed below
    # (stdout_first) is right at the cut too; the surplus is dropped here.
    wanted = "all" if tail is None else max(tail, 0) + (0 if follow or tty else TAIL_SLACK)
    params = {"stdout": 1, "stderr": 1, "timestamps": 1, "follow": int(follow), "tail": wanted}
    doing = f"cannot read the logs of container {name}"
    response = engine_call(
        doing, open_stream, api, "GET", "/containers/{0}/logs", info["Id"], params, None if follow else api.timeout
    )
    try:
        chunks = response.iter_content(chunk_size=None)  # each chunk as the engine sends it
        if tty:  # one stream: nothing to order
            entries = _log_lines(chunks)
        else:
            entries = stdout_first(_with_ticks(_log_frames(chunks)) if follow else _log_frames(chunks))
        entries = engine_iter(doing, entries)
        if tail is not None and not follow:
            entries = iter(collections.deque(entries, maxlen=tail))
        yield from entries
    finally:
        response.close()


def _log_frames(chunks: Iterator[bytes]) -> Iterator[LogEntry]:
    """The logs of a container without tty: Docker's framing (8-byte header: stream, 0, 0, 0,
    big-endian length), one frame per log message, each starting with its time and a space."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        while len(buf) >= 8:
            length = int.from_bytes(buf[4:8], "big")
            if len(buf) < 8 + length:
                break
            stream = "stderr" if buf[0] == 2 else "stdout"
            yield _log_entry(stream, bytes(buf[8 : 8 + length]))
            del buf[: 8 + length]


def _log_lines(chunks: Iterator[bytes]) -> Iterator[LogEntry]:
    """The logs of a tty container: one stream, no framing; each message is a line."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            yield _log_entry("stdout", line + b"\n")
    if buf:
        yield _log_entry("stdout", buf)


def _log_entry(stream: str, message: bytes) -> LogEntry:
    stamp, _, data = message.partition(b" ")
    return LogEntry(stream, stamp.decode("ascii", "replace"), data)


_TICK = object()  # "nothing new for a while", from _with_ticks


def stdout_first(entries: Iterator[Any], window: float = LOG_TIE_WINDOW) -> Iterator[LogEntry]:
    """The log in the order the container wrote it, as near as the engine lets us know.

    Docker stamps stdout and stderr in separate goroutines (behind containerd's shim, which
    copies them in two more), so of `echo out; echo err >&2` the err line is stamped, and
    stored, first about a third of the time: by a few hundred µs here, by tens of ms under
    load. Each stream's own order is exact. So entries of the two streams stamped within
    `window` of each other count as simultaneous, and stdout goes first, which is what the
    native monitor does with two pipes that are ready at once. The cost: stderr written
    less than `window` before stdout is shown after it.

    stderr entries are held until a later entry, a _TICK (nothing came for `window`) or the
    end shows that no stdout entry stamped before them (within the window) can still come.
    """
    held: collections.deque[LogEntry] = collections.deque()
    for entry in entries:
        if entry is _TICK:
            yield from held
            held.clear()
        elif entry.stream == "stderr":
            held.append(entry)
        else:
            stamp = engine_time(entry.time) or 0.0
            while held and (engine_time(held[0].time) or 0.0) < stamp - window:
                yield held.popleft()
            yield entry  # before the stderr entries stamped at most `window` earlier
    yield from held


def _with_ticks(entries: Iterator[LogEntry], quiet: float = LOG_TIE_WINDOW) -> Iterator[Any]:
    """`entries` (read in a thread), with a _TICK whenever none came for `quiet` seconds:
    a followed log must not hold a stderr line back until the next line comes."""
    import queue

    q: queue.Queue = queue.Queue()
    end = object()

    def read() -> None:
        try:
            for entry in entries:
                q.put(entry)
        except BaseException as exc:  # handed to the consumer, which raises it
            q.put(exc)
        q.put(end)

    start_quiet_thread(threading.Thread(target=read, name="ctr-logs", daemon=True))
    while True:
        try:
            item = q.get(timeout=quiet)
        except queue.Empty:
            yield _TICK
            item = q.get()
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
