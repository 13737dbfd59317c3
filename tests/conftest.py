"""Shared fixtures: a private state root, the CLI as a subprocess, the backend fixture.

The `backend` fixture is indirect (python-on-whales style): a test written once is
parametrized over backend names; a backend that is unusable here is skipped,
unless --require-backends or CTR_REQUIRE_BACKENDS=1 asks for all (CI does).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ctr.backends import get_backend, probe
from ctr.state.paths import Paths

ALL_BACKENDS = ("native", "lxc", "docker")
CTR = [sys.executable, "-m", "ctr.cli.main"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--require-backends",
        action="store_true",
        default=os.environ.get("CTR_REQUIRE_BACKENDS") == "1",
        help="fail instead of skipping when a backend is unusable on this machine",
    )


@pytest.fixture(scope="session")
def ctr_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One state root for the whole run, so the built-in image is built once."""
    return tmp_path_factory.mktemp("ctr-root")


@pytest.fixture(scope="session")
def paths(ctr_root: Path) -> Paths:
    return Paths.default(ctr_root)


def _ctr_traces(ctr_root: Path) -> set[str]:
    """Everything of ctr's that can outlive a container: state, cgroups, mounts, engine containers."""
    traces: set[str] = set()
    paths = Paths.default(ctr_root)
    for d in (paths.containers, paths.runtime, paths.data / "lxc"):
        if d.is_dir():
            traces |= {f"state: {p}" for p in d.iterdir() if not p.name.startswith(".")}
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        if hierarchy.is_dir():
            traces |= {f"cgroup: {p}" for p in hierarchy.glob("ctr-*") if not p.name.startswith("ctr-test-")}
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    traces |= {f"mount: {line}" for line in mounts if str(ctr_root) in line}
    try:
        out = subprocess.run(
            ["docker", "ps", "-aq", "--filter", "label=ctr.name"], capture_output=True, text=True, timeout=30
        )
        traces |= {f"docker container: {c}" for c in out.stdout.split()}
    except (OSError, subprocess.TimeoutExpired):
        pass
    return traces


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(request: pytest.FixtureRequest, ctr_root: Path):
    """The suite ends by proving it cleaned up: no container, cgroup, mount or state of ctr's.

    Compared with what existed when the session began, so that another ctr on the same
    machine (a developer's containers, a concurrent run) is not blamed on this one; and
    only when the session runs integration tests, the only ones that start containers
    (a unit run beside someone's containers would otherwise blame itself for them)."""
    if not any(item.get_closest_marker("integration") for item in request.session.items):
        yield
        return
    before = _ctr_traces(ctr_root)
    yield
    left = sorted(_ctr_traces(ctr_root) - before)
    assert not left, "the test suite left these behind:\n" + "\n".join(left)


@pytest.fixture
def backend(request: pytest.FixtureRequest, paths: Paths):
    """Indirect: parametrize with a backend name, receive a Backend object."""
    name = request.param
    info = probe(name)
    if not info.usable:
        if request.config.getoption("--require-backends"):
            pytest.fail(f"backend {name} is required but unusable: {info.reason}")
        pytest.skip(f"backend {name} unusable here: {info.reason}")
    return get_backend(name, paths)


def backends_param(*names: str):
    """Decorator: run the test once per backend name (all three by default)."""
    return pytest.mark.parametrize("backend", names or ALL_BACKENDS, indirect=True)


@pytest.fixture
def ctr(ctr_root: Path):
    """Run the ctr CLI in a subprocess against the test root; returns CompletedProcess."""

    def run(*args: str, input: str | bytes | None = None, timeout: float = 120, check: bool = False, **kw):
        text = not isinstance(input, bytes)
        return subprocess.run(
            [*CTR, "--root", str(ctr_root), *args],
            input=input,
            capture_output=True,
            text=text,
            timeout=timeout,
            check=check,
            **kw,
        )

    run.args_prefix = [*CTR, "--root", str(ctr_root)]
    return run
