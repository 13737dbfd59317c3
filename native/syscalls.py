"""Every raw syscall the native runtime needs, behind one small module.

ctypes with use_errno=True; a failure raises OSError(errno, strerror, path) so
callers and users see which call failed on which path. Python 3.11 lacks
os.unshare/os.setns, so they are here too (used from os where present).
"""

from __future__ import annotations

import ctypes
import os
import struct

try:  # the soname directly: find_library forks ldconfig, milliseconds on every start
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

# sched.h
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

# sys/mount.h
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_NOATIME = 1024
MS_BIND = 4096
MS_MOVE = 8192
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SLAVE = 1 << 19
MS_STRICTATIME = 1 << 24
MNT_DETACH = 2

# sys/socket.h
AF_INET = 2
SOCK_DGRAM = 2
SOCK_CLOEXEC = 0o2000000

# sys/inotify.h
IN_MODIFY = 0x2
IN_CLOSE_WRITE = 0x8
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

# sys/prctl.h
PR_SET_PDEATHSIG = 1
PR_SET_KEEPCAPS = 8
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

_SYS_pivot_root = 155  # x86_64
_SYS_capset = 126
_SYS_pidfd_open = 434
_SYS_setns = 308

libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.setns.argtypes = [ctypes.c_int, ctypes.c_int]
libc.sethostname.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
libc.syscall.restype = ctypes.c_long


def _check(result: int, what: str, path: str | None = None) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", path)
    return result


def _b(s: str | bytes | None) -> bytes | None:
    return s.encode() if isinstance(s, str) else s


def datagram_socket() -> int:
    """An AF_INET datagram socket's fd, for interface ioctls: the socket module costs ~2 ms
    to import on every container start, for this one call."""
    return _check(libc.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), "socket")


def mount(source: str | None, target: str, fstype: str | None = None, flags: int = 0, data: str | None = None) -> None:
    _check(
        libc.mount(_b(source), _b(target), _b(fstype), flags, _b(data)),
        f"mount {fstype or 'bind'} {source or ''}".rstrip(),
        target,
    )


def umount(target: str, flags: int = 0) -> None:
    _check(libc.umount2(_b(target), flags), "umount", target)


def unshare(flags: int) -> None:
    if hasattr(os, "unshare"):
        os.unshare(flags)  # type: ignore[attr-defined]
    else:
        _check(libc.unshare(flags), "unshare")


def setns(fd: int, nstype: int = 0) -> None:
    if hasattr(os, "setns"):
        os.setns(fd, nstype)  # type: ignore[attr-defined]
    else:
        _check(libc.setns(fd, nstype), "setns")


def sethostname(name: str) -> None:
    raw = name.encode()
    _check(libc.sethostname(raw, len(raw)), "sethostname", name)


def pivot_root(new_root: str, put_old: str) -> None:
    _check(libc.syscall(_SYS_pivot_root, _b(new_root), _b(put_old)), "pivot_root", new_root)


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    return _check(libc.prctl(option, arg2, arg3, arg4, arg5), f"prctl {option}")


_LINUX_CAPABILITY_VERSION_3 = 0x20080522


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (64-bit masks) with the v3 ABI."""
    header = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)
    data = struct.pack(
        "IIIIII",
        effective & 0xFFFFFFFF,
        permitted & 0xFFFFFFFF,
        inheritable & 0xFFFFFFFF,
        effective >> 32,
        permitted >> 32,
        inheritable >> 32,
    )
    _check(libc.syscall(_SYS_capset, header, data), "capset")


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def seccomp_filter(program: bytes) -> None:
    """Install a compiled seccomp program (struct sock_filter[], 8 bytes each, as libseccomp's
    seccomp_export_bpf writes it) on this thread. Needs no_new_privs or CAP_SYS_ADMIN."""
    buf = ctypes.create_string_buffer(program, len(program))
    prog = _SockFprog(len(program) // 8, ctypes.addressof(buf))
    _check(libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(prog), 0, 0), "seccomp")


def inotify_watch(path: str | bytes, mask: int) -> int:
    """A non-blocking, close-on-exec inotify fd watching `path` for `mask`."""
    fd = _check(libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC), "inotify_init1", str(path))
    try:
        _check(libc.inotify_add_watch(fd, os.fsencode(path), mask), "inotify_add_watch", str(path))
    except OSError:
        os.close(fd)
        raise
    return fd


def pidfd_open(pid: int) -> int:
    if hasattr(os, "pidfd_open"):
        return os.pidfd_open(pid)
    return _check(libc.syscall(_SYS_pidfd_open, pid, 0), "pidfd_open")


def cap_last_cap() -> int:
    with open("/proc/sys/kernel/cap_last_cap") as f:
        return int(f.read())
