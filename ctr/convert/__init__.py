"""`ctr convert`: one container's configuration from one tool's format into another's.

Readers: an LXC config file (`lxc`), `docker inspect` JSON (`docker`), an OCI
runtime config.json (`oci`), a ctr spec (`ctr`: ContainerSpec.to_dict, a
record.json or a bundle's ctr-bundle.json). Writers: `lxc`, `docker-run` (a
command line), `compose` (a docker-compose service), `oci`, `ctr`.

Every conversion goes through the ctr spec, the one model all three backends
share. A reader consumes what the spec can express and names everything else in
a warning; a writer does the same for spec fields the target cannot express.
Nothing is dropped silently: a key is either converted, or equal to what the
target does anyway (a documented default), or listed. Values that only
describe a running container (docker's Id, State, NetworkSettings...) are
listed together in one line, since they are not configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ctr.convert.conversion import Conversion
from ctr.convert.docker import read_docker, write_compose, write_docker_run
from ctr.convert.lxc import read_lxc, write_lxc
from ctr.convert.oci import read_oci, write_oci
from ctr.convert.spec_json import read_ctr, write_ctr
from ctr.errors import InvalidSpec

READ_FORMATS = ("lxc", "docker", "oci", "ctr")
WRITE_FORMATS = ("lxc", "docker-run", "compose", "oci", "ctr")
READERS: dict[str, Callable[[str, str], Conversion]] = {
    "lxc": read_lxc,
    "docker": read_docker,
    "oci": read_oci,
    "ctr": read_ctr,
}
WRITERS: dict[str, Callable[[dict, Callable[[str], Any] | None], tuple[str, list[str]]]] = {
    "lxc": write_lxc,
    "docker-run": write_docker_run,
    "compose": write_compose,
    "oci": write_oci,
    "ctr": write_ctr,
}


def convert(
    text: str, source: str, target: str, *, origin: str = "", resolve: Callable[[str], Any] | None = None
) -> tuple[str, list[str]]:
    """Convert `text` from format `source` to `target`; returns (output, warnings).

    `origin` is the file name (an LXC config at .../NAME/config names the container).
    `resolve(image) -> ImageConfig | None` lets writers that need a full command line
    (lxc, oci) merge in the image's Entrypoint/Cmd/Env/WorkingDir/User."""
    if source not in READ_FORMATS:
        raise InvalidSpec(f"cannot read {source!r}: choose one of {', '.join(READ_FORMATS)}")
    if target not in WRITE_FORMATS:
        raise InvalidSpec(f"cannot write {target!r}: choose one of {', '.join(WRITE_FORMATS)}")
    conv = READERS[source](text, origin)
    out, warnings = WRITERS[target](conv.spec, resolve)
    return out, conv.warnings + warnings
