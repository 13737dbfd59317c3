"""Section 5: `ctr image import` of a root-filesystem-like tarball (~200 MB) against plain
`tar -x` of it, and import followed by the first container (which unpacks the layer)."""

from __future__ import annotations

import os
import random
import shlex
import shutil
from pathlib import Path

from harness import Bench, NotAvailable, na
from timing import Command, round_robin

IMAGE_COMMANDS = ("import", "tar -x", "import + create")


def make_tarball(b: Bench, size_mb: int) -> Path:
    """A root-filesystem-like tar of `size_mb` MB: many files, half random bytes, half text."""
    src = b.tmp / "import-src"
    rng = random.Random(7)
    total, n = 0, 0
    text = b"".join(b"line %d of a fairly repetitive configuration file\n" % i for i in range(2000))
    while total < size_mb << 20:
        d = src / f"usr/lib/pkg{n // 50:03d}"
        d.mkdir(parents=True, exist_ok=True)
        size = int(rng.choice((2, 8, 32, 128, 512, 1024, 2048)) * 1024 * rng.uniform(0.5, 1.5))
        data = os.urandom(size) if n % 2 else (text * (size // len(text) + 1))[:size]
        (d / f"file{n:05d}.so").write_bytes(data)
        total, n = total + size, n + 1
    for name in ("bin", "etc", "tmp", "var/log"):
        (src / name).mkdir(parents=True, exist_ok=True)
    tarball = b.tmp / "rootfs.tar"
    b.sh(["tar", "-cf", str(tarball), "-C", str(src), "."], timeout=300)
    shutil.rmtree(src)
    return tarball


def measure_image(b: Bench) -> dict:
    if not b.selected({"image"}):
        return {label: na("not selected (--only)") for label in IMAGE_COMMANDS}
    b.say("5. image import: checking that `ctr image import` exists")
    try:
        b.sh(b.ctr + ["image", "import", "--help"])
    except NotAvailable as exc:
        reason = f"ctr image import is not available: {exc}"
        return {label: na(reason) for label in IMAGE_COMMANDS}
    size_mb = 8 if b.args.quick else 200
    free_mb = shutil.disk_usage(b.tmp).free >> 20
    if free_mb < 5 * size_mb:  # the tar, one extraction, the imported blob and its unpacked copy
        reason = f"{free_mb} MB free under {b.tmp}, the import test wants {5 * size_mb} MB"
        return {label: na(reason) for label in IMAGE_COMMANDS}
    b.say(f"5. image import: making a {size_mb} MB tarball")
    tarball = make_tarball(b, size_mb)
    extract_to = b.tmp / "tar-x"

    def ref(i: int) -> str:
        return f"ctrbench/import:{b.run_id}-{i}"

    def remove_image(i: int, failed: bool) -> None:
        b.quiet(b.ctr + ["image", "rm", "-f", ref(i)])

    def container(i: int) -> str:
        return f"ctrbench-import-{b.run_id}-{i}"

    def import_and_create(i: int) -> list[str]:
        # Import stores the layer as it came; the first container made from the image unpacks it.
        ctr = shlex.join(b.ctr)
        return [
            "sh",
            "-c",
            f"{ctr} image import {shlex.quote(str(tarball))} --name {ref(-1 - i)} >/dev/null "
            f"&& {ctr} create --name {container(i)} {ref(-1 - i)} /bin/sh",
        ]

    def remove_container_and_image(i: int, failed: bool) -> None:
        b.quiet(b.ctr + ["rm", "-f", container(i)])
        remove_image(-1 - i, failed)

    def tar_argv(i: int) -> list[str]:
        shutil.rmtree(extract_to, ignore_errors=True)
        extract_to.mkdir()
        return ["tar", "-xf", str(tarball), "-C", str(extract_to)]

    runs = min(b.args.runs, 5)  # each run moves the whole tarball twice; five are plenty
    b.say(f"5. timing ctr image import and tar -x of {tarball.stat().st_size >> 20} MB x {runs}, round-robin")
    results = round_robin(
        b,
        [
            Command(
                "import",
                lambda i: b.ctr + ["image", "import", str(tarball), "--name", ref(i)],
                remove_image,
                timeout=600,
            ),
            Command("tar -x", tar_argv, lambda i, failed: shutil.rmtree(extract_to, ignore_errors=True), timeout=600),
            Command("import + create", import_and_create, remove_container_and_image, timeout=600),
        ],
        runs,
    )
    results["tarball_mb"] = round(tarball.stat().st_size / (1 << 20), 1)
    tarball.unlink()
    return results
