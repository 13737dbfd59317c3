#!/usr/bin/env python3
"""Run one container spec on every usable backend and compare what each container
saw and what it left behind.

    sudo python3 examples/compare_fleet.py

Each backend runs the same busybox script in the background: it prints its host
name, uid and capabilities, writes, changes and deletes files, and exits 3. Then
the report compares, per backend, the exit code, the output and the writable
layer (its files: names, types, modes, owners, contents, deletions; not times,
which differ by nature). Exit status 1 if the backends disagree.
"""

from __future__ import annotations

import sys

import ctr
from ctr.backends import REGISTRY, probe
from ctr.transfer.tree import tree_listing

SCRIPT = """
echo "host=$(hostname) uid=$(id -u) $(grep CapEff /proc/self/status | tr -d '\\t')"
mkdir -p /srv/data && echo hello > /srv/data/a && ln /srv/data/a /srv/data/b
chmod 600 /srv/data/a && ln -s data/a /srv/link
rm /etc/group && rm -rf /usr/sbin
exit 3
"""


def layer_without_times(container: ctr.Container) -> list[str]:
    """The writable layer as tree_listing() prints it, with the times taken out."""
    out = []
    for line in tree_listing(container.backend.writable_layer(container.name)):
        words = line.split(" ")
        if len(words) > 4 and words[1] in ("dir", "file", "symlink", "chr", "blk", "fifo"):
            words = [w for i, w in enumerate(words) if not (w.isdigit() and len(w) > 12)]
        out.append(" ".join(words))
    return out


def main() -> int:
    names = [name for name in REGISTRY if probe(name).usable]
    results = {}
    for name in names:
        backend = ctr.connect(name)
        spec = ctr.ContainerSpec("busybox", command=["sh", "-c", SCRIPT], hostname="fleet", name=f"fleet-{name}")
        container = backend.containers.run(spec)
        try:
            code = container.wait()
            results[name] = (code, container.output().decode(errors="replace").strip(), layer_without_times(container))
        finally:
            container.remove(force=True)
    reference = results[names[0]]
    agree = True
    print(f"{'BACKEND':<8} {'EXIT':<5} {'OUTPUT':<50} LAYER")
    for name in names:
        code, output, layer = results[name]
        same = "same as " + names[0] if layer == reference[2] else f"differs from {names[0]}"
        if (code, output, layer) != reference:
            agree = agree and name == names[0]
        print(f"{name:<8} {code:<5} {output[:50]:<50} {len(layer)} entries, {same}")
    for name in names[1:]:
        for label, mine, theirs in (
            ("output", results[name][1], reference[1]),
            ("layer", results[name][2], reference[2]),
        ):
            if mine != theirs:
                print(f"\n{name} {label} differs from {names[0]}:")
                for line in sorted(
                    set(mine if isinstance(mine, list) else [mine])
                    ^ set(theirs if isinstance(theirs, list) else [theirs])
                ):
                    print("  ", line)
    print("\nall backends agree" if agree else "\nthe backends disagree")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
