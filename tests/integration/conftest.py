"""Every test in this directory starts real containers: each carries the `integration`
marker by where it lives, so that no file can forget it (`pytest -m 'not integration'`
runs the unit tests alone)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.integration)
