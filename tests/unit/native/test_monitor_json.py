"""ctr-monitor, the compiled monitor, writes the log exactly as ctr.state.logs does.

Each test runs the real binary with a writer process as its child, as a detached
container's PID 1 is: a small Python wrapper forks the writer and then execs
ctr-monitor, which logs the writer's output, reaps it and execs a finisher that
records the arguments and fds it was given. The writer waits until each chunk
has been read (FIONREAD on its end of the pipe is 0) before it writes the next,
so the monitor's reads, and hence the log's entries, are known in advance.
"""

from __future__ import annotations

import calendar
import errno
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctr.native import monitor
from ctr.state import logs

STAMP = re.compile(rb'"time": "(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z)"')

# Forks the writer (argv[1] is the JSON config's path), then becomes ctr-monitor.
WRAPPER = r"""
import fcntl, json, os, signal, struct, sys, termios, time
cfg = json.load(open(sys.argv[1]))
if cfg["tty"]:
    master, slave = os.openpty()
    ends = {"stdout": (master, slave)}
else:
    ends = {s: os.pipe() for s in ("stdout", "stderr")}
pid = os.fork()
if pid == 0:
    for stream, (r, w) in ends.items():
        os.close(r)
    def drained(fd):
        deadline = time.monotonic() + 10
        while struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0" * 4))[0]:
            assert time.monotonic() < deadline, "the monitor does not read"
            time.sleep(0.001)
    for kind, arg, data in cfg["steps"]:
        if kind == "wait":
            with open(arg) as fifo:  # blocks until the test opens the other end
                fifo.read()
            continue
        w = ends[kind][1]
        data = bytes.fromhex(data)
        while data:
            data = data[os.write(w, data):]
        if arg:  # the next write must land in a read of its own
            drained(w)
    if cfg.get("signal"):
        os.kill(os.getpid(), cfg["signal"])
    os._exit(cfg.get("code", 0))
args = [cfg["binary"], "--pid", str(pid), "--log", cfg["log"]]
for stream, (r, w) in ends.items():
    os.close(w)
    os.set_inheritable(r, True)
    args += ["--tty" if cfg["tty"] else "--" + stream, str(r)]
os.execv(cfg["binary"], args + ["--"] + cfg["finisher"])
"""

# Stands in for ctr.backends.native.finish: records what it was given, reaps the writer.
FINISHER = r"""
import json, os, sys
fds = sorted(int(f) for f in os.listdir("/proc/self/fd"))
children = open(f"/proc/self/task/{os.getpid()}/children").read().split()
states = [open(f"/proc/{c}/stat").read().rsplit(")", 1)[1].split()[0] for c in children]
json.dump({"argv": sys.argv[2:], "fds": fds, "cwd": os.getcwd(), "children": states}, open(sys.argv[1], "w"))
for _ in children:
    os.wait()
"""


@pytest.fixture
def binary(request: pytest.FixtureRequest) -> str:
    path = monitor.binary()
    if path is None:
        message = f"{monitor.BINARY} is not built (no C compiler at install?): pip install -e . builds it"
        if request.config.getoption("--require-backends"):
            pytest.fail(message)
        pytest.skip(message)
    return path


class Run:
    def __init__(self, proc: subprocess.CompletedProcess, log: Path, result: Path) -> None:
        self.returncode = proc.returncode
        self.stderr = proc.stderr
        self.lines = log.read_bytes().splitlines(keepends=True) if log.exists() else []
        self.entries = logs.read(log)
        self.finisher = json.loads(result.read_text()) if result.exists() else None

    def data(self, stream: str | None = None) -> bytes:
        return b"".join(e.data for e in self.entries if stream in (None, e.stream))


def run_monitor(
    binary: str,
    tmp_path: Path,
    steps,
    *,
    code: int = 0,
    sig: int = 0,
    tty: bool = False,
    finisher: list[str] | None = None,
    background: bool = False,
):
    """steps: (stream, bytes) written as a read of its own; (stream, bytes, False) written
    without waiting; ("wait", fifo, b"") blocks the writer until the test opens `fifo`."""
    log, result = tmp_path / "ctr-json.log", tmp_path / "finished.json"
    cfg = {
        "binary": binary,
        "log": str(log),
        "tty": tty,
        "code": code,
        "signal": sig,
        "steps": [
            (s[0], s[2] if len(s) > 2 else True, s[1].hex()) if s[0] != "wait" else ("wait", str(s[1]), "")
            for s in steps
        ],
        "finisher": finisher or [sys.executable, "-c", FINISHER, str(result), "--name", "x"],
    }
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    cmd = [sys.executable, "-c", WRAPPER, str(tmp_path / "cfg.json")]
    if background:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return proc, lambda p: Run(
            subprocess.CompletedProcess(cmd, p.wait(timeout=30), b"", p.stderr.read()), log, result
        )
    return Run(subprocess.run(cmd, capture_output=True, timeout=60), log, result)


def python_lines(chunks: list[tuple[str, bytes]]) -> list[bytes]:
    """What the Python loop writes for the same reads: logs.encode of each one."""
    return [line for stream, data in chunks for line in logs.encode(stream, data).splitlines(keepends=True)]


def without_time(lines: list[bytes]) -> list[bytes]:
    return [STAMP.sub(b'"time": "T"', line) for line in lines]


# -- the format -----------------------------------------------------------------------------

TRICKY = [
    ("stdout", b"plain line\n"),
    ("stdout", b'quotes " and \\ backslash and / slash\n'),
    ("stderr", bytes(range(0x20)) + b"\x7f end\n"),  # every control character, \n and \r among them
    ("stdout", b"crlf\r\nlone cr\rform feed \x0c and vertical tab \x0b stay\n"),
    ("stdout", b"no newline at the end of this read"),
    ("stdout", "é ✓ 😀 \u2028 \x85 \ufeff ok\n".encode()),
    # invalid: stray continuation, bytes never valid, overlong, surrogate, past U+10FFFF,
    # truncated 3- and 4-byte sequences followed by ASCII
    ("stderr", b"\x80 \xff\xfe \xc0\xaf \xe0\x80\xaf \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82x \xf0\x9f\x98y\n"),
    ("stdout", b"\n"),
    ("stdout", b"\r\n"),
    ("stdout", b"a\nb\n\nc"),
]


def test_each_read_logs_as_logs_encode(binary, tmp_path):
    run = run_monitor(binary, tmp_path, TRICKY)
    assert run.returncode == 0, run.stderr
    assert without_time(run.lines) == without_time(python_lines(TRICKY))
    assert all(line.isascii() for line in run.lines)  # json.dumps escapes everything else


def test_entries_round_trip_as_replace_decoding(binary, tmp_path):
    run = run_monitor(binary, tmp_path, TRICKY)
    for stream in ("stdout", "stderr"):
        sent = b"".join(d for s, d in TRICKY if s == stream)
        assert run.data(stream) == sent.decode("utf-8", "replace").encode()


def test_time_is_rfc3339_with_nanoseconds_and_now(binary, tmp_path):
    before = time.time()
    run = run_monitor(binary, tmp_path, [("stdout", b"x\n")])
    (entry,) = run.entries
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z", entry.time)
    seconds = calendar.timegm(time.strptime(entry.time[:19], "%Y-%m-%dT%H:%M:%S"))
    assert before - 1 <= seconds <= time.time() + 1


def test_multibyte_characters_cut_by_reads_are_kept_whole(binary, tmp_path):
    steps = [
        ("stdout", b"caf\xc3"),
        ("stdout", b"\xa9\n"),  # é over two reads
        ("stdout", b"\xf0\x9f"),
        ("stdout", b"\x98"),
        ("stdout", b"\x80 ok\n"),  # 😀 over three
        ("stdout", b"\xe2"),
        ("stdout", b"x\n"),  # a lead byte the next read does not continue
        ("stdout", b"end \xe2\x82"),  # cut short by the end of the output
    ]
    run = run_monitor(binary, tmp_path, steps)
    sent = b"".join(d for _, d in steps)
    assert run.data() == sent.decode("utf-8", "replace").encode()
    assert [e.data.decode() for e in run.entries] == ["caf", "é\n", "😀 ok\n", "\ufffdx\n", "end ", "\ufffd"]


def test_a_one_megabyte_line_and_random_bytes(binary, tmp_path):
    rng = random.Random(1)
    line = bytes(rng.choice(b'abc"\\\x00\x1f\x7f\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xff') for _ in range(1 << 20))
    line = line.replace(b"\r", b"").replace(b"\n", b"") + b"\n"
    noise = rng.randbytes(300_000)
    run = run_monitor(binary, tmp_path, [("stdout", line, False), ("stderr", noise, False)])
    assert run.returncode == 0, run.stderr
    assert run.data("stdout") == line.decode("utf-8", "replace").encode()
    assert run.data("stderr") == noise.decode("utf-8", "replace").encode()
    for entry in run.entries:  # a line may be cut at a read boundary, never joined to the next
        assert not re.search(rb"[\r\n].", entry.data.replace(b"\r\n", b"\n"), re.DOTALL)


# -- exit, drain, terminal --------------------------------------------------------------------


def test_exit_code_is_appended_for_the_finisher(binary, tmp_path):
    run = run_monitor(binary, tmp_path, [("stdout", b"out\n"), ("stderr", b"err\n")], code=3)
    assert run.finisher["argv"] == ["--name", "x", "--exit-code", "3"]
    assert run.data("stdout") == b"out\n" and run.data("stderr") == b"err\n"
    assert run.finisher["fds"][:3] == [0, 1, 2] and len(run.finisher["fds"]) <= 4  # + listdir's own
    assert run.finisher["cwd"] == "/"
    assert run.finisher["children"] == ["Z"]  # PID 1, left for the finisher to reap
    assert run.stderr == b""


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_death_by_signal_is_128_plus_signal(binary, tmp_path, sig):
    run = run_monitor(binary, tmp_path, [], sig=sig)
    assert run.finisher["argv"][-2:] == ["--exit-code", str(128 + sig)]


def test_output_written_just_before_the_exit_is_drained(binary, tmp_path):
    data = b"".join(b"line %06d\n" % i for i in range(30_000))  # 330 KB: several pipe-fulls
    run = run_monitor(binary, tmp_path, [("stdout", data, False), ("stderr", b"last words", False)], code=1)
    assert run.data("stdout") == data and run.data("stderr") == b"last words"
    assert run.finisher["argv"][-1] == "1"


def test_terminal_output_is_stdout_and_ends_with_eio(binary, tmp_path):
    run = run_monitor(binary, tmp_path, [("stdout", b'tty "x" \xff\n', False)], tty=True, code=5)
    assert run.returncode == 0, run.stderr
    assert {e.stream for e in run.entries} == {"stdout"}
    assert run.data() == 'tty "x" \ufffd\r\n'.encode()  # the terminal's onlcr adds the \r
    assert run.finisher["argv"][-1] == "5"


def test_if_the_finisher_cannot_run_it_exits_with_the_code(binary, tmp_path):
    run = run_monitor(binary, tmp_path, [], code=7, finisher=[str(tmp_path / "missing")])
    assert run.returncode == 7
    assert b"cannot run the finisher" in run.stderr


def test_sleeps_in_poll_and_ignores_sigint_sighup_sigpipe(binary, tmp_path):
    fifo = tmp_path / "go"
    os.mkfifo(fifo)
    proc, finish = run_monitor(
        binary, tmp_path, [("stdout", b"before\n"), ("wait", fifo, b""), ("stdout", b"after\n")], background=True
    )
    log = tmp_path / "ctr-json.log"
    try:
        deadline = time.monotonic() + 10
        while not (log.exists() and b"before" in log.read_bytes()):
            assert time.monotonic() < deadline, "nothing logged"
            time.sleep(0.01)
        assert Path(f"/proc/{proc.pid}/exe").resolve() == Path(binary).resolve()
        ticks = _cpu_ticks(proc.pid)
        time.sleep(0.3)
        assert _state(proc.pid) == "S" and _cpu_ticks(proc.pid) - ticks <= 1  # blocked, not spinning
        for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
            os.kill(proc.pid, sig)
    finally:
        _release(fifo)
    run = finish(proc)
    assert run.data() == b"before\nafter\n"
    assert run.finisher["argv"][-2:] == ["--exit-code", "0"]


def _release(fifo: Path) -> None:
    """Let the writer go on, once it waits on `fifo` (bounded, in case it never will)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            return
        except OSError as exc:
            if exc.errno != errno.ENXIO or time.monotonic() > deadline:  # ENXIO: no reader yet
                raise
            time.sleep(0.01)


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _state(pid: int) -> str:
    return _stat(pid)[0]


def _cpu_ticks(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15)


# -- misuse ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["--pid", "1", "--log", "/dev/null", "--", "/bin/true"],  # not our child
        ["--pid", "x", "--log", "/dev/null", "--", "/bin/true"],
        ["--log", "/dev/null", "--", "/bin/true"],
        ["--pid", "1", "--log", "/dev/null"],  # no finisher
        ["--pid", "1", "--log", "/dev/null", "--stdout", "999", "--", "/bin/true"],
        ["--pid", "1", "--log", "/dev/null", "--bogus", "1", "--", "/bin/true"],
    ],
)
def test_misuse_exits_125_with_usage(binary, args):
    proc = subprocess.run([binary, *args], capture_output=True, text=True, timeout=10)
    assert proc.returncode == 125
    assert "usage: ctr-monitor" in proc.stderr
