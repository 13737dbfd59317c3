"""What the docker backend's tests share besides fixtures: the backend parametrization, a
long-running container, the engine's containers of a name, ps and inspect read as JSON."""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import contextmanager

import pytest

docker_only = pytest.mark.parametrize("backend", ["docker"], indirect=True)

LONG = ["sh", "-c", "trap 'exit 0' TERM; trap 'exit 7' INT; echo ready; sleep 60 & wait"]


def leftovers(engine, name: str) -> list[str]:
    # ignore_removed: the SDK lists ids, then inspects each; one the engine removes in
    # between (--rm) is gone, not an error.
    return [
        c.name for c in engine.containers.list(all=True, filters={"label": f"ctr.name={name}"}, ignore_removed=True)
    ]


@contextmanager
def running(dctr, engine, name: str, *args: str, command=LONG, timeout: float = 30):
    """`ctr run --rm --name NAME ARGS busybox COMMAND` in the background; yields (proc, host pid
    of the container's process, container id) once it printed `ready`."""
    proc = subprocess.Popen(
        [*dctr.args_prefix, "run", "--rm", "--name", name, *args, "busybox", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            pytest.fail(f"container did not start: {line!r} {proc.stderr.read()}")
        info = engine.api.inspect_container(name)
        yield proc, info["State"]["Pid"], info["Id"]
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_until(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    return check()


def ps(dctr, *args: str) -> dict:
    return {row["name"]: row for row in json.loads(dctr("ps", "--format", "json", *args).stdout)}


def inspect(dctr, name: str) -> dict:
    r = dctr("inspect", name)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)[0]
