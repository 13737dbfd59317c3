"""The device policy and the BPF device program made from it, without the kernel.

The program is checked three ways: its exact instructions for one rule (the layout
runc and crun use), a small interpreter of the instructions it uses run against the
v1 semantics for every kind of request, and decode() reading it back.
"""

from __future__ import annotations

import struct

import pytest

from ctr.errors import InvalidSpec
from ctr.native import bpf_devices as bpf
from ctr.native.bpf_devices import Insn, assemble, decode, program
from ctr.native.devices import DeviceRule, device_policy, effective, parse_rule, v1_writes

BLOCK, CHAR = 1, 2
MKNOD, READ, WRITE = 1, 2, 4


def test_parse_rule_round_trips() -> None:
    for text in ("c 1:3 rwm", "b *:* m", "c 136:* rw", "b 8:0 r", "a"):
        assert str(parse_rule(text)) == text
    assert parse_rule("c 1:3 mwr").access == "rwm"
    assert parse_rule("a *:* rwm") == DeviceRule(True, "a")


@pytest.mark.parametrize("text", ["x 1:3 rwm", "c 1:3", "c 1:3 rwx", "c -1:3 rw", "c 1 rw", ""])
def test_parse_rule_refuses(text: str) -> None:
    with pytest.raises(InvalidSpec):
        parse_rule(text)


def test_default_policy_is_dockers() -> None:
    rules = device_policy()
    assert rules[0] == DeviceRule(False, "a")
    assert [str(r) for r in rules[1:]] == [
        "c *:* m",
        "b *:* m",
        "c 1:3 rwm",
        "c 1:5 rwm",
        "c 1:7 rwm",
        "c 1:8 rwm",
        "c 1:9 rwm",
        "c 5:0 rwm",
        "c 5:1 rwm",
        "c 5:2 rwm",
        "c 136:* rwm",
        "c 10:200 rwm",
    ]
    assert v1_writes(rules)[:2] == [("devices.deny", "a"), ("devices.allow", "c *:* m")]
    extra = device_policy([parse_rule("b 8:0 rw"), parse_rule("c 1:3 w", allow=False)])
    assert v1_writes(extra)[-2:] == [("devices.allow", "b 8:0 rw"), ("devices.deny", "c 1:3 w")]


def test_effective_starts_over_at_an_all_rule() -> None:
    rules = [parse_rule("c 1:3 rwm"), DeviceRule(False, "a"), parse_rule("c 1:5 rwm")]
    assert effective(rules) == (False, [parse_rule("c 1:5 rwm")])
    assert effective([]) == (True, [])


def test_one_rule_has_crun_and_runc_layout() -> None:
    insns = program([DeviceRule(False, "a"), parse_rule("c 1:3 rw")])
    assert insns[:6] == [
        Insn(0x61, 2, 1, 0),
        Insn(0x54, 2, 0, 0, 0xFFFF),  # r2 = *(u32 *)ctx; r2 &= 0xffff
        Insn(0x61, 3, 1, 0),
        Insn(0x74, 3, 0, 0, 16),  # r3 = *(u32 *)ctx; r3 >>= 16
        Insn(0x61, 4, 1, 4),
        Insn(0x61, 5, 1, 8),  # r4 = major; r5 = minor
    ]
    assert insns[6:] == [
        Insn(0x55, 2, 0, 7, CHAR),  # if r2 != char: skip 5 tests + 2
        Insn(0xBC, 1, 3),
        Insn(0x54, 1, 0, 0, READ | WRITE),
        Insn(0x5D, 1, 3, 4),  # (r3 & rw) != r3
        Insn(0x55, 4, 0, 3, 1),
        Insn(0x55, 5, 0, 2, 3),  # major 1, minor 3
        Insn(0xB7, 0, 0, 0, 1),
        Insn(0x95),  # allow
        Insn(0xB7, 0, 0, 0, 0),
        Insn(0x95),  # default: deny
    ]
    raw = assemble(insns)
    assert len(raw) == 8 * len(insns)
    assert raw[48:56] == struct.pack("<BBhi", 0x55, 0x02, 7, CHAR)  # dst in the low nibble


def run(insns: list[Insn], kind: int, access: int, major: int, minor: int) -> int:
    """Interpret the instructions the generator uses, as the kernel would run them."""
    ctx = struct.pack("<III", (access << 16) | kind, major, minor)
    reg = [0] * 11
    pc = 0
    for _ in range(10_000):
        i = insns[pc]
        pc += 1
        src = reg[i.src] if i.code & 0x08 else i.imm & 0xFFFFFFFF
        if i.code == 0x61:
            reg[i.dst] = struct.unpack_from("<I", ctx, i.off)[0]
        elif i.code == 0x54:
            reg[i.dst] = reg[i.dst] & src & 0xFFFFFFFF
        elif i.code == 0x74:
            reg[i.dst] = (reg[i.dst] & 0xFFFFFFFF) >> src
        elif i.code in (0xBC, 0xB7):
            reg[i.dst] = src
        elif i.code in (0x55, 0x5D):
            pc += i.off if reg[i.dst] != src else 0
        elif i.code == 0x15:
            pc += i.off if reg[i.dst] == src else 0
        elif i.code == 0x95:
            return reg[0]
        else:
            raise AssertionError(f"unexpected instruction {i}")
    raise AssertionError("no exit")


def reference(rules: list[DeviceRule], kind: int, access: int, major: int, minor: int) -> int:
    """What the rules mean: the last matching rule decides (an allow must grant every access
    asked, a deny refuses any), else the default of the last 'a' rule."""
    default, kept = effective(rules)
    asked = {c for c, bit in (("m", MKNOD), ("r", READ), ("w", WRITE)) if access & bit}
    for r in reversed(kept):
        if r.type != "a" and {"b": BLOCK, "c": CHAR}[r.type] != kind:
            continue
        if (r.major is not None and r.major != major) or (r.minor is not None and r.minor != minor):
            continue
        if (asked <= set(r.access)) if r.allow else (asked & set(r.access)):
            return int(r.allow)
    return int(default)


POLICIES = [
    device_policy(),
    device_policy([parse_rule("b 8:0 rw"), parse_rule("c 1:3 w", allow=False), parse_rule("c *:7 r")]),
    [DeviceRule(True, "a"), parse_rule("b *:* rwm", allow=False), parse_rule("b 7:* r")],
    [DeviceRule(False, "a"), DeviceRule(True, "a", access="m"), parse_rule("c 4294967295:0 rw")],
]


@pytest.mark.parametrize("rules", POLICIES)
def test_program_matches_the_rules_for_every_request(rules: list[DeviceRule]) -> None:
    insns = program(rules)
    for kind in (BLOCK, CHAR):
        for access in range(1, 8):
            for major, minor in ((1, 3), (1, 7), (1, 1), (5, 1), (136, 12), (8, 0), (7, 3), (10, 200), (4294967295, 0)):
                got = run(insns, kind, access, major, minor)
                assert got == reference(rules, kind, access, major, minor), (kind, access, major, minor)


def test_docker_default_by_example() -> None:
    insns = program(device_policy())
    assert run(insns, CHAR, READ | WRITE, 1, 3) == 1  # /dev/null
    assert run(insns, CHAR, READ, 136, 4) == 1  # a pty
    assert run(insns, BLOCK, READ, 8, 0) == 0  # /dev/sda
    assert run(insns, CHAR, READ, 1, 1) == 0  # /dev/mem
    assert run(insns, BLOCK, MKNOD, 8, 0) == 1  # mknod alone, as Docker allows
    assert run(insns, BLOCK, MKNOD | READ, 8, 0) == 0


@pytest.mark.parametrize("rules", POLICIES)
def test_decode_reads_the_program_back(rules: list[DeviceRule]) -> None:
    assert decode(assemble(program(rules))) == effective(rules)


def test_decode_refuses_other_programs() -> None:
    good = assemble(program(device_policy()))
    assert decode(good[:-8]) is None  # no final exit
    assert decode(good[8:]) is None  # another prologue
    assert decode(good + good[-16:]) is None  # code after the default
    bad_jump = bytearray(good)
    bad_jump[48 + 2] += 1  # the first rule's jump lands elsewhere
    assert decode(bytes(bad_jump)) is None
    assert decode(b"\x00" * 7) is None


def test_unknown_machine_is_an_oserror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bpf.platform, "machine", lambda: "pdp11")
    with pytest.raises(OSError, match="unknown syscall number"):
        bpf.load(device_policy())


def test_privileged_policy_allows_everything() -> None:
    from ctr.native.devices import PRIVILEGED

    assert effective(device_policy(PRIVILEGED)) == (True, [])
    assert v1_writes(device_policy(PRIVILEGED))[-1] == ("devices.allow", "a")


def test_host_devices_are_what_runc_copies(tmp_path) -> None:
    """Block and character nodes at any depth; not pts/shm/fd/mqueue, console, ptmx, links, fifos."""
    import os
    import stat

    from ctr.native.devices import host_devices

    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    (tmp_path / "net").mkdir()
    (tmp_path / "pts").mkdir()
    os.mknod(tmp_path / "loop0", 0o600 | stat.S_IFBLK, os.makedev(7, 0))
    os.mknod(tmp_path / "net" / "tun", 0o666 | stat.S_IFCHR, os.makedev(10, 200))
    os.chown(tmp_path / "net" / "tun", 0, 5)
    os.chmod(tmp_path / "net" / "tun", 0o666)
    for skipped in ("console", "ptmx", "pts/0"):
        os.mknod(tmp_path / skipped, 0o620 | stat.S_IFCHR, os.makedev(5, 1))
    os.mkfifo(tmp_path / "fifo")
    os.symlink("loop0", tmp_path / "link")
    found = host_devices(str(tmp_path))
    assert [(d.path, d.type, d.major, d.minor, d.mode, d.gid) for d in found] == [
        ("loop0", "b", 7, 0, 0o600, 0),
        ("net/tun", "c", 10, 200, 0o666, 5),
    ]
