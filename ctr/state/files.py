"""Where ctr writes an archive a user asked for: standard output, or a file that appears whole."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Callable

from ctr.errors import InvalidSpec

from ctr.state.records import replaced_atomically


def write_output(dest: str, write: Callable[[IO[bytes]], None], what: str) -> None:
    """`write(out)` to stdout when `dest` is '-' (never a terminal), else to a temp file
    beside `dest`, fsync'd and renamed into place once complete, with the mode a new file
    gets under the umask. `what` names the archive in messages ("a bundle")."""
    if dest == "-":
        if sys.stdout.isatty():
            raise InvalidSpec(f"refusing to write {what} to a terminal: use -o FILE or a pipe")
        write(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        return
    target = Path(dest)
    if target.is_dir():
        raise InvalidSpec(f"cannot export to {dest}: it is a directory")
    with replaced_atomically(target, 0o666) as f:
        write(f)
