"""The little networking the native runtime does: bring up `lo` in a new net namespace."""

from __future__ import annotations

import fcntl
import os
import struct

from ctr.native import syscalls as sc

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1


def loopback_up() -> None:
    """A new network namespace has `lo` down; Docker's --network none has it up."""
    fd = sc.datagram_socket()
    try:
        ifreq = struct.pack("16sh14x", b"lo", 0)
        flags = struct.unpack("16sh14x", fcntl.ioctl(fd, SIOCGIFFLAGS, ifreq))[1]
        fcntl.ioctl(fd, SIOCSIFFLAGS, struct.pack("16sh14x", b"lo", flags | IFF_UP))
    finally:
        os.close(fd)
