"""A client of the OCI distribution API (Docker Registry HTTP API v2): pull and push.

Only the standard library (urllib). What it speaks:

- HTTP for registries on loopback (127.0.0.0/8, ::1, localhost), as Docker
  treats them as insecure by default; HTTPS for every other registry.
- anonymous access, and bearer tokens: a 401 with `WWW-Authenticate: Bearer
  realm=...,service=...` sends us to the realm for a token for
  `repository:NAME:pull` (`pull,push` to push), asked for anonymously.
  Basic auth (user and password) is not supported and says so.
- Docker v2 schema 2 and OCI manifests; manifest lists and OCI indexes are
  resolved to this machine's platform (model.choose_platform). Schema 1 is
  refused.

Pulled manifests are kept byte for byte, so the stored digest is the
registry's; every blob is checked against its digest and size while it
streams into an Ingest (ingest.Ingest), layers are scanned like imported
ones, and blobs already in the store are not fetched again. Nothing is
published before everything checked out. Progress goes to stderr, and only
when stderr is a terminal.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from ctr.errors import CtrError, NotFound
from ctr.images.ingest import Ingest
from ctr.images.model import (
    CONFIG_LIMIT,
    INDEX_TYPES,
    MANIFEST_LIMIT,
    MANIFEST_TYPES,
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_INDEX,
    MEDIA_MANIFEST,
    Image,
    check_config,
    check_index,
    check_manifest,
    choose_platform,
    parse_json,
)
from ctr.images.reference import normalize_ref, split_ref
from ctr.images.store import ImageStore

DOCKER_HUB = "registry-1.docker.io"
ACCEPT = ", ".join((MEDIA_INDEX, MEDIA_DOCKER_LIST, MEDIA_MANIFEST, MEDIA_DOCKER_MANIFEST))
TIMEOUT = 60.0  # seconds without progress on one socket operation
MAX_INDEX_DEPTH = 4
_CHUNK = 1 << 20


@dataclass(frozen=True)
class Remote:
    """Where an image reference lives: 127.0.0.1:5000/demo:1 -> (127.0.0.1:5000, demo, 1)."""

    name: str  # the normalized reference, as the store names the image
    registry: str  # host[:port]
    repository: str  # path in the registry, e.g. library/busybox
    reference: str  # tag or digest

    @property
    def scheme(self) -> str:
        return "http" if is_loopback(self.registry) else "https"


def parse_remote(ref: str) -> Remote:
    name = normalize_ref(ref)
    repo, tag, digest = split_ref(name)
    first, slash, rest = repo.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        registry, path = first, rest
    else:  # Docker Hub, with official images under library/
        registry, path = DOCKER_HUB, repo if slash else f"library/{repo}"
    return Remote(name=name, registry=registry, repository=path, reference=digest or tag)


def is_loopback(registry: str) -> bool:
    host = registry
    if host.startswith("["):
        host = host[1 : host.find("]")]
    elif host.count(":") == 1:
        host = host.split(":")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --- progress ---------------------------------------------------------------------------


class _Progress:
    """A reader that reports bytes read on stderr, when that is a terminal; quiet otherwise."""

    def __init__(self, raw: IO[bytes], label: str, total: int, show: bool) -> None:
        self.raw, self.label, self.total, self.show = raw, label, total, show
        self.done, self._last = 0, 0.0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.done += len(data)
        if self.show:
            now = time.monotonic()
            if not data or now - self._last > 0.1:
                self._last = now
                sys.stderr.write(f"\r{self.label}: {_human(self.done)}/{_human(self.total)}\x1b[K")
                if not data:
                    sys.stderr.write("\n")
                sys.stderr.flush()
        return data


def _human(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1000  # type: ignore[assignment]
    return str(n)


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


# --- the HTTP client --------------------------------------------------------------------


class _Cut(CtrError):
    """A download that ended early or failed mid-stream."""


class _Guarded:
    """Turn what a socket raises mid-body (IncompleteRead, reset, timeout) into one clear error."""

    def __init__(self, raw: IO[bytes], what: str) -> None:
        self.raw, self.what = raw, what

    def read(self, n: int = -1) -> bytes:
        import http.client

        try:
            return self.raw.read(n)
        except (http.client.HTTPException, OSError) as exc:
            raise _Cut(f"{self.what}: the download was cut short: {exc or type(exc).__name__}") from None


class RegistryClient:
    """One repository on one registry, with the token its scope needs."""

    def __init__(self, remote: Remote, *, push: bool = False, timeout: float = TIMEOUT) -> None:
        self.remote = remote
        self.base = f"{remote.scheme}://{remote.registry}/v2/"
        self.scope = f"repository:{remote.repository}:{'pull,push' if push else 'pull'}"
        self.timeout = timeout
        self.token = ""
        # Loopback registries never go through a proxy from the environment.
        handlers = [urllib.request.ProxyHandler({})] if is_loopback(remote.registry) else []
        self.opener = urllib.request.build_opener(*handlers)

    # plumbing

    def _url(self, path: str) -> str:
        return urllib.parse.urljoin(self.base, path)

    def _open(self, method: str, url: str, headers: dict[str, str], body: Callable[[], object] | None):
        data = body() if body else None
        req = urllib.request.Request(url, data=data, method=method, headers=headers)  # type: ignore[arg-type]
        if self.token:
            # Unredirected: blob downloads may redirect to storage that must not see the token.
            req.add_unredirected_header("Authorization", f"Bearer {self.token}")
        return self.opener.open(req, timeout=self.timeout)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: Callable[[], object] | None = None,
        ok: tuple[int, ...] = (200,),
    ):
        """One request, authenticating once on a 401; `body` makes the data afresh for a retry."""
        url = self._url(path)
        headers = headers or {}
        for attempt in (1, 2):
            try:
                resp = self._open(method, url, headers, body)
            except urllib.error.HTTPError as exc:
                if exc.code == 401 and attempt == 1:
                    challenge = exc.headers.get("WWW-Authenticate", "")
                    exc.close()
                    self._authenticate(challenge)
                    continue
                raise self._error(exc, method, url) from None
            except urllib.error.URLError as exc:
                raise CtrError(f"cannot reach registry {self.remote.registry} ({url}): {exc.reason}") from None
            except OSError as exc:  # timeouts, resets
                raise CtrError(f"cannot reach registry {self.remote.registry} ({url}): {exc}") from None
            if resp.status not in ok:
                resp.close()
                raise CtrError(
                    f"registry {self.remote.registry}: {method} {url} answered {resp.status}, "
                    f"expected {' or '.join(map(str, ok))}"
                )
            return resp
        raise AssertionError("unreachable")

    def _authenticate(self, challenge: str) -> None:
        scheme, _, params = challenge.strip().partition(" ")
        if scheme.lower() == "basic":
            raise CtrError(
                f"registry {self.remote.registry} asks for a user name and password (Basic auth); "
                "ctr supports anonymous access and bearer tokens only"
            )
        if scheme.lower() != "bearer":
            raise CtrError(
                f"registry {self.remote.registry} refused access and offers no token "
                f"(WWW-Authenticate: {challenge or 'none'})"
            )
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        realm = fields.get("realm")
        if not realm:
            raise CtrError(f"registry {self.remote.registry}: bearer challenge without a realm: {challenge!r}")
        query = {"scope": self.scope}
        if fields.get("service"):
            query["service"] = fields["service"]
        url = realm + ("&" if "?" in realm else "?") + urllib.parse.urlencode(query)
        try:
            with self.opener.open(urllib.request.Request(url), timeout=self.timeout) as resp:
                doc = json.loads(resp.read(1 << 20))
        except urllib.error.HTTPError as exc:
            raise CtrError(
                f"registry {self.remote.registry}: token service {realm} refused {self.scope} ({exc.code} {exc.reason})"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            raise CtrError(
                f"registry {self.remote.registry}: cannot reach token service {realm}: {getattr(exc, 'reason', exc)}"
            ) from None
        except ValueError:
            raise CtrError(f"registry {self.remote.registry}: token service {realm} answered no JSON") from None
        token = doc.get("token") or doc.get("access_token") if isinstance(doc, dict) else None
        if not isinstance(token, str) or not token:
            raise CtrError(f"registry {self.remote.registry}: token service {realm} gave no token")
        self.token = token

    def _error(self, exc: urllib.error.HTTPError, method: str, url: str) -> CtrError:
        detail = ""
        try:
            doc = json.loads(exc.read(1 << 16) or b"{}")
            errors = doc.get("errors") or []
            detail = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}".strip(": ") for e in errors)
        except (ValueError, AttributeError, OSError):
            pass
        finally:
            exc.close()
        detail = detail or f"{exc.code} {exc.reason}"
        where = f"registry {self.remote.registry}"
        if exc.code == 401 or exc.code == 403:
            return CtrError(f"{where} denied {method} {url}: {detail}")
        if exc.code == 404:
            return NotFound(f"{where}: {method} {url}: {detail}")
        return CtrError(f"{where}: {method} {url} failed: {detail}")

    # the API

    def ping(self) -> None:
        """GET /v2/: checks the registry speaks v2, and takes a token if it asks for one."""
        self.request("GET", "").close()

    def get_manifest(self, reference: str) -> tuple[bytes, str, str]:
        """(bytes, media type, digest) of a manifest or index; a digest reference is checked."""
        path = f"{self.remote.repository}/manifests/{reference}"
        try:
            resp = self.request("GET", path, headers={"Accept": ACCEPT})
        except NotFound:
            raise NotFound(f"image {self.remote.name} not found in registry {self.remote.registry}") from None
        with resp:
            data = _Guarded(resp, f"manifest {reference}").read(MANIFEST_LIMIT + 1)
            media = (resp.headers.get("Content-Type") or "").split(";")[0].strip()
            header_digest = resp.headers.get("Docker-Content-Digest", "")
        if len(data) > MANIFEST_LIMIT:
            raise CtrError(
                f"registry {self.remote.registry}: manifest {reference} is larger than {MANIFEST_LIMIT} bytes"
            )
        import hashlib

        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        expected = (
            reference
            if reference.startswith("sha256:")
            else header_digest
            if header_digest.startswith("sha256:")
            else ""
        )
        if expected and digest != expected:
            raise CtrError(
                f"registry {self.remote.registry}: manifest {reference} of {self.remote.name} does not "
                f"match its digest {expected}: the content has {digest}"
            )
        if media not in (*MANIFEST_TYPES, *INDEX_TYPES):
            doc = parse_json(data, f"manifest {reference} of {self.remote.name}")
            if doc.get("schemaVersion") == 1:
                raise CtrError(f"image {self.remote.name} has a Docker schema 1 manifest, which ctr does not support")
            media = doc.get("mediaType") or (MEDIA_INDEX if "manifests" in doc else MEDIA_MANIFEST)
        return data, media, digest

    def fetch_blob(self, desc: dict, ingest: Ingest, *, what: str, show: bool, limit: int | None = None) -> None:
        """Stream one blob into the ingest, checked against the descriptor's digest and size."""
        digest = desc["digest"]
        resp = self.request("GET", f"{self.remote.repository}/blobs/{digest}")
        with resp:
            reader = _Progress(
                _Guarded(resp, f"{what} from {self.remote.registry}"), digest[7:19], int(desc.get("size") or 0), show
            )
            ingest.add_blob(
                reader,
                what=f"{what} from {self.remote.registry}",
                expected=digest,  # type: ignore[arg-type]
                size=desc.get("size") or None,
                limit=limit,
            )

    def blob_exists(self, digest: str) -> bool:
        try:
            self.request("HEAD", f"{self.remote.repository}/blobs/{digest}").close()
            return True
        except NotFound:
            return False

    def upload_blob(self, path, digest: str, size: int, *, show: bool) -> None:
        """A monolithic upload: POST for a session, then one PUT with the bytes and the digest."""
        resp = self.request("POST", f"{self.remote.repository}/blobs/uploads/", body=lambda: b"", ok=(202,))
        with resp:
            location = resp.headers.get("Location")
        if not location:
            raise CtrError(f"registry {self.remote.registry}: blob upload for {digest} gave no Location")
        location = self._url(location)
        target = location + ("&" if "?" in location else "?") + urllib.parse.urlencode({"digest": digest})
        files: list[IO[bytes]] = []

        def body() -> object:
            for f in files:
                f.close()
            f = open(path, "rb")
            files.append(f)
            return _Progress(f, digest[7:19], size, show)

        try:
            self.request(
                "PUT",
                target,
                headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)},
                body=body,
                ok=(201, 204),
            ).close()
        finally:
            for f in files:
                f.close()

    def put_manifest(self, reference: str, data: bytes, media: str) -> str:
        resp = self.request(
            "PUT",
            f"{self.remote.repository}/manifests/{reference}",
            body=lambda: data,
            headers={"Content-Type": media},
            ok=(201, 200, 202),
        )
        with resp:
            return resp.headers.get("Docker-Content-Digest", "")


# --- pull and push ------------------------------------------------------------------------


def pull(
    store: ImageStore, ref: str, *, progress: bool | None = None, log: Callable[[str], None] | None = None
) -> Image:
    """Fetch `ref` into the store (named as normalize_ref(ref) names it) and return it."""
    show = stderr_is_terminal() if progress is None else progress
    say = log or (lambda _msg: None)
    remote = parse_remote(ref)
    client = RegistryClient(remote)
    client.ping()
    with Ingest(store) as ingest:
        data, media, digest = client.get_manifest(remote.reference)
        for _depth in range(MAX_INDEX_DEPTH + 1):
            if media not in INDEX_TYPES:
                break
            what = f"index {digest} of {remote.name}"
            chosen = choose_platform(check_index(parse_json(data, what), what), f"image {remote.name}")
            data, media, digest = client.get_manifest(chosen["digest"])
        else:
            raise CtrError(f"image {remote.name}: indexes nested deeper than {MAX_INDEX_DEPTH}")
        if media not in MANIFEST_TYPES:
            raise CtrError(f"image {remote.name}: {digest} is a {media}, not an image manifest")
        what = f"manifest {digest} of {remote.name}"
        ingest.add_bytes(data, what=what, expected=digest)
        config_desc, layers = check_manifest(parse_json(data, what), what)
        if not ingest.has(config_desc["digest"]):
            client.fetch_blob(
                config_desc, ingest, what=f"config {config_desc['digest']}", show=False, limit=CONFIG_LIMIT
            )
        config_what = f"config {config_desc['digest']} of {remote.name}"
        config = parse_json(ingest.read(config_desc["digest"], what=config_what), config_what)
        diff_ids = check_config(config, len(layers), config_what)
        for layer, diff_id in zip(layers, diff_ids):
            if ingest.has(layer["digest"]):
                say(f"{layer['digest'][7:19]}: already present")
            else:
                client.fetch_blob(layer, ingest, what=f"layer {layer['digest']}", show=show)
            got = ingest.diff_id(layer["digest"], what=f"{layer['digest']} of {remote.name}")
            if got != diff_id:
                raise CtrError(
                    f"image {remote.name}: layer {layer['digest']} does not match its diff_id {diff_id}: "
                    f"the content has {got}"
                )
        return ingest.commit([(remote.name, digest, media)])[0]


def push(store: ImageStore, ref: str, *, progress: bool | None = None, log: Callable[[str], None] | None = None) -> str:
    """Upload the image `ref` to the registry its name says; returns the manifest digest."""
    show = stderr_is_terminal() if progress is None else progress
    say = log or (lambda _msg: None)
    image = store.get(ref)
    remote = parse_remote(image.name)
    client = RegistryClient(remote, push=True)
    client.ping()
    manifest = store.manifest(image)
    config_desc, layers = check_manifest(parse_json(manifest, f"manifest of {image.name}"), f"manifest of {image.name}")
    for desc in (*layers, config_desc):
        digest = desc["digest"]
        if client.blob_exists(digest):
            say(f"{digest[7:19]}: already in {remote.registry}")
            continue
        path = store.blob_path(digest)
        if not path.is_file():
            raise NotFound(f"blob {digest} of image {image.name} is missing from {store.blobs}")
        client.upload_blob(path, digest, path.stat().st_size, show=show)
    got = client.put_manifest(remote.reference, manifest, image.media_type)
    if got and got != image.digest:
        raise CtrError(
            f"registry {remote.registry} stored the manifest of {image.name} as {got}, expected {image.digest}"
        )
    return image.digest


__all__ = ["Remote", "RegistryClient", "is_loopback", "parse_remote", "pull", "push"]
