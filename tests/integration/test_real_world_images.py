"""What Docker imports, ctr imports and runs on every backend (issue 20).

A real Debian root made by debootstrap (--variant=minbase bookworm, cached as a
tarball under the state dir's test cache, ~30 s the first time) comes in three
ways: as a root filesystem tarball, as `docker save` output of the same tree
after `docker import`, and as an OCI layout written by skopeo from the engine.
Each carries /dev/null, /dev/full and the like, as such roots do; each runs bash,
dpkg and apt on native, lxc and docker.

An image carrying a block device and /dev/mem's node (outside /dev, and one in
/dev) shows the other half: the nodes come in, the device policy of every
backend keeps the container from opening them, and /dev is the backend's own.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

from ctr.state.paths import Paths

from ..conftest import backends_param
from .test_images_cli import CTRI, ok, run_ctr
from .test_registry_pull import docker, require

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers and debootstrap (root)")

CACHE = Path(os.environ.get("CTR_TEST_CACHE") or Paths.default(None).data / "test-cache")
DEBROOT_TAR = CACHE / "debroot-bookworm-minbase.tar"
MIRROR = "http://deb.debian.org/debian"
RUN_ID = uuid.uuid4().hex[:8]
DEB_CHECK = [
    "bash",
    "-c",
    'echo "bash ${BASH_VERSINFO[0]}"; dpkg-query -W -f="\\${Package}\\n" | grep -cx apt; '
    "apt-get --version | head -1 | cut -d' ' -f1; test -c /dev/full && echo full",
]


def _mounts_under(path: Path) -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(path) or point.startswith(f"{path}/"):
            out.append(point)
    return out


@pytest.fixture(scope="session")
def debroot_tar() -> Path:
    """The debootstrap root as a tarball, made once per machine and kept in the test cache."""
    if DEBROOT_TAR.is_file():
        return DEBROOT_TAR
    require(shutil.which("debootstrap") is not None, "debootstrap is not installed: apt-get install debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix=".debroot-"))
    try:
        root = tmp / "root"
        r = subprocess.run(
            ["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR],
            capture_output=True,
            text=True,
            timeout=900,
        )
        require(r.returncode == 0, f"debootstrap failed: {(r.stderr or r.stdout)[-400:]}")
        # numeric owners and every node as it is: what `tar -C DIR -c .` gives docker import too
        subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", "-cf", str(tmp / "root.tar"), "."], check=True, timeout=300
        )
        os.rename(tmp / "root.tar", DEBROOT_TAR)
    finally:
        for point in sorted(_mounts_under(tmp), reverse=True):  # debootstrap mounts /proc, /sys inside
            subprocess.run(["umount", "-l", point], timeout=60)
        if not _mounts_under(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
    return DEBROOT_TAR


@pytest.fixture(scope="module")
def deb_images(debroot_tar: Path, tmp_path_factory: pytest.TempPathFactory):
    """(state root, {form: image name}) with the root imported as a tarball, a docker save
    and an OCI layout; the engine's images made on the way are removed at the end."""
    usable = shutil.which("docker") is not None and docker("version", check=False, timeout=30).returncode == 0
    require(usable, "no Docker Engine answers: scripts/start-dockerd.sh")
    require(shutil.which("skopeo") is not None, "skopeo is not installed")
    tmp = tmp_path_factory.mktemp("deb")
    root = tmp / "root"
    engine_ref = f"ctr-test-deb-{RUN_ID}:12"
    engine_refs = [engine_ref]
    images = {"tarball": "ctr-test/deb:tarball", "docker-save": engine_ref, "oci-layout": "ctr-test/deb:oci"}
    try:
        with open(debroot_tar, "rb") as f:  # through stdin, as `tar -c . | ctr image import -` sends it
            r = subprocess.run(
                [*CTRI, "--root", str(root), "image", "import", "-n", images["tarball"], "-c", 'CMD ["bash"]', "-"],
                stdin=f,
                capture_output=True,
                text=True,
                timeout=300,
            )
        assert r.returncode == 0, r.stderr
        docker("import", "-c", 'CMD ["bash"]', str(debroot_tar), engine_ref, timeout=300)
        docker("save", "-o", str(tmp / "save.tar"), engine_ref, timeout=300)
        ok(run_ctr(root, "image", "import", str(tmp / "save.tar")))
        r = subprocess.run(
            ["skopeo", "copy", "-q", f"docker-daemon:{engine_ref}", f"oci:{tmp / 'oci'}:deb"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stderr
        ok(run_ctr(root, "image", "import", "--name", images["oci-layout"], str(tmp / "oci")))
        subprocess.run(
            ["zstd", "-q", "-T0", "-o", str(tmp / "root.tar.zst"), str(debroot_tar)], check=True, timeout=300
        )
        images["zstd-tarball"] = "ctr-test/deb:zstd"
        ok(run_ctr(root, "image", "import", "-n", images["zstd-tarball"], str(tmp / "root.tar.zst")))
        images["user-by-name"] = "ctr-test/deb:nobody"
        ok(run_ctr(root, "image", "import", "-n", images["user-by-name"], "-c", "USER nobody", str(debroot_tar)))
        yield root, images, engine_refs
    finally:
        for ref in engine_refs:
            docker("rmi", "-f", ref, check=False)


@backends_param()
@pytest.mark.parametrize("form", ["tarball", "docker-save", "oci-layout", "zstd-tarball", "user-by-name"])
def test_debootstrap_root_runs_on_every_backend(backend, form, deb_images) -> None:
    """bash, dpkg and apt of a usr-merged Debian (/bin -> usr/bin); USER nobody by name is
    looked up in the image's own /etc/passwd (uid 65534)."""
    from ctr.backends.docker.images import engine_tag

    root, images, engine_refs = deb_images
    ref = images[form]
    if backend.name == "docker":
        engine_refs.append(":".join(engine_tag(ref)))  # loaded by the run below
    r = run_ctr(root, "--backend", backend.name, "run", "--rm", ref, *DEB_CHECK)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout == "bash 5\n1\napt\nfull\n"
    r = run_ctr(root, "--backend", backend.name, "run", "--rm", ref, "sh", "-c", "id -u; id -un; readlink /bin")
    expected = "65534\nnobody\n" if form == "user-by-name" else "0\nroot\n"
    assert (r.returncode, r.stdout, r.stderr) == (0, expected + "usr/bin\n", "")


# --- an image carrying device nodes: they come in, nobody opens them -----------------------

NODES = {"blk": (tarfile.BLKTYPE, 7, 0), "mem": (tarfile.CHRTYPE, 1, 1), "dev/ctr-test-blk": (tarfile.BLKTYPE, 7, 0)}
NODE_PROBE = (
    "for f in /blk /mem; do if cat $f > /dev/null 2> /e; then echo $f opened; else echo $f $(cat /e); fi; "
    "done; test -e /dev/ctr-test-blk && echo image-dev || echo own-dev; echo x > /dev/null && echo null-ok"
)


def devnodes_rootfs() -> bytes:
    nodes = ((name, kind, (major, minor), 0o666) for name, (kind, major, minor) in NODES.items())
    return _tar(*_busybox_members(("sh", "cat", "echo", "test")), ("dev", tarfile.DIRTYPE), *nodes)


@backends_param()
def test_device_nodes_from_an_image_cannot_be_opened(backend, tmp_path) -> None:
    from ctr.backends.docker.images import engine_tag

    root = tmp_path / "root"
    ref = f"ctr-test/devnodes-{RUN_ID}:1"
    ok(run_ctr(root, "image", "import", "-n", ref, "-", input=devnodes_rootfs()))
    try:
        r = run_ctr(root, "--backend", backend.name, "run", "--rm", ref, "sh", "-c", NODE_PROBE)
    finally:
        if backend.name == "docker":
            docker("rmi", "-f", ":".join(engine_tag(ref)), check=False)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("/blk ") and lines[0].endswith("Operation not permitted"), lines
    assert lines[1].startswith("/mem ") and lines[1].endswith("Operation not permitted"), lines
    assert lines[2:] == ["own-dev", "null-ok"]


# --- whiteouts and opaque directories, and docker save of several images -------------------


def _tar(*members: tuple) -> bytes:
    """(name, type[, data, link or (major, minor)[, mode]]) -> tar bytes."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, kind, *rest in members:
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode = kind, rest[1] if len(rest) > 1 else 0o755 if kind == tarfile.DIRTYPE else 0o644
            data = rest[0] if rest else b""
            if kind == tarfile.SYMTYPE:
                ti.linkname = data
                tar.addfile(ti)
            elif kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
                ti.devmajor, ti.devminor = data
                tar.addfile(ti)
            else:
                ti.size = len(data)
                tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def _docker_archive(images: list[tuple[list[bytes], list[str]]]) -> bytes:
    """A `docker save` archive (the classic layout): for each image, its layers and tags."""
    import hashlib

    files: dict[str, bytes] = {}
    manifest = []
    for layers, tags in images:
        diff_ids = ["sha256:" + hashlib.sha256(x).hexdigest() for x in layers]
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": diff_ids},
            }
        ).encode()
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        files[config_name] = config
        names = [f"{d[7:]}/layer.tar" for d in diff_ids]
        files.update(zip(names, layers))
        manifest.append({"Config": config_name, "RepoTags": tags, "Layers": names})
    files["manifest.json"] = json.dumps(manifest).encode()
    return _tar(*((name, tarfile.REGTYPE, data) for name, data in files.items()))


def _busybox_members(applets: tuple[str, ...]) -> list[tuple]:
    """The host's static busybox as /bin/busybox, and /bin/APPLET links to it."""
    from ctr.images.busybox import find_busybox

    busybox, _ = find_busybox()
    return [
        ("bin", tarfile.DIRTYPE),
        ("bin/busybox", tarfile.REGTYPE, Path(busybox).read_bytes(), 0o755),
        *((f"bin/{a}", tarfile.SYMTYPE, "busybox") for a in applets),
    ]


def _busybox_layer() -> bytes:
    return _tar(*_busybox_members(("sh", "ls", "cat", "echo", "id")))


@backends_param()
def test_whiteouts_and_opaque_directories_on_every_backend(backend, tmp_path) -> None:
    """A file deleted by a later layer is gone, an opaque directory shows only the later
    layer's files: on native and lxc through overlayfs, on docker through the engine."""
    from ctr.backends.docker.images import engine_tag

    lower = _tar(
        ("etc", tarfile.DIRTYPE),
        ("etc/gone", tarfile.REGTYPE, b"g"),
        ("etc/kept", tarfile.REGTYPE, b"k"),
        ("d", tarfile.DIRTYPE),
        ("d/old", tarfile.REGTYPE, b"o"),
    )
    upper = _tar(
        ("etc", tarfile.DIRTYPE),
        ("etc/.wh.gone", tarfile.REGTYPE),
        ("d", tarfile.DIRTYPE),
        ("d/.wh..wh..opq", tarfile.REGTYPE),
        ("d/new", tarfile.REGTYPE, b"n"),
    )
    ref = f"ctr-test/whiteouts-{RUN_ID}:1"
    (tmp_path / "save.tar").write_bytes(_docker_archive([([_busybox_layer(), lower, upper], [ref])]))
    root = tmp_path / "root"
    ok(run_ctr(root, "image", "import", str(tmp_path / "save.tar")))
    try:
        r = run_ctr(root, "--backend", backend.name, "run", "--rm", ref, "sh", "-c", "ls /etc /d")
    finally:
        if backend.name == "docker":
            docker("rmi", "-f", ":".join(engine_tag(ref)), check=False)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert "gone" not in r.stdout and "old" not in r.stdout and "kept" in r.stdout and "new" in r.stdout


def test_docker_save_of_several_images_imports_all_or_the_one_named(tmp_path) -> None:
    """`docker save a:1 a:2 b:1`, as the engine writes it, imported whole or picked by --name."""
    usable = shutil.which("docker") is not None and docker("version", check=False, timeout=30).returncode == 0
    require(usable, "no Docker Engine answers: scripts/start-dockerd.sh")
    a, b = f"ctr-test-multi-a-{RUN_ID}", f"ctr-test-multi-b-{RUN_ID}"
    refs = [f"{a}:1", f"{a}:2", f"{b}:1"]
    (tmp_path / "a.tar").write_bytes(_busybox_layer())
    (tmp_path / "b.tar").write_bytes(_tar(("b", tarfile.REGTYPE, b"b")))
    try:
        docker("import", "-c", 'CMD ["sh"]', str(tmp_path / "a.tar"), refs[0])
        docker("tag", refs[0], refs[1])
        docker("import", str(tmp_path / "b.tar"), refs[2])
        docker("save", "-o", str(tmp_path / "multi.tar"), *refs)
    finally:
        for ref in refs:
            docker("rmi", "-f", ref, check=False)
    all_root, one_root = tmp_path / "all", tmp_path / "one"
    ok(run_ctr(all_root, "image", "import", str(tmp_path / "multi.tar")))
    listed = json.loads(ok(run_ctr(all_root, "images", "--format", "json")).stdout)
    assert set(refs) <= {f"{i['repository']}:{i['tag']}" for i in listed}
    ok(run_ctr(one_root, "image", "import", "--name", refs[0], str(tmp_path / "multi.tar")))
    listed = json.loads(ok(run_ctr(one_root, "images", "--format", "json")).stdout)
    assert refs[0] in {f"{i['repository']}:{i['tag']}" for i in listed}
    assert not {refs[1], refs[2]} & {f"{i['repository']}:{i['tag']}" for i in listed}
    r = run_ctr(one_root, "run", "--rm", refs[0], "echo", "picked")
    assert (r.returncode, r.stdout) == (0, "picked\n"), r.stderr
    r = run_ctr(one_root, "image", "import", "--name", "nope:1", str(tmp_path / "multi.tar"))
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1 and "none named nope:1" in r.stderr


def test_compare_shows_one_device_policy_on_every_backend(tmp_path) -> None:
    """native and lxc hold Docker's default device policy, read back from the kernel the
    same way as the docker container's."""
    from ctr.backends import probe
    from ctr.native.devices import DEFAULT_ALLOW

    names = [n for n in ("native", "lxc", "docker") if probe(n).usable]
    require(len(names) == 3, f"compare needs all three backends; usable: {', '.join(names)}")
    r = run_ctr(tmp_path / "root", "compare", "--format", "json", "--name", f"dev-{RUN_ID}", "busybox", "true")
    assert r.returncode == 0, r.stderr
    [row] = [row for row in json.loads(r.stdout)["rows"] if row["key"] == "cgroup.devices"]
    assert row["differs"] is False and row["compared"] is True
    for name in names:
        assert row["values"][name] == {"default": "deny", "rules": sorted(DEFAULT_ALLOW)}, name
        assert row["display"][name] == f"deny all but {len(DEFAULT_ALLOW)} rules"
