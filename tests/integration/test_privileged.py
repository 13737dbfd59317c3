"""--privileged as Docker means it, on every backend, read from the kernel inside the
container: every capability, no seccomp, nothing masked or read-only, every device allowed,
the host's device nodes in /dev. `docker run --privileged` is the oracle where the engine
can run one; where it cannot (runc cannot apply every capability, as on a host whose
bounding set lacks one), the docker backend must say Unsupported, exit 125, one line.
"""

from __future__ import annotations

import subprocess

import pytest

from ctr.native.caps import grantable, mask
from ctr.native.devices import host_devices
from ctr.native.rootfs import MASKED_PATHS, READONLY_PATHS
from ctr.spec import CAPABILITIES
from tests.conftest import backends_param

ENGINE_IMAGE = "ctr.local/busybox:latest"
# What the container reports: status lines, its mounts, its devices, and what the kernel lets it do.
PROBE = (
    "grep -E '^(CapEff|CapBnd|Seccomp|NoNewPrivs):' /proc/self/status; "
    "echo MOUNTS; cut -d' ' -f5,6 /proc/self/mountinfo; echo DEVICES; "
    "find /dev -type b -o -type c; echo END; "
    "cat /sys/fs/cgroup/devices/devices.list 2>/dev/null | sed 's/^/devlist /'; "
    "head -c0 /dev/loop0 && echo block=ok; "
    "touch /sys/ctr-probe 2>&1 | grep -q 'Read-only' && echo sys=ro || echo sys=rw"
)
UNSUPPORTED = "the docker backend does not support --privileged"


def _engine_can_run_privileged() -> tuple[bool, str]:
    r = subprocess.run(
        ["docker", "run", "--rm", "--privileged", "--network", "none", ENGINE_IMAGE, "true"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return r.returncode == 0, r.stderr


def _parse(out: str) -> dict:
    status, mounts, devices, rest = {}, {}, set(), []
    section = "status"
    for line in out.splitlines():
        if line in ("MOUNTS", "DEVICES", "END"):
            section = line
            continue
        if section == "status":
            k, _, v = line.partition(":")
            status[k] = v.strip()
        elif section == "MOUNTS":
            target, _, opts = line.partition(" ")
            mounts[target] = opts
        elif section == "DEVICES":
            devices.add(line.removeprefix("/dev/"))
        else:
            rest.append(line)
    return {"status": status, "mounts": mounts, "devices": devices, "rest": rest}


def _run_privileged(ctr, backend, *flags: str):
    if backend.name == "docker":
        ctr("--backend", "docker", "run", "--rm", "busybox", "true")  # loads ctr's busybox into the engine
        ok, why = _engine_can_run_privileged()
        if not ok:
            assert "unable to apply caps" in why, why  # the oracle's own failure on this host
            r = ctr("--backend", "docker", "run", "--rm", "--privileged", *flags, "busybox", "true")
            assert r.returncode == 125 and UNSUPPORTED in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
            pytest.skip("this engine cannot run a privileged container (ctr says Unsupported, as checked)")
    r = ctr("--backend", backend.name, "run", "--rm", "--privileged", *flags, "busybox", "sh", "-c", PROBE)
    assert r.returncode == 0, r.stderr
    return _parse(r.stdout)


def _check(seen: dict) -> None:
    status, mounts = seen["status"], seen["mounts"]
    full = grantable(mask(CAPABILITIES))  # every capability the kernel knows and this host can give
    assert int(status["CapEff"], 16) == full and int(status["CapBnd"], 16) == full
    assert status["Seccomp"] == "0"
    for path in MASKED_PATHS + READONLY_PATHS:
        assert path not in mounts, f"{path} is a mount of its own: {mounts[path]}"
    assert mounts["/sys"].startswith("rw"), mounts["/sys"]
    assert mounts["/sys/fs/cgroup"].startswith("rw"), mounts["/sys/fs/cgroup"]
    assert "sys=rw" in seen["rest"]
    missing = {d.path for d in host_devices()} - seen["devices"]
    assert not missing, f"host devices missing from the container's /dev: {sorted(missing)}"
    if any(line.startswith("devlist ") for line in seen["rest"]):  # cgroup v1 devices controller
        assert "devlist a *:* rwm" in seen["rest"]
    if "loop0" in {d.path for d in host_devices()}:
        assert "block=ok" in seen["rest"], "a block device of the host cannot be opened"


@backends_param()
def test_privileged_is_unconfined_everywhere(ctr, backend):
    _check(_run_privileged(ctr, backend))


@backends_param()
def test_privileged_ignores_seccomp_profile_and_cap_drop(ctr, backend, tmp_path):
    """As the engine: a privileged container has every capability whatever --cap-drop says,
    and no filter whatever seccomp= names (the file is still read: a bad one is an error)."""
    profile = tmp_path / "deny-all.json"
    profile.write_text('{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": []}')
    _check(_run_privileged(ctr, backend, "--cap-drop", "NET_RAW", "--security-opt", f"seccomp={profile}"))


@backends_param()
def test_privileged_with_a_missing_profile_is_one_line(ctr, backend, tmp_path):
    r = ctr(
        "--backend",
        backend.name,
        "run",
        "--rm",
        "--privileged",
        "--security-opt",
        f"seccomp={tmp_path / 'missing.json'}",
        "busybox",
        "true",
    )
    assert r.returncode == 125 and "seccomp=" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@backends_param("native", "lxc")
def test_exec_in_a_privileged_container(ctr, backend):
    name = f"priv-{backend.name}"
    r = ctr("--backend", backend.name, "run", "-d", "--privileged", "--name", name, "busybox", "sleep", "60")
    assert r.returncode == 0, r.stderr
    try:
        r = ctr("exec", name, "grep", "-E", "^(CapEff|Seccomp):", "/proc/self/status")
        assert r.returncode == 0, r.stderr
        status = {k: v.strip() for k, _, v in (line.partition(":") for line in r.stdout.splitlines())}
        assert int(status["CapEff"], 16) == grantable(mask(CAPABILITIES)) and status["Seccomp"] == "0"
    finally:
        ctr("rm", "-f", name)
