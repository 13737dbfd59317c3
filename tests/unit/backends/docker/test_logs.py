"""ctr.backends.docker.logs: log frames keep streams and times apart; stdout_first orders what the
engine stamped too close to tell."""

from __future__ import annotations

import pytest

from tests.unit.backends.docker.frames import frames


@pytest.mark.parametrize("cut", [1, 5, 8, 13, 4096])
def test_log_frames_keep_streams_and_times_apart(cut):
    from ctr.backends.docker.logs import _log_frames
    from ctr.state.logs import LogEntry

    stream = frames(
        [
            (1, b"2024-05-01T12:00:00.000000001Z out\n"),
            (2, b"2024-05-01T12:00:00.000000002Z err\n"),
            (1, b"2024-05-01T12:00:00.000000003Z no newline"),
        ]
    )
    chunks = (stream[i : i + cut] for i in range(0, len(stream), cut))
    assert list(_log_frames(chunks)) == [
        LogEntry("stdout", "2024-05-01T12:00:00.000000001Z", b"out\n"),
        LogEntry("stderr", "2024-05-01T12:00:00.000000002Z", b"err\n"),
        LogEntry("stdout", "2024-05-01T12:00:00.000000003Z", b"no newline"),
    ]


def _entry(stream: str, ms: float, data: bytes = b""):
    from ctr.state.logs import LogEntry, rfc3339

    return LogEntry(stream, rfc3339(1714564800 + ms / 1000), data or f"{stream}@{ms}".encode())


def test_stdout_first_orders_what_the_engine_stamped_too_close_to_tell():
    from ctr.backends.docker.logs import stdout_first

    # The engine stamped `echo out; echo err >&2` the wrong way round, 0.3 ms apart.
    entries = [_entry("stderr", 0.0), _entry("stdout", 0.3)]
    assert [e.stream for e in stdout_first(iter(entries))] == ["stdout", "stderr"]
    # Further apart than the window: the engine's order stands.
    entries = [_entry("stderr", 0.0), _entry("stdout", 50.0), _entry("stdout", 51.0), _entry("stderr", 52.0)]
    assert [e.data for e in stdout_first(iter(entries))] == [e.data for e in entries]
    # Each stream keeps its own order; stderr held back stays in order behind stdout.
    entries = [
        _entry("stderr", 0.0, b"e1"),
        _entry("stderr", 1.0, b"e2"),
        _entry("stdout", 2.0, b"o1"),
        _entry("stdout", 30.0, b"o2"),
    ]
    assert [e.data for e in stdout_first(iter(entries))] == [b"o1", b"e1", b"e2", b"o2"]


def test_stdout_first_does_not_hold_a_followed_stderr_line():
    from ctr.backends.docker.logs import _TICK, stdout_first

    seen = []
    source = iter([_entry("stderr", 0.0), _TICK, _entry("stdout", 1.0)])
    gen = stdout_first(source)
    seen.append(next(gen).stream)  # released by the tick, before the next entry arrives
    seen.append(next(gen).stream)
    assert seen == ["stderr", "stdout"]
