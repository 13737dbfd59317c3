"""Image references: docker's grammar and its familiar form."""

from __future__ import annotations

import pytest

from ctr.errors import InvalidSpec
from ctr.images.reference import normalize_ref, split_ref
from tests.unit.images.helpers import DIGEST


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("busybox", "busybox:latest"),
        ("busybox:latest", "busybox:latest"),
        ("busybox:1.36.1-musl", "busybox:1.36.1-musl"),
        ("library/busybox", "busybox:latest"),
        ("docker.io/library/busybox:1", "busybox:1"),
        ("index.docker.io/library/busybox", "busybox:latest"),
        ("docker.io/foo/bar", "foo/bar:latest"),
        ("foo/bar_baz.x__y-z", "foo/bar_baz.x__y-z:latest"),
        ("127.0.0.1:5000/demo:1", "127.0.0.1:5000/demo:1"),
        ("localhost/demo", "localhost/demo:latest"),
        ("localhost:5000/demo", "localhost:5000/demo:latest"),
        ("registry.example.com/a/b/c:v2", "registry.example.com/a/b/c:v2"),
        ("localhost:5000", "localhost:5000"),  # docker reads this as image localhost, tag 5000
        (f"busybox@{DIGEST}", f"busybox@{DIGEST}"),
        (f"busybox:1@{DIGEST}", f"busybox:1@{DIGEST}"),
        (f"docker.io/library/busybox@{DIGEST}", f"busybox@{DIGEST}"),
    ],
)
def test_normalize_ref(ref: str, expected: str) -> None:
    assert normalize_ref(ref) == expected
    assert normalize_ref(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "ref",
    [
        "",
        " busybox",
        "Busybox",
        "foo/Bar",
        "busybox:",
        ":tag",
        "a b",
        "busybox:bad tag",
        "busybox:" + "x" * 129,
        "busybox@sha256:abc",
        "busybox@",
        "@" + DIGEST,
        "-foo",
        "foo-",
        "foo/",
        "foo//bar",
        "a" * 64,
        "foo..bar",
        "bad_host:x/y",
    ],
)
def test_normalize_ref_refuses(ref: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid reference format"):
        normalize_ref(ref)


def test_normalize_ref_says_lowercase() -> None:
    with pytest.raises(InvalidSpec, match="must be lowercase"):
        normalize_ref("foo/BusyBox")


def test_split_ref() -> None:
    assert split_ref("busybox:latest") == ("busybox", "latest", "")
    assert split_ref("127.0.0.1:5000/demo:1") == ("127.0.0.1:5000/demo", "1", "")
    assert split_ref("localhost:5000/demo") == ("localhost:5000/demo", "", "")
    assert split_ref(f"a/b:1@{DIGEST}") == ("a/b", "1", DIGEST)
