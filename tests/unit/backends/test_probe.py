"""probe() never raises for a known backend: one whose module cannot be imported is
reported unusable with the reason (issue 18 found a NameError on that path)."""

from __future__ import annotations

import pytest

from ctr import backends


def test_probe_of_a_backend_whose_module_fails_to_import(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(backends.REGISTRY, "broken", ("ctr.backends.no_such_module", "Nothing"))
    info = backends.probe("broken")
    assert (info.name, info.usable) == ("broken", False)
    assert info.reason.startswith("cannot import its module: No module named 'ctr.backends.no_such_module'")
