"""Images through a real registry and the real Docker Engine.

A session fixture uses the registry answering on 127.0.0.1:5000, or starts
Debian's docker-registry there with scripts/start-registry.sh (and stops it, which
removes its temp dir). Images go in with `ctr image push` (ctr's busybox) and with
`docker build` + `docker push` (a multi-layer image whose later layer deletes a file
and replaces a directory); `ctr image pull` brings them into fresh state roots, and
`ctr run` on the native backend shows what the layers add up to. Also: `docker save`
output imports, `ctr image export` output `docker load`s, skopeo and umoci read it.
Everything created in the engine is removed again.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from ..conftest import backends_param
from .test_images_cli import ok, run_ctr

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers on the native backend (root)")

REGISTRY = "127.0.0.1:5000"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
RUN_ID = uuid.uuid4().hex[:8]
DOCKERFILE = """\
FROM ctr.local/busybox:latest
RUN echo secret > /gone && mkdir -p /d/sub && echo old > /d/sub/old && echo keep > /keep
RUN rm /gone && rm -rf /d && mkdir /d && echo new > /d/new
CMD ["sh"]
"""
DEMO_CHECK = ["sh", "-c", "test ! -e /gone && echo gone-is-absent; cat /keep; ls -R /d"]
DEMO_OUT = "gone-is-absent\nkeep\n/d:\nnew\n"


def registry_answers() -> bool:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://{REGISTRY}/v2/", timeout=3
        ) as r:
            return r.status == 200
    except OSError:
        return False


def require(ok_: bool, why: str) -> None:
    if not ok_:
        if os.environ.get("CTR_REQUIRE_BACKENDS") == "1":
            pytest.fail(why)
        pytest.skip(why)


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory):
    if registry_answers():
        yield REGISTRY
        return
    require(
        Path("/usr/bin/docker-registry").exists(), "docker-registry is not installed: apt-get install docker-registry"
    )
    env = {**os.environ, "CTR_REGISTRY_PIDFILE": str(tmp_path_factory.mktemp("registry") / "registry.pid")}
    subprocess.run([str(SCRIPTS / "start-registry.sh")], env=env, check=True, timeout=90)
    try:
        yield REGISTRY
    finally:
        subprocess.run([str(SCRIPTS / "stop-registry.sh")], env=env, timeout=90)


def docker(*args: str, check: bool = True, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert r.returncode == 0, f"docker {' '.join(args)}: {r.stderr}"
    return r


@pytest.fixture(scope="session")
def engine():
    """The Docker Engine, and a list of image references to remove at the end."""
    usable = shutil.which("docker") is not None and docker("version", check=False, timeout=30).returncode == 0
    require(usable, "no Docker Engine answers: scripts/start-dockerd.sh")
    created: list[str] = []
    yield created
    for ref in reversed(created):
        docker("rmi", ref, check=False)


@pytest.fixture(scope="session")
def engine_busybox(engine: list[str], tmp_path_factory: pytest.TempPathFactory) -> str:
    """ctr.local/busybox:latest in the engine (the docker backend's name for ctr's busybox)."""
    ref = "ctr.local/busybox:latest"
    if docker("image", "inspect", ref, check=False).returncode != 0:
        tmp = tmp_path_factory.mktemp("engine-busybox")
        ok(run_ctr(tmp / "root", "image", "tag", "busybox", ref))
        ok(run_ctr(tmp / "root", "image", "export", ref, "-o", str(tmp / "bb.tar"), "--format", "docker-archive"))
        docker("load", "-i", str(tmp / "bb.tar"))
        engine.append(ref)
    return ref


@pytest.fixture(scope="session")
def demo(registry: str, engine: list[str], engine_busybox: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """127.0.0.1:5000/demo:1, built by the engine's classic builder and pushed with docker push."""
    ref = f"{registry}/demo:1"
    ctx = tmp_path_factory.mktemp("demo-build")
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    engine.append(ref)
    docker(
        "build", "-q", "--network", "none", "-t", ref, str(ctx), env={**os.environ, "DOCKER_BUILDKIT": "0"}, timeout=600
    )
    docker("push", ref, timeout=600)
    return ref


def test_push_ctr_busybox_and_pull_into_fresh_root(registry: str, ctr_root: Path, tmp_path: Path) -> None:
    ref = f"{registry}/ctr-test-{RUN_ID}/busybox:1"
    ok(run_ctr(ctr_root, "image", "tag", "busybox", ref))
    [local] = json.loads(ok(run_ctr(ctr_root, "image", "inspect", ref)).stdout)
    pushed = ok(run_ctr(ctr_root, "image", "push", ref))
    assert pushed.stdout.strip() == f"{ref}: {local['digest']}" and pushed.stderr == ""  # no progress off a terminal
    ok(run_ctr(ctr_root, "image", "push", ref))  # again: every blob is there already
    fresh = tmp_path / "fresh"
    pulled = ok(run_ctr(fresh, "image", "pull", ref))
    assert pulled.stdout.strip() == f"{ref}: {local['digest']}" and pulled.stderr == ""
    [remote] = json.loads(ok(run_ctr(fresh, "image", "inspect", ref)).stdout)
    assert (remote["id"], remote["layers"]) == (local["id"], local["layers"])
    assert ok(run_ctr(fresh, "run", "--rm", ref, "echo", "pulled")).stdout == "pulled\n"
    ok(run_ctr(fresh, "image", "pull", ref))  # a second pull finds everything in the store


def test_pull_engine_built_image_and_run(demo: str, tmp_path: Path) -> None:
    fresh = tmp_path / "fresh"
    ok(run_ctr(fresh, "image", "pull", demo))
    [doc] = json.loads(ok(run_ctr(fresh, "image", "inspect", demo)).stdout)
    assert doc["media_type"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert len(doc["layers"]) == 3
    assert doc["id"] == docker("image", "inspect", "-f", "{{.Id}}", demo).stdout.strip()
    r = ok(run_ctr(fresh, "run", "--rm", demo, *DEMO_CHECK))
    assert r.stdout == DEMO_OUT


def test_pull_unknown_tag_is_one_line(registry: str, tmp_path: Path) -> None:
    r = run_ctr(tmp_path / "root", "image", "pull", f"{registry}/ctr-test-{RUN_ID}/nothing:1")
    assert r.returncode == 125
    assert r.stderr.strip().splitlines() == [
        f"ctr: image {registry}/ctr-test-{RUN_ID}/nothing:1 not found in registry {registry}"
    ]


def test_docker_save_imports_and_runs(demo: str, tmp_path: Path) -> None:
    saved = tmp_path / "saved.tar"
    docker("save", "-o", str(saved), demo)
    root = tmp_path / "root"
    assert ok(run_ctr(root, "image", "import", str(saved))).stdout.strip() == f"Loaded image: {demo}"
    [doc] = json.loads(ok(run_ctr(root, "image", "inspect", demo)).stdout)
    assert doc["id"] == docker("image", "inspect", "-f", "{{.Id}}", demo).stdout.strip()
    assert ok(run_ctr(root, "run", "--rm", demo, *DEMO_CHECK)).stdout == DEMO_OUT


@pytest.mark.parametrize("fmt", ["oci", "docker-archive"])
def test_export_is_docker_loadable(fmt: str, demo: str, engine: list[str], tmp_path: Path) -> None:
    root = tmp_path / "root"
    ok(run_ctr(root, "image", "pull", demo))
    ref = f"ctr-test.local/export-{fmt}:{RUN_ID}"
    ok(run_ctr(root, "image", "tag", demo, ref))
    [doc] = json.loads(ok(run_ctr(root, "image", "inspect", ref)).stdout)
    out = tmp_path / "out.tar"
    ok(run_ctr(root, "image", "export", ref, "-o", str(out), "--format", fmt))
    engine.append(ref)
    loaded = docker("load", "-i", str(out))
    assert f"Loaded image: {ref}" in loaded.stdout
    assert docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.strip() == doc["id"]
    r = docker("run", "--rm", "--network", "none", ref, *DEMO_CHECK)
    assert r.stdout == DEMO_OUT
    docker("rmi", ref)


def test_skopeo_and_umoci_read_the_oci_export(ctr_root: Path, tmp_path: Path) -> None:
    if not shutil.which("skopeo") and not shutil.which("umoci"):
        pytest.skip("neither skopeo nor umoci is installed (apt-get install skopeo umoci)")
    ok(run_ctr(ctr_root, "image", "tag", "busybox", f"oci-check:{RUN_ID}"))
    [doc] = json.loads(ok(run_ctr(ctr_root, "image", "inspect", f"oci-check:{RUN_ID}")).stdout)
    out = tmp_path / "oci.tar"
    ok(run_ctr(ctr_root, "image", "export", f"oci-check:{RUN_ID}", "-o", str(out)))
    ok(run_ctr(ctr_root, "image", "rm", f"oci-check:{RUN_ID}"))
    if shutil.which("skopeo"):
        r = subprocess.run(["skopeo", "inspect", f"oci-archive:{out}"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["Digest"] == doc["digest"]
        copy = tmp_path / "copied"
        r = subprocess.run(
            ["skopeo", "copy", f"oci-archive:{out}", f"oci:{copy}:{RUN_ID}"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        # skopeo's own layout (names are bare tags) comes back in, with --name
        r = ok(run_ctr(tmp_path / "root", "image", "import", str(copy), "--name", "from-skopeo:1"))
        assert ok(run_ctr(tmp_path / "root", "run", "--rm", "from-skopeo:1", "echo", "ok")).stdout == "ok\n"
    if shutil.which("umoci"):
        layout = tmp_path / "layout"
        layout.mkdir()
        subprocess.run(["tar", "-xf", str(out), "-C", str(layout)], check=True)
        r = subprocess.run(["umoci", "ls", "--layout", str(layout)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.split() == [RUN_ID], r.stderr
        bundle = tmp_path / "bundle"
        r = subprocess.run(
            ["umoci", "unpack", "--image", f"{layout}:{RUN_ID}", str(bundle)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert (bundle / "rootfs" / "bin" / "busybox").is_file()
        assert json.loads((bundle / "config.json").read_text())["process"]["args"] == ["sh"]


def test_registry_scripts_are_idempotent(registry: str) -> None:
    r = subprocess.run([str(SCRIPTS / "start-registry.sh")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "already answers" in r.stdout


@pytest.fixture(scope="session")
def pushed_nested(registry: str, ctr_root: Path) -> tuple[str, str]:
    """ctr's busybox pushed under a nested path; (name without the registry, manifest digest)."""
    path = f"ctr-test-{RUN_ID}/nested/bb"
    ref = f"{registry}/{path}:1"
    ok(run_ctr(ctr_root, "image", "tag", "busybox", ref))
    digest = ok(run_ctr(ctr_root, "image", "push", ref)).stdout.strip().rsplit(": ", 1)[1]
    ok(run_ctr(ctr_root, "image", "rm", ref))
    return path, digest


@backends_param()
@pytest.mark.parametrize("form", ["ip-port-tag", "localhost-port-tag", "ip-port-digest"])
def test_image_pulled_from_loopback_registry_runs_on_every_backend(
    backend, form, pushed_nested, registry, engine, tmp_path
) -> None:
    """Issue 13: a reference with a registry host:port (an IPv4 or localhost), a nested path
    and a tag or digest runs on every backend; on docker ctr's engine name must be a valid
    Docker reference (ctr.local/127.0.0.1:5000/... is not)."""
    from ctr.backends.docker.images import engine_tag

    path, digest = pushed_nested
    port = registry.rsplit(":", 1)[1]
    ref = {
        "ip-port-tag": f"127.0.0.1:{port}/{path}:1",
        "localhost-port-tag": f"localhost:{port}/{path}:1",
        "ip-port-digest": f"127.0.0.1:{port}/{path}@{digest}",
    }[form]
    root = tmp_path / "root"
    ok(run_ctr(root, "image", "pull", ref))
    if backend.name == "docker":
        repo, tag = engine_tag(ref)
        engine.append(f"{repo}:{tag}")  # loaded into the engine by the run below; removed at the end
    r = run_ctr(root, "--backend", backend.name, "run", "--rm", ref, "echo", "hi")
    assert (r.returncode, r.stdout, r.stderr) == (0, "hi\n", "")
