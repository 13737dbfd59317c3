"""cgroup v2 device policy: a BPF_PROG_TYPE_CGROUP_DEVICE program made from device rules.

cgroup v2 has no devices controller; the kernel asks a BPF program attached to the
cgroup (attach type BPF_CGROUP_DEVICE) about every mknod and open of a device node,
and a 0 answer is EPERM. runc and crun generate a tiny program with the same shape
(crun's ebpf.c, after systemd; runc's devicefilter), loaded with the plain bpf(2)
syscall, no libbpf. This one has that shape too, so decode() reads back runc's and
crun's programs as well as ctr's own:

    r2 = ctx->access_type & 0xffff      device type: 1 block, 2 char
    r3 = ctx->access_type >> 16         access: 1 mknod, 2 read, 4 write
    r4 = ctx->major; r5 = ctx->minor
    per rule, the last one first (a later rule overrides an earlier one, as in v1):
        if r2 != TYPE goto next                          (not for type 'a')
        r1 = r3; r1 &= ACCESS; if r1 != r3 goto next     (allow: every access asked is granted;
                                    deny: 'if r1 == 0 goto next', any access asked is denied)
        if r4 != MAJOR goto next; if r5 != MINOR goto next   (not for '*')
        r0 = ALLOW; exit
    r0 = DEFAULT; exit

Every syscall here: ctypes with use_errno, failures raised as OSError(errno, strerror, path).
"""

from __future__ import annotations

import ctypes
import os
import platform
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from ctr.native.devices import DeviceRule, effective
from ctr.native.syscalls import libc

# linux/bpf.h
BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2
BPF_F_QUERY_EFFECTIVE = 1
BPF_DEVCG_ACC_MKNOD, BPF_DEVCG_ACC_READ, BPF_DEVCG_ACC_WRITE = 1, 2, 4
BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR = 1, 2

# instruction classes, sizes, modes, operations (linux/bpf_common.h, linux/bpf.h)
_LDX, _ALU, _JMP, _ALU64 = 0x01, 0x04, 0x05, 0x07
_W, _MEM, _K, _X = 0x00, 0x60, 0x00, 0x08
_AND, _RSH, _MOV = 0x50, 0x70, 0xB0
_JEQ, _JNE, _EXIT = 0x10, 0x50, 0x90

PROG_NAME = "ctr_devices"  # BPF_OBJ_NAME_LEN is 16 with the NUL; what explain recognises
LICENSE = b"Apache-2.0\0"  # no GPL-only helper is called
_ACC_BITS = {"m": BPF_DEVCG_ACC_MKNOD, "r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE}
_ACC_ALL = BPF_DEVCG_ACC_MKNOD | BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE
_TYPE_BITS = {"b": BPF_DEVCG_DEV_BLOCK, "c": BPF_DEVCG_DEV_CHAR}

# __NR_bpf per machine
_NR_BPF = {
    "x86_64": 321,
    "aarch64": 280,
    "riscv64": 280,
    "i686": 357,
    "i386": 357,
    "armv7l": 386,
    "armv6l": 386,
    "ppc64le": 361,
    "ppc64": 361,
    "s390x": 351,
}


@dataclass(frozen=True)
class Insn:
    """One eBPF instruction (struct bpf_insn: code, dst:4 src:4, off s16, imm s32)."""

    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def pack(self) -> bytes:
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)

    @classmethod
    def unpack(cls, raw: bytes) -> Insn:
        code, regs, off, imm = struct.unpack("<BBhi", raw)
        return cls(code, regs & 0xF, regs >> 4, off, imm)


def _ldx_w(dst: int, src: int, off: int) -> Insn:
    return Insn(_LDX | _W | _MEM, dst, src, off)


def _alu32_imm(op: int, dst: int, imm: int) -> Insn:
    return Insn(_ALU | op | _K, dst, 0, 0, imm)


def _jmp_imm(op: int, dst: int, imm: int, off: int) -> Insn:
    return Insn(_JMP | op | _K, dst, 0, off, imm)


PROLOGUE = (
    _ldx_w(2, 1, 0),
    _alu32_imm(_AND, 2, 0xFFFF),  # r2 = type
    _ldx_w(3, 1, 0),
    _alu32_imm(_RSH, 3, 16),  # r3 = access
    _ldx_w(4, 1, 4),  # r4 = major
    _ldx_w(5, 1, 8),  # r5 = minor
)
EXIT_INSN = Insn(_JMP | _EXIT)


def _i32(n: int) -> int:
    """A u32 device number as the s32 immediate the instruction holds."""
    return n - (1 << 32) if n >= 1 << 31 else n


def _rule_block(rule: DeviceRule) -> list[Insn]:
    """The tests of one rule, each jumping past the block on mismatch, then its verdict."""
    access = sum(_ACC_BITS[c] for c in rule.access)
    tests: list[list[Insn]] = []
    if rule.type != "a":
        tests.append([_jmp_imm(_JNE, 2, _TYPE_BITS[rule.type], 0)])
    if access != _ACC_ALL:
        tail = Insn(_JMP | _JNE | _X, 1, 3) if rule.allow else _jmp_imm(_JEQ, 1, 0, 0)
        tests.append([Insn(_ALU | _MOV | _X, 1, 3), _alu32_imm(_AND, 1, access), tail])
    if rule.major is not None:
        tests.append([_jmp_imm(_JNE, 4, _i32(rule.major), 0)])
    if rule.minor is not None:
        tests.append([_jmp_imm(_JNE, 5, _i32(rule.minor), 0)])
    flat = [insn for test in tests for insn in test]
    out = []
    for i, insn in enumerate(flat):
        if insn.code & 0x07 == _JMP:  # skip the rest of the tests and the 2-instruction verdict
            insn = Insn(insn.code, insn.dst, insn.src, len(flat) - i - 1 + 2, insn.imm)
        out.append(insn)
    return out + [Insn(_ALU64 | _MOV | _K, 0, 0, 0, int(rule.allow)), EXIT_INSN]


def program(rules: Sequence[DeviceRule]) -> list[Insn]:
    """The program enforcing `rules` (in devices.allow/deny order, as device_policy gives them)."""
    default, kept = effective(rules)
    insns = list(PROLOGUE)
    for rule in reversed(kept):
        insns += _rule_block(rule)
    return insns + [Insn(_ALU64 | _MOV | _K, 0, 0, 0, int(default)), EXIT_INSN]


def assemble(insns: Sequence[Insn]) -> bytes:
    return b"".join(i.pack() for i in insns)


def decode(code: bytes) -> tuple[bool, list[DeviceRule]] | None:
    """(default allow, rules in devices.allow order) of a program of the shape above, or None
    when it has another shape (a runtime that generates something else)."""
    if len(code) % 8:
        return None
    insns = [Insn.unpack(code[i : i + 8]) for i in range(0, len(code), 8)]
    if tuple(insns[: len(PROLOGUE)]) != PROLOGUE:
        return None
    i, checked = len(PROLOGUE), []
    while i < len(insns):
        kind, major, minor, access, deny_style = "a", None, None, _ACC_ALL, None
        start = i
        while i < len(insns) and insns[i].code & 0x07 == _JMP and insns[i].code != _JMP | _EXIT:
            insn = insns[i]
            if insn.code == _JMP | _JNE | _K and insn.dst == 2:
                kind = {v: k for k, v in _TYPE_BITS.items()}.get(insn.imm, "?")
            elif insn.code == _JMP | _JNE | _K and insn.dst == 4:
                major = insn.imm & 0xFFFFFFFF
            elif insn.code == _JMP | _JNE | _K and insn.dst == 5:
                minor = insn.imm & 0xFFFFFFFF
            else:
                return None
            i += 1
        if i + 2 < len(insns) and insns[i] == Insn(_ALU | _MOV | _X, 1, 3) and insns[i + 1].code == _ALU | _AND | _K:
            access = insns[i + 1].imm
            tail = insns[i + 2]
            if tail.code == _JMP | _JNE | _X and (tail.dst, tail.src) == (1, 3):
                deny_style = False
            elif tail.code == _JMP | _JEQ | _K and tail.dst == 1 and tail.imm == 0:
                deny_style = True
            else:
                return None
            i += 3
            while i < len(insns) and insns[i].code == _JMP | _JNE | _K and insns[i].dst in (4, 5):
                if insns[i].dst == 4:
                    major = insns[i].imm & 0xFFFFFFFF
                else:
                    minor = insns[i].imm & 0xFFFFFFFF
                i += 1
        if i + 1 >= len(insns) or insns[i].code != _ALU64 | _MOV | _K or insns[i].dst != 0 or insns[i + 1] != EXIT_INSN:
            return None
        allow = insns[i].imm != 0
        if kind == "?" or (deny_style is not None and deny_style == allow) or not access or access & ~_ACC_ALL:
            return None
        i += 2
        if i == len(insns):  # the last verdict is the default, unless tests guard it
            if start != i - 2:
                return None
            rules = list(reversed(checked))
            # the jump offsets and everything else: exactly what these rules make
            if assemble(program([DeviceRule(allow, "a"), *rules])) != code:
                return None
            return allow, rules
        letters = "".join(c for c in "rwm" if access & _ACC_BITS[c])
        checked.append(DeviceRule(allow, kind, major, minor, letters))
    return None


# --- the syscalls -------------------------------------------------------------------------


def _bpf(cmd: int, attr: ctypes.Array, what: str) -> int:
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise OSError(38, f"bpf(2): unknown syscall number on {platform.machine()}", what)
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), attr, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), what)
    return ret


def _addr(buf: ctypes.Array) -> int:
    return ctypes.addressof(buf)


def load(rules: Sequence[DeviceRule]) -> int:
    """Load the program for `rules`; returns its fd (close it once attached)."""
    code = assemble(program(rules))
    insns = ctypes.create_string_buffer(code, len(code))
    license = ctypes.create_string_buffer(LICENSE, len(LICENSE))
    log = ctypes.create_string_buffer(1 << 16)
    attr = ctypes.create_string_buffer(128)
    struct.pack_into(
        "<IIQQIIQII16sII",
        attr,
        0,
        BPF_PROG_TYPE_CGROUP_DEVICE,
        len(code) // 8,
        _addr(insns),
        _addr(license),
        0,
        0,
        0,
        0,
        0,
        PROG_NAME.encode(),
        0,
        BPF_CGROUP_DEVICE,
    )
    try:
        return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD cgroup device program")
    except OSError as exc:
        if exc.errno != 13 and exc.errno != 22:  # EACCES, EINVAL: the verifier's log says why
            raise
    struct.pack_into("<IIQ", attr, 24, 1, len(log), _addr(log))  # log_level 1, log_size, log_buf
    try:
        return _bpf(BPF_PROG_LOAD, attr, "BPF_PROG_LOAD cgroup device program")
    except OSError as exc:
        verifier = log.value.decode(errors="replace").strip().splitlines()
        raise OSError(
            exc.errno, f"{exc.strerror} (verifier: {verifier[-1] if verifier else 'no log'})", exc.filename
        ) from None


def attach(prog_fd: int, cgroup_dir: str | os.PathLike) -> None:
    """Attach the program to the cgroup (BPF_F_ALLOW_MULTI, as runc and crun do, so the
    programs of the cgroups above it still apply too)."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        attr = ctypes.create_string_buffer(32)
        struct.pack_into("<IIII", attr, 0, fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
        _bpf(BPF_PROG_ATTACH, attr, os.fspath(cgroup_dir))
    finally:
        os.close(fd)


def apply(rules: Sequence[DeviceRule], cgroup_dir: str | os.PathLike) -> None:
    """Load the program for `rules` and attach it to `cgroup_dir`; the cgroup keeps it alive."""
    prog = load(rules)
    try:
        attach(prog, cgroup_dir)
    finally:
        os.close(prog)


def query(cgroup_dir: str | os.PathLike, effective_too: bool = False) -> list[int]:
    """The ids of the device programs attached to the cgroup (with effective_too, those
    inherited from the cgroups above it as well), as BPF_PROG_QUERY reports them."""
    fd = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        count = 64  # the kernel's limit per cgroup and attach type
        ids = (ctypes.c_uint32 * count)()
        attr = ctypes.create_string_buffer(40)
        struct.pack_into(
            "<IIIIQI",
            attr,
            0,
            fd,
            BPF_CGROUP_DEVICE,
            BPF_F_QUERY_EFFECTIVE if effective_too else 0,
            0,
            ctypes.addressof(ids),
            count,
        )
        _bpf(BPF_PROG_QUERY, attr, os.fspath(cgroup_dir))
        got = struct.unpack_from("<I", attr, 24)[0]
        return list(ids[: min(got, count)])
    finally:
        os.close(fd)


@dataclass(frozen=True)
class ProgInfo:
    id: int
    name: str
    tag: str  # hex, the kernel's hash of the instructions
    insns: int
    code: bytes  # the translated instructions, b"" when the kernel would not show them


def info(prog_id: int) -> ProgInfo:
    """What the kernel holds for program `prog_id`: name, tag and translated instructions."""
    what = f"bpf program {prog_id}"
    attr = ctypes.create_string_buffer(16)
    struct.pack_into("<I", attr, 0, prog_id)
    fd = _bpf(BPF_PROG_GET_FD_BY_ID, attr, what)
    try:
        buf = ctypes.create_string_buffer(8 * 4096)
        prog_info = ctypes.create_string_buffer(88)  # up to and including name[16]
        struct.pack_into("<I", prog_info, 20, len(buf))  # xlated_prog_len
        struct.pack_into("<Q", prog_info, 32, _addr(buf))  # xlated_prog_insns
        attr = ctypes.create_string_buffer(16)
        struct.pack_into("<IIQ", attr, 0, fd, len(prog_info), _addr(prog_info))
        _bpf(BPF_OBJ_GET_INFO_BY_FD, attr, what)
        _, pid, tag, _, xlated_len = struct.unpack_from("<II8sII", prog_info, 0)
        name = prog_info.raw[64:80].split(b"\0", 1)[0].decode(errors="replace")
        code = buf.raw[: min(xlated_len, len(buf))] if struct.unpack_from("<Q", prog_info, 32)[0] else b""
        return ProgInfo(pid, name, tag.hex(), xlated_len // 8, code)
    finally:
        os.close(fd)


__all__ = ["Insn", "program", "assemble", "decode", "load", "attach", "apply", "query", "info", "ProgInfo", "PROG_NAME"]
