"""`ctr images` and `ctr image ...` through the real CLI, in a subprocess."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ctr.state.paths import Paths
from ctr.state.records import RecordStore

CTRI = [sys.executable, "-m", "ctr.cli.main"]


def run_ctr(root: Path, *args: str, input: bytes | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([*CTRI, "--root", str(root), *args], input=input, capture_output=True, timeout=timeout)
    r.stdout, r.stderr = r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")  # type: ignore[assignment]
    return r


@pytest.fixture
def ctri(tmp_path: Path):
    """The CLI with the image commands, on a fresh state root per test."""
    root = tmp_path / "root"

    def run(*args: str, **kw) -> subprocess.CompletedProcess:
        return run_ctr(root, *args, **kw)

    run.root = root  # type: ignore[attr-defined]
    return run


def ok(r: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    return r


def rootfs_tar() -> bytes:
    """A root filesystem: the host's static busybox and a file."""
    from ctr.images.busybox import find_busybox

    busybox, _ = find_busybox()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "etc"):
            ti = tarfile.TarInfo(d)
            ti.type, ti.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(ti)
        tar.add(busybox, "bin/busybox")
        for applet in ("sh", "cat", "echo", "pwd", "id"):
            ti = tarfile.TarInfo(f"bin/{applet}")
            ti.type, ti.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(ti)
        data = b"imported\n"
        ti = tarfile.TarInfo("etc/motd")
        ti.size = len(data)
        tar.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_images_table_and_json(ctri) -> None:
    ok(ctri("image", "tag", "busybox", "example.com/team/bb:1"))
    table = ok(ctri("images")).stdout.splitlines()
    assert table[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    rows = {tuple(line.split()[:2]): line for line in table[1:]}
    assert set(rows) == {("busybox", "latest"), ("example.com/team/bb", "1")}
    assert "56 years ago" in rows[("busybox", "latest")] or "years ago" in rows[("busybox", "latest")]
    listed = json.loads(ok(ctri("images", "--format", "json")).stdout)
    assert [(i["repository"], i["tag"]) for i in listed] == [("busybox", "latest"), ("example.com/team/bb", "1")]
    assert listed[0]["id"] == listed[1]["id"] and listed[0]["id"].startswith("sha256:")
    assert ok(ctri("images", "-q")).stdout.split() == [listed[0]["id"][7:19]]


def test_inspect(ctri) -> None:
    ok(ctri("image", "tag", "busybox", "bb:2"))
    [doc] = json.loads(ok(ctri("image", "inspect", "bb:2")).stdout)
    assert doc["name"] == "bb:2" and doc["digest"].startswith("sha256:") and doc["id"].startswith("sha256:")
    assert doc["config"]["Cmd"] == ["sh"]
    assert len(doc["layers"]) == 1 and doc["layers"][0]["diff_id"].startswith("sha256:")
    assert doc["size"] == doc["layers"][0]["size"] > 0
    r = ctri("image", "inspect", "nope:1")
    assert r.returncode == 125 and r.stderr.startswith("ctr: image 'nope:1' not found")
    assert len(r.stderr.strip().splitlines()) == 1


def test_rm_refused_while_in_use_unless_forced(ctri) -> None:
    ok(ctri("image", "tag", "busybox", "used:1"))
    [doc] = json.loads(ok(ctri("image", "inspect", "used:1")).stdout)
    records = RecordStore(Paths.default(ctri.root))
    record = records.reserve("web", "native", {})
    record.image, record.image_digest = "used:1", doc["digest"]
    records.save(record)
    ok(ctri("image", "rm", "busybox"))  # used:1 still names the image: only untagged
    r = ctri("image", "rm", "used:1")
    assert r.returncode == 125
    assert r.stderr.strip() == "ctr: image 'used:1' is used by container web: remove it first, or use -f"
    assert ok(ctri("image", "rm", "-f", "used:1")).stdout.strip() == "Untagged: used:1"
    assert json.loads(ok(ctri("images", "--format", "json")).stdout) == []
    assert ctri("image", "rm", "used:1").returncode == 125


def test_import_rootfs_with_changes_and_run(ctri, tmp_path: Path) -> None:
    path = tmp_path / "rootfs.tar.gz"
    path.write_bytes(gzip.compress(rootfs_tar()))
    r = ok(
        ctri(
            "image",
            "import",
            str(path),
            "--name",
            "imported:1",
            "--change",
            'CMD ["cat", "/etc/motd"]',
            "--change",
            "ENV GREETING=hello WHO=world",
            "--change",
            "WORKDIR /etc",
        )
    )
    assert r.stdout.strip() == "Loaded image: imported:1"
    assert ok(ctri("run", "--rm", "imported:1")).stdout == "imported\n"
    r = ok(ctri("run", "--rm", "imported:1", "sh", "-c", 'echo "$GREETING $WHO"; pwd'))
    assert r.stdout == "hello world\n/etc\n"


def test_import_from_stdin(ctri) -> None:
    r = ok(ctri("image", "import", "-", "--name", "fromstdin:1", input=rootfs_tar()))
    assert r.stdout.strip() == "Loaded image: fromstdin:1"
    assert ok(ctri("run", "--rm", "fromstdin:1", "cat", "/etc/motd")).stdout == "imported\n"


def test_import_errors_are_one_line(ctri, tmp_path: Path) -> None:
    evil = io.BytesIO()
    with tarfile.open(fileobj=evil, mode="w") as tar:
        ti = tarfile.TarInfo("../escape")
        tar.addfile(ti, io.BytesIO(b""))
    path = tmp_path / "evil.tar"
    path.write_bytes(evil.getvalue())
    r = ctri("image", "import", str(path), "--name", "evil:1")
    assert r.returncode == 125
    assert r.stderr.strip().splitlines() == [f"ctr: unsafe layer {path}: member '../escape' has a '..' component"]
    images_dir = ctri.root / "images"
    assert not list(images_dir.glob(".ingest-*"))
    assert not (images_dir / "index.json").exists() and not list((images_dir / "blobs" / "sha256").iterdir())
    r = ctri("image", "import", str(path))
    assert r.returncode == 125 and "needs --name" in r.stderr


def test_export_import_round_trip(ctri, tmp_path: Path) -> None:
    ok(ctri("image", "tag", "busybox", "rt:1"))
    [before] = json.loads(ok(ctri("image", "inspect", "rt:1")).stdout)
    for fmt in ("oci", "docker-archive"):
        out = tmp_path / f"rt.{fmt}.tar"
        ok(ctri("image", "export", "rt:1", "-o", str(out), "--format", fmt))
        other = tmp_path / f"other-{fmt}"
        assert ok(run_ctr(other, "image", "import", str(out))).stdout.strip() == "Loaded image: rt:1"
        [after] = json.loads(ok(run_ctr(other, "image", "inspect", "rt:1")).stdout)
        assert after["id"] == before["id"]
        assert [x["digest"] for x in after["layers"]] == [x["digest"] for x in before["layers"]]
        assert ok(run_ctr(other, "run", "--rm", "rt:1", "echo", "ok")).stdout == "ok\n"
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_export_to_stdout(ctri, tmp_path: Path) -> None:
    r = subprocess.run(
        [*CTRI, "--root", str(ctri.root), "image", "export", "busybox", "-o", "-"], capture_output=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    with tarfile.open(fileobj=io.BytesIO(r.stdout)) as tar:
        assert {"oci-layout", "index.json", "manifest.json"} <= set(tar.getnames())


def test_help_for_every_command() -> None:
    for args in (
        ["images"],
        ["image"],
        *(["image", c] for c in ("ls", "inspect", "rm", "tag", "import", "export", "pull", "push")),
    ):
        r = run_ctr(Path("/nonexistent"), *args, "--help")
        assert r.returncode == 0 and "Usage:" in r.stdout, args


pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="runs containers on the native backend (root)")
