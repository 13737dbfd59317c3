"""Hardened defaults, the same on every backend (issue 14): Docker's seccomp profile,
--security-opt, read from the kernel inside the container, with `docker run` as the oracle.

A static C probe (probes/syscalls.c, compiled here as crun's tests compile theirs) calls
82 syscalls and prints how each was answered; every backend must answer exactly as the
engine's own default profile does under `docker run`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import CTR, backends_param

PROBE_SOURCE = Path(__file__).with_name("probes") / "syscalls.c"
ENGINE_IMAGE = "ctr.local/busybox:latest"  # ctr's busybox, as the docker backend loads it


@pytest.fixture(scope="session")
def probe_dir(tmp_path_factory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler for the syscall probe")
    out = tmp_path_factory.mktemp("probe")
    r = subprocess.run(
        [cc, "-static", "-O1", "-o", str(out / "probe"), str(PROBE_SOURCE)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot build the static syscall probe: {r.stderr.strip()[-300:]}")
    return out


@pytest.fixture(scope="session")
def oracle(probe_dir, ctr_root, request):
    """`docker run` of the probe, per extra flag set: what the engine's default profile answers."""
    from ctr.backends import probe as probe_backend

    info = probe_backend("docker")
    if not info.usable:
        if request.config.getoption("--require-backends"):
            pytest.fail(f"backend docker is required but unusable: {info.reason}")
        pytest.skip(f"no docker engine for the oracle: {info.reason}")
    subprocess.run(
        [*CTR, "--root", str(ctr_root), "--backend", "docker", "run", "--rm", "busybox", "true"],
        check=True,
        capture_output=True,
        timeout=120,
    )  # loads ctr's busybox into the engine
    answers: dict[tuple[str, ...], str] = {}

    def run(*flags: str) -> str:
        if flags not in answers:
            r = subprocess.run(
                [
                    "docker",
                    "run",
                    "--rm",
                    "--network",
                    "none",
                    "--security-opt",
                    "no-new-privileges",
                    *flags,
                    "-v",
                    f"{probe_dir}:/p:ro",
                    ENGINE_IMAGE,
                    "/p/probe",
                ],
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert r.returncode == 0, r.stderr
            answers[flags] = r.stdout
        return answers[flags]

    return run


def _status(text: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


@backends_param()
def test_default_profile_is_a_filter_that_refuses_user_namespaces(ctr, backend):
    r = ctr(
        "--backend",
        backend.name,
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "grep -E '^(Seccomp|Seccomp_filters|NoNewPrivs):' /proc/self/status; "
        "unshare -U true 2>&1; echo unshare=$?; echo hello",
    )
    assert r.returncode == 0, r.stderr
    status = _status(r.stdout)
    assert (status["Seccomp"], status["Seccomp_filters"], status["NoNewPrivs"]) == ("2", "1", "1")
    assert "Operation not permitted" in r.stdout and "unshare=1" in r.stdout
    assert r.stdout.rstrip().endswith("hello")


@pytest.mark.parametrize(
    "flags",
    [(), ("--cap-add", "SYS_ADMIN"), ("--cap-add", "SYS_PTRACE"), ("--cap-drop", "SYS_CHROOT")],
    ids=["default", "sys_admin", "sys_ptrace", "no_sys_chroot"],
)
@backends_param()
def test_syscalls_answer_as_under_docker_run(ctr, backend, probe_dir, oracle, flags):
    r = ctr("--backend", backend.name, "run", "--rm", *flags, "-v", f"{probe_dir}:/p:ro", "busybox", "/p/probe")
    assert r.returncode == 0, r.stderr
    expected = oracle(*flags)
    assert len(expected.splitlines()) == 82
    differ = [
        f"{a!r} under docker run, {b!r} here" for a, b in zip(expected.splitlines(), r.stdout.splitlines()) if a != b
    ]
    assert not differ and r.stdout == expected, "\n".join(differ)


@backends_param()
def test_unconfined(ctr, backend):
    r = ctr(
        "--backend",
        backend.name,
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "sh",
        "-c",
        "grep -E '^Seccomp:' /proc/self/status; unshare -U true && echo unshared",
    )
    assert r.returncode == 0, r.stderr
    assert _status(r.stdout)["Seccomp"] == "0"
    assert "unshared" in r.stdout


@backends_param()
def test_no_new_privileges_false_keeps_the_filter(ctr, backend):
    r = ctr(
        "--backend",
        backend.name,
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges=false",
        "busybox",
        "grep",
        "-E",
        "^(Seccomp|NoNewPrivs):",
        "/proc/self/status",
    )
    assert r.returncode == 0, r.stderr
    status = _status(r.stdout)
    assert (status["Seccomp"], status["NoNewPrivs"]) == ("2", "0")


@backends_param()
def test_custom_profile(ctr, backend, tmp_path):
    """A profile of one's own: everything allowed but mkdir/mkdirat, refused with EACCES."""
    profile = tmp_path / "no-mkdir.json"
    profile.write_text(
        json.dumps(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
            }
        )
    )
    r = ctr(
        "--backend",
        backend.name,
        "run",
        "--rm",
        "--security-opt",
        f"seccomp={profile}",
        "busybox",
        "sh",
        "-c",
        "grep -E '^Seccomp:' /proc/self/status; mkdir /made 2>&1; echo mkdir=$?; unshare -U true && echo unshared",
    )
    assert r.returncode == 0, r.stderr
    assert _status(r.stdout)["Seccomp"] == "2"
    assert "Permission denied" in r.stdout and "mkdir=1" in r.stdout
    assert "unshared" in r.stdout  # this profile allows what the default refuses


@backends_param()
def test_exec_gets_the_containers_filter(ctr, backend):
    name = f"s-{uuid.uuid4().hex[:8]}"
    r = ctr("--backend", backend.name, "run", "-d", "--name", name, "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = ctr(
            "exec",
            name,
            "sh",
            "-c",
            "grep -E '^(Seccomp|Seccomp_filters):' /proc/self/status; unshare -U true; echo $?",
        )
        assert r.returncode == 0, r.stderr
        status = _status(r.stdout)
        assert (status["Seccomp"], status["Seccomp_filters"]) == ("2", "1")
        assert r.stdout.rstrip().endswith("1")
    finally:
        ctr("rm", "-f", name)


BAD = {
    "missing": (None, "no such file or directory"),
    "not_json": ("{", "not JSON"),
    "unknown_syscall": (
        json.dumps(
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["no_such_call"], "action": "SCMP_ACT_ERRNO"}]}
        ),
        "unknown syscall 'no_such_call'",
    ),
    "unknown_action": (
        json.dumps(
            {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_SOMETIMES"}]}
        ),
        "unknown action",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
@backends_param()
def test_bad_profile_is_one_line_and_leaves_nothing(ctr, backend, tmp_path, case):
    text, fault = BAD[case]
    profile = tmp_path / "profile.json"
    if text is not None:
        profile.write_text(text)
    name = f"bad-{uuid.uuid4().hex[:8]}"
    for command in ("run", "create"):
        r = ctr(
            "--backend",
            backend.name,
            command,
            "--name",
            name,
            "--security-opt",
            f"seccomp={profile}",
            "busybox",
            "true",
        )
        assert r.returncode == 125, r.stdout + r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"ctr: invalid --security-opt seccomp={profile}: "), r.stderr
        assert fault in lines[0]
        assert ctr("inspect", name).returncode != 0  # no container of that name on any backend


@pytest.mark.parametrize("opt", ["seccomp", "no-new-privileges=maybe", "systempaths=unconfined"])
@backends_param()
def test_bad_security_opt(ctr, backend, opt):
    r = ctr("--backend", backend.name, "run", "--rm", "--security-opt", opt, "busybox", "true")
    assert r.returncode == 125
    assert len(r.stderr.strip().splitlines()) == 1 and "--security-opt" in r.stderr


@pytest.mark.parametrize("opt", ["apparmor=docker-default", "label=disable"])
@backends_param()
def test_lsm_options_are_unsupported_without_the_lsm(ctr, backend, opt):
    from ctr.security import host_lsms

    if {"apparmor", "selinux"} & host_lsms():
        pytest.skip("this host has an LSM that --security-opt can name")
    r = ctr("--backend", backend.name, "run", "--rm", "--security-opt", opt, "busybox", "true")
    assert r.returncode == 125
    assert r.stderr.strip() == (
        f"ctr: the {backend.name} backend does not support --security-opt {opt}: "
        f"this host has no {'apparmor' if opt.startswith('apparmor') else 'selinux'} security module"
    )


@backends_param()
def test_proc_paths_read_only_as_docker(ctr, backend):
    """Docker's read-only /proc paths (moby oci/defaults.go), seen in the container's mountinfo."""
    r = ctr("--backend", backend.name, "run", "--rm", "busybox", "cat", "/proc/self/mountinfo")
    assert r.returncode == 0, r.stderr
    options = {f[4]: f[5].split(",") for f in (line.split() for line in r.stdout.splitlines())}
    for path in ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"):
        if Path(path).exists():
            assert "ro" in options.get(path, []), f"{path} is not a read-only mount: {options.get(path)}"
