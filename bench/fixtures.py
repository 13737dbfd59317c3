"""What several measurements stand on, made once per run and cached on the Bench: ctr's
backend probes, the busybox rootfs copied from ctr's store, a private LXC config on it, ctr's
busybox loaded into the Docker Engine, and the label sweep of engine containers."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

from harness import Bench, NotAvailable

ENGINE_IMAGE = "ctr.local/busybox:latest"  # where ctr's docker backend puts its busybox
SLEEP = ["sleep", "600"]  # what a detached container runs


def ctr_backends(b: Bench) -> dict[str, dict]:
    """`ctr backends --format json`, by name; empty when that command fails."""
    if "backends" not in b.cache:
        try:
            r = b.sh(b.ctr + ["backends", "--format", "json"])
            b.cache["backends"] = {i["name"]: i for i in json.loads(r.stdout)}
        except (NotAvailable, ValueError, KeyError, TypeError):
            b.cache["backends"] = {}
    return b.cache["backends"]


def require_backend(b: Bench, backend: str) -> None:
    info = ctr_backends(b).get(backend)
    if info is not None and not info.get("usable"):
        raise NotAvailable(f"ctr backend {backend} is not usable: {info.get('reason') or 'no reason given'}")


def busybox_rootfs(b: Bench) -> Path:
    """A copy of the busybox layer from ctr's store: the same bytes every reference runs."""
    if "rootfs" in b.cache:
        return b.cache["rootfs"]
    try:
        from ctr.images.store import ImageStore
        from ctr.state.paths import Paths

        store = ImageStore(Paths.default(b.root))
        layers = store.layer_paths(store.get("busybox"))
    except Exception as exc:  # ImportError, or the store failing: say which
        raise NotAvailable(f"cannot get the busybox layer from ctr's image store: {exc}") from None
    if len(layers) != 1:
        raise NotAvailable(f"the busybox image has {len(layers)} layers, expected 1")
    # A copy, since runc and lxc may create mount points in a root they are given.
    rootfs = b.tmp / "rootfs"
    b.sh(["cp", "-a", str(layers[0]), str(rootfs)])
    if not (rootfs / "bin" / "true").exists() or not (rootfs / "bin" / "sleep").exists():
        raise NotAvailable(f"the busybox layer {layers[0]} has no /bin/true or /bin/sleep")
    b.cache["rootfs"] = rootfs
    return rootfs


def lxc_config(b: Bench) -> tuple[Path, Path]:
    """(lxcpath, config file): a private lxcpath and a config on the busybox rootfs."""
    if "lxc" in b.cache:
        return b.cache["lxc"]
    if not shutil.which("lxc-execute"):
        raise NotAvailable("lxc-execute is not installed (apt-get install lxc)")
    rootfs = busybox_rootfs(b)
    lxcpath, conf = b.tmp / "lxcpath", b.tmp / "lxc.conf"
    lxcpath.mkdir(exist_ok=True)
    conf.write_text(f"lxc.uts.name = ctrbench\nlxc.rootfs.path = dir:{rootfs}\nlxc.net.0.type = empty\n")

    def stop_active() -> None:
        r = b.quiet(["lxc-ls", "-P", str(lxcpath), "--active", "-1"])
        for name in r.stdout.decode().split() if r else ():
            b.quiet(["lxc-stop", "-P", str(lxcpath), "-n", name, "-k"])

    b.defer("lxc containers", stop_active)
    b.cache["lxc"] = (lxcpath, conf)
    return lxcpath, conf


def engine_image(b: Bench) -> str:
    """ctr's busybox in the Docker Engine as ctr.local/busybox:latest, loaded here if missing."""
    if "engine" in b.cache:
        return b.cache["engine"]
    b.sh(["docker", "version", "--format", "{{.Server.Version}}"], timeout=15)
    if b.sh(["docker", "image", "inspect", ENGINE_IMAGE], check=False).returncode != 0:
        try:
            from ctr.images.export import export_docker_archive
            from ctr.images.store import ImageStore
            from ctr.state.paths import Paths

            store = ImageStore(Paths.default(b.root))
            raw = b.tmp / "busybox-docker.tar"
            with open(raw, "wb") as f:
                export_docker_archive(store, store.get("busybox"), f)
        except Exception as exc:
            raise NotAvailable(f"cannot export busybox from ctr's image store: {exc}") from None
        tagged = b.tmp / "busybox-engine.tar"
        retag_archive(raw, tagged, ENGINE_IMAGE)
        b.sh(["docker", "load", "-i", str(tagged)], timeout=120)
    b.cache["engine"] = ENGINE_IMAGE
    return ENGINE_IMAGE


def retag_archive(src: Path, dst: Path, ref: str) -> None:
    """Copy a docker-archive with RepoTags [ref] only: `docker load` must not move the user's busybox tag."""
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.PAX_FORMAT) as tout:
        for member in tin:
            if member.name == "repositories":
                continue
            data = tin.extractfile(member) if member.isfile() else None
            if member.name == "manifest.json":
                manifest = json.load(data)
                for entry in manifest:
                    entry["RepoTags"] = [ref]
                raw = json.dumps(manifest).encode()
                member.size = len(raw)
                data = io.BytesIO(raw)
            tout.addfile(member, data)


def docker_cleanup(b: Bench) -> None:
    """Every engine container labelled with this run's id (ours, and ctr docker's with -l)."""

    def remove() -> None:
        r = b.quiet(["docker", "ps", "-aq", "--filter", f"label=ctrbench={b.run_id}"])
        ids = r.stdout.decode().split() if r else []
        if ids:
            b.quiet(["docker", "rm", "-f", *ids], timeout=60)

    b.defer("docker containers", remove)
