"""ctr.backends.docker.engine: runc's failures with Docker's exit codes, the engine's times."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "message,kind,text",
    [
        (
            "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: "
            'exec: "nosuchcmd": executable file not found in $PATH: unknown',
            "CommandNotFound",
            'exec "nosuchcmd": executable file not found in $PATH',
        ),
        (
            "OCI runtime create failed: container_linux.go:380: starting container process caused: "
            'exec: "/bin/nope": stat /bin/nope: no such file or directory: unknown',
            "CommandNotFound",
            'exec "/bin/nope": stat /bin/nope: no such file or directory',
        ),
        (
            "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: "
            'exec: "/etc": permission denied: unknown',
            "CommandNotExecutable",
            'exec "/etc": permission denied',
        ),
    ],
)
def test_start_errors_get_dockers_exit_codes(message, kind, text):
    from ctr import errors
    from ctr.backends.docker.engine import start_error

    class FakeAPIError(Exception):
        status_code = 400
        explanation = message

    err = start_error(FakeAPIError(message), "web")
    assert type(err) is getattr(errors, kind)
    assert str(err) == text
    assert err.exit_code == {"CommandNotFound": 127, "CommandNotExecutable": 126}[kind]


def test_engine_times():
    from ctr.backends.docker.engine import engine_time

    assert engine_time("0001-01-01T00:00:00Z") is None and engine_time("") is None and engine_time(None) is None
    assert engine_time("2024-05-01T12:00:00.5Z") == 1714564800.5
    assert abs(engine_time("2024-05-01T12:00:00.123456789Z") - 1714564800.123456789) < 1e-6
    assert engine_time("2024-05-01T14:00:00+02:00") == 1714564800.0


def test_exec_failures_get_dockers_exit_codes():
    from ctr import errors
    from ctr.backends.docker.engine import exec_failure

    text = (
        "OCI runtime exec failed: exec failed: unable to start container process: "
        'exec: "nosuch": executable file not found in $PATH: unknown\r\n'
    )
    err = exec_failure(text)
    assert type(err) is errors.CommandNotFound and str(err) == 'exec "nosuch": executable file not found in $PATH'
    assert exec_failure("hello\n") is None
