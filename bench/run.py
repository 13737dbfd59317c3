#!/usr/bin/env python3
"""ctr's benchmark (issue 7): what the layer costs on top of the runtimes it drives.

Measured on this machine in one sitting, standard library only:

  1. latency of `ctr --backend B run --rm busybox true` for native, lxc and docker,
     beside references on the same image: unshare+chroot (the kernel's floor),
     `runc run`, `lxc-execute` and `docker run`, and the floor of any Python CLI
     (the interpreter's start, that plus `import click`, and plus the docker SDK);
  2. ratios of those medians (the layer's own overhead);
  3. memory of the process that keeps one detached container (native monitor,
     containerd-shim, LXC's monitor);
  4. time to start, list and remove 10 and 50 detached containers per backend;
  5. `ctr image import` of a ~200 MB tarball against plain `tar -x`;
  6. `ctr --help` wall time and the slowest imports behind it;
  and the issue's targets, each marked met or not met.

Commands that are compared are run round-robin (A B C D A B C D ...) after one
uncounted warm-up each, so drift hits them alike; we report median and p90.
Anything that cannot run here (a backend not written yet, a missing tool) is
reported as "n/a: <reason>" and never stops the run. Every command has a timeout,
the whole run has a deadline (--max-seconds), and whatever the run starts
(containers, runc ids, lxc containers, temp dirs, a private ctr state root) is
cleaned up on the way out, on failure and on Ctrl-C too.

Usage (as root):  .venv/bin/python bench/run.py [--runs N] [--quick] [--only native,help]
Results: bench/results/latest.{md,json} plus timestamped copies (--out DIR elsewhere).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import random
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

BENCH_DIR = Path(__file__).resolve().parent
BACKENDS = ("native", "lxc", "docker")
SECTIONS = ("latency", "monitor", "scale", "image", "help")
ENGINE_IMAGE = "ctr.local/busybox:latest"  # where ctr's docker backend puts its busybox
SLEEP = ["sleep", "600"]  # what a detached container runs
CLEANUP_TIMEOUT = 15  # seconds for one cleanup command
CLEANUP_BUDGET = 60  # seconds for all cleanup commands; the sweep after them is quick

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
IMAGE_COMMANDS = ("import", "tar -x", "import + create")
# (ratio label, numerator, denominator): medians of section 1.
RATIOS = [
    ("ctr docker / docker run", "ctr docker", "docker run"),
    ("ctr lxc / lxc-execute", "ctr lxc", "lxc-execute"),
    ("ctr native / runc run", "ctr native", "runc run"),
    ("ctr native / docker run", "ctr native", "docker run"),
    ("ctr native / unshare+chroot", "ctr native", "unshare+chroot"),
]
MONITORS = [
    ("ctr native", {"native"}),
    ("ctr lxc", {"lxc"}),
    ("ctr docker", {"docker"}),
    ("lxc-start -d (LXC monitor)", {"lxc", "refs"}),
    ("docker run -d (containerd-shim)", {"docker", "refs"}),
]


class NotAvailable(Exception):
    """This measurement cannot run here; the message says why."""


class Deadline(NotAvailable):
    """--max-seconds is used up."""


class Interrupted(BaseException):
    """SIGTERM or SIGHUP: unwind like Ctrl-C, cleaning up on the way."""


def na(reason: str) -> dict:
    return {"status": "n/a", "reason": reason}


def is_ok(result: dict | None) -> bool:
    return bool(result) and result.get("status") == "ok"


def last_line(data: bytes | str | None) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else (data or "")
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def p90(values: list[float]) -> float:
    """Nearest-rank 90th percentile: a value that was actually measured."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def summarize(seconds: list[float], failures: list[str]) -> dict:
    ms = [s * 1000 for s in seconds]
    if not ms:
        return na(f"every run failed: {failures[-1]}" if failures else "no run completed")
    out = {
        "status": "ok",
        "runs": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p90_ms": round(p90(ms), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
        "failures": len(failures),
        "samples_ms": [round(v, 2) for v in ms],
    }
    if failures:
        out["last_error"] = failures[-1]
    return out


# --- the run's context: time budget, commands, cleanup ------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    tmp: Path  # everything the run creates on disk lives under here
    run_id: str  # in every name the run gives, so cleanup finds only its own things
    started: float = field(default_factory=time.monotonic)
    cleanups: dict[str, Callable[[], None]] = field(default_factory=dict)
    skippable: set[str] = field(default_factory=set)
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cache: dict = field(default_factory=dict)

    @property
    def root(self) -> Path:
        """ctr's private state root: the user's containers are never touched."""
        return self.tmp / "ctr-root"

    @property
    def ctr(self) -> list[str]:
        script = Path(sys.executable).parent / "ctr"
        base = [str(script)] if script.exists() else [sys.executable, "-m", "ctr.cli.main"]
        return base + ["--root", str(self.root)]

    def ctr_on(self, backend: str) -> list[str]:
        return self.ctr + ["--backend", backend]

    def selected(self, tags: set[str]) -> bool:
        return not self.args.only or bool(tags & self.args.only)

    def say(self, msg: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    def limit(self, timeout: float | None = None) -> float:
        """The timeout for the next command: its own bound, cut to what the deadline leaves."""
        left = self.args.max_seconds - (time.monotonic() - self.started)
        if left <= 1:
            raise Deadline(f"deadline reached (--max-seconds {self.args.max_seconds:g})")
        return min(timeout or self.args.timeout, left)

    def sh(self, argv: list[str], *, timeout: float | None = None, check: bool = True,
           stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
        """Run a command, bounded; failures become NotAvailable with the command's last line."""
        limit = self.limit(timeout)
        try:
            r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.PIPE, timeout=limit,
                               env=self.env)
        except FileNotFoundError:
            raise NotAvailable(f"{argv[0]} is not installed") from None
        except subprocess.TimeoutExpired:
            raise NotAvailable(f"{short(argv)} timed out after {limit:.0f}s") from None
        if check and r.returncode != 0:
            why = last_line(r.stderr) or last_line(r.stdout if stdout == subprocess.PIPE else b"")
            raise NotAvailable(f"{short(argv)} exited {r.returncode}: {why}")
        return r

    def quiet(self, argv: list[str], timeout: float = CLEANUP_TIMEOUT) -> subprocess.CompletedProcess | None:
        """A cleanup command: bounded, outside the deadline, never raises (None if it could not run)."""
        try:
            return subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, env=self.env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.say(f"cleanup: {short(argv)}: {exc}")
            return None

    def timed(self, argv: list[str], timeout: float | None = None) -> float:
        """Wall seconds of one successful run (stdout discarded, stderr kept for the reason)."""
        t0 = time.perf_counter()
        self.sh(argv, timeout=timeout, stdout=subprocess.DEVNULL)
        return time.perf_counter() - t0

    def defer(self, key: str, fn: Callable[[], None], skippable: bool = False) -> None:
        """Register cleanup for something about to be started; done(key) once it is gone.

        `skippable`: a backstop catches it too (one `ctr rm -f` per container: the
        docker label sweep and remove_tree's process sweep), so it may be dropped
        when the cleanup budget is spent."""
        self.cleanups[key] = fn
        if skippable:
            self.skippable.add(key)

    def done(self, key: str) -> None:
        self.cleanups.pop(key, None)

    def cleanup(self) -> None:
        """Undo everything still registered, newest first, within CLEANUP_BUDGET; never raises.

        What a hung `ctr rm -f` leaves (or what the budget cut short) is caught by the
        backstops: the docker label sweep, and remove_tree()'s sweep of processes tied
        to the run's temp dir and of native cgroups.
        """
        t0 = time.monotonic()
        for key in reversed(list(self.cleanups)):
            fn = self.cleanups.pop(key)
            if key in self.skippable and time.monotonic() - t0 > CLEANUP_BUDGET:
                continue  # a backstop later in the list catches it
            try:
                fn()
            except Exception as exc:  # keep going: the next item may still be cleanable
                self.say(f"cleanup of {key} failed: {exc}")


def short(argv: list[str]) -> str:
    """A command for a message: program name, no paths, no --root DIR."""
    words = [Path(argv[0]).name]
    for prev, word in zip(argv, argv[1:]):
        if word != "--root" and prev != "--root" and not word.startswith("/"):
            words.append(word)
    return " ".join(words[:7])


# --- shared set-up: the busybox rootfs, the engine image, backend probes --------------------


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
            from ctr.images.store import ImageStore
            from ctr.state.paths import Paths

            store = ImageStore(Paths.default(b.root))
            raw = b.tmp / "busybox-docker.tar"
            with open(raw, "wb") as f:
                store.export_docker_archive(store.get("busybox"), f)
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


# --- round-robin timing ------------------------------------------------------------------


@dataclass
class Command:
    """One command to time: argv for run i (0 is the uncounted warm-up), untimed hook after each."""

    label: str
    argv: Callable[[int], list[str]]
    after: Callable[[int, bool], None] | None = None  # (run, failed): clean up between runs
    timeout: float | None = None


MAX_FAILURES = 3  # a command that fails this often is dropped from the rotation


def round_robin(b: Bench, commands: list[Command], runs: int) -> dict[str, dict]:
    """Warm each command up once, then time them in turns: A B C A B C ..."""
    results: dict[str, dict] = {}
    active: list[Command] = []
    for cmd in commands:
        try:
            run_once(b, cmd, 0)
            active.append(cmd)
        except Deadline as exc:
            results[cmd.label] = na(str(exc))
        except NotAvailable as exc:
            results[cmd.label] = na(str(exc))
            b.say(f"  {cmd.label}: n/a: {exc}")
    samples: dict[str, list[float]] = {c.label: [] for c in active}
    failures: dict[str, list[str]] = {c.label: [] for c in active}
    stopped = ""
    for i in range(1, runs + 1):
        for cmd in list(active):
            try:
                samples[cmd.label].append(run_once(b, cmd, i))
            except Deadline as exc:
                stopped = str(exc)
                break
            except NotAvailable as exc:
                failures[cmd.label].append(str(exc))
                if len(failures[cmd.label]) >= MAX_FAILURES:
                    active.remove(cmd)
        if stopped:
            break
    for cmd in commands:
        if cmd.label in samples:
            results[cmd.label] = summarize(samples[cmd.label], failures[cmd.label])
            if stopped and is_ok(results[cmd.label]):
                results[cmd.label]["note"] = f"stopped early: {stopped}"
    return results


def run_once(b: Bench, cmd: Command, i: int) -> float:
    failed = True
    try:
        seconds = b.timed(cmd.argv(i), cmd.timeout)
        failed = False
        return seconds
    finally:
        if cmd.after:
            cmd.after(i, failed)


# --- 1. run --rm latency -----------------------------------------------------------------


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
        "python + import click": lambda: Command("python + import click",
                                                 lambda i: [sys.executable, "-c", "import click"]),
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
        return ["lxc-execute", "-P", str(lxcpath), "-n", f"ctrbench-x{i}", "-f", str(conf),
                "-o", str(log), "-l", "ERROR", "--", "/bin/true"]

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


# --- 3. memory of the process that keeps a detached container ------------------------------


def proc_memory(pid: int) -> dict:
    """VmRSS and PSS (kB) of a process, with what it is."""
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"^VmRSS:\s+(\d+)", status, re.M).group(1)) if "VmRSS" in status else 0
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    pss = int(re.search(r"^Pss:\s+(\d+)", rollup, re.M).group(1))
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    return {"pid": pid, "process": cmdline[:300] or Path(f"/proc/{pid}/comm").read_text().strip(),
            "rss_kib": rss, "pss_kib": pss}


def parent_of(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^PPid:\s+(\d+)", status, re.M).group(1))


def find_pid(doc: object) -> int | None:
    """The first positive integer under a key called pid/Pid anywhere in a JSON document."""
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key.lower() == "pid" and isinstance(value, int) and value > 0:
                return value
        for value in doc.values():
            found = find_pid(value)
            if found:
                return found
    elif isinstance(doc, list):
        for value in doc:
            found = find_pid(value)
            if found:
                return found
    return None


def ctr_container_pid(b: Bench, backend: str, name: str) -> int:
    """PID 1 of a ctr container, host view: `ctr inspect`, else its record, else the engine."""
    r = b.sh(b.ctr_on(backend) + ["inspect", name], check=False)
    if r.returncode == 0:
        try:
            doc = json.loads(r.stdout)
            doc = doc[0] if isinstance(doc, list) and doc else doc
            pid = (doc.get("state") or {}).get("pid") or find_pid(doc)  # schema 1 has state.pid
            if pid:
                return pid
        except (ValueError, AttributeError):
            pass
    record = b.root / "containers" / name / "record.json"
    if record.exists():
        pid = find_pid(json.loads(record.read_text()))
        if pid:
            return pid
    if backend == "docker":
        r = b.sh(["docker", "inspect", "--format", "{{.State.Pid}}", name], check=False)
        if r.returncode == 0 and r.stdout.strip().isdigit() and int(r.stdout) > 0:
            return int(r.stdout)
    raise NotAvailable(f"cannot find PID 1 of container {name}: `ctr inspect` gave no pid ({last_line(r.stderr)})")


def keeper_memory(b: Bench, pid1: int, settle: float) -> dict:
    """Memory of PID 1's parent: the process that exists only to keep the container."""
    time.sleep(settle)  # let the keeper finish starting up before reading its memory
    keeper = parent_of(pid1)
    if keeper <= 1:
        return {"status": "ok", "rss_kib": 0, "pss_kib": 0, "process": "none: PID 1 is reparented to init",
                "container_pid": pid1}
    return {"status": "ok", **proc_memory(keeper), "container_pid": pid1}


def monitor_ctr(b: Bench, backend: str, settle: float) -> dict:
    require_backend(b, backend)
    name = f"ctrbench-{b.run_id}-mon-{backend}"
    key = f"ctr {backend} container {name}"
    b.defer(key, lambda: b.quiet(b.ctr_on(backend) + ["rm", "-f", name]), skippable=True)
    if backend == "docker":
        docker_cleanup(b)
    try:
        b.sh(b.ctr_on(backend) + ["run", "-d", "--name", name, "-l", f"ctrbench={b.run_id}", "busybox", *SLEEP],
             timeout=120)
        return keeper_memory(b, ctr_container_pid(b, backend, name), settle)
    finally:
        r = b.quiet(b.ctr_on(backend) + ["rm", "-f", name], timeout=30)
        if r and r.returncode == 0:
            b.done(key)


def monitor_lxc(b: Bench, settle: float) -> dict:
    lxcpath, conf = lxc_config(b)
    name = f"ctrbench-{b.run_id}-mon"
    stop = ["lxc-stop", "-P", str(lxcpath), "-n", name, "-k"]
    try:
        b.sh(["lxc-start", "-P", str(lxcpath), "-n", name, "-f", str(conf), "-d",
              "-o", str(b.tmp / "lxc-start.log"), "-l", "ERROR", "--", "/bin/sleep", "600"])
        r = b.sh(["lxc-info", "-P", str(lxcpath), "-n", name, "-p", "-H"])
        return keeper_memory(b, int(r.stdout), settle)
    finally:
        b.quiet(stop)


def monitor_docker(b: Bench, settle: float) -> dict:
    image = engine_image(b)
    docker_cleanup(b)
    r = b.sh(["docker", "run", "-d", "--rm", "--network", "none", "--label", f"ctrbench={b.run_id}", image, *SLEEP])
    cid = r.stdout.decode().strip()
    try:
        r = b.sh(["docker", "inspect", "--format", "{{.State.Pid}}", cid])
        return keeper_memory(b, int(r.stdout), settle)
    finally:
        b.quiet(["docker", "rm", "-f", cid])


def measure_monitors(b: Bench) -> dict[str, dict]:
    settle = 0.3 if b.args.quick else 1.0
    makers = {
        "ctr native": lambda: monitor_ctr(b, "native", settle),
        "ctr lxc": lambda: monitor_ctr(b, "lxc", settle),
        "ctr docker": lambda: monitor_ctr(b, "docker", settle),
        "lxc-start -d (LXC monitor)": lambda: monitor_lxc(b, settle),
        "docker run -d (containerd-shim)": lambda: monitor_docker(b, settle),
    }
    out = {}
    for label, tags in MONITORS:
        if not b.selected(tags | {"monitor"}):
            out[label] = na("not selected (--only)")
            continue
        b.say(f"3. keeper memory: {label}")
        try:
            out[label] = makers[label]()
        except (NotAvailable, OSError, ValueError, AttributeError) as exc:
            out[label] = na(str(exc))
            b.say(f"  {label}: n/a: {exc}")
    return out


# --- 4. scale: many detached containers ---------------------------------------------------


def measure_scale(b: Bench) -> dict[str, dict]:
    out = {}
    for backend in BACKENDS:
        if not b.selected({backend, "scale"}):
            out[backend] = na("not selected (--only)")
            continue
        try:
            require_backend(b, backend)
            out[backend] = scale_backend(b, backend)
        except NotAvailable as exc:
            out[backend] = na(str(exc))
            b.say(f"  scale {backend}: n/a: {exc}")
    return out


def scale_backend(b: Bench, backend: str) -> dict:
    if backend == "docker":
        docker_cleanup(b)
    result: dict = {"status": "ok"}
    for n in b.args.scale:
        check_memory(n)
        b.say(f"4. scale {backend}: {n} detached containers")
        result[str(n)] = scale_round(b, backend, n)
    small, large = (result[str(n)] for n in (b.args.scale[0], b.args.scale[-1]))
    growth = {k: round(large[k] / small[k], 2) if small[k] and large[k] else None
              for k in ("start_per_container_ms", "rm_per_container_ms", "ps_ms")}
    result["growth"] = {
        "from": b.args.scale[0], "to": b.args.scale[-1], **growth,
        # Per-container cost that grows less than 1.5x from the small count to the large one is linear.
        "linear": all(g is not None and g <= 1.5 for g in (growth["start_per_container_ms"], growth["rm_per_container_ms"])),
        "no_failure": small["failures"] == 0 and large["failures"] == 0,
    }
    return result


def scale_round(b: Bench, backend: str, n: int) -> dict:
    """Start n detached containers one after the other, list them, remove them one by one."""
    ctr = b.ctr_on(backend)
    names = [f"ctrbench-{b.run_id}-{backend[0]}{n}-{i}" for i in range(n)]
    for name in names:  # before starting: a run killed half-way is still cleaned up
        b.defer(f"ctr {backend} container {name}", lambda name=name: b.quiet(ctr + ["rm", "-f", name]), skippable=True)
    started, errors, start_s, ps = [], [], 0.0, []
    removed, rm_s = 0, 0.0
    try:
        for name in names:
            try:
                start_s += b.timed(ctr + ["run", "-d", "--name", name, "-l", f"ctrbench={b.run_id}", "busybox", *SLEEP])
                started.append(name)
            except Deadline:
                raise
            except NotAvailable as exc:
                errors.append(f"run -d: {exc}")
                if not started:  # the very first one failed: this backend cannot do it (yet)
                    raise NotAvailable(f"ctr run -d: {exc}") from None
                if len(errors) >= MAX_FAILURES:
                    break
        for _ in range(3):
            try:
                ps.append(b.timed(ctr + ["ps"]))
            except Deadline:
                raise
            except NotAvailable as exc:
                errors.append(f"ps: {exc}")
                break
    finally:
        for name in started:
            try:
                rm_s += b.timed(ctr + ["rm", "-f", name])
                removed += 1
                b.done(f"ctr {backend} container {name}")
            except NotAvailable as exc:
                errors.append(f"rm -f: {exc}")
                if "timed out" in str(exc) or isinstance(exc, Deadline):
                    break  # the rest would hang as well: the final cleanup and sweep take them
    return {
        "containers": n,
        "started": len(started),
        "removed": removed,
        "failures": len(errors),
        "errors": errors[:3],
        "start_total_s": round(start_s, 3),
        "start_per_container_ms": round(1000 * start_s / len(started), 1) if started else None,
        "ps_ms": round(1000 * statistics.median(ps), 1) if ps else None,
        "rm_total_s": round(rm_s, 3),
        "rm_per_container_ms": round(1000 * rm_s / removed, 1) if removed else None,
    }


def check_memory(n: int, per_container_mib: int = 40) -> None:
    """Refuse a count that could push the machine into swap or the OOM killer."""
    meminfo = Path("/proc/meminfo").read_text()
    available = int(re.search(r"^MemAvailable:\s+(\d+)", meminfo, re.M).group(1)) >> 10
    if available < 2 * n * per_container_mib:
        raise NotAvailable(f"{n} containers need about {n * per_container_mib} MiB; only {available} MiB available")


# --- 5. image import against tar -x -------------------------------------------------------


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
        return ["sh", "-c", f"{ctr} image import {shlex.quote(str(tarball))} --name {ref(-1 - i)} >/dev/null "
                            f"&& {ctr} create --name {container(i)} {ref(-1 - i)} /bin/sh"]

    def remove_container_and_image(i: int, failed: bool) -> None:
        b.quiet(b.ctr + ["rm", "-f", container(i)])
        remove_image(-1 - i, failed)

    def tar_argv(i: int) -> list[str]:
        shutil.rmtree(extract_to, ignore_errors=True)
        extract_to.mkdir()
        return ["tar", "-xf", str(tarball), "-C", str(extract_to)]

    runs = min(b.args.runs, 5)  # each run moves the whole tarball twice; five are plenty
    b.say(f"5. timing ctr image import and tar -x of {tarball.stat().st_size >> 20} MB x {runs}, round-robin")
    results = round_robin(b, [
        Command("import", lambda i: b.ctr + ["image", "import", str(tarball), "--name", ref(i)], remove_image, timeout=600),
        Command("tar -x", tar_argv, lambda i, failed: shutil.rmtree(extract_to, ignore_errors=True), timeout=600),
        Command("import + create", import_and_create, remove_container_and_image, timeout=600),
    ], runs)
    results["tarball_mb"] = round(tarball.stat().st_size / (1 << 20), 1)
    tarball.unlink()
    return results


# --- 6. ctr --help ------------------------------------------------------------------------


def measure_help(b: Bench) -> dict:
    if not b.selected({"help"}):
        return {"wall": na("not selected (--only)"), "importtime": na("not selected (--only)")}
    b.say(f"6. timing ctr --help x {b.args.runs}")
    wall = round_robin(b, [Command("ctr --help", lambda i: b.ctr + ["--help"])], b.args.runs)["ctr --help"]
    return {"wall": wall, "importtime": import_times(b)}


def import_times(b: Bench) -> dict:
    """`python -X importtime` of `ctr --help`: the ten imports with the largest cumulative time."""
    script = Path(sys.executable).parent / "ctr"
    argv = [sys.executable, "-X", "importtime"] + ([str(script)] if script.exists() else ["-m", "ctr.cli.main"])
    try:
        r = b.sh(argv + ["--help"], stdout=subprocess.DEVNULL)
    except NotAvailable as exc:
        return na(str(exc))
    rows = []
    for line in r.stderr.decode().splitlines():
        m = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            rows.append({"module": m.group(4), "self_us": int(m.group(1)), "cumulative_us": int(m.group(2)),
                         "depth": len(m.group(3)) // 2})
    top_level_us = sum(row["cumulative_us"] for row in rows if row["depth"] == 0)
    rows.sort(key=lambda row: row["cumulative_us"], reverse=True)
    return {"status": "ok", "total_ms": round(top_level_us / 1000, 1), "top": rows[:10]}


# --- the machine ---------------------------------------------------------------------------


def first_line(b: Bench, argv: list[str]) -> str:
    """The first line a command prints (a version banner), or n/a and why."""
    try:
        r = b.sh(argv, timeout=15, check=argv[0] != "busybox")  # bare `busybox` prints its banner, exits 1
    except NotAvailable as exc:
        return f"n/a: {exc}"
    lines = (r.stdout or r.stderr).decode(errors="replace").strip().splitlines()
    return lines[0].strip() if lines else "n/a: printed nothing"


def load_average() -> str:
    """1, 5 and 15 minute load: other work on the machine shows up as noise in every number."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cgroup_version() -> str:
    mounts = [line.split() for line in Path("/proc/mounts").read_text().splitlines()]
    if any(m[1] == "/sys/fs/cgroup" and m[2] == "cgroup2" for m in mounts):
        return "v2 (unified)"
    if any(m[2] == "cgroup2" for m in mounts):
        return "v1 (hybrid: v1 controllers, v2 at /sys/fs/cgroup/unified)"
    return "v1"


def machine(b: Bench) -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.*)$", cpuinfo, re.M)
    meminfo = Path("/proc/meminfo").read_text()
    mem_kb = int(re.search(r"^MemTotal:\s+(\d+)", meminfo, re.M).group(1))
    os_release = Path("/etc/os-release").read_text() if Path("/etc/os-release").exists() else ""
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)', os_release, re.M)
    return {
        "cpu": model.group(1).strip() if model else platform.processor() or "unknown",
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / (1 << 20), 1),
        "os": pretty.group(1) if pretty else "unknown",
        "kernel": platform.release(),
        "cgroup": cgroup_version(),
        "python": platform.python_version(),
        "ctr": first_line(b, b.ctr + ["--version"]),
        "runc": first_line(b, ["runc", "--version"]),
        "lxc": first_line(b, ["lxc-execute", "--version"]),
        "docker client": first_line(b, ["docker", "version", "--format", "{{.Client.Version}}"]),
        "docker engine": first_line(b, ["docker", "version", "--format", "{{.Server.Version}}"]),
        "busybox": first_line(b, ["busybox"]),
        "python bytecode": (f"as the environment has it (PYTHONDONTWRITEBYTECODE={os.environ.get('PYTHONDONTWRITEBYTECODE', '')})"
                            if b.args.no_bytecode_cache else "cached in a private PYTHONPYCACHEPREFIX"),
        "load average at start": load_average(),
    }


# --- targets and the report ---------------------------------------------------------------


def targets(report: dict) -> list[dict]:
    """The issue's targets, each with its value and met / not met (or n/a and why)."""
    rows = []

    def add(name: str, value: float | None, op: str, limit: float, why: str = "") -> None:
        if value is None:
            rows.append({"target": name, "limit": f"{op} {limit:g}", **na(why or "not measured")})
        else:
            met = value <= limit if op == "<=" else value < limit
            rows.append({"target": name, "limit": f"{op} {limit:g}", "status": "ok", "value": value, "met": met})

    for label, limit in (("ctr native / runc run", 1.5), ("ctr native / docker run", 0.25),
                         ("ctr docker / docker run", 1.10), ("ctr lxc / lxc-execute", 1.5)):
        r = report["ratios"][label]
        add(label, r.get("value"), "<=", limit, r.get("reason", ""))

    mon = report["monitor"]
    native = mon["ctr native"]
    for other, op, limit in (("lxc-start -d (LXC monitor)", "<=", 1.0), ("docker run -d (containerd-shim)", "<", 1.0)):
        ref = mon[other]
        value = why = None
        if is_ok(native) and is_ok(ref) and ref["rss_kib"]:
            value = round(native["rss_kib"] / ref["rss_kib"], 3)
        else:
            why = native.get("reason") or ref.get("reason") or "no keeper RSS"
        add(f"native monitor RSS / {other.split('(')[1].rstrip(')')} RSS", value, op, limit, why)

    imp = report["image"]
    if is_ok(imp.get("import")) and is_ok(imp.get("tar -x")):
        add("ctr image import / tar -x", round(imp["import"]["median_ms"] / imp["tar -x"]["median_ms"], 3), "<=", 1.3)
    else:
        add("ctr image import / tar -x", None, "<=", 1.3,
            (imp.get("import") or {}).get("reason") or (imp.get("tar -x") or {}).get("reason", ""))

    wall = report["help"]["wall"]
    add("ctr --help (ms, median)", wall.get("median_ms"), "<", 100, wall.get("reason", ""))

    for backend, r in report["scale"].items():
        name = f"{backend}: containers linear, no failure"
        if not is_ok(r):
            rows.append({"target": name, "limit": "growth <= 1.5, 0 failures", **na(r.get("reason", ""))})
            continue
        g = r["growth"]
        rows.append({"target": f"{backend}: {g['from']} -> {g['to']} containers linear, no failure",
                     "limit": "growth <= 1.5, 0 failures", "status": "ok",
                     "value": f"start x{g['start_per_container_ms']}, rm x{g['rm_per_container_ms']}",
                     "met": g["linear"] and g["no_failure"]})
    return rows


def fmt(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [f"# ctr benchmark, {report['started']}", ""]
    if report.get("interrupted"):
        lines += ["**Interrupted: partial results.**", ""]
    lines += ["| machine | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in m.items()] + [""]
    a = report["args"]
    lines += [f"Runs per command: {a['runs']} (one uncounted warm-up each), round-robin; "
              f"whole run {report['duration_s']:.0f} s{' (--quick)' if a['quick'] else ''}"
              f"{', --only ' + ','.join(a['only']) if a['only'] else ''}.", ""]

    lines += ["## 1. `run --rm busybox true`", "", "| command | median ms | p90 ms | min ms | runs | note |",
              "|---|---:|---:|---:|---:|---|"]
    for label, r in report["latency"].items():
        lines.append(row(label, r))
    lines += ["", "## 2. Overhead ratios (medians)", "", "| ratio | value |", "|---|---:|"]
    for label, r in report["ratios"].items():
        lines.append(f"| {label} | {fmt(r['value'], 2) if is_ok(r) else 'n/a: ' + cell(r['reason'])} |")

    lines += ["", "## 3. Memory of the process keeping one detached `sleep` container", "",
              "| container made by | keeper process | VmRSS MiB | PSS MiB |", "|---|---|---:|---:|"]
    for label, r in report["monitor"].items():
        if is_ok(r):
            process = " ".join(Path(w).name if w.startswith("/") else w for w in r["process"].split())
            lines.append(f"| {label} | `{cell(process[:80])}` | {r['rss_kib'] / 1024:.1f} | {r['pss_kib'] / 1024:.1f} |")
        else:
            lines.append(f"| {label} | n/a: {cell(r['reason'])} | | |")

    lines += ["", "## 4. Scale: detached containers (`run -d`, `ps`, `rm -f`)", "",
              "| backend | containers | start total s | start ms/container | ps ms | rm total s | rm ms/container | failures |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    growth_lines = []
    for backend, r in report["scale"].items():
        if not is_ok(r):
            lines.append(f"| {backend} | n/a: {cell(r['reason'])} | | | | | | |")
            continue
        for key, s in r.items():
            if key.isdigit():
                lines.append(f"| {backend} | {s['containers']} | {s['start_total_s']:.2f} | {fmt(s['start_per_container_ms'])} "
                             f"| {fmt(s['ps_ms'])} | {s['rm_total_s']:.2f} | {fmt(s['rm_per_container_ms'])} | {s['failures']}"
                             f"{': ' + cell(s['errors'][0]) if s['errors'] else ''} |")
        g = r["growth"]
        growth_lines.append(f"- {backend}, {g['from']} -> {g['to']}: start per container x{g['start_per_container_ms']}, "
                            f"rm per container x{g['rm_per_container_ms']}, ps x{g['ps_ms']}: "
                            f"{'linear' if g['linear'] else 'NOT linear'}, {'no failure' if g['no_failure'] else 'FAILURES'}")
    lines += [""] + growth_lines

    img = report["image"]
    lines += ["", f"## 5. Image import ({img.get('tarball_mb', '?')} MB root-filesystem tarball)", "",
              "| command | median ms | p90 ms | min ms | runs | note |", "|---|---:|---:|---:|---:|---|",
              row("ctr image import", img["import"]), row("tar -x", img["tar -x"]),
              row("ctr image import, then create a container", img["import + create"]), "",
              "Import stores the layer as it came (hashed and checked); the first container made from",
              "the image unpacks it, hence the third row: what a user waits for before a first run."]

    h = report["help"]
    lines += ["", "## 6. `ctr --help`", "", "| command | median ms | p90 ms | min ms | runs | note |",
              "|---|---:|---:|---:|---:|---|", row("ctr --help", h["wall"]), ""]
    it = h["importtime"]
    if is_ok(it):
        lines += [f"`python -X importtime`: {it['total_ms']} ms of imports; top 10 by cumulative time:", "",
                  "| module | cumulative ms | self ms |", "|---|---:|---:|"]
        lines += [f"| {'&nbsp;' * 2 * t['depth']}{t['module']} | {t['cumulative_us'] / 1000:.1f} | {t['self_us'] / 1000:.1f} |"
                  for t in it["top"]]
    else:
        lines.append(f"importtime: n/a: {cell(it['reason'])}")

    lines += ["", "## Targets", "", "| target | limit | value | result |", "|---|---|---:|---|"]
    for t in report["targets"]:
        if is_ok(t):
            value = t["value"] if isinstance(t["value"], str) else f"{t['value']:g}"
            lines.append(f"| {t['target']} | {t['limit']} | {value} | {'met' if t['met'] else '**not met**'} |")
        else:
            lines.append(f"| {t['target']} | {t['limit']} | | n/a: {cell(t['reason'])} |")
    return "\n".join(lines) + "\n"


def cell(text: object) -> str:
    """Text safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def row(label: str, r: dict) -> str:
    if not is_ok(r):
        return f"| {label} | | | | | n/a: {cell(r['reason'])} |"
    note = "; ".join(x for x in (f"{r['failures']} failed: {cell(r.get('last_error', ''))}" if r["failures"] else "",
                                 r.get("note", "")) if x)
    return f"| {label} | {fmt(r['median_ms'])} | {fmt(r['p90_ms'])} | {fmt(r['min_ms'])} | {r['runs']} | {note} |"


def write_results(report: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(report["started_epoch"]))
    texts = {"json": json.dumps(report, indent=1) + "\n", "md": markdown(report)}
    written = []
    for ext, text in texts.items():
        for name in (f"{stamp}.{ext}", f"latest.{ext}"):
            tmp = out / f".{name}.tmp"
            tmp.write_text(text)
            os.replace(tmp, out / name)
            written.append(out / name)
    return written


# --- main --------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, help="timed runs per command (default 20; 3 with --quick)")
    p.add_argument("--quick", action="store_true", help="tiny counts: 3 runs, 2 and 4 containers, an 8 MB tarball")
    p.add_argument("--max-seconds", type=float, default=1200, help="deadline for the whole run (default 1200)")
    p.add_argument("--timeout", type=float, default=60, help="bound on any one command, seconds (default 60)")
    p.add_argument("--scale", help="container counts for section 4, comma-separated (default 10,50)")
    p.add_argument("--only", help=f"comma-separated tags: any of {', '.join(BACKENDS + SECTIONS)}, refs; "
                                   "runs every measurement carrying one of them (default: all)")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results", help="where results go (default bench/results)")
    p.add_argument("--tmpdir", type=Path, default=None, help="where the run's temp dir is made (default $TMPDIR or /tmp)")
    p.add_argument("--no-bytecode-cache", action="store_true",
                   help="run ctr with the environment as it is (default: a private PYTHONPYCACHEPREFIX, "
                        "so .pyc files are cached even where PYTHONDONTWRITEBYTECODE is set)")
    args = p.parse_args(argv)
    args.runs = args.runs or (3 if args.quick else 20)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    args.scale = sorted(int(n) for n in (args.scale or ("2,4" if args.quick else "10,50")).split(","))
    known = set(BACKENDS + SECTIONS + ("refs",))
    args.only = {t.strip() for t in args.only.split(",") if t.strip()} if args.only else set()
    if args.only - known:
        p.error(f"unknown --only tag(s) {', '.join(sorted(args.only - known))}: choose from {', '.join(sorted(known))}")
    return args


def empty_report(args: argparse.Namespace) -> dict:
    pending = na("not run")
    return {
        "schema": 1,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "started_epoch": time.time(),
        "duration_s": 0.0,
        "interrupted": False,
        "args": {"runs": args.runs, "quick": args.quick, "max_seconds": args.max_seconds, "timeout": args.timeout,
                 "scale": args.scale, "only": sorted(args.only)},
        "machine": {},
        "latency": {label: pending for label, _ in LATENCY},
        "ratios": {},
        "monitor": {label: pending for label, _ in MONITORS},
        "scale": {backend: pending for backend in BACKENDS},
        "image": {label: pending for label in IMAGE_COMMANDS},
        "help": {"wall": pending, "importtime": pending},
        "targets": [],
    }


def raise_interrupted(signum: int, _frame) -> None:
    raise Interrupted(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0:
        print("bench: run as root (containers need it)", file=sys.stderr)
        return 2
    report = empty_report(args)
    tmp = Path(tempfile.mkdtemp(prefix="ctr-bench-", dir=args.tmpdir))
    b = Bench(args, tmp, run_id=f"{os.getpid()}{random.randrange(1000):03d}")
    if not args.no_bytecode_cache:
        # ctr is Python: without cached bytecode every run recompiles every module (tens of ms).
        # A private cache dir measures what an installed ctr does without writing into the tree.
        b.env.pop("PYTHONDONTWRITEBYTECODE", None)
        b.env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    b.defer("temp dir", lambda: remove_tree(b, tmp))
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, raise_interrupted)
    try:
        b.say(f"bench: private state root {b.root}; results to {args.out}")
        report["machine"] = machine(b)
        report["latency"] = measure_latency(b)
        report["monitor"] = measure_monitors(b)
        report["scale"] = measure_scale(b)
        report["image"] = measure_image(b)
        report["help"] = measure_help(b)
    except (KeyboardInterrupt, Interrupted):
        report["interrupted"] = True
        for section in ("latency", "monitor", "scale", "image", "help"):
            for key, value in report[section].items():
                if value.get("reason") == "not run":
                    report[section][key] = na("interrupted before it ran")
        b.say("interrupted: cleaning up, then writing what was measured")
    finally:
        # A second Ctrl-C must not cut the cleanup short; every step in it is bounded.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        b.say("cleaning up")
        b.cleanup()
    report["ratios"] = ratios(report["latency"])
    report["targets"] = targets(report)
    report["duration_s"] = round(time.monotonic() - b.started, 1)
    if report["machine"]:
        report["machine"]["load average at end"] = load_average()
    for path in write_results(report, args.out):
        b.say(f"wrote {path}")
    print(markdown(report))
    return 130 if report["interrupted"] else 0


def remove_tree(b: Bench, path: Path) -> None:
    """The last cleanup step: whatever is still tied to the temp dir goes, then the dir.

    By then every container was asked to go (`ctr rm -f`, `docker rm -f`, `lxc-stop`,
    `runc delete`); this catches what a hung or missing command left behind, so a
    keeper or a container never outlives the run and no cgroup or mount is left.
    """
    sweep_processes(b, path)
    destroy_native_cgroups(b, path / "ctr-root")
    mounted = [p for p in mount_points() if p.startswith(f"{path}/")]
    for point in sorted(mounted, key=len, reverse=True):
        b.quiet(["umount", "-l", point])
    if any(p.startswith(f"{path}/") for p in mount_points()):
        b.say(f"left {path} in place: mounts under it could not be removed")
        return
    shutil.rmtree(path, ignore_errors=True)


def mount_points() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def tied_to(pid: int, path: str, my_mnt_ns: str) -> bool:
    """Whether process `pid` belongs to this run: its command line, an open file or a
    mount of its own namespace names the run's (uniquely named) temp dir."""
    proc = Path(f"/proc/{pid}")
    if path in (proc / "cmdline").read_bytes().decode(errors="replace"):
        return True
    for link in [proc / "cwd", proc / "root", *(proc / "fd").iterdir()]:
        try:
            if os.readlink(link).startswith(path):
                return True
        except OSError:
            continue
    # A container's own mounts (the overlay on the run's layers) show only in its namespace;
    # in ours, every process would list any mount we have, so only other namespaces count.
    return os.readlink(proc / "ns/mnt") != my_mnt_ns and path in (proc / "mountinfo").read_text()


def sweep_processes(b: Bench, path: Path) -> None:
    """SIGKILL every process still tied to the run's temp dir, then wait (bounded) for them."""
    spared = {0, 1, os.getpid()}
    pid = os.getpid()
    while pid > 1:  # never ourselves or whoever started us
        pid = parent_of(pid)
        spared.add(pid)
    my_mnt_ns = os.readlink("/proc/self/ns/mnt")
    victims = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in spared:
            try:
                if tied_to(int(entry.name), str(path), my_mnt_ns):
                    victims[int(entry.name)] = start_time(int(entry.name))
            except OSError:
                continue  # gone meanwhile, or a kernel thread
    for pid, started in victims.items():
        if start_time(pid) == started:  # the same process, not a reused pid
            b.say(f"cleanup: killing leftover pid {pid} ({Path(f'/proc/{pid}/comm').read_text().strip()})")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(start_time(pid) == s for pid, s in victims.items()):
        time.sleep(0.1)


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat, to tell a process from a later one with the same pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def destroy_native_cgroups(b: Bench, root: Path) -> None:
    """Remove the cgroups of native and lxc containers whose records are still there (their rm failed)."""
    records = list((root / "containers").glob("*/record.json"))
    names = set()
    for record in records:
        try:
            doc = json.loads(record.read_text())
        except (OSError, ValueError):
            continue
        if doc.get("backend") in ("native", "lxc") and doc.get("cgroup"):
            names.add(doc["cgroup"])
    if not names:
        return
    try:
        from ctr.errors import NotFound
        from ctr.native.cgroups import cgroup_driver

        driver = cgroup_driver()
    except Exception as exc:
        b.say(f"cleanup: cannot load ctr's cgroup driver to remove {', '.join(sorted(names))}: {exc}")
        return
    for name in sorted(names):
        try:
            driver.open(name).destroy()
            b.say(f"cleanup: removed leftover cgroup {name}")
        except NotFound:
            pass
        except Exception as exc:
            b.say(f"cleanup: cannot remove cgroup {name}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
