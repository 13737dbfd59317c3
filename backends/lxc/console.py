"""The pty between liblxc's console relay and ctr: liblxc sets OPOST|ONLCR on the terminal
it relays the console to, so every "\\n" the container's own pty sent arrives as "\\r\\n"."""

from __future__ import annotations

import os


def peer_adds_cr(slave_path: str | None) -> bool:
    """Whether liblxc left output processing with ONLCR on the pty ctr gave it."""
    import termios

    try:
        fd = os.open(slave_path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC)
    except (OSError, TypeError):
        return True  # liblxc 4 and 5 always set it
    try:
        oflag = termios.tcgetattr(fd)[1]
    finally:
        os.close(fd)
    return bool(oflag & termios.OPOST and oflag & termios.ONLCR)


class UndoOnlcr:
    """liblxc sets OPOST|ONLCR on the terminal it relays the console to, so a pty between it
    and ctr turns the container's "\\r\\n" into "\\r\\r\\n": undo exactly that (in a foreground run's
    terminal relay and in a detached container's log alike)."""

    def __init__(self, active: bool) -> None:
        self.active = active
        self.carry = b""

    def __call__(self, data: bytes) -> bytes:
        if not self.active:
            return data
        data = (self.carry + data).replace(b"\r\n", b"\n")
        data, self.carry = (data[:-1], b"\r") if data.endswith(b"\r") else (data, b"")
        return data

    def flush(self) -> bytes:
        out, self.carry = self.carry, b""
        return out
