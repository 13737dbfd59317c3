"""Seccomp filters from Docker's profile format, compiled by libseccomp (never BPF by hand).

A profile is the JSON of `docker run --security-opt seccomp=FILE` (moby's
profiles/seccomp, containers-common's seccomp.json): defaultAction and
defaultErrnoRet, archMap, and syscalls[] with names, action, errnoRet, args and
includes/excludes on caps, arches and minKernel. ctr's default is native/seccomp.json,
a copy of Debian's /usr/share/containers/seccomp.json (see its git history for
where it differs), so that ctr works on hosts without it.

The profile is resolved as moby and runc do: a rule applies when the container's
capability (bounding) set holds every cap of includes.caps and none of
excludes.caps, when the host's architecture is in includes.arches (and not in
excludes.arches), and when the running kernel is at least includes.minKernel.
Conditions on distinct argument indexes are ANDed in one rule; when an index
repeats, each condition is a rule of its own (runc's rule). The filter covers the
native architecture and the archMap's sub-architectures (x86 and x32 on x86_64).

libseccomp is reached through a small ctypes binding (libseccomp.so.2, Debian's
libseccomp2), loaded lazily so that `ctr --help` never pays for it.
"""

from __future__ import annotations

import ctypes
import functools
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ctr.errors import CtrError, InvalidSpec

DEFAULT_PROFILE = Path(__file__).with_name("seccomp.json")

# libseccomp's seccomp.h
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_ERRNO = 0x00050000
SCMP_ACT_TRACE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_FLTATR_CTL_NNP = 3
__NR_SCMP_ERROR = -1

OPERATORS = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}
ACTIONS = (
    "SCMP_ACT_KILL",
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL_THREAD",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
)
EPERM = 1

# Architecture tokens (audit arch values, as libseccomp's SCMP_ARCH_*) and the Go names
# that a profile's includes.arches use (runtime.GOARCH, as moby matches them).
ARCHES = {
    "SCMP_ARCH_X86": (0x40000003, "386"),
    "SCMP_ARCH_X86_64": (0xC000003E, "amd64"),
    "SCMP_ARCH_X32": (0x4000003E, "x32"),
    "SCMP_ARCH_ARM": (0x40000028, "arm"),
    "SCMP_ARCH_AARCH64": (0xC00000B7, "arm64"),
    "SCMP_ARCH_PPC64LE": (0xC0000015, "ppc64le"),
    "SCMP_ARCH_S390X": (0x80000016, "s390x"),
    "SCMP_ARCH_S390": (0x00000016, "s390"),
    "SCMP_ARCH_RISCV64": (0xC00000F3, "riscv64"),
}
# moby also calls 386 "x86" in its profile's arches lists.
GO_ALIASES = {"386": ("386", "x86")}


class _ArgCmp(ctypes.Structure):
    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


@functools.lru_cache(maxsize=1)
def _lib():
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        raise CtrError("cannot apply a seccomp profile: libseccomp is missing (apt-get install libseccomp2)") from None
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_arch_native.restype = ctypes.c_uint32
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    return lib


def _check(result: int, what: str) -> int:
    if result < 0:  # libseccomp returns -errno
        raise OSError(-result, f"{what}: {os.strerror(-result)}")
    return result


def resolve_syscall(name: str) -> int:
    """The syscall's number on this architecture, a negative pseudo number for one that only
    other architectures have, or __NR_SCMP_ERROR for a name libseccomp does not know."""
    return _lib().seccomp_syscall_resolve_name(name.encode())


@dataclass(frozen=True)
class Rule:
    """One resolved rule: the action (libseccomp's encoding) for `names`, when `args` hold."""

    names: tuple[str, ...]
    action: int
    args: tuple[tuple[int, int, int, int], ...] = ()  # (index, op, value, valueTwo)


@dataclass(frozen=True)
class Filter:
    """A profile resolved for one container: what libseccomp compiles and the kernel loads."""

    default_action: int
    arches: tuple[int, ...]  # extra architectures beside the native one
    rules: tuple[Rule, ...]

    def bpf(self) -> bytes:
        """The program libseccomp compiles for this filter (struct sock_filter[]), to be
        installed with syscalls.seccomp_filter. libseccomp's own no_new_privs is off: the
        caller sets it, or still holds CAP_SYS_ADMIN when it installs the program."""
        lib = _lib()
        ctx = lib.seccomp_init(self.default_action)
        if not ctx:
            raise CtrError("cannot initialise a seccomp filter: libseccomp refused the default action")
        try:
            _check(lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0), "seccomp_attr_set")
            for arch in self.arches:
                rc = lib.seccomp_arch_add(ctx, arch)
                if rc < 0 and rc != -17:  # EEXIST: the native one
                    _check(rc, "seccomp_arch_add")
            for rule in self.rules:
                for name in rule.names:
                    _add(lib, ctx, name, rule)
            fd = os.memfd_create("ctr-seccomp", os.MFD_CLOEXEC)
            try:
                _check(lib.seccomp_export_bpf(ctx, fd), "seccomp_export_bpf")
                os.lseek(fd, 0, os.SEEK_SET)
                chunks = []
                while chunk := os.read(fd, 1 << 16):
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                os.close(fd)
        finally:
            lib.seccomp_release(ctx)

    def verdicts(self) -> dict[str, str]:
        """Every syscall of the native architecture: 'allowed', 'by argument' (allowed for some
        argument values only) or 'refused' (by a rule or by the default action)."""
        lib = _lib()
        lib.seccomp_syscall_resolve_num_arch.restype = ctypes.c_void_p  # a malloc'd name
        lib.seccomp_syscall_resolve_num_arch.argtypes = [ctypes.c_uint32, ctypes.c_int]
        libc = ctypes.CDLL(None)
        libc.free.argtypes = [ctypes.c_void_p]
        native = lib.seccomp_arch_native()
        allowed = {n for r in self.rules if r.action == SCMP_ACT_ALLOW and not r.args for n in r.names}
        partly = {n for r in self.rules if r.action == SCMP_ACT_ALLOW and r.args for n in r.names}
        out = {}
        for nr in range(1024):
            ptr = lib.seccomp_syscall_resolve_num_arch(native, nr)
            if not ptr:
                continue
            name = ctypes.string_at(ptr).decode()
            libc.free(ptr)
            default_allows = self.default_action == SCMP_ACT_ALLOW
            out[name] = (
                "allowed"
                if name in allowed or (default_allows and name not in partly)
                else "by argument"
                if name in partly
                else "refused"
            )
        return out

    def refused(self) -> list[str]:
        """The native architecture's syscalls this filter refuses whatever their arguments."""
        return sorted(n for n, v in self.verdicts().items() if v == "refused")


def _add(lib, ctx, name: str, rule: Rule) -> None:
    nr = resolve_syscall(name)
    if nr == __NR_SCMP_ERROR:
        return  # checked at parse time; only a name of another architecture gets here
    indexes = [a[0] for a in rule.args]
    groups = [rule.args] if len(set(indexes)) == len(indexes) else [(a,) for a in rule.args]
    for group in groups:
        cmps = (_ArgCmp * max(len(group), 1))(*[_ArgCmp(i, op, v, v2) for i, op, v, v2 in group])
        rc = lib.seccomp_rule_add_array(ctx, rule.action, nr, len(group), cmps)
        if rc < 0:
            raise OSError(-rc, f"seccomp rule for {name}: {os.strerror(-rc)}")


@dataclass(frozen=True)
class Profile:
    """A parsed, checked profile; `source` is 'default' or the file it came from."""

    source: str
    data: dict

    def resolve(self, caps: Iterable[str], kernel: str | None = None) -> Filter:
        """The filter for a container whose bounding set is `caps`, on this host's kernel."""
        have = set(caps)
        native_token = _lib().seccomp_arch_native()
        native = next((name for name, (token, _go) in ARCHES.items() if token == native_token), None)
        go_names = GO_ALIASES.get(ARCHES[native][1], (ARCHES[native][1],)) if native else ()
        release = _kernel_version(kernel or os.uname().release)
        sub_arches: list[int] = []
        for entry in self.data.get("archMap") or ():
            if entry.get("architecture") == native:
                sub_arches += [ARCHES[a][0] for a in entry.get("subArchitectures") or () if a in ARCHES]
        if not self.data.get("archMap"):
            sub_arches = [ARCHES[a][0] for a in self.data.get("architectures") or () if a in ARCHES and a != native]
        default = _action(self.data["defaultAction"], self.data.get("defaultErrnoRet"))
        rules = []
        for s in self.data.get("syscalls") or ():
            inc, exc = s.get("includes") or {}, s.get("excludes") or {}
            if inc.get("caps") and not all(c in have for c in inc["caps"]):
                continue
            if exc.get("caps") and any(c in have for c in exc["caps"]):
                continue
            if inc.get("arches") and not any(g in inc["arches"] for g in go_names):
                continue
            if exc.get("arches") and any(g in exc["arches"] for g in go_names):
                continue
            if inc.get("minKernel") and release < _kernel_version(inc["minKernel"]):
                continue
            action = _action(s["action"], s.get("errnoRet"))
            if action == default:
                continue  # libseccomp refuses a rule that repeats the default; runc skips it too
            args = tuple(
                (a["index"], OPERATORS[a["op"]], a.get("value", 0), a.get("valueTwo", 0)) for a in s.get("args") or ()
            )
            rules.append(Rule(tuple(s["names"]), action, args))
        return Filter(default, tuple(sub_arches), tuple(rules))


def _action(name: str, errno_ret: int | None) -> int:
    if name in ("SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD"):
        return SCMP_ACT_KILL_THREAD
    if name == "SCMP_ACT_KILL_PROCESS":
        return SCMP_ACT_KILL_PROCESS
    if name == "SCMP_ACT_TRAP":
        return SCMP_ACT_TRAP
    if name == "SCMP_ACT_ERRNO":
        return SCMP_ACT_ERRNO | ((EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_TRACE":
        return SCMP_ACT_TRACE | ((EPERM if errno_ret is None else errno_ret) & 0xFFFF)
    if name == "SCMP_ACT_LOG":
        return SCMP_ACT_LOG
    return SCMP_ACT_ALLOW


def _kernel_version(text: str) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", str(text))
    if not m:
        raise ValueError(f"not a kernel version: {text!r}")
    return int(m.group(1)), int(m.group(2))


def parse(text: str, source: str) -> Profile:
    """Check a profile as Docker's engine would, naming the first fault in one line:
    not JSON, an unknown action, operator, architecture or syscall name, a bad field."""
    where = "the default seccomp profile" if source == "default" else f"invalid --security-opt seccomp={source}"
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"{where}: not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidSpec(f"{where}: not a JSON object")
    if data.get("defaultAction") not in ACTIONS:
        raise InvalidSpec(f"{where}: unknown defaultAction {data.get('defaultAction')!r}")
    for key in ("defaultErrnoRet",):
        if data.get(key) is not None and not isinstance(data[key], int):
            raise InvalidSpec(f"{where}: {key} must be an integer")
    for entry in data.get("archMap") or ():
        for arch in [entry.get("architecture"), *(entry.get("subArchitectures") or ())]:
            if not isinstance(arch, str) or not arch.startswith("SCMP_ARCH_"):
                raise InvalidSpec(f"{where}: unknown architecture {arch!r}")
    for arch in data.get("architectures") or ():
        if not isinstance(arch, str) or not arch.startswith("SCMP_ARCH_"):
            raise InvalidSpec(f"{where}: unknown architecture {arch!r}")
    syscalls = data.get("syscalls") or []
    if not isinstance(syscalls, list):
        raise InvalidSpec(f"{where}: syscalls must be a list")
    for i, s in enumerate(syscalls):
        if not isinstance(s, dict):
            raise InvalidSpec(f"{where}: syscalls[{i}] is not an object")
        names = s.get("names") or ([s["name"]] if s.get("name") else [])
        if not names or not all(isinstance(n, str) for n in names):
            raise InvalidSpec(f"{where}: syscalls[{i}] names no syscall")
        s["names"] = names
        if s.get("action") not in ACTIONS:
            raise InvalidSpec(f"{where}: unknown action {s.get('action')!r} for {names[0]}")
        if s.get("errnoRet") is not None and not isinstance(s["errnoRet"], int):
            raise InvalidSpec(f"{where}: errnoRet of {names[0]} must be an integer")
        for a in s.get("args") or ():
            if not isinstance(a, dict) or a.get("op") not in OPERATORS:
                raise InvalidSpec(
                    f"{where}: unknown operator {a.get('op') if isinstance(a, dict) else a!r} for {names[0]}"
                )
            if not isinstance(a.get("index"), int) or not 0 <= a["index"] < 6:
                raise InvalidSpec(f"{where}: argument index of {names[0]} must be 0 to 5")
            for k in ("value", "valueTwo"):
                if not isinstance(a.get(k, 0), int) or not 0 <= a.get(k, 0) < 1 << 64:
                    raise InvalidSpec(f"{where}: argument {k} of {names[0]} must be an unsigned 64-bit integer")
        inc = s.get("includes") or {}
        if inc.get("minKernel"):
            try:
                _kernel_version(inc["minKernel"])
            except ValueError:
                raise InvalidSpec(
                    f"{where}: minKernel {inc['minKernel']!r} of {names[0]} is not a kernel version"
                ) from None
        for n in names:
            if resolve_syscall(n) == __NR_SCMP_ERROR:
                raise InvalidSpec(f"{where}: unknown syscall {n!r}")
    return Profile(source, data)


@functools.lru_cache(maxsize=4)
def _read(path: str, mtime_ns: int, size: int) -> Profile:
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InvalidSpec(f"seccomp profile {path}: {exc.strerror.lower()}") from None
    return parse(text, "default" if path == str(DEFAULT_PROFILE) else path)


def load(source: str) -> Profile:
    """'default' (ctr's packaged profile) or the path of a profile file, parsed and checked."""
    path = str(DEFAULT_PROFILE) if source == "default" else source
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InvalidSpec(f"seccomp profile {path}: {exc.strerror.lower()}") from None
    return _read(path, st.st_mtime_ns, st.st_size)


def from_text(text: str, source: str) -> Profile:
    """A profile kept as text (a container's record holds its custom profile itself)."""
    return parse(text, source)


def compiled(text: str, source: str, caps: Iterable[str], cache_dir: Path | None) -> bytes:
    """The BPF program of profile `text` for a container with `caps`, from `cache_dir` when
    it was compiled before: libseccomp takes ~13 ms to build the default profile's program
    for three architectures, and every `run` needs one. The key covers everything the
    program depends on: the profile's bytes, the caps, the kernel (minKernel) and libseccomp."""
    import hashlib

    caps = sorted(set(caps))
    key = hashlib.sha256(
        "\0".join([text, ",".join(caps), os.uname().release, os.uname().machine, _libseccomp_version()]).encode()
    ).hexdigest()
    cached = cache_dir / f"{key}.bpf" if cache_dir is not None else None
    if cached is not None:
        try:
            return cached.read_bytes()
        except FileNotFoundError:
            pass
    program = parse(text, source).resolve(caps).bpf()
    if cached is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp")
        tmp.write_bytes(program)
        os.replace(tmp, cached)
    return program


def _libseccomp_version() -> str:
    class _Version(ctypes.Structure):
        _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]

    lib = _lib()
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"
