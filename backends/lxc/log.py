"""liblxc's log: the ERROR lines it writes to the container's lxc.log are the only
reasons it gives for a refused config item, a failed start or attach."""

from __future__ import annotations

import re
from pathlib import Path

from ctr.state.records import Record


def log_errors(log_file: str) -> list[str]:
    """liblxc's ERROR lines, without the timestamp and source location."""
    try:
        lines = Path(log_file).read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        # lxc <name> <time> ERROR    <module> - <file>:<func>:<line> - <message>
        m = re.match(r"\S+ \S* ?\d+\.\d+ ERROR\s+\S+ - \S+ - (.*)", line)
        if m:
            out.append(m.group(1))
    return out


def log_reason(record: Record, lxcpath: Path) -> str:
    """ ": <liblxc's last error>" for a message, or "" when it logged none."""
    reasons = log_errors(str(lxcpath / record.name / "lxc.log"))
    return f": {reasons[-1]}" if reasons else ""
