"""Seccomp profiles: parsing and checking Docker's JSON format, resolving it for a
container's capabilities, compiling it with libseccomp (no filter is installed here:
compiling needs no privilege; tests/integration/test_security.py installs them)."""

import json

import pytest

from ctr.errors import InvalidSpec
from ctr.native import seccomp
from ctr.spec import DEFAULT_CAPS, ContainerSpec, parse_security_opt


def _profile(**over) -> str:
    data = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
        "syscalls": [{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"}],
    }
    data.update(over)
    return json.dumps(data)


def test_default_profile_parses_and_knows_every_name():
    profile = seccomp.load("default")
    assert profile.source == "default"
    assert profile.data["defaultAction"] == "SCMP_ACT_ERRNO"


@pytest.mark.parametrize(
    "text,fault",
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        (_profile(defaultAction="SCMP_ACT_MAYBE"), "unknown defaultAction"),
        (
            _profile(syscalls=[{"names": ["read"], "action": "SCMP_ACT_PERHAPS"}]),
            "unknown action 'SCMP_ACT_PERHAPS' for read",
        ),
        (
            _profile(syscalls=[{"names": ["no_such_call"], "action": "SCMP_ACT_ALLOW"}]),
            "unknown syscall 'no_such_call'",
        ),
        (
            _profile(
                syscalls=[
                    {"names": ["read"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "LIKE"}]}
                ]
            ),
            "unknown operator",
        ),
        (
            _profile(
                syscalls=[
                    {
                        "names": ["read"],
                        "action": "SCMP_ACT_ALLOW",
                        "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}],
                    }
                ]
            ),
            "index",
        ),
        (_profile(syscalls=[{"action": "SCMP_ACT_ALLOW"}]), "names no syscall"),
        (_profile(archMap=[{"architecture": "x86_64"}]), "unknown architecture"),
    ],
)
def test_bad_profiles_are_one_line_naming_the_option(text, fault):
    with pytest.raises(InvalidSpec) as info:
        seccomp.parse(text, "/p.json")
    assert str(info.value).startswith("invalid --security-opt seccomp=/p.json: ")
    assert fault in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_profile_file(tmp_path):
    with pytest.raises(InvalidSpec, match="no such file"):
        seccomp.load(str(tmp_path / "none.json"))


def _rules(flt):
    return {n: r for r in flt.rules for n in r.names}


def test_caps_decide_the_capability_rules():
    profile = seccomp.load("default")
    plain = profile.resolve(DEFAULT_CAPS, kernel="6.1")
    admin = profile.resolve((*DEFAULT_CAPS, "CAP_SYS_ADMIN"), kernel="6.1")
    # bpf and unshare: refused (the default, EPERM) without CAP_SYS_ADMIN, allowed with it
    assert plain.default_action == seccomp.SCMP_ACT_ERRNO | 1
    for name in ("bpf", "unshare", "mount", "keyctl"):
        assert name not in _rules(plain)
    assert _rules(admin)["bpf"].action == _rules(admin)["unshare"].action == seccomp.SCMP_ACT_ALLOW
    assert {"bpf", "unshare", "keyctl"} <= set(plain.refused())
    assert "bpf" not in admin.refused() and "keyctl" in admin.refused()
    # clone: by argument without CAP_SYS_ADMIN (no namespace flags), whole with it; clone3 ENOSYS
    assert _rules(plain)["clone"].args == ((0, seccomp.OPERATORS["SCMP_CMP_MASKED_EQ"], 0x7E020000, 0),)
    assert plain.verdicts()["clone"] == "by argument" and admin.verdicts()["clone"] == "allowed"
    assert _rules(plain)["clone3"].action == seccomp.SCMP_ACT_ERRNO | 38
    # chroot needs CAP_SYS_CHROOT, which the default set has
    assert _rules(plain)["chroot"].action == seccomp.SCMP_ACT_ALLOW
    no_chroot = profile.resolve([c for c in DEFAULT_CAPS if c != "CAP_SYS_CHROOT"], kernel="6.1")
    assert "chroot" in no_chroot.refused()


def test_arches_min_kernel_and_default_errno():
    text = _profile(
        defaultErrnoRet=38,
        syscalls=[
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
            {"names": ["breakpoint"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO"},
        ],
    )
    old = seccomp.parse(text, "/p.json").resolve(DEFAULT_CAPS, kernel="4.4.0")
    new = seccomp.parse(text, "/p.json").resolve(DEFAULT_CAPS, kernel="6.18.44-x")
    assert old.default_action == seccomp.SCMP_ACT_ERRNO | 38
    assert "ptrace" not in _rules(old) and "ptrace" in _rules(new)
    assert "breakpoint" not in _rules(new)
    if seccomp._lib().seccomp_arch_native() == seccomp.ARCHES["SCMP_ARCH_X86_64"][0]:
        assert "arch_prctl" in _rules(new)
        assert set(new.arches) == {seccomp.ARCHES["SCMP_ARCH_X86"][0], seccomp.ARCHES["SCMP_ARCH_X32"][0]}
    assert _rules(new)["kexec_load"].action == seccomp.SCMP_ACT_ERRNO | 1  # no errnoRet: EPERM, as Docker


def test_rule_equal_to_default_is_dropped():
    text = _profile(syscalls=[{"names": ["read"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])
    assert seccomp.parse(text, "/p.json").resolve(DEFAULT_CAPS).rules == ()


def test_compiled_program_is_cached(tmp_path):
    text = seccomp.DEFAULT_PROFILE.read_text()
    first = seccomp.compiled(text, "default", DEFAULT_CAPS, tmp_path)
    assert len(first) % 8 == 0 and len(first) > 800  # struct sock_filter[], hundreds of instructions
    cached = list(tmp_path.glob("*.bpf"))
    assert len(cached) == 1
    assert seccomp.compiled(text, "default", DEFAULT_CAPS, tmp_path) == first
    other = seccomp.compiled(text, "default", (*DEFAULT_CAPS, "CAP_SYS_ADMIN"), tmp_path)
    assert other != first and len(list(tmp_path.glob("*.bpf"))) == 2


@pytest.mark.parametrize(
    "text,canonical",
    [
        ("seccomp=unconfined", "seccomp=unconfined"),
        ("seccomp:unconfined", "seccomp=unconfined"),
        ("seccomp=/p.json", "seccomp=/p.json"),
        ("no-new-privileges", "no-new-privileges=true"),
        ("no-new-privileges=false", "no-new-privileges=false"),
        ("no-new-privileges:true", "no-new-privileges=true"),
        ("apparmor=docker-default", "apparmor=docker-default"),
        ("label=disable", "label=disable"),
    ],
)
def test_parse_security_opt(text, canonical):
    assert parse_security_opt(text) == canonical


@pytest.mark.parametrize(
    "text", ["seccomp", "seccomp=", "no-new-privileges=maybe", "foo=bar", "systempaths=unconfined", ""]
)
def test_parse_security_opt_rejects(text):
    with pytest.raises(InvalidSpec, match="--security-opt"):
        parse_security_opt(text)


def test_spec_security_choices():
    spec = ContainerSpec("busybox")
    assert (spec.seccomp_profile(), spec.no_new_privs(), spec.lsm_options()) == ("default", True, ())
    spec = ContainerSpec("busybox", security_opt=["seccomp=unconfined", "no-new-privileges=false", "label=disable"])
    assert (spec.seccomp_profile(), spec.no_new_privs(), spec.lsm_options()) == (
        "unconfined",
        False,
        ("label=disable",),
    )
    assert ContainerSpec.from_dict(spec.to_dict()) == spec
