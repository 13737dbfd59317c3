"""ctr.backends.docker.streams: the attach framing demultiplexed whatever the engine's chunks, and an
exec's output held back only while it looks like runc's failure."""

from __future__ import annotations

import socket
import threading

import pytest

from tests.unit.backends.docker.frames import frames


@pytest.mark.parametrize("cut", [1, 3, 7, 8, 9, 100, 65536])
def test_demultiplexing_survives_any_split(capfd, cut):
    from ctr.backends.docker.streams import Output, _copy_multiplexed

    parts = [(1, b"out1\n"), (2, b"err1\n"), (1, b"x" * 100000), (2, b""), (3, b"engine\n"), (1, b"end\n")]
    stream = frames(parts)
    a, b = socket.socketpair()

    def feed() -> None:
        for i in range(0, len(stream), cut):
            a.sendall(stream[i : i + cut])
        a.close()

    threading.Thread(target=feed).start()
    _copy_multiplexed(b, Output())
    b.close()
    out, err = capfd.readouterr()
    assert out == "out1\n" + "x" * 100000 + "end\n"
    assert err == "err1\nengine\n"


@pytest.mark.parametrize(
    "chunks,held,written",
    [
        ([b"OCI runtime ", b"exec failed: exec failed: x\r\n"], b"OCI runtime exec failed: exec failed: x\r\n", b""),
        ([b"OCI runtime exec failed\n", b"more\n"], None, b"OCI runtime exec failed\nmore\n"),
        ([b"OCI", b" something else\n"], None, b"OCI something else\n"),
        ([b"plain output\n"], None, b"plain output\n"),
    ],
)
def test_exec_output_holds_back_only_what_looks_like_runcs_failure(capfd, chunks, held, written):
    from ctr.backends.docker.streams import HoldingOutput

    out = HoldingOutput()
    for chunk in chunks:
        out.write(1, chunk)
    assert out.held == held
    assert capfd.readouterr().out.encode() == written
