"""One liblxc start, as the liblxc monitor runs it, and what it reports (result.json),
turned into Docker's exit code or ctr's start errors.

Exit status: liblxc records PID 1's status in `struct lxc_container.error_num`,
a public field the python bindings do not expose; the monitor reads it with
ctypes (checking the struct against the container's name and lxcpath first)
and writes it to a file, since close_fds has closed any pipe by then.

A failed exec makes start() return False with liblxc's reason in the log
(`No such file or directory - Failed to exec "x"`): that becomes 127 or 126.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
from pathlib import Path

from ctr.backends.lxc.log import log_errors
from ctr.errors import CommandNotExecutable, CommandNotFound, CtrError

RESULT_FILE = "result.json"


def start_container(name: str, lxcpath: Path, config: list[tuple[str, str]], args: tuple[str, ...]) -> dict:
    """Configure and start the container with liblxc; returns what ctr needs to know."""
    import lxc

    log_file = dict(config).get("lxc.log.file", "")
    if log_file:
        with open(log_file, "w"):
            pass  # this start's errors only: the reason for a failure is looked up there
    c = lxc.Container(name, str(lxcpath))
    c.clear_config()  # the config `create` saved was loaded: set it afresh from ctr's record
    for k, v in config:
        # append_config_item is the binding's plain set_config_item; the wrapper's
        # set_config_item clears list keys first and rejects values it reads back
        # differently (every "overlay:" rootfs, every multi-capability keep list).
        if not c.append_config_item(k, v):
            reasons = log_errors(log_file)
            return {"config_error": [k, v, reasons[-1] if reasons else ""]}
    c.save_config()  # so lxc-ls/lxc-info -P <lxcpath> see it while it runs; start() uses the loaded config
    started = bool(c.start(useinit=False, daemonize=False, close_fds=True, cmd=tuple(args)))
    return {"started": started, "status": error_num(c), "log": [] if started else log_errors(log_file)}


def write_result(path: Path, result: dict) -> None:
    """The liblxc monitor's report, renamed into place whole. Not fsync'd as records are
    (write_json_atomic): ctr reads it as soon as the monitor has exited, and it lives only
    in the runtime directory of this run."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, path)


def read_outcome(name: str, rundir: Path, status: int) -> int:
    """Container `name`'s exit code from what the liblxc monitor reported (its wait status:
    `status`), or the error it met."""
    try:
        with open(rundir / RESULT_FILE) as f:
            result = json.load(f)
    except FileNotFoundError:
        how = (
            f"killed by signal {os.WTERMSIG(status)}"
            if os.WIFSIGNALED(status)
            else f"exit status {os.waitstatus_to_exitcode(status)}"
        )
        raise CtrError(f"the liblxc monitor of container {name} ended without a result ({how})") from None
    if "error" in result:
        raise CtrError(f"cannot run container {name} with liblxc: {result['error']}")
    if "config_error" in result:
        key, value, reason = result["config_error"]
        raise CtrError(f"liblxc refused {key} = {value} for container {name}" + (f": {reason}" if reason else ""))
    if not result["started"]:
        raise start_error(name, result.get("log", []))
    return exit_code(result["status"])


def error_num(container) -> int:
    """PID 1's exit status, from `struct lxc_container.error_num` (lxc/lxccontainer.h).

    The bindings' Container object is PyObject_HEAD followed by the
    `struct lxc_container *`. Before trusting the layout, the struct's name and
    config_path must match what the bindings report.
    """
    import _lxc

    class _Struct(ctypes.Structure):
        _fields_ = [
            ("name", ctypes.c_char_p),
            ("configfile", ctypes.c_char_p),
            ("pidfile", ctypes.c_char_p),
            ("slock", ctypes.c_void_p),
            ("privlock", ctypes.c_void_p),
            ("numthreads", ctypes.c_int),
            ("lxc_conf", ctypes.c_void_p),
            ("error_string", ctypes.c_char_p),
            ("error_num", ctypes.c_int),
            ("daemonize", ctypes.c_bool),
            ("config_path", ctypes.c_char_p),
        ]

    layout_ok = isinstance(
        container, _lxc.Container
    ) and _lxc.Container.__basicsize__ == object.__basicsize__ + ctypes.sizeof(ctypes.c_void_p)
    if layout_ok:
        address = ctypes.c_void_p.from_address(id(container) + object.__basicsize__).value
        s = _Struct.from_address(address) if address else None
        if (
            s is not None
            and s.name == container.name.encode()
            and s.config_path == container.get_config_path().encode()
        ):
            return s.error_num
    raise CtrError(
        "cannot read container exit codes from these python lxc bindings: their object layout is not the one of python3-lxc 3.x/5.x"
    )


def start_error(name: str, log: list[str]) -> CtrError:
    """start() said False. liblxc logs the cause first and its consequences after
    ("Failed to spawn container"), so the first error line is the reason."""
    for line in log:
        m = re.match(r"(.*) - Failed to exec \"(.*)\"$", line)
        if m:
            reason, cmd = m.groups()
            if reason == os.strerror(errno.ENOENT):
                if "/" in cmd:
                    return CommandNotFound(f'exec "{cmd}": no such file or directory')
                return CommandNotFound(f'exec "{cmd}": executable file not found in $PATH')
            return CommandNotExecutable(f'exec "{cmd}": {reason.lower()}')
    if log:
        return CtrError(f"cannot start container {name}: {log[0]}")
    return CtrError(f"cannot start container {name}: liblxc gave no reason")


def exit_code(status: int) -> int:
    """liblxc's status -> Docker's exit code. liblxc 5 stores exits as code<<8 and
    deaths by signal as sig<<8|0x7f; a plain wait status is understood too."""
    if status & 0x7F == 0x7F:
        return 128 + ((status >> 8) & 0x7F)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return (status >> 8) & 0xFF
