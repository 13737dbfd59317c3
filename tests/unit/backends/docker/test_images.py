"""The docker backend's engine name for every reference form ctr accepts is itself a valid
Docker reference (issue 13: ctr.local/127.0.0.1:5000/bb was not), and distinct references
get distinct engine names."""

from __future__ import annotations

import io
import json
import re
import tarfile

import pytest

from ctr.backends.docker.images import engine_tag
from ctr.images.reference import normalize_ref

# distribution/reference: path components under a domain, and a tag
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
DOCKER_REPO = re.compile(rf"ctr\.local(?:/{PATH_COMPONENT})+")
DOCKER_TAG = re.compile(r"[\w][\w.-]{0,127}")
HEX = "0123456789abcdef" * 4

FORMS = [
    "busybox",
    "busybox:1.36",
    "library/busybox",
    "docker.io/library/busybox:1",
    "127.0.0.1:5000/bb:1",
    "127.0.0.1:39876/bb",
    "localhost:5000/a/b/c:v1.2",
    "localhost/bb",
    "quay.io/team/app:1",
    "Reg.Example.com:443/team/app:1",
    "my-reg.io/x",
    "[::1]:5000/bb:1",
    "[fe80::1]/bb",
    f"bb@sha256:{HEX}",
    f"127.0.0.1:5000/n/bb:2@sha256:{HEX}",
]


@pytest.mark.parametrize("ref", FORMS)
def test_engine_name_is_a_valid_docker_reference(ref: str) -> None:
    repo, tag = engine_tag(normalize_ref(ref))
    assert DOCKER_REPO.fullmatch(repo) and len(repo) <= 255, repo
    assert DOCKER_TAG.fullmatch(tag), tag


def test_distinct_references_get_distinct_engine_names() -> None:
    names = [engine_tag(normalize_ref(r)) for r in FORMS]
    by_ref = dict(zip(map(normalize_ref, FORMS), names))
    assert len(set(by_ref.values())) == len(by_ref)


def test_the_familiar_forms_keep_their_names() -> None:
    assert engine_tag("busybox:latest") == ("ctr.local/busybox", "latest")
    assert engine_tag(normalize_ref("127.0.0.1:5000/bb:1")) == ("ctr.local/127.0.0.1__5000/bb", "1")
    assert engine_tag(normalize_ref(f"bb@sha256:{HEX}")) == ("ctr.local/bb", f"sha256-{HEX}")


def test_a_very_long_name_still_fits() -> None:
    repo, tag = engine_tag(normalize_ref("reg.example.com:5000/" + "/".join(["abcdefghij"] * 21) + ":1"))
    assert DOCKER_REPO.fullmatch(repo) and len(repo) <= 255 and tag == "1"


def _archive(files: dict[str, bytes]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path, data in files.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    return buf


def test_retag_archive_replaces_the_users_tag():
    from ctr.backends.docker.images import retag_archive

    manifest = [{"Config": "abc.json", "RepoTags": ["busybox:latest"], "Layers": ["l1/layer.tar"]}]
    src = _archive(
        {
            "abc.json": b"{}",
            "l1/layer.tar": b"x" * 5000,
            "manifest.json": json.dumps(manifest).encode(),
            "repositories": b'{"busybox": {"latest": "l1"}}',
        }
    )
    dst = io.BytesIO()
    retag_archive(src, dst, "ctr.local/busybox:latest")
    with tarfile.open(fileobj=dst) as tar:
        assert sorted(tar.getnames()) == ["abc.json", "l1/layer.tar", "manifest.json"]
        out = json.load(tar.extractfile("manifest.json"))
        assert out == [{"Config": "abc.json", "RepoTags": ["ctr.local/busybox:latest"], "Layers": ["l1/layer.tar"]}]
        assert tar.extractfile("l1/layer.tar").read() == b"x" * 5000


def test_engine_tag():
    from ctr.backends.docker.images import engine_tag

    assert engine_tag("busybox:latest") == ("ctr.local/busybox", "latest")
    assert engine_tag("localhost:5000/app") == ("ctr.local/localhost__5000/app", "latest")
    assert engine_tag("quay.io/x/y:1.2") == ("ctr.local/quay.io/x/y", "1.2")
