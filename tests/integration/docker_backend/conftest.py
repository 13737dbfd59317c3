"""Fixtures of the docker backend's tests: the SDK client that looks at what the backend did,
a container name cleaned up afterwards, the CLI on --backend docker, an image with every config field."""

from __future__ import annotations

import secrets
from contextlib import suppress

import pytest


@pytest.fixture
def engine(backend):
    """A docker SDK client for looking at what the backend did (the backend fixture skips first)."""
    import docker

    client = docker.from_env()
    yield client
    client.close()


@pytest.fixture
def name(engine, ctr):
    """A fresh container name; whatever still carries it afterwards (ctr's record, the
    engine's container) is removed."""
    value = f"ctr-test-{secrets.token_hex(4)}"
    yield value
    ctr("rm", "-f", value)
    from docker.errors import NotFound

    for c in engine.containers.list(all=True, filters={"label": f"ctr.name={value}"}, ignore_removed=True):
        with suppress(NotFound):  # removed by the engine meanwhile (--rm)
            c.remove(force=True)


@pytest.fixture
def dctr(ctr, backend):
    """The ctr CLI with --backend docker."""

    def run(*args: str, **kw):
        return ctr("--backend", "docker", *args, **kw)

    run.args_prefix = [*ctr.args_prefix, "--backend", "docker"]
    return run


@pytest.fixture
def config_image(backend, engine):
    """A ctr image with every config field set, unique per run so the engine must load it."""
    from ctr.images.model import ImageConfig
    from ctr.images.store import ImageStore

    store = ImageStore(backend.paths)
    busybox = store.get("busybox")
    ref = f"ctr-test-docker/cfg-{secrets.token_hex(4)}:1"
    config = ImageConfig(
        entrypoint=("sh", "-c", 'echo "$0 $* $FOO $(pwd) $(id -un)"'),
        cmd=("img-cmd",),
        env=("FOO=from-image", "PATH=/bin:/usr/bin"),
        workdir="/tmp",
        user="nobody",
    )
    image = store.create(
        ref, [store.blob_path(d) for d in busybox.layer_digests], config, labels={"ctr.test": secrets.token_hex(8)}
    )
    yield image
    for tag in (f"ctr.local/{image.name}", image.name):
        try:
            engine.api.remove_image(tag, force=True)
        except Exception:
            pass
    store.remove(ref)
