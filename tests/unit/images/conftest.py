"""Fixtures of the image tests: an empty store, one that holds an image, a layer's two directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctr.images.store import ImageStore
from ctr.state.paths import Paths
from tests.unit.images.helpers import R, make_tar


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(Paths.default(tmp_path / "root"))


@pytest.fixture
def seeded(store: ImageStore) -> ImageStore:
    """A store that already holds an image, so 'unchanged' means something."""
    store.create("seed:1", [make_tar(("seed", R, b"s"))])
    return store


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[Path, Path]:
    """(empty destination, a directory outside it holding one secret file)."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("secret")
    return dest, outside
