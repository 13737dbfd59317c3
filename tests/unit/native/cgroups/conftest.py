"""The `fake` fixture: a FakeCgroupfs behind the cgroup drivers for one test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.native.cgroups.fake_cgroupfs import FakeCgroupfs


@pytest.fixture
def fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeCgroupfs:
    return FakeCgroupfs(tmp_path, monkeypatch)
