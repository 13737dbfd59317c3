"""The container's root before liblxc mounts it: the user resolved in the image's /etc,
the working directory and the mount targets made in the writable layer (so they exist
under --read-only too), by a short-lived child in a throwaway mount namespace."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from pathlib import Path

from ctr import errors as _errors
from ctr.errors import CtrError
from ctr.native import syscalls as sc  # imported before the fork: the child needs it, and so does the liblxc monitor
from ctr.spec import ContainerSpec


def prepare_rootfs(
    name: str, layers: list[str], upper: str, work: str, mountpoint: str, user: str, cwd: str, spec: ContainerSpec
) -> dict:
    """Resolve the user in the image's /etc and create the working directory and the
    mount targets in the writable layer, as Docker does before it makes a root read-only.
    Returns uid, gid, groups, home and the mount targets with symlinks resolved.

    A child mounts the overlay in a mount namespace of its own and chroots into it, so
    symlinks resolve as in the container and the mount dies with the child. The mount is
    volatile: unmounting a plain overlay syncs the whole filesystem under the writable layer,
    which takes 1 ms on an idle disk and up to ~150 ms on a busy one, and nothing is owed
    that sync here (liblxc's own mount of the layer is not volatile).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        out: dict
        try:
            os.close(r)
            targets = [(m.target, os.path.isdir(m.source)) for m in spec.mounts]  # before the chroot
            from ctr.native.users import resolve_user

            _mount_private_overlay(layers, upper, work, mountpoint)
            os.chroot(mountpoint)
            os.chdir("/")
            os.umask(0o022)
            u = resolve_user(user, "/etc", spec.group_add)
            for d in ("/dev", "/proc", "/sys", cwd):
                os.makedirs(d, exist_ok=True)
            resolved = _make_targets(targets)
            out = {"uid": u.uid, "gid": u.gid, "groups": list(u.groups), "home": u.home, "targets": resolved}
        except CtrError as exc:
            out = {"error": str(exc), "kind": type(exc).__name__}
        except OSError as exc:
            out = {
                "error": f"cannot prepare the root filesystem of container {name}: {exc.strerror}"
                + (f": {exc.filename}" if exc.filename else ""),
                "kind": "CtrError",
            }
        except BaseException as exc:
            out = {
                "error": f"cannot prepare the root filesystem of container {name}: {type(exc).__name__}: {exc}",
                "kind": "CtrError",
            }
        try:
            os.write(w, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    # A volatile mount leaves work/work/incompat/volatile behind, and overlayfs refuses to
    # mount a layer that has it: the mount is gone with the child, so the mark may go too.
    with contextlib.suppress(FileNotFoundError):
        shutil.rmtree(Path(work, "work", "incompat"))
    out = (
        json.loads(data)
        if data
        else {"error": f"cannot prepare the root filesystem of container {name}: the helper died", "kind": "CtrError"}
    )
    if "error" in out:
        raise getattr(_errors, out["kind"], CtrError)(out["error"])
    return out


def _mount_private_overlay(layers: list[str], upper: str, work: str, mountpoint: str) -> None:
    """In a mount namespace of the calling (child) process: the container's overlay, volatile."""
    sc.unshare(sc.CLONE_NEWNS)
    sc.mount(None, "/", None, sc.MS_REC | sc.MS_PRIVATE)
    options = f"lowerdir={':'.join(reversed(layers))},upperdir={upper},workdir={work}"
    try:
        sc.mount("overlay", mountpoint, "overlay", 0, options + ",volatile")
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        sc.mount("overlay", mountpoint, "overlay", 0, options)  # Linux before 5.10


def _make_targets(targets: list[tuple[str, bool]]) -> list[str]:
    """Each mount target made (a directory, or an empty file for a file's bind mount), chrooted;
    returned with symlinks resolved as the container sees them (".." stops at its root), as
    runc's securejoin does: liblxc itself refuses to mount through one."""
    resolved = []
    for target, is_dir in targets:
        if is_dir:
            os.makedirs(target, exist_ok=True)
        elif not os.path.lexists(target):
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))
        resolved.append(os.path.realpath(target))
    return resolved
