"""The built-in busybox image: made on first use from the host's static busybox,
byte for byte reproducible (its digest depends only on the binary).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from typing import BinaryIO

from ctr.errors import NotFound
from ctr.images.model import MACHINE_ARCH

BUILTIN_REF = "busybox:latest"
BUILTIN_PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Fixed timestamp for everything in the built-in image, so its digest depends only on
# the busybox binary (the epoch, as ko and rules_docker use for reproducible images).
BUILTIN_MTIME = 0
BUILTIN_CREATED = "1970-01-01T00:00:00Z"
BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")

_ELF_ARCH = {3: "386", 8: "mips", 21: "ppc64", 22: "s390x", 40: "arm", 62: "amd64", 183: "arm64", 243: "riscv64"}


def _elf_info(path: str) -> tuple[bool, str] | None:
    """(statically linked, GOARCH) of an ELF file, or None if it is not ELF.

    Static means no PT_INTERP program header: nothing to load from the image's
    (non-existent) /lib.
    """
    import struct

    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 52 or head[:4] != b"\x7fELF":
                return None
            is64, endian = head[4] == 2, "<" if head[5] == 1 else ">"
            machine = struct.unpack_from(endian + "H", head, 18)[0]
            if is64:
                (phoff,) = struct.unpack_from(endian + "Q", head, 32)
                phentsize, phnum = struct.unpack_from(endian + "HH", head, 54)
            else:
                (phoff,) = struct.unpack_from(endian + "I", head, 28)
                phentsize, phnum = struct.unpack_from(endian + "HH", head, 42)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return None
    static = all(struct.unpack_from(endian + "I", table, i * phentsize)[0] != 3 for i in range(phnum))  # PT_INTERP
    arch = _ELF_ARCH.get(machine, "")
    if arch == "ppc64" and endian == "<":
        arch = "ppc64le"
    if not arch:
        import platform

        arch = MACHINE_ARCH.get(platform.machine(), platform.machine())
    return static, arch


def find_busybox() -> tuple[str, str]:
    """(path, GOARCH) of the host's statically linked busybox, or NotFound saying how to get one."""
    import shutil

    candidates = [c for c in (shutil.which("busybox"), *BUSYBOX_CANDIDATES) if c]
    dynamic = []
    for path in dict.fromkeys(candidates):
        info = _elf_info(path) if os.access(path, os.X_OK) else None
        if info is None:
            continue
        if info[0]:
            return path, info[1]
        dynamic.append(path)
    if dynamic:
        raise NotFound(
            f"busybox at {dynamic[0]} is dynamically linked and cannot run in an empty image: "
            "apt-get install busybox-static"
        )
    raise NotFound(
        "no busybox found on this host (looked in PATH, /bin, /usr/bin) for the built-in "
        "busybox image: apt-get install busybox-static"
    )


def busybox_facts(busybox: str) -> tuple[str, str, list[str]]:
    """(short version, banner, applet paths relative to /) from the binary itself."""
    import subprocess

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([busybox, *args], capture_output=True, text=True, timeout=30)

    banner_out = run("--help")
    match = re.search(r"BusyBox v(\S+)[^\n]*", banner_out.stdout + banner_out.stderr)
    version, banner = (match.group(1), match.group(0).strip()) if match else ("unknown", "BusyBox")
    listed = run("--list-full")
    if listed.returncode == 0 and listed.stdout.strip():
        applets = listed.stdout.split()
    else:  # an old busybox without --list-full: everything in /bin
        applets = ["bin/" + a for a in run("--list").stdout.split()]
    clean = set()
    for applet in applets:
        parts = [p for p in applet.strip("/").split("/") if p not in ("", ".")]
        if parts and ".." not in parts:
            clean.add("/".join(parts))
    clean.discard("bin/busybox")
    return version, banner.removesuffix(" multi-call binary."), sorted(clean)


_BUILTIN_DIRS = {
    "bin": 0o755,
    "dev": 0o755,
    "etc": 0o755,
    "home": 0o755,
    "proc": 0o555,
    "root": 0o700,
    "run": 0o755,
    "sbin": 0o755,
    "sys": 0o555,
    "tmp": 0o1777,
    "usr": 0o755,
    "usr/bin": 0o755,
    "usr/sbin": 0o755,
    "var": 0o755,
}
_BUILTIN_FILES = {
    "etc/passwd": b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    "etc/group": b"root:x:0:\nnobody:x:65534:\n",
}


def build_busybox_layer(busybox: str, applets: Sequence[str], out: BinaryIO) -> None:
    """Write the built-in image's layer tar to `out`, byte-for-byte reproducible.

    Order: directories, regular files, then the applets as hard links to
    /bin/busybox (as the official busybox images have them), each group sorted;
    mtime BUILTIN_MTIME, owner 0:0 without names.
    """
    import io
    import tarfile

    def info(name: str, type_: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type, ti.mode, ti.size, ti.linkname = type_, mode, size, linkname
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = BUILTIN_MTIME, 0, 0, "", ""
        return ti

    dirs = dict(_BUILTIN_DIRS)
    for applet in applets:  # parents of applets busybox may put elsewhere
        parts = applet.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.setdefault("/".join(parts[:i]), 0o755)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for name in sorted(dirs):
            tar.addfile(info(name, tarfile.DIRTYPE, dirs[name]))
        with open(busybox, "rb") as f:
            tar.addfile(info("bin/busybox", tarfile.REGTYPE, 0o755, os.fstat(f.fileno()).st_size), f)
        for name, content in sorted(_BUILTIN_FILES.items()):
            tar.addfile(info(name, tarfile.REGTYPE, 0o644, len(content)), io.BytesIO(content))
        for applet in applets:
            if applet not in dirs and applet not in _BUILTIN_FILES:
                tar.addfile(info(applet, tarfile.LNKTYPE, 0o755, linkname="bin/busybox"))
