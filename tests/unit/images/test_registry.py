"""The distribution client against a tiny fake registry (http.server on 127.0.0.1, in a
thread): bearer-token auth, manifest lists resolved to this platform, digests checked
while streaming, blobs in the store not fetched again, push, and clear errors."""

from __future__ import annotations

import gzip
import json
import re
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ctr.errors import CtrError, NotFound
from ctr.images import registry
from ctr.images.model import MEDIA_DOCKER_LIST, MEDIA_DOCKER_MANIFEST, MEDIA_INDEX, MEDIA_MANIFEST, host_platform
from ctr.images.registry import Remote, is_loopback, parse_remote
from ctr.images.store import ImageStore
from ctr.state.paths import Paths

from .test_archive import GOOD_LAYER, R, canonical, make_tar, oci_image, other_platform, sha256, snapshot

HOST = host_platform()


class FakeRegistry:
    """Manifests and blobs in dicts; optional token auth; every request logged."""

    def __init__(self, auth: str = "bearer") -> None:
        self.auth = auth  # "bearer", "basic" or "none"
        self.manifests: dict[tuple[str, str], tuple[bytes, str]] = {}
        self.blobs: dict[str, bytes] = {}
        self.tamper: dict[str, bytes] = {}  # digest -> bytes served instead
        self.log: list[tuple[str, str, str]] = []  # (method, path, authorization)
        self.token_requests: list[dict] = []
        self.uploads: dict[str, str] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.server.server_address[1]}"

    def add_image(
        self, repo: str, tag: str, manifest: bytes, blobs: dict[str, bytes], media: str = MEDIA_MANIFEST
    ) -> None:
        self.manifests[(repo, tag)] = (manifest, media)
        self.manifests[(repo, sha256(manifest))] = (manifest, media)
        self.blobs.update(blobs)

    def add_manifest(self, repo: str, ref: str, data: bytes, media: str) -> None:
        self.manifests[(repo, ref)] = (data, media)
        self.manifests[(repo, sha256(data))] = (data, media)

    def blob_gets(self) -> list[str]:
        return [p.rsplit("/", 1)[1] for m, p, _ in self.log if m == "GET" and "/blobs/" in p]

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict | None = None) -> None:
                self.send_response(code)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _error(self, code: int, err: str, msg: str) -> None:
                self._send(
                    code,
                    json.dumps({"errors": [{"code": err, "message": msg}]}).encode(),
                    {"Content-Type": "application/json"},
                )

            def _authorized(self, repo: str | None, action: str) -> bool:
                if fake.auth == "none":
                    return True
                auth = self.headers.get("Authorization", "")
                if fake.auth == "bearer" and auth.startswith("Bearer tok:"):
                    scope = auth[len("Bearer tok:") :]
                    if repo is None:
                        return True
                    m = re.fullmatch(r"repository:(.+):([a-z,]+)", scope)
                    if m and m.group(1) == repo and action in m.group(2).split(","):
                        return True
                if fake.auth == "bearer":
                    challenge = f'Bearer realm="http://{fake.host}/token",service="fake-registry"' + (
                        f',scope="repository:{repo}:{action}"' if repo else ""
                    )
                else:
                    challenge = 'Basic realm="fake"'
                self._send(
                    401,
                    b'{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
                    {"WWW-Authenticate": challenge, "Content-Type": "application/json"},
                )
                return False

            def handle_one(self) -> None:
                url = urllib.parse.urlsplit(self.path)
                fake.log.append((self.command, url.path, self.headers.get("Authorization", "")))
                if url.path == "/token":
                    q = dict(urllib.parse.parse_qsl(url.query))
                    fake.token_requests.append(q)
                    self._send(200, json.dumps({"token": f"tok:{q.get('scope', '')}"}).encode())
                    return
                if url.path == "/v2/":
                    if self._authorized(None, "pull"):
                        self._send(200, b"{}")
                    return
                if url.path.startswith("/storage/"):  # where blobs redirect to: must not see the token
                    if self.headers.get("Authorization"):
                        self._error(400, "DENIED", "storage got the registry's token")
                        return
                    digest = url.path.rsplit("/", 1)[1]
                    self._send(200, fake.tamper.get(digest, fake.blobs[digest]))
                    return
                m = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", url.path)
                up = re.fullmatch(r"/v2/(.+)/blobs/uploads/([^/]*)", url.path)
                if up:
                    repo = up.group(1)
                    if not self._authorized(repo, "push"):
                        return
                    if self.command == "POST":
                        uid = str(uuid.uuid4())
                        self._send(
                            202,
                            headers={"Location": f"/v2/{repo}/blobs/uploads/{uid}?state=x", "Docker-Upload-UUID": uid},
                        )
                        return
                    q = dict(urllib.parse.parse_qsl(url.query))
                    data = self.rfile.read(int(self.headers["Content-Length"]))
                    if q.get("state") != "x" or sha256(data) != q["digest"]:
                        self._error(400, "DIGEST_INVALID", "digest mismatch")
                        return
                    fake.blobs[q["digest"]] = data
                    self._send(201, headers={"Docker-Content-Digest": q["digest"]})
                    return
                if not m:
                    self._error(404, "NAME_UNKNOWN", "no such path")
                    return
                repo, kind, ref = m.groups()
                if not self._authorized(repo, "push" if self.command == "PUT" else "pull"):
                    return
                if kind == "manifests":
                    if self.command == "PUT":
                        data = self.rfile.read(int(self.headers["Content-Length"]))
                        fake.add_manifest(repo, ref, data, self.headers["Content-Type"])
                        self._send(201, headers={"Docker-Content-Digest": sha256(data)})
                        return
                    if (repo, ref) not in fake.manifests:
                        self._error(404, "MANIFEST_UNKNOWN", "manifest unknown")
                        return
                    data, media = fake.manifests[(repo, ref)]
                    self._send(
                        200,
                        fake.tamper.get(sha256(data), data),
                        {"Content-Type": media, "Docker-Content-Digest": sha256(data)},
                    )
                    return
                if ref not in fake.blobs:
                    self._error(404, "BLOB_UNKNOWN", "blob unknown")
                    return
                if self.command == "GET" and repo.startswith("redirect/"):
                    self._send(307, headers={"Location": f"http://{fake.host}/storage/{ref}"})
                    return
                self._send(200, fake.tamper.get(ref, fake.blobs[ref]), {"Content-Type": "application/octet-stream"})

            do_GET = do_HEAD = do_POST = do_PUT = handle_one

        return Handler

    def __enter__(self) -> FakeRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    with FakeRegistry() as f:
        yield f


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(Paths.default(tmp_path / "root"))


def multi_platform(fake: FakeRegistry, repo: str, tag: str, list_media: str = MEDIA_INDEX) -> tuple[bytes, bytes]:
    """An index with this platform's image and another one; returns (mine, index)."""
    mine, _, mine_blobs = oci_image(GOOD_LAYER, gzip.compress(make_tar(("top", R, b"t"))), cmd=["mine"])
    theirs, _, their_blobs = oci_image(make_tar(("foreign", R, b"f")), platform=other_platform(), cmd=["theirs"])
    index = canonical(
        {
            "schemaVersion": 2,
            "mediaType": list_media,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": sha256(theirs),
                    "size": len(theirs),
                    "platform": other_platform(),
                },
                {"mediaType": MEDIA_MANIFEST, "digest": sha256(mine), "size": len(mine), "platform": HOST},
            ],
        }
    )
    fake.add_image(repo, tag, index, {**mine_blobs, **their_blobs}, media=list_media)
    fake.add_manifest(repo, sha256(mine), mine, MEDIA_MANIFEST)
    fake.add_manifest(repo, sha256(theirs), theirs, MEDIA_MANIFEST)
    return mine, index


# --- references -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("127.0.0.1:5000/demo:1", Remote("127.0.0.1:5000/demo:1", "127.0.0.1:5000", "demo", "1")),
        ("localhost/a/b", Remote("localhost/a/b:latest", "localhost", "a/b", "latest")),
        ("busybox", Remote("busybox:latest", "registry-1.docker.io", "library/busybox", "latest")),
        ("foo/bar:2", Remote("foo/bar:2", "registry-1.docker.io", "foo/bar", "2")),
        (
            "quay.io/x/y@sha256:" + "a" * 64,
            Remote("quay.io/x/y@sha256:" + "a" * 64, "quay.io", "x/y", "sha256:" + "a" * 64),
        ),
    ],
)
def test_parse_remote(ref: str, expected: Remote) -> None:
    assert parse_remote(ref) == expected


@pytest.mark.parametrize(
    "registry_, loopback",
    [
        ("127.0.0.1:5000", True),
        ("127.1.2.3", True),
        ("localhost:5000", True),
        ("[::1]:5000", True),
        ("10.0.0.1:5000", False),
        ("example.com", False),
        ("registry-1.docker.io", False),
    ],
)
def test_scheme_follows_loopback(registry_: str, loopback: bool) -> None:
    assert is_loopback(registry_) is loopback
    assert Remote("x", registry_, "x", "1").scheme == ("http" if loopback else "https")


# --- pull -----------------------------------------------------------------------------


@pytest.mark.parametrize("list_media", [MEDIA_INDEX, MEDIA_DOCKER_LIST])
def test_pull_token_auth_and_platform(fake: FakeRegistry, store: ImageStore, list_media: str) -> None:
    mine, _ = multi_platform(fake, "team/app", "1", list_media)
    image = registry.pull(store, f"{fake.host}/team/app:1", progress=False)
    assert image.name == f"{fake.host}/team/app:1"
    assert image.digest == sha256(mine)  # the platform manifest, byte for byte
    assert image.config.cmd == ("mine",)
    assert fake.token_requests == [{"scope": "repository:team/app:pull", "service": "fake-registry"}]
    # Only this platform's blobs came over, each once, all with the token.
    manifest = json.loads(mine)
    assert sorted(fake.blob_gets()) == sorted(
        [manifest["config"]["digest"], *(x["digest"] for x in manifest["layers"])]
    )
    assert all(auth == "Bearer tok:repository:team/app:pull" for m, p, auth in fake.log if p.startswith("/v2/team"))
    assert [p.name for p in store.layer_paths(image)] == [d[7:] for d in image.diff_ids]


def test_pull_skips_blobs_in_the_store(fake: FakeRegistry, store: ImageStore) -> None:
    multi_platform(fake, "app", "1")
    registry.pull(store, f"{fake.host}/app:1", progress=False)
    fake.log.clear()
    again, _, blobs = oci_image(GOOD_LAYER, make_tar(("new", R, b"n")), cmd=["again"])
    fake.add_image("app", "2", again, blobs)
    registry.pull(store, f"{fake.host}/app:2", progress=False)
    fetched = fake.blob_gets()
    assert sha256(GOOD_LAYER) not in fetched and sha256(make_tar(("new", R, b"n"))) in fetched


def test_pull_by_digest(fake: FakeRegistry, store: ImageStore) -> None:
    mine, index = multi_platform(fake, "app", "1")
    image = registry.pull(store, f"{fake.host}/app@{sha256(index)}", progress=False)
    assert image.digest == sha256(mine) and image.name == f"{fake.host}/app@{sha256(index)}"


def test_pull_docker_schema2(fake: FakeRegistry, store: ImageStore) -> None:
    manifest, _, blobs = oci_image(gzip.compress(GOOD_LAYER))
    doc = json.loads(manifest)
    doc["mediaType"] = MEDIA_DOCKER_MANIFEST
    doc["config"]["mediaType"] = "application/vnd.docker.container.image.v1+json"
    doc["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.diff.tar.gzip"
    docker_manifest = json.dumps(doc, indent=3).encode()
    fake.add_image("d", "1", docker_manifest, blobs, media=MEDIA_DOCKER_MANIFEST)
    image = registry.pull(store, f"{fake.host}/d:1", progress=False)
    assert image.digest == sha256(docker_manifest) and image.media_type == MEDIA_DOCKER_MANIFEST
    assert store.manifest(image) == docker_manifest


def test_blob_redirect_does_not_carry_the_token(fake: FakeRegistry, store: ImageStore) -> None:
    manifest, _, blobs = oci_image(GOOD_LAYER)
    fake.add_image("redirect/app", "1", manifest, blobs)
    image = registry.pull(store, f"{fake.host}/redirect/app:1", progress=False)
    assert image.diff_ids == (sha256(GOOD_LAYER),)
    assert any(p.startswith("/storage/") and not auth for _, p, auth in fake.log)


def test_pull_layer_digest_mismatch_leaves_nothing(fake: FakeRegistry, store: ImageStore) -> None:
    store.create("seed:1", [make_tar(("seed", R, b"s"))])
    top = make_tar(("top", R, b"t"))
    manifest, _, blobs = oci_image(GOOD_LAYER, top)
    fake.add_image("app", "1", manifest, blobs)
    fake.tamper[sha256(top)] = make_tar(("evil", R, b"e"))[: len(top)].ljust(len(top), b"\0")
    before = snapshot(store)
    with pytest.raises(CtrError, match=f"layer {sha256(top)} from {re.escape(fake.host)} does not match its digest"):
        registry.pull(store, f"{fake.host}/app:1", progress=False)
    assert snapshot(store) == before and not list(store.root.glob(".ingest-*"))


def test_pull_manifest_digest_mismatch(fake: FakeRegistry, store: ImageStore) -> None:
    manifest, _, blobs = oci_image(GOOD_LAYER)
    fake.add_image("app", "1", manifest, blobs)
    fake.tamper[sha256(manifest)] = manifest.replace(b'"schemaVersion"', b'"schemaVersioN"')
    with pytest.raises(CtrError, match="does not match its digest"):
        registry.pull(store, f"{fake.host}/app:1", progress=False)


def test_pull_missing_blob(fake: FakeRegistry, store: ImageStore) -> None:
    manifest, _, blobs = oci_image(GOOD_LAYER)
    blobs.pop(sha256(GOOD_LAYER))
    fake.add_image("app", "1", manifest, blobs)
    with pytest.raises(NotFound, match="BLOB_UNKNOWN: blob unknown"):
        registry.pull(store, f"{fake.host}/app:1", progress=False)
    assert not list(store.root.glob(".ingest-*")) and not list(store.blobs.iterdir())


def test_pull_hostile_layer(fake: FakeRegistry, store: ImageStore) -> None:
    manifest, _, blobs = oci_image(make_tar(("../../etc/cron.d/x", R, b"x")))
    fake.add_image("app", "1", manifest, blobs)
    with pytest.raises(CtrError, match="unsafe layer .*has a '..' component"):
        registry.pull(store, f"{fake.host}/app:1", progress=False)
    assert not list(store.blobs.iterdir())


def test_pull_no_platform(fake: FakeRegistry, store: ImageStore) -> None:
    theirs, _, blobs = oci_image(GOOD_LAYER, platform=other_platform())
    index = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": sha256(theirs),
                    "size": len(theirs),
                    "platform": other_platform(),
                }
            ],
        }
    )
    fake.add_image("app", "1", index, blobs, media=MEDIA_INDEX)
    with pytest.raises(NotFound, match=f"no image for this machine's platform linux/{HOST['architecture']}"):
        registry.pull(store, f"{fake.host}/app:1", progress=False)


def test_pull_unknown_image_and_unreachable(fake: FakeRegistry, store: ImageStore) -> None:
    with pytest.raises(NotFound, match=f"image {re.escape(fake.host)}/nope:1 not found in registry"):
        registry.pull(store, f"{fake.host}/nope:1", progress=False)
    port = fake.server.server_address[1]
    fake.__exit__()
    with pytest.raises(CtrError, match=f"cannot reach registry 127.0.0.1:{port}"):
        registry.pull(store, f"127.0.0.1:{port}/nope:1", progress=False)


def test_basic_auth_is_refused_clearly(store: ImageStore) -> None:
    with FakeRegistry(auth="basic") as fake:
        with pytest.raises(CtrError, match="asks for a user name and password"):
            registry.pull(store, f"{fake.host}/app:1", progress=False)


def test_schema1_is_refused(fake: FakeRegistry, store: ImageStore) -> None:
    fake.add_manifest(
        "old",
        "1",
        b'{"schemaVersion": 1, "name": "old", "fsLayers": []}',
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
    )
    with pytest.raises(CtrError, match="schema 1"):
        registry.pull(store, f"{fake.host}/old:1", progress=False)


# --- push -----------------------------------------------------------------------------


def test_push_then_pull(fake: FakeRegistry, store: ImageStore, tmp_path: Path) -> None:
    image = store.create(f"{fake.host}/mine:1", [GOOD_LAYER, gzip.compress(make_tar(("x", R, b"x")))])
    digest = registry.push(store, f"{fake.host}/mine:1", progress=False)
    assert digest == image.digest
    assert {"scope": "repository:mine:pull,push", "service": "fake-registry"} in fake.token_requests
    assert fake.manifests[("mine", "1")] == (store.manifest(image), MEDIA_MANIFEST)
    uploads = [p for m, p, _ in fake.log if m == "PUT" and "/blobs/uploads/" in p]
    assert len(uploads) == 3  # two layers and the config
    fake.log.clear()
    registry.push(store, f"{fake.host}/mine:1", progress=False)  # everything is there already
    assert not [p for m, p, _ in fake.log if m in ("POST", "PATCH") or (m == "PUT" and "/blobs/" in p)]
    other = ImageStore(Paths.default(tmp_path / "other"))
    pulled = registry.pull(other, f"{fake.host}/mine:1", progress=False)
    assert (pulled.digest, pulled.config_digest, pulled.layer_digests) == (
        image.digest,
        image.config_digest,
        image.layer_digests,
    )


def test_push_unknown_image(fake: FakeRegistry, store: ImageStore) -> None:
    with pytest.raises(NotFound):
        registry.push(store, f"{fake.host}/none:1", progress=False)


def test_progress_only_on_a_terminal(fake: FakeRegistry, store: ImageStore, capsys: pytest.CaptureFixture) -> None:
    manifest, _, blobs = oci_image(GOOD_LAYER)
    fake.add_image("app", "1", manifest, blobs)
    registry.pull(store, f"{fake.host}/app:1")  # stderr is captured, not a terminal
    assert capsys.readouterr().err == ""
    fake.add_image("app", "2", *oci_image(make_tar(("p", R, b"p" * 5000)))[::2])
    registry.pull(store, f"{fake.host}/app:2", progress=True)
    err = capsys.readouterr().err
    assert "\r" in err and "/" in err
