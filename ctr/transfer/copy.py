"""`ctr cp`: copy between the host and a running container's root, never escaping it.

The container side runs in a forked child chrooted into the container's root
(/proc/PID/root), so every symlink there resolves as the container sees it and
can never point out of it, the guarantee `docker cp` gives. Files travel as a tar
stream through a pipe; the host side unpacks with tarfile's "data" filter, which
refuses absolute names, `..` and links out of the destination.
"""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

from ctr.errors import CtrError, NotFound


def _in_chroot(root: Path, fn) -> tuple[int, int]:
    """Fork; in the child chroot into `root` and run fn(). Returns (pid, fd of its error report)."""
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(err_r)
            os.chroot(root)
            os.chdir("/")
            fn()
            code = 0
        except FileNotFoundError as exc:
            os.write(err_w, f"no such file or directory in the container: {exc.filename}".encode())
        except BaseException as exc:  # the child must never return into the caller
            os.write(err_w, f"{getattr(exc, 'strerror', None) or exc}".encode())
        finally:
            os._exit(code)
    os.close(err_w)
    return pid, err_r


def _join(child: tuple[int, int], what: str) -> None:
    pid, err_r = child
    with os.fdopen(err_r, "rb") as f:
        message = f.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        if message.startswith("no such file"):
            raise NotFound(message)
        raise CtrError(f"copying {what} failed: {message or 'unknown error'}")


def copy_out(root: Path, src: str, dst: str) -> None:
    """Container path `src` -> host path `dst` (into it when it is a directory)."""
    dst_path = Path(dst)
    target_dir, name = (dst_path, None) if dst_path.is_dir() else (dst_path.parent, dst_path.name)
    if not target_dir.is_dir():
        raise NotFound(f"destination directory {target_dir} does not exist")
    r, w = os.pipe()

    def pack() -> None:
        os.close(r)
        with os.fdopen(w, "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(src, arcname=os.path.basename(src.rstrip("/")) or ".")

    child = _in_chroot(root, pack)
    os.close(w)
    with os.fdopen(r, "rb") as inp:
        try:
            with tarfile.open(fileobj=inp, mode="r|") as tar:
                for member in tar:
                    if name is not None:  # rename the top entry to the destination's name
                        parts = member.name.split("/", 1)
                        member.name = name + ("/" + parts[1] if len(parts) > 1 else "")
                    tar.extract(member, target_dir, filter="data")
        except tarfile.ReadError:
            pass  # the child failed before writing anything; _join says why
    _join(child, src)


def copy_in(root: Path, src: str, dst: str) -> None:
    """Host path `src` -> container path `dst` (into it when it is a directory)."""
    if not os.path.lexists(src):
        raise NotFound(f"no such file or directory on the host: {src}")
    r, w = os.pipe()

    def unpack() -> None:
        os.close(w)
        dst_path = Path(dst)
        target_dir, name = (dst_path, None) if dst_path.is_dir() else (dst_path.parent, dst_path.name)
        if not target_dir.is_dir():
            raise FileNotFoundError(2, "not a directory", str(target_dir))
        with os.fdopen(r, "rb") as inp, tarfile.open(fileobj=inp, mode="r|") as tar:
            for member in tar:
                if name is not None:
                    parts = member.name.split("/", 1)
                    member.name = name + ("/" + parts[1] if len(parts) > 1 else "")
                # Inside the chroot the "data" filter still refuses links out of target_dir.
                tar.extract(member, target_dir, filter="data")

    child = _in_chroot(root, unpack)
    os.close(r)
    try:
        with os.fdopen(w, "wb") as out, tarfile.open(fileobj=out, mode="w|") as tar:
            tar.add(src, arcname=os.path.basename(src.rstrip("/")) or ".")
    except BrokenPipeError:
        pass  # the child stopped reading; _join says why
    _join(child, dst)
