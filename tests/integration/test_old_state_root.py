"""A state root written by ctr 0.1.0, before the layout change, still works.

tests/data/state-root-0.1.0.tar.gz was made by the code of commit e0ece71 (the last one
before the library moved out of backends/): an imported image `oldimage:v1` and two
created containers, `c-native` and `c-lxc`. Its files name the root they were made in
(OLD_ROOT); the test moves them to a fresh one the way a user's `mv` would not, by
rewriting that path in the text files, so that the records, the image index and liblxc's
config are read exactly as they were written.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.conftest import CTR

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "state-root-0.1.0.tar.gz"
OLD_ROOT = "/tmp/ctr-oldroot-3f9a2c71e5d4"


def unpack_old_root(dest: Path) -> None:
    with tarfile.open(FIXTURE) as archive:
        archive.extractall(dest, filter="tar")
    for path in dest.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if OLD_ROOT.encode() in data:
                path.write_bytes(data.replace(OLD_ROOT.encode(), str(dest).encode()))


@pytest.fixture
def old_root(tmp_path: Path):
    root = tmp_path / "old-root"
    root.mkdir()
    unpack_old_root(root)

    def ctr(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([*CTR, "--root", str(root), *args], capture_output=True, text=True, timeout=120)
        assert not check or result.returncode == 0, f"ctr {' '.join(args)}: {result.stderr}"
        return result

    ctr.root = root  # type: ignore[attr-defined]
    yield ctr
    for name in ("c-native", "c-lxc"):
        ctr("rm", "-f", name, check=False)


def test_old_records_and_images_are_read_as_written(old_root):
    listing = old_root("ps", "-a").stdout
    assert "c-native" in listing and "c-lxc" in listing and listing.count("Created") == 2
    native = json.loads(old_root("inspect", "c-native").stdout)[0]
    assert native["spec"]["env"] == ["A=1"] and native["spec"]["labels"] == {"tier": "old"}
    assert native["spec"]["command"] == ["/hello", "arg"] and native["image"] == "oldimage:v1"
    assert native["state"]["status"] == "created" and native["backend"]["name"] == "native"
    lxc = json.loads(old_root("inspect", "c-lxc").stdout)[0]
    assert lxc["spec"]["memory"] == 64 << 20 and lxc["backend"]["name"] == "lxc"
    assert "oldimage" in old_root("images").stdout
    image = json.loads(old_root("image", "inspect", "oldimage:v1").stdout)[0]
    assert image["config"] == {"Cmd": ["/hello"], "Env": ["GREETING=hi"]}


def test_old_root_runs_removes_and_ends_empty(old_root):
    if sys.platform != "linux":
        pytest.skip("needs Linux")
    assert old_root("run", "--rm", "busybox", "echo", "new code, old root").stdout == "new code, old root\n"
    old_root("rm", "c-native", "c-lxc")
    old_root("image", "rm", "oldimage:v1")
    root: Path = old_root.root
    assert "Created" not in old_root("ps", "-a").stdout
    assert not [p for p in (root / "containers").iterdir() if not p.name.startswith(".")]
    assert not [p for p in (root / "lxc").iterdir() if not p.name.startswith(".")]
    assert "oldimage" not in old_root("images").stdout
