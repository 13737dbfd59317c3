"""Image references and digests: what names an image, in docker's grammar.

normalize_ref() turns what a user types into the one familiar form ctr stores
('busybox' -> 'busybox:latest'); split_ref() and full_ref() take it apart and
qualify it; hex_digest() is the file name a sha256 digest has in a blob store.
"""

from __future__ import annotations

import re

from ctr.errors import CtrError, InvalidSpec

# The grammar of distribution/reference (what `docker` accepts), in its familiar form.
_ALNUM = r"[a-z0-9]+"
_PATH_COMPONENT = rf"{_ALNUM}(?:(?:[._]|__|-+){_ALNUM})*"
_REMOTE_RE = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN_RE = re.compile(rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:]+\])(?::[0-9]+)?")
_TAG_RE = re.compile(r"[\w][\w.-]{0,127}")
_DIGEST_RE = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}")
SHA256_RE = re.compile(r"sha256:[a-f0-9]{64}")
_NAME_MAX = 255


def normalize_ref(ref: str) -> str:
    """'busybox' -> 'busybox:latest', by docker's rules, in docker's familiar form.

    The tag defaults to `latest` unless a digest is given (`name@sha256:...`);
    `docker.io/` and `library/` are dropped (`docker.io/library/busybox` is
    `busybox`); a registry host (`127.0.0.1:5000/demo:1`) is kept as written.
    """
    if not ref or ref != ref.strip():
        raise InvalidSpec(f"invalid reference format {ref!r}: empty or surrounded by whitespace")
    name, at, digest = ref.partition("@")
    if at:
        if not _DIGEST_RE.fullmatch(digest):
            raise InvalidSpec(f"invalid reference format {ref!r}: bad digest {digest!r}")
        if digest.startswith("sha256:") and not SHA256_RE.fullmatch(digest):
            raise InvalidSpec(f"invalid reference format {ref!r}: a sha256 digest is 64 lower-case hex digits")
    tag = ""
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        name, tag = name[:colon], name[colon + 1 :]
        if not _TAG_RE.fullmatch(tag):
            raise InvalidSpec(f"invalid reference format {ref!r}: bad tag {tag!r}")
    # Docker's splitDockerDomain: the first component is a registry only if it looks like one.
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.lower() != first):
        domain, remote = first, rest
    else:
        domain, remote = "", name
    if domain and not _DOMAIN_RE.fullmatch(domain):
        raise InvalidSpec(f"invalid reference format {ref!r}: bad registry {domain!r}")
    if not _REMOTE_RE.fullmatch(remote):
        if _REMOTE_RE.fullmatch(remote.lower()):
            raise InvalidSpec(f"invalid reference format {ref!r}: repository name must be lowercase")
        raise InvalidSpec(f"invalid reference format {ref!r}")
    if re.fullmatch(r"[a-f0-9]{64}", remote):
        raise InvalidSpec(f"invalid reference format {ref!r}: cannot use a 64-character hex string as a name")
    if domain in ("docker.io", "index.docker.io"):
        domain = ""
    if not domain and remote.startswith("library/") and remote.count("/") == 1:
        remote = remote[len("library/") :]
    name = f"{domain}/{remote}" if domain else remote
    if len(name) > _NAME_MAX:
        raise InvalidSpec(f"invalid reference format {ref!r}: name longer than {_NAME_MAX} characters")
    if not tag and not digest:
        tag = "latest"
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def split_ref(normalized: str) -> tuple[str, str, str]:
    """'host:5000/a:1@sha256:x' -> ('host:5000/a', '1', 'sha256:x'); tag and digest may be ''."""
    name, _, digest = normalized.partition("@")
    colon = name.rfind(":")
    if colon > name.rfind("/"):
        return name[:colon], name[colon + 1 :], digest
    return name, "", digest


def full_ref(normalized: str) -> str:
    """The fully qualified form containerd writes: 'busybox:latest' -> 'docker.io/library/busybox:latest'."""
    name, tag, digest = split_ref(normalized)
    first, slash, _ = name.partition("/")
    if not (slash and ("." in first or ":" in first or first == "localhost")):
        name = "docker.io/" + (name if slash else "library/" + name)
    return name + (f":{tag}" if tag else "") + (f"@{digest}" if digest else "")


def hex_digest(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or not re.fullmatch(r"[a-f0-9]{64}", hexpart):
        raise CtrError(f"unsupported digest {digest!r}: only sha256 is supported")
    return hexpart
