#!/usr/bin/env python3
"""Move every LXC container of ctr's on this machine to Docker, keeping names, and report.

    sudo python3 examples/lxc_to_docker.py            # all of them
    sudo python3 examples/lxc_to_docker.py web db     # only these

Running containers are stopped, moved and started again on Docker; stopped ones
stay stopped. Each move carries the writable layer and the spec and checks the
files arrived unchanged; a container that cannot move stays on LXC as it was.
Exit status 1 if any container could not be moved.
"""

from __future__ import annotations

import sys

import ctr


def main(argv: list[str]) -> int:
    lxc = ctr.connect("lxc")
    ctr.connect("docker")  # fail early, with the reason, if the engine is not there
    wanted = set(argv)
    rows = [("NAME", "WAS", "NOW", "ID")]
    failed = 0
    for container in lxc.containers.list():
        if wanted and container.name not in wanted:
            continue
        was = container.status
        try:
            moved = ctr.migrate(container, to="docker", stop=True)
        except ctr.CtrError as exc:
            failed += 1
            rows.append((container.name, was, f"still on lxc: {exc}", container.short_id))
            continue
        rows.append((moved.name, was, f"docker, {moved.status}", moved.short_id))
    for name in sorted(wanted - {r[0] for r in rows}):
        failed += 1
        rows.append((name, "-", "no such LXC container of ctr's", ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for row in rows:
        print("   ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(f"{len(rows) - 1 - failed} moved, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
