"""Docker's stream framing as the engine sends it (attach and logs): an 8-byte header (stream, 0, 0, 0,
big-endian length), then the payload."""

from __future__ import annotations


def frames(parts: list[tuple[int, bytes]]) -> bytes:
    return b"".join(bytes([stream, 0, 0, 0]) + len(p).to_bytes(4, "big") + p for stream, p in parts)
