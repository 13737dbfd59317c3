"""cgroupfs: the one seam for the kernel's cgroup files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctr.native.cgroups import cgroupfs


def test_write_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as exc:
        cgroupfs.write(tmp_path / "memory.max", "1")  # never creates a missing interface file
    assert exc.value.filename == str(tmp_path / "memory.max")
    with pytest.raises(IsADirectoryError) as exc2:
        cgroupfs.write(tmp_path, "1")
    assert exc2.value.filename == str(tmp_path) and "writing '1'" in str(exc2.value)
