"""The Docker Engine as ctr reaches it: its address, the client that speaks its API version,
the versions `ctr backends` shows, and its failures as ctr's errors (with Docker's exit codes).

Every call to the engine goes through engine_call() or engine_iter(), so that what the SDK
and its transport raise reaches the user as a CtrError; open_stream() is the one request ctr
makes below the SDK's own methods (why: its docstring).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ctr.errors import CommandNotExecutable, CommandNotFound, Conflict, CtrError, NotFound, Unsupported

if TYPE_CHECKING:
    import docker
    import requests

DEFAULT_HOST = "unix:///var/run/docker.sock"
PROBE_TIMEOUT = 3  # seconds; `ctr backends` must not hang on a dead engine
SDK_MISSING = "the docker SDK is not installed: pip install 'ctr[docker]'"


def engine_address() -> str:
    """The engine URL the SDK uses: DOCKER_HOST, else the current docker context's."""
    host = os.environ.get("DOCKER_HOST")
    if host:
        return host
    try:
        from docker.context import ContextAPI

        return ContextAPI.kwargs_from_context().get("base_url") or DEFAULT_HOST
    except Exception:  # a broken ~/.docker/config.json must not break the probe
        return DEFAULT_HOST


def unreachable_reason(host: str, exc: BaseException) -> str:
    """Why the engine at `host` cannot be used, and what to do about it."""
    cause: BaseException | None = exc
    while cause is not None:  # the SDK wraps requests' error, which wraps the OSError
        if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM):
            break
        cause = cause.__cause__ or cause.__context__
    if cause is not None or "Permission denied" in str(exc):
        return f"permission denied on {host}: run ctr as root or as a member of the docker group"
    return f"no Docker Engine answers at {host}: start dockerd (scripts/start-dockerd.sh)"


class Unreachable(Exception):
    """No usable engine or SDK; the message says why and what to do."""


def connect(timeout: float | None) -> tuple[docker.DockerClient, dict]:
    """A client of the engine that speaks its API version, and the engine's /version.

    One request: GET /version, which every engine answers unversioned; the client is then
    made for the API version it names, as the SDK's "auto" would, without asking again.
    `timeout` None keeps the SDK's default for ordinary calls (attach and wait set their own).
    Raises Unreachable saying what is missing.
    """
    try:
        import docker
        from docker.constants import MINIMUM_DOCKER_API_VERSION
    except ImportError:
        raise Unreachable(SDK_MISSING) from None
    host = engine_address()
    kwargs = {} if timeout is None else {"timeout": timeout}
    try:
        asking = docker.from_env(version=MINIMUM_DOCKER_API_VERSION, **kwargs)
        try:
            version = asking.version(api_version=False)
        finally:
            asking.close()
        return docker.from_env(version=str(version["ApiVersion"]), **kwargs), version
    except Exception as exc:  # DockerException, a malformed DOCKER_HOST (ValueError), no answer
        raise Unreachable(unreachable_reason(host, exc)) from exc


def versions(version: dict) -> dict[str, str]:
    import docker

    return {
        "engine": str(version.get("Version", "")),
        "api": str(version.get("ApiVersion", "")),
        "sdk": docker.__version__,
    }


def engine_exceptions() -> tuple[type[BaseException], ...]:
    """What a call to the engine may raise: the SDK's errors and the transport's.
    Programming errors are left alone, so they are not dressed up as engine trouble."""
    import docker
    import requests

    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def error_status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


def explanation(exc: BaseException) -> str:
    """The engine's own message on one line, without the SDK's '400 Client Error' prefix."""
    text = getattr(exc, "explanation", None) or str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())


def engine_error(exc: BaseException, doing: str) -> CtrError:
    """An engine failure as a CtrError: 404 -> NotFound, 409 -> Conflict, else CtrError."""
    import docker

    msg = f"{doing}: {explanation(exc)}"
    if error_status(exc) == 404:
        return NotFound(msg)
    if error_status(exc) == 409:
        return Conflict(msg)
    if isinstance(exc, docker.errors.DockerException):
        return CtrError(msg)
    return CtrError(f"{doing}: lost the docker engine at {engine_address()}: {explanation(exc)}")


# runc ends a chain of wrappers ("failed to create shim task: OCI runtime create failed: ...")
# with `exec: "nosuchcmd": executable file not found in $PATH: unknown`.
_EXEC_FAILURE = re.compile(r'exec: ("(?:[^"\\]|\\.)*"): (.*?)(?:: unknown)?$')


def exec_failure(text: str) -> CtrError | None:
    """runc's failure to exec a command, with Docker's exit codes: 127 missing, 126 not executable."""
    m = _EXEC_FAILURE.search(text.strip())
    if not m:
        return None
    message, detail = f"exec {m.group(1)}: {m.group(2)}", m.group(2)
    if "executable file not found" in detail or "no such file or directory" in detail:
        return CommandNotFound(message)
    if "permission denied" in detail or "is a directory" in detail or "exec format error" in detail:
        return CommandNotExecutable(message)
    return CtrError(message)


def start_error(exc: BaseException, name: str, privileged: bool = False) -> CtrError:
    """A failed start, with Docker's exit codes: 127 for a missing command, 126 for one
    that cannot be executed, 125 for everything else (unknown user, bad mount, ...)."""
    if privileged and "unable to apply caps" in explanation(exc):
        # Docker's --privileged asks runc for every capability the kernel knows; where the
        # engine's bounding set lacks one (a sandboxed host), runc's capset fails. Nothing
        # ctr can send changes that: the engine ignores --cap-drop for a privileged container.
        return Unsupported(
            "docker",
            "--privileged",
            "the engine cannot grant every capability here "
            "(runc: unable to apply caps: operation not permitted); the native and lxc "
            "backends grant every capability ctr holds",
        )
    error = exec_failure(explanation(exc))
    if error is None:
        return engine_error(exc, f"cannot start container {name}")
    if type(error) is CtrError:
        return CtrError(f"cannot start container {name}: {error}")
    return error


_RAISE = object()


def engine_call(doing: str, fn: Callable[..., Any], *args: Any, if_missing: Any = _RAISE, **kwargs: Any) -> Any:
    """fn(*args, **kwargs) against the engine, its failures as CtrError; a 404 returns
    `if_missing` when one is given."""
    try:
        return fn(*args, **kwargs)
    except engine_exceptions() as exc:
        if if_missing is not _RAISE and error_status(exc) == 404:
            return if_missing
        raise engine_error(exc, doing) from exc


def engine_iter(doing: str, it: Iterator[Any]) -> Iterator[Any]:
    """Iterate over an engine stream with its failures as CtrError."""
    try:
        yield from it
    except engine_exceptions() as exc:
        raise engine_error(exc, doing) from exc


def open_stream(
    api: docker.APIClient, method: str, path: str, container_id: str, params: dict, timeout: float | None
) -> requests.Response:
    """`method` on the engine's `path` (a format with one {0}: the container's id), its body
    left unread, as the SDK's own requests are made: its URL, the config's HttpHeaders, its
    APIError for an HTTP error.

    Below the SDK's public methods because none of them does the job: api.logs() gives the
    payload of each log frame without the stream it came from, which `ctr logs` keeps apart,
    and api.wait() returns only at the exit, while the foreground run must know the waiter
    is registered before it starts the container (a POST /wait with stream=True returns
    once the engine sent its headers). Only the SDK's public parts are used: APIClient is a
    requests.Session, and base_url and api_version are its public attributes.
    """
    from urllib.parse import quote

    import requests
    from docker.errors import create_api_error_from_http_exception
    from docker.utils.config import load_general_config

    url = f"{api.base_url}/v{api.api_version}{path.format(quote(container_id, safe='/:'))}"
    headers = load_general_config().get("HttpHeaders")  # as the SDK's update_headers adds them
    response = api.request(method, url, params=params, headers=headers, stream=True, timeout=timeout)
    try:
        response.raise_for_status()
    except requests.exceptions.HTTPError as e:
        raise create_api_error_from_http_exception(e) from e
    return response


def engine_time(text: str | None) -> float | None:
    """The engine's RFC 3339 time with nanoseconds as a Unix time; its zero time (never) -> None."""
    if not text or text.startswith("0001-01-01"):
        return None
    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", text)
    if not m:
        return None
    whole = datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z" else m.group(3)))
    return whole.timestamp() + (int(m.group(2)) / 10 ** len(m.group(2)) if m.group(2) else 0.0)
