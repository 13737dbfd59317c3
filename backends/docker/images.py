"""ctr's images as the engine holds them: their tags under ctr.local/ (engine_tag), and the
`docker save` archive retagged so that `docker load` touches no tag of the user's (retag_archive).
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from typing import BinaryIO

from ctr.errors import CtrError

ENGINE_NAMESPACE = "ctr.local"  # engine tags of ctr's images: ctr.local/busybox:latest


def engine_tag(image_name: str) -> tuple[str, str]:
    """(repository, tag) under ctr's namespace, valid for the engine whatever ctr accepted:
    'busybox:latest' -> ('ctr.local/busybox', 'latest');
    '127.0.0.1:5000/bb:1' -> ('ctr.local/127.0.0.1__5000/bb', '1');
    'bb@sha256:HEX' -> ('ctr.local/bb', 'sha256-HEX').

    Under ctr.local/ a registry host is only a path component, and Docker's path components
    allow neither ':' nor brackets: the port becomes '__' (a host name has no '_', so this
    cannot collide with another host), an IPv6 host 'ip6-' and its groups joined by '-'.
    A digest becomes the tag, so two digests of one name never share an engine tag.
    """
    from ctr.images.reference import split_ref

    name, tag, digest = split_ref(image_name)
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        name = f"{_engine_component(first)}/{rest}"
    if digest:
        tag = digest.replace(":", "-")
    repo = f"{ENGINE_NAMESPACE}/{name.lower()}"
    if len(repo) > ENGINE_NAME_MAX:  # Docker's limit on a repository name
        repo = f"{ENGINE_NAMESPACE}/long-{hashlib.sha256(name.encode()).hexdigest()[:32]}"
    return repo, tag or "latest"


ENGINE_NAME_MAX = 255


def _engine_component(domain: str) -> str:
    """A registry host[:port] as one valid path component: '[::1]:5000' -> 'ip6---1__5000'."""
    host, port = domain, ""
    if domain.startswith("["):
        end = domain.index("]")
        host, port = "ip6-" + domain[1:end].replace(":", "-"), domain[end + 2 :]
    elif ":" in domain:
        host, _, port = domain.partition(":")
    return host.lower() + (f"__{port}" if port else "")


def retag_archive(src: BinaryIO, dst: BinaryIO, ref: str) -> None:
    """Copy a `docker save` archive with `ref` as its only tag.

    `docker load` applies the archive's RepoTags and its legacy `repositories` file,
    which would move the user's own `busybox:latest`; ctr's images live under ctr.local/.
    Layers are copied by tarfile in blocks, never parsed.
    """
    src.seek(0)
    with (
        tarfile.open(fileobj=src, mode="r:") as tin,
        tarfile.open(fileobj=dst, mode="w:", format=tarfile.PAX_FORMAT) as tout,
    ):
        for member in tin:
            name = os.path.normpath(member.name)
            if name == "repositories":
                continue
            if name == "manifest.json":
                manifest = json.load(tin.extractfile(member))  # type: ignore[arg-type]
                if len(manifest) != 1:
                    raise CtrError(f"image archive for {ref}: manifest.json lists {len(manifest)} images, expected 1")
                manifest[0]["RepoTags"] = [ref]
                data = json.dumps(manifest).encode()
                member.size = len(data)
                tout.addfile(member, _BytesReader(data))
            elif member.isfile():
                tout.addfile(member, tin.extractfile(member))
            else:
                tout.addfile(member)
    dst.seek(0)


class _BytesReader:
    """The smallest file object tarfile.addfile needs."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos : end]
        self._pos += len(chunk)
        return chunk
