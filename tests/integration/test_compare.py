"""`ctr compare` with real containers: its columns agree with `ctr explain` of a container
run with the same flags, on every backend; nothing is left behind, even after Ctrl-C;
the HTML report renders in a real browser (headless chromium).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest

from ctr.backends import REGISTRY, probe
from ctr.compare.rows import FEATURES
from ctr.spec import CAPABILITIES, DEFAULT_CAPS
from tests.conftest import backends_param

pytestmark = pytest.mark.integration

CTR = [sys.executable, "-m", "ctr.cli.main"]
FLAGS = ("--memory", "64m", "--pids-limit", "50", "--cap-drop", "NET_RAW")
NO_NET_RAW = [c for c in CAPABILITIES if c in DEFAULT_CAPS and c != "CAP_NET_RAW"]
CHROMIUM = shutil.which("chromium")


@pytest.fixture
def compare_cli(ctr_root: Path):
    """`ctr --root ROOT compare ARGS...` in a subprocess; returns CompletedProcess."""

    def run(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*CTR, "--root", str(ctr_root), "compare", *args], capture_output=True, text=True, timeout=timeout
        )

    run.argv = [*CTR, "--root", str(ctr_root), "compare"]
    return run


def _prefix() -> str:
    return f"cmp-{uuid.uuid4().hex[:8]}"


def assert_nothing_left(ctr, prefix: str) -> None:
    """No record of ctr's, and no engine container, carries a name of this compare."""
    listed = json.loads(ctr("ps", "-a", "--format", "json").stdout)
    assert [c["name"] for c in listed if c["name"].startswith(prefix)] == []
    if shutil.which("docker") and probe("docker").usable:
        out = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True).stdout
        assert [n for n in out.split() if prefix in n] == []


def _usable_or_skip(request, names) -> list[str]:
    usable = [n for n in names if probe(n).usable]
    missing = [n for n in names if n not in usable]
    if missing and request.config.getoption("--require-backends"):
        pytest.fail(f"backends required but unusable: {', '.join(missing)}")
    return usable


@backends_param()
def test_columns_agree_with_explain(ctr, compare_cli, backend):
    """The compare column of one backend is, feature by feature, what `ctr explain` says of a
    container that `ctr run -d` started with the same flags on that backend."""
    prefix = _prefix()
    r = compare_cli("--backends", backend.name, "--name", prefix, "--format", "json", *FLAGS, "busybox", "sleep", "1")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["backends"] == [backend.name]
    rows = {row["key"]: row for row in doc["rows"]}
    value = {key: row["values"][backend.name] for key, row in rows.items()}
    shown = {key: row["display"][backend.name] for key, row in rows.items()}
    assert (shown["cgroup.memory"], shown["cgroup.pids"]) == ("64m", "50")
    assert value["cgroup.memory"] == 64 << 20 and value["cgroup.pids"] == 50
    assert value["caps.effective"] == NO_NET_RAW and shown["caps.effective"] == "default 14 -NET_RAW"
    assert "CAP_NET_RAW" not in value["caps.bounding"]
    assert value["run.exit_code"] == 0
    timing = doc["results"][backend.name]["timing"]
    assert timing["total_ms"] >= 1000 and timing["create_ms"] > 0 and timing["start_ms"] > 0
    assert doc["results"][backend.name]["explain"]["keeper"]["vm_rss_kb"] > 0
    assert_nothing_left(ctr, prefix)

    # the same flags, by hand: run -d, explain, compare every feature row with that document
    name = f"{prefix}-by-hand"
    started = ctr("--backend", backend.name, "run", "-d", "--name", name, *FLAGS, "busybox", "sleep", "600")
    assert started.returncode == 0, started.stderr
    try:
        explained = ctr("explain", "--format", "json", name)
        assert explained.returncode == 0, explained.stderr
        by_hand = json.loads(explained.stdout)
    finally:
        ctr("rm", "-f", name)
    for key, _group, _label, feature in FEATURES:
        if key == "keeper.comm" and backend.name == "native":
            continue  # native's keeper is the process that started it: the compare, or this `ctr run`
        assert value[key] == feature(by_hand), key


def test_all_usable_backends_side_by_side(ctr, compare_cli, request):
    """Without --backends: a column per usable backend; the flags' effects agree on all of them."""
    usable = _usable_or_skip(request, list(REGISTRY))
    prefix = _prefix()
    r = compare_cli("--name", prefix, "--format", "json", *FLAGS, "busybox", "true")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["backends"] == usable
    rows = {row["key"]: row for row in doc["rows"]}
    for key in (
        "cgroup.memory",
        "cgroup.pids",
        "caps.effective",
        "caps.bounding",
        "namespace.pid",
        "namespace.net",
        "namespace.mnt",
        "run.exit_code",
    ):
        assert not rows[key]["differs"], (key, rows[key]["display"])
    assert set(rows["cgroup.memory"]["display"].values()) == {"64m"}
    assert doc["differences"] == [k for k, row in rows.items() if row["differs"]]
    assert_nothing_left(ctr, prefix)


def test_table_marks_and_shows_the_native_column(ctr, compare_cli):
    prefix = _prefix()
    r = compare_cli("--backends", "native", "--name", prefix, *FLAGS, "busybox", "true")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ctr compare --backends native --name ")
    cell = {" ".join(line.split()[:-1]): line.split()[-1] for line in lines if line.startswith("   ")}
    assert cell["memory limit"] == "64m" and cell["pids limit"] == "50" and cell["exit code"] == "0"
    assert any(line.split()[-3:] == ["default", "14", "-NET_RAW"] for line in lines if "effective" in line)
    assert not any(line.startswith("≠") for line in lines)  # one column: nothing to differ from
    assert_nothing_left(ctr, prefix)


def test_unknown_or_unusable_backend_is_one_line(compare_cli):
    r = compare_cli("--backends", "native,nosuch", "busybox", "true")
    assert r.returncode == 125 and r.stderr.strip().splitlines() == [
        "ctr: unknown backend 'nosuch': choose one of native, lxc, docker"
    ]
    unusable = [n for n in REGISTRY if not probe(n).usable]
    if unusable:
        r = compare_cli("--backends", unusable[0], "busybox", "true")
        assert r.returncode == 125 and len(r.stderr.strip().splitlines()) == 1
        assert f"backend {unusable[0]} is not usable" in r.stderr


def test_tty_is_refused(compare_cli):
    r = compare_cli("--backends", "native", "-t", "busybox", "true")
    assert r.returncode == 125 and "drop -t and -i" in r.stderr


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@pytest.mark.parametrize(
    "sig, code, start",
    [
        (signal.SIGINT, 130, None),
        (signal.SIGTERM, 130, None),
        # as a job in the background of a non-interactive shell starts: with SIGINT ignored
        (signal.SIGINT, 130, _ignore_sigint),
    ],
    ids=["sigint", "sigterm", "sigint-inherited-ignored"],
)
def test_interrupted_compare_removes_its_containers(ctr, compare_cli, sig, code, start):
    prefix = _prefix()
    proc = subprocess.Popen(
        [*compare_cli.argv, "--backends", "native", "--name", prefix, "busybox", "sleep", "60"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=start,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the timing run's container runs its sleep 60
            listed = json.loads(ctr("ps", "--format", "json").stdout)
            if any(c["name"] == f"{prefix}-native-run" for c in listed):
                break
            time.sleep(0.1)
        else:
            pytest.fail("the timing run never started")
        proc.send_signal(sig)
        try:
            rc = proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            pytest.fail(f"compare ignored signal {sig}: its threads wait in {_where(proc.pid)}")
        assert rc == code, proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert_nothing_left(ctr, prefix)


def _where(pid: int) -> dict[str, str]:
    """Each thread's kernel wait channel and syscall, to tell where a process hangs."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out[task.name] = f"{(task / 'wchan').read_text()} / {(task / 'syscall').read_text().split()[:2]}"
        except OSError:
            continue
    return out


# -- the HTML report in a real browser -----------------------------------------------------


class _Dom(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict] = []
        self.bars: list[tuple[str, str]] = []
        self.svgs = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-key" in a:
            self.rows.append(a)
        elif tag == "svg":
            self.svgs += 1
        elif tag == "rect" and a.get("class") == "bar":
            self.bars.append((a["data-backend"], a["data-timing"]))


def _chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_html_report_in_chromium(ctr, compare_cli, tmp_path, request):
    if CHROMIUM is None:
        if request.config.getoption("--require-backends"):
            pytest.fail("chromium is required for the HTML report test: apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    # native only: this tests the page; several backends side by side are tested above
    prefix = _prefix()
    report = tmp_path / "report.html"
    r = compare_cli(
        "--backends", "native", "--name", prefix, "--format", "html", "-o", str(report), *FLAGS, "busybox", "true"
    )
    assert r.returncode == 0, r.stderr
    assert_nothing_left(ctr, prefix)

    dumped = _chromium("--dump-dom", report.as_uri(), profile=tmp_path / "profile")
    assert dumped.returncode == 0, dumped.stderr
    dom = _Dom()
    dom.feed(dumped.stdout)
    assert len(dom.rows) == len(FEATURES) + 1 + 6  # features, exit code, six cost rows
    assert dom.svgs == 1
    assert dom.bars == [("native", t) for t in ("create", "start", "total")]

    screenshot = tmp_path / "report.png"
    shot = _chromium(
        "--screenshot=" + str(screenshot), "--window-size=1280,1600", report.as_uri(), profile=tmp_path / "profile"
    )
    assert shot.returncode == 0, shot.stderr
    assert screenshot.stat().st_size > 10_000  # a page was drawn, not a blank
    if os.environ.get("CTR_KEEP_REPORT"):  # to look at it: CTR_KEEP_REPORT=DIR
        shutil.copy(report, Path(os.environ["CTR_KEEP_REPORT"]) / "compare.html")
        shutil.copy(screenshot, Path(os.environ["CTR_KEEP_REPORT"]) / "compare.png")
