"""The scripts in examples/ run for real, against the test's state root, and the Python
API they are written against (backend.containers, Container, ctr.migrate) does what it says."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import ctr
from ctr.backends import get_backend

from .test_migrate import Cli, lifecycle_ready

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# Runs an example as `python examples/x.py`, except that ctr.migrate is provided when
# ctr/__init__.py does not export it yet (test_public_api says so on its own).
RUNNER = (
    "import runpy, sys\n"
    "import ctr\n"
    "if not hasattr(ctr, 'migrate'):\n"
    "    from ctr.api import Container, migrate\n"
    "    ctr.migrate, ctr.Container = migrate, Container\n"
    "sys.argv = sys.argv[1:]\n"
    "runpy.run_path(sys.argv[0], run_name='__main__')\n"
)


def run_example(script: str, ctr_root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "CTR_ROOT": str(ctr_root)}
    return subprocess.run(
        [sys.executable, "-c", RUNNER, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture
def cli(ctr_root):
    c = Cli(ctr_root)
    yield c
    c.cleanup()


def test_public_api():
    """ctr.migrate is part of ctr's public API (the lead adds it to ctr/__init__.py)."""
    assert callable(getattr(ctr, "migrate", None)), "ctr/__init__.py does not export migrate yet"


def test_every_example_is_tested():
    tested = {"lxc_to_docker.py", "compare_fleet.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_lxc_to_docker(cli, paths, request, ctr_root):
    lifecycle_ready("lxc", request)
    lifecycle_ready("docker", request)
    running, stopped = f"ex-{uuid.uuid4().hex[:6]}", f"ex-{uuid.uuid4().hex[:6]}"
    cli.made.update((running, stopped))
    cli(
        "--backend",
        "lxc",
        "run",
        "-d",
        "--name",
        running,
        "busybox",
        "sh",
        "-c",
        "[ -e /state ] || echo first-run > /state; exec sleep 600",
    )
    cli("--backend", "lxc", "run", "--name", stopped, "busybox", "sh", "-c", "echo done > /state")
    r = run_example("lxc_to_docker.py", ctr_root, running, stopped)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["NAME", "WAS", "NOW", "ID"] and lines[-1] == "2 moved, 0 failed"
    assert any(line.split()[:4] == [running, "running", "docker,", "running"] for line in lines)
    assert any(line.split()[:4] == [stopped, "exited", "docker,", "created"] for line in lines)
    assert cli("exec", running, "cat", "/state").stdout == "first-run\n"
    assert get_backend("docker", paths).get(stopped).backend == "docker"
    assert (get_backend("docker", paths).writable_layer(stopped) / "state").read_text() == "done\n"


def test_lxc_to_docker_reports_what_it_could_not_move(ctr_root, request):
    lifecycle_ready("lxc", request)
    lifecycle_ready("docker", request)
    r = run_example("lxc_to_docker.py", ctr_root, "no-such-container")
    assert r.returncode == 1 and "no such LXC container of ctr's" in r.stdout


def test_compare_fleet(request, ctr_root):
    for name in ("native", "lxc", "docker"):
        lifecycle_ready(name, request)
    r = run_example("compare_fleet.py", ctr_root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.rstrip().endswith("all backends agree")
    for name in ("native", "lxc", "docker"):
        assert any(line.startswith(name) and " 3 " in line and "host=fleet" in line for line in r.stdout.splitlines())


def test_containers_api(paths, request):
    lifecycle_ready("native", request)
    from ctr.api import Container, migrate

    native = ctr.connect("native", str(paths.data))
    name = f"api-{uuid.uuid4().hex[:6]}"
    c = native.containers.run(ctr.ContainerSpec("busybox", command=["sh", "-c", "echo hi; exec sleep 600"], name=name))
    try:
        assert isinstance(c, Container) and c.name == name and c.backend is native and c.status == "running"
        assert c.spec.command == ("sh", "-c", "echo hi; exec sleep 600")
        assert name in [x.name for x in native.containers.list()]
        assert native.containers.get(name).id == c.id
        result = c.exec_output(["sh", "-c", "echo out; echo err >&2; exit 4"])
        assert (result.exit_code, result.stdout, result.stderr) == (4, b"out\n", b"err\n")
        c.stop(timeout=1)
        assert c.status == "exited" and c.output() == b"hi\n"
        c.start()
        assert c.status == "running"
        try:
            lifecycle_ready("docker", request)
        except pytest.skip.Exception:
            return
        moved = migrate(c, to="docker", stop=True)
        assert moved.backend.name == "docker" and moved.name == name and moved.status == "running"
        with pytest.raises(ctr.NotFound):
            native.containers.get(name)
        c = moved
    finally:
        c.remove(force=True)
