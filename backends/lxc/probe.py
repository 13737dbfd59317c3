"""Whether liblxc can run ctr's containers here, and the versions `ctr backends` shows:
the bindings importable, root, overlayfs, and liblxc answering for a container handle."""

from __future__ import annotations

import os
import platform

from ctr.backends.base import BackendInfo
from ctr.backends.kept.host import has_filesystem
from ctr.backends.lxc.start import error_num
from ctr.errors import CtrError

INSTALL_HINT = "the python lxc bindings are missing: apt-get install lxc lxc-dev && pip install 'ctr[lxc]'"


def probe_info(name: str) -> BackendInfo:
    versions = {"kernel": platform.release()}
    try:
        import lxc
    except ImportError:
        return BackendInfo(name, False, INSTALL_HINT, versions)
    versions["liblxc"] = lxc.version
    try:
        from importlib.metadata import version

        versions["python-lxc"] = version("lxc")
    except Exception:  # the bindings may come from a distribution package without metadata
        pass
    reason = unusable_because()
    return BackendInfo(name, not reason, reason, versions)


def unusable_because() -> str:
    """Why liblxc cannot run ctr's containers here ("" when it can)."""
    try:
        import lxc
    except ImportError:
        return INSTALL_HINT

    if os.geteuid() != 0:
        return "the lxc backend runs privileged containers and needs root (run ctr as root)"
    if not has_filesystem("overlay"):
        return "the kernel has no overlayfs: modprobe overlay"
    try:
        # A handle only: lxc_container_new creates nothing on disk.
        error_num(lxc.Container("ctr-probe", "/nonexistent-ctr-lxcpath"))
    except CtrError as exc:
        return str(exc)
    return ""
