"""Sections 1 and 2: `run --rm busybox true` on each ctr backend beside its references (the
kernel's floor, runc, lxc-execute, docker run, Python's own start), and the ratios of their medians."""

from __future__ import annotations

import json
import shutil
import sys

from fixtures import busybox_rootfs, docker_cleanup, engine_image, lxc_config, require_backend
from harness import Bench, NotAvailable, is_ok, na
from timing import Command, round_robin

# (label, tags): --only picks every measurement that carries one of the given tags.
LATENCY = [
    ("ctr native", {"native"}),
    ("ctr lxc", {"lxc"}),
    ("ctr docker", {"docker"}),
    ("unshare+chroot", {"native", "refs"}),
    ("runc run", {"native", "refs"}),
    ("lxc-execute", {"lxc", "refs"}),
    ("docker run", {"docker", "refs"}),
    # ctr is a Python program with a click CLI: these two are the floor under every ctr row.
    ("python start", {"native", "lxc", "docker", "refs"}),
    ("python + import click", {"native", "lxc", "docker", "refs"}),
    ("python + import click, docker", {"docker", "refs"}),  # and the docker backend's SDK
]


# (ratio label, numerator, denominator): medians of section 1.
RATIOS = [
    ("ctr docker / docker run", "ctr docker", "docker run"),
    ("ctr lxc / lxc-execute", "ctr lxc", "lxc-execute"),
    ("ctr native / runc run", "ctr native", "runc run"),
    ("ctr native / docker run", "ctr native", "docker run"),
    ("ctr native / unshare+chroot", "ctr native", "unshare+chroot"),
]


def latency_commands(b: Bench) -> tuple[list[Command], dict[str, dict]]:
    """The commands of section 1 that can be set up here, and n/a for the others."""
    makers = {
        "ctr native": lambda: ctr_run_rm(b, "native"),
        "ctr lxc": lambda: ctr_run_rm(b, "lxc"),
        "ctr docker": lambda: ctr_run_rm(b, "docker"),
        "unshare+chroot": lambda: unshare_chroot(b),
        "runc run": lambda: runc_run(b),
        "lxc-execute": lambda: lxc_execute(b),
        "docker run": lambda: docker_run(b),
        "python start": lambda: Command("python start", lambda i: [sys.executable, "-c", "pass"]),
        "python + import click": lambda: Command(
            "python + import click", lambda i: [sys.executable, "-c", "import click"]
        ),
        "python + import click, docker": lambda: python_imports(b, "click", "docker"),
    }
    commands, skipped = [], {}
    for label, tags in LATENCY:
        if not b.selected(tags | {"latency"}):
            skipped[label] = na("not selected (--only)")
            continue
        try:
            commands.append(makers[label]())
        except NotAvailable as exc:
            skipped[label] = na(str(exc))
            b.say(f"  {label}: n/a: {exc}")
    return commands, skipped


def ctr_run_rm(b: Bench, backend: str) -> Command:
    require_backend(b, backend)
    argv = b.ctr_on(backend) + ["run", "--rm", "busybox", "true"]
    if backend == "native":
        # The first run builds the image; do it now so the references have their rootfs.
        b.sh(argv, timeout=120)
    return Command(f"ctr {backend}", lambda i: argv)


def python_imports(b: Bench, *modules: str) -> Command:
    label = f"python + import {', '.join(modules)}"
    try:
        b.sh([sys.executable, "-c", f"import {', '.join(modules)}"])
    except NotAvailable as exc:
        raise NotAvailable(f"cannot import {', '.join(modules)} here: {exc}") from None
    return Command(label, lambda i: [sys.executable, "-c", f"import {', '.join(modules)}"])


def unshare_chroot(b: Bench) -> Command:
    if not shutil.which("unshare"):
        raise NotAvailable("unshare is not installed (util-linux)")
    rootfs = busybox_rootfs(b)
    argv = ["unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "chroot", str(rootfs), "/bin/true"]
    return Command("unshare+chroot", lambda i: argv)


def runc_run(b: Bench) -> Command:
    """`runc run` on an OCI bundle over the same rootfs: read-only root, no terminal, a new id each run."""
    if not shutil.which("runc"):
        raise NotAvailable("runc is not installed (apt-get install runc)")
    rootfs = busybox_rootfs(b)
    bundle, state = b.tmp / "runc-bundle", b.tmp / "runc-state"
    bundle.mkdir(exist_ok=True)
    b.sh(["runc", "spec", "--bundle", str(bundle)])
    config = json.loads((bundle / "config.json").read_text())
    config["process"].update(args=["/bin/true"], terminal=False)
    config["root"] = {"path": str(rootfs), "readonly": True}
    (bundle / "config.json").write_text(json.dumps(config, indent=1))

    def delete_all() -> None:
        if state.is_dir():
            for entry in state.iterdir():
                b.quiet(["runc", "--root", str(state), "delete", "-f", entry.name])

    b.defer("runc containers", delete_all)

    def argv(i: int) -> list[str]:
        return ["runc", "--root", str(state), "run", "--bundle", str(bundle), f"ctrbench-{b.run_id}-{i}"]

    def after(i: int, failed: bool) -> None:
        if failed and (state / f"ctrbench-{b.run_id}-{i}").exists():
            b.quiet(["runc", "--root", str(state), "delete", "-f", f"ctrbench-{b.run_id}-{i}"])

    return Command("runc run", argv, after)


def lxc_execute(b: Bench) -> Command:
    lxcpath, conf = lxc_config(b)
    log = b.tmp / "lxc-execute.log"

    def argv(i: int) -> list[str]:
        return [
            "lxc-execute",
            "-P",
            str(lxcpath),
            "-n",
            f"ctrbench-x{i}",
            "-f",
            str(conf),
            "-o",
            str(log),
            "-l",
            "ERROR",
            "--",
            "/bin/true",
        ]

    def after(i: int, failed: bool) -> None:
        if failed:
            b.quiet(["lxc-stop", "-P", str(lxcpath), "-n", f"ctrbench-x{i}", "-k"])

    return Command("lxc-execute", argv, after)


def docker_run(b: Bench) -> Command:
    image = engine_image(b)
    docker_cleanup(b)
    # --network none: ctr's default on every backend, so both sides make the same container.
    argv = ["docker", "run", "--rm", "--network", "none", "--label", f"ctrbench={b.run_id}", image, "true"]
    return Command("docker run", lambda i: argv)


def measure_latency(b: Bench) -> dict[str, dict]:
    b.say("1. run --rm busybox true: setting up")
    commands, results = latency_commands(b)
    b.say(f"1. timing {', '.join(c.label for c in commands) or 'nothing'} x {b.args.runs}, round-robin")
    results.update(round_robin(b, commands, b.args.runs))
    return {label: results[label] for label, _ in LATENCY}


def ratios(latency: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for label, top, bottom in RATIOS:
        a, c = latency.get(top), latency.get(bottom)
        if is_ok(a) and is_ok(c):
            out[label] = {"status": "ok", "value": round(a["median_ms"] / c["median_ms"], 3)}
        else:
            missing = [name for name, r in ((top, a), (bottom, c)) if not is_ok(r)]
            out[label] = na(f"no median for {' and '.join(missing)}")
    return out
