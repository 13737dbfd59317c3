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
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

from ctr.backends.paths import Paths

from ..conftest import backends_param
from .test_images_cli import ok, run_ctr
from .test_registry_pull import docker, require

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers and debootstrap (root)")

CACHE = Path(os.environ.get("CTR_TEST_CACHE") or Paths.default(None).data / "test-cache")
DEBROOT_TAR = CACHE / "debroot-bookworm-minbase.tar"
MIRROR = "http://deb.debian.org/debian"
RUN_ID = uuid.uuid4().hex[:8]
DEB_CHECK = ["bash", "-c", 'echo "bash ${BASH_VERSINFO[0]}"; dpkg-query -W -f="\\${Package}\\n" | grep -cx apt; '
             "apt-get --version | head -1 | cut -d' ' -f1; test -c /dev/full && echo full"]


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
        r = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR],
                           capture_output=True, text=True, timeout=900)
        require(r.returncode == 0, f"debootstrap failed: {(r.stderr or r.stdout)[-400:]}")
        # numeric owners and every node as it is: what `tar -C DIR -c .` gives docker import too
        subprocess.run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(tmp / "root.tar"), "."],
                       check=True, timeout=300)
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
        with open(debroot_tar, "rb") as f:
            ok(run_ctr(root, "image", "import", "-n", images["tarball"], "-c", 'CMD ["bash"]', "-", input=f.read()))
        docker("import", "-c", 'CMD ["bash"]', str(debroot_tar), engine_ref, timeout=300)
        docker("save", "-o", str(tmp / "save.tar"), engine_ref, timeout=300)
        ok(run_ctr(root, "image", "import", str(tmp / "save.tar")))
        r = subprocess.run(["skopeo", "copy", "-q", f"docker-daemon:{engine_ref}", f"oci:{tmp / 'oci'}:deb"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        ok(run_ctr(root, "image", "import", "--name", images["oci-layout"], str(tmp / "oci")))
        yield root, images, engine_refs
    finally:
        for ref in engine_refs:
            docker("rmi", "-f", ref, check=False)


@backends_param()
@pytest.mark.parametrize("form", ["tarball", "docker-save", "oci-layout"])
def test_debootstrap_root_runs_on_every_backend(backend, form, deb_images) -> None:
    from ctr.backends.docker import engine_tag

    root, images, engine_refs = deb_images
    ref = images[form]
    if backend.name == "docker":
        engine_refs.append(":".join(engine_tag(ref)))  # loaded by the run below
    r = run_ctr(root, "--backend", backend.name, "run", "--rm", ref, *DEB_CHECK)
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    assert r.stdout == "bash 5\n1\napt\nfull\n"


# --- an image carrying device nodes: they come in, nobody opens them -----------------------

NODES = {"blk": (tarfile.BLKTYPE, 7, 0), "mem": (tarfile.CHRTYPE, 1, 1), "dev/ctr-test-blk": (tarfile.BLKTYPE, 7, 0)}
NODE_PROBE = ("for f in /blk /mem; do if cat $f > /dev/null 2> /e; then echo $f opened; else echo $f $(cat /e); fi; "
              "done; test -e /dev/ctr-test-blk && echo image-dev || echo own-dev; echo x > /dev/null && echo null-ok")


def devnodes_rootfs() -> bytes:
    from ctr.backends.images import find_busybox

    busybox, _ = find_busybox()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "dev"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        tar.add(busybox, "bin/busybox")
        for applet in ("sh", "cat", "echo", "test"):
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(ti)
        for name, (kind, major, minor) in NODES.items():
            ti = tarfile.TarInfo(name)
            ti.type, ti.mode, ti.devmajor, ti.devminor = kind, 0o666, major, minor
            tar.addfile(ti)
    return buf.getvalue()


@backends_param()
def test_device_nodes_from_an_image_cannot_be_opened(backend, tmp_path) -> None:
    from ctr.backends.docker import engine_tag

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
