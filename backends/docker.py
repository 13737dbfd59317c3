"""The docker backend: the same ContainerSpec, run by a Docker Engine through its API.

ctr's image is handed to the engine with `docker load` (tagged under ctr.local/, so
the user's own images are never touched); the process is decided by ctr's
resolve_process() and passed in full; every spec field maps onto one field of
the create request. The foreground run attaches and registers its wait before it
starts, demultiplexes stdout and stderr onto ctr's own fds, pumps stdin, and
forwards signals.

`import docker` happens only inside functions, so other backends never pay for it.
"""

from __future__ import annotations

import errno
import json
import os
import re
import select
import signal
import socket
import tarfile
import tempfile
import threading
from typing import TYPE_CHECKING, Any, BinaryIO, Callable

from ctr.errors import (
    BackendUnavailable,
    CommandNotExecutable,
    CommandNotFound,
    Conflict,
    CtrError,
    InvalidSpec,
    NotFound,
    Unsupported,
)
from ctr.spec import ContainerSpec

from .base import Backend, BackendInfo, Process, check_mount_sources, resolve_process
from .names import generate_name
from .paths import Paths

if TYPE_CHECKING:
    import docker

    from .images import Image

DEFAULT_HOST = "unix:///var/run/docker.sock"
PROBE_TIMEOUT = 3  # seconds; `ctr backends` must not hang on a dead engine
ENGINE_NAMESPACE = "ctr.local"  # engine tags of ctr's images: ctr.local/busybox:latest
NAME_ATTEMPTS = 8  # a generated name that clashes is replaced this often
BUFSIZE = 64 * 1024
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)
SDK_MISSING = "the docker SDK is not installed: pip install 'ctr[docker]'"


# --- engine address and errors ------------------------------------------------------------


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


def engine_exceptions() -> tuple[type[BaseException], ...]:
    """What a call to the engine may raise: the SDK's errors and the transport's.
    Programming errors are left alone, so they are not dressed up as engine trouble."""
    import docker
    import requests

    return (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


def _explanation(exc: BaseException) -> str:
    """The engine's own message on one line, without the SDK's '400 Client Error' prefix."""
    text = getattr(exc, "explanation", None) or str(exc)
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return " ".join(str(text).split())


def engine_error(exc: BaseException, doing: str) -> CtrError:
    """An engine failure as a CtrError: 404 -> NotFound, 409 -> Conflict, else CtrError."""
    import docker

    msg = f"{doing}: {_explanation(exc)}"
    if _status(exc) == 404:
        return NotFound(msg)
    if _status(exc) == 409:
        return Conflict(msg)
    if isinstance(exc, docker.errors.DockerException):
        return CtrError(msg)
    return CtrError(f"{doing}: lost the docker engine at {engine_address()}: {_explanation(exc)}")


# runc ends a chain of wrappers ("failed to create shim task: OCI runtime create failed: ...")
# with `exec: "nosuchcmd": executable file not found in $PATH: unknown`.
_EXEC_FAILURE = re.compile(r'exec: ("(?:[^"\\]|\\.)*"): (.*?)(?:: unknown)?$')
_UNKNOWN_CAP = re.compile(r'unknown capability: "?([A-Z_]+)"?')


def start_error(exc: BaseException, name: str) -> CtrError:
    """A failed start, with Docker's exit codes: 127 for a missing command, 126 for one
    that cannot be executed, 125 for everything else (unknown user, bad mount, ...)."""
    m = _EXEC_FAILURE.search(_explanation(exc))
    if not m:
        return engine_error(exc, f"cannot start container {name}")
    message, detail = f"exec {m.group(1)}: {m.group(2)}", m.group(2)
    if "executable file not found" in detail or "no such file or directory" in detail:
        return CommandNotFound(message)
    if "permission denied" in detail or "is a directory" in detail or "exec format error" in detail:
        return CommandNotExecutable(message)
    return CtrError(f"cannot start container {name}: {message}")


# --- images -------------------------------------------------------------------------------


def engine_tag(image_name: str) -> tuple[str, str]:
    """(repository, tag) under ctr's namespace: 'busybox:latest' -> ('ctr.local/busybox', 'latest')."""
    name = image_name.split("@", 1)[0]
    repo, sep, tag = name.rpartition(":")
    if not sep or "/" in tag:  # no tag, or the colon belonged to a registry's port
        repo, tag = name, "latest"
    return f"{ENGINE_NAMESPACE}/{repo.lower()}", tag


def retag_archive(src: BinaryIO, dst: BinaryIO, ref: str) -> None:
    """Copy a `docker save` archive with `ref` as its only tag.

    `docker load` applies the archive's RepoTags and its legacy `repositories` file,
    which would move the user's own `busybox:latest`; ctr's images live under ctr.local/.
    Layers are copied by tarfile in blocks, never parsed.
    """
    src.seek(0)
    with tarfile.open(fileobj=src, mode="r:") as tin, \
            tarfile.open(fileobj=dst, mode="w:", format=tarfile.PAX_FORMAT) as tout:
        for member in tin:
            name = os.path.normpath(member.name)
            if name == "repositories":
                continue
            if name == "manifest.json":
                manifest = json.load(tin.extractfile(member))  # type: ignore[arg-type]
                if len(manifest) != 1:
                    raise CtrError(f"image archive for {ref}: manifest.json lists {len(manifest)} images, expected 1")
                manifest[0]["RepoTags"] = [ref]
                data = json.dumps(manifest).encode()
                member.size = len(data)
                tout.addfile(member, _BytesReader(data))
            elif member.isfile():
                tout.addfile(member, tin.extractfile(member))
            else:
                tout.addfile(member)
    dst.seek(0)


class _BytesReader:
    """The smallest file object tarfile.addfile needs."""

    def __init__(self, data: bytes) -> None:
        self._data, self._pos = data, 0

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size < 0 else self._pos + size
        chunk = self._data[self._pos:end]
        self._pos += len(chunk)
        return chunk


# --- the backend --------------------------------------------------------------------------

_RAISE = object()


class DockerBackend(Backend):
    """ContainerSpec -> Docker Engine API, through the docker SDK (>= 7)."""

    name = "docker"

    def __init__(self, paths: Paths | None = None) -> None:
        super().__init__(paths)
        self._client: docker.DockerClient | None = None

    @classmethod
    def probe(cls) -> BackendInfo:
        try:
            import docker
        except ImportError:
            return BackendInfo(cls.name, False, SDK_MISSING)
        host = engine_address()
        try:
            client = docker.from_env(timeout=PROBE_TIMEOUT)
        except Exception as exc:  # DockerException, or a malformed DOCKER_HOST (ValueError, ...)
            return BackendInfo(cls.name, False, unreachable_reason(host, exc))
        try:
            version = client.version()
        except Exception as exc:
            return BackendInfo(cls.name, False, unreachable_reason(host, exc))
        finally:
            client.close()
        versions = {
            "engine": str(version.get("Version", "")),
            "api": str(version.get("ApiVersion", "")),
            "sdk": docker.__version__,
        }
        return BackendInfo(cls.name, True, "", versions)

    @property
    def client(self) -> "docker.DockerClient":
        if self._client is None:
            try:
                import docker
            except ImportError:
                raise BackendUnavailable(f"backend docker is not usable: {SDK_MISSING}") from None
            host = engine_address()
            try:
                # The SDK's default 60 s timeout covers ordinary calls; attach and wait set their own.
                self._client = docker.from_env()
            except Exception as exc:
                raise BackendUnavailable(f"backend docker is not usable: {unreachable_reason(host, exc)}") from exc
        return self._client

    def _call(self, doing: str, fn: Callable[..., Any], *args: Any, if_missing: Any = _RAISE, **kwargs: Any) -> Any:
        """fn(*args, **kwargs) against the engine, its failures as CtrError; a 404 returns
        `if_missing` when one is given."""
        try:
            return fn(*args, **kwargs)
        except engine_exceptions() as exc:
            if if_missing is not _RAISE and _status(exc) == 404:
                return if_missing
            raise engine_error(exc, doing) from exc

    # --- images ---

    def ensure_image(self, ref: str) -> tuple["Image", str]:
        """ctr's image `ref`, present in the engine as ctr.local/<name>; returns (image, engine ref).

        Nothing is sent when the engine already holds an image whose Id is the config
        digest; at most the tag is (re)set.
        """
        from .images import ImageStore

        image = ImageStore(self.paths).get(ref)
        repo, tag = engine_tag(image.name)
        engine_ref = f"{repo}:{tag}"
        api = self.client.api
        tagged = self._call(f"cannot inspect image {engine_ref}", api.inspect_image, engine_ref, if_missing=None)
        if tagged and tagged["Id"] == image.config_digest:
            return image, engine_ref
        if not self._call(f"cannot inspect image {image.config_digest}", api.inspect_image, image.config_digest, if_missing=None):
            self._load(image, engine_ref)
        self._call(f"cannot tag image {image.config_digest} as {engine_ref}", api.tag, image.config_digest, repo, tag)
        return image, engine_ref

    def _load(self, image: "Image", engine_ref: str) -> None:
        from .images import ImageStore

        doing = f"cannot load image {image.name} into the docker engine"
        with tempfile.TemporaryFile() as exported, tempfile.TemporaryFile() as retagged:
            ImageStore(self.paths).export_docker_archive(image, exported)
            retag_archive(exported, retagged, engine_ref)
            progress = self._call(doing, self.client.api.load_image, retagged, quiet=True)
            try:
                for message in progress:
                    detail = message.get("error") or (message.get("errorDetail") or {}).get("message")
                    if detail:
                        raise CtrError(f"{doing}: {detail}")
            except engine_exceptions() as exc:
                raise engine_error(exc, doing) from exc
        loaded = self._call(doing, self.client.api.inspect_image, image.config_digest, if_missing=None)
        if not loaded:
            raise CtrError(
                f"{doing}: the engine holds no image {image.config_digest} afterwards "
                "(the exported archive does not carry ctr's image config unchanged)"
            )

    # --- containers ---

    def create_config(self, spec: ContainerSpec, process: Process, engine_ref: str, name: str) -> dict[str, Any]:
        """The body of POST /containers/create: ctr's process in full, every spec field mapped."""
        import docker

        api = self.client.api
        if "ALL" in spec.cap_add:
            # spec.capabilities() follows Docker's own rule here, and the engine's ALL means
            # every capability it knows; naming them one by one could name one it does not.
            cap_add, cap_drop = ["ALL"], [c.removeprefix("CAP_") for c in spec.cap_drop if c != "ALL"]
        else:
            # Drop everything, add back exactly spec.capabilities(): the same set on every backend.
            cap_add, cap_drop = [c.removeprefix("CAP_") for c in spec.capabilities()], ["ALL"]
        host_config = api.create_host_config(
            auto_remove=spec.auto_remove,  # so the engine removes it even when ctr is killed
            mounts=[docker.types.Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in spec.mounts],
            read_only=spec.read_only,
            mem_limit=spec.memory,
            memswap_limit=spec.memory,  # equal to the memory limit: no swap
            nano_cpus=round(spec.cpus * 1e9) if spec.cpus is not None else None,
            pids_limit=spec.pids_limit,
            cap_add=cap_add,
            cap_drop=cap_drop,
            network_mode=spec.network,
            security_opt=["no-new-privileges"],  # ctr sets no_new_privs on every backend
            # The output goes to ctr's fds through the attach stream; the engine's json-file
            # copy of it would be a second, unread one, and halves the throughput.
            log_config=docker.types.LogConfig(type="none"),
        )
        size = _terminal_size() if spec.tty else None
        if size and docker.utils.version_gte(api.api_version, "1.42"):
            # The tty's size from its first instant. Older engines (20.10 is API 1.41) ignore
            # it and only learn the size by the resize right after start: a race.
            host_config["ConsoleSize"] = list(size)
        labels = dict(spec.labels)
        labels.update({"ctr.name": name, "ctr.backend": self.name})
        return api.create_container_config(
            engine_ref,
            # Entrypoint [] (not null) and the whole argv as Cmd: the engine then neither
            # prepends the image's Entrypoint nor falls back to its Cmd; ctr's merge is the only one.
            list(process.args),
            entrypoint=[],
            environment=list(process.env),
            working_dir=process.cwd,
            user=process.user or None,
            hostname=spec.hostname,
            tty=spec.tty,
            stdin_open=spec.stdin,  # with detach=False this also sets StdinOnce: our EOF closes it
            detach=False,
            labels=labels,
            host_config=host_config,
        )

    def create_container(self, spec: ContainerSpec) -> tuple[str, str]:
        """Create (not start) the container; returns (id, name). A generated name that
        clashes is replaced; a chosen one is a Conflict."""
        check_mount_sources(spec)  # the same message as on the other backends, before any engine call
        image, engine_ref = self.ensure_image(spec.image)
        process = resolve_process(spec, image.config)
        api = self.client.api
        attempts = 1 if spec.name else NAME_ATTEMPTS
        for _ in range(attempts):
            name = spec.name or generate_name()
            config = self.create_config(spec, process, engine_ref, name)
            try:
                return api.create_container_from_config(config, name=name)["Id"], name
            except engine_exceptions() as exc:
                if _status(exc) == 409:
                    if spec.name:
                        raise Conflict(f"container name {name} is already in use in the docker engine") from exc
                    continue
                unknown_cap = _UNKNOWN_CAP.search(_explanation(exc))
                if unknown_cap:
                    cap = "CAP_" + unknown_cap.group(1).removeprefix("CAP_")
                    raise Unsupported(self.name, f"capability {cap}", "this Docker Engine does not know it") from exc
                if _status(exc) == 400:
                    raise InvalidSpec(f"cannot create container {name}: {_explanation(exc)}") from exc
                raise engine_error(exc, f"cannot create container {name}") from exc
        raise Conflict(f"no free container name after {attempts} generated ones")

    def remove_container(self, container_id: str) -> None:
        """Force-remove; a container that is gone, or going, already is fine."""
        try:
            self.client.api.remove_container(container_id, force=True)
        except engine_exceptions() as exc:
            if _status(exc) in (404, 409):
                return  # removed already, or AutoRemove is removing it right now
            raise engine_error(exc, f"cannot remove container {container_id[:12]}") from exc

    def run(self, spec: ContainerSpec) -> int:
        return _Foreground(self, spec).run()


# --- the foreground run -------------------------------------------------------------------


class _Interrupted(BaseException):
    """A signal arrived before the container started: clean up, exit 128+N.

    A BaseException like KeyboardInterrupt, so no `except Exception` mistakes it for an engine error.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Foreground:
    """One `ctr run` without -d: the container's stdio is ctr's, its exit code is ctr's."""

    def __init__(self, backend: DockerBackend, spec: ContainerSpec) -> None:
        self.backend = backend
        self.spec = spec
        self.api = backend.client.api
        self.container_id: str | None = None
        self.name = spec.name or ""
        self.started = False
        self._old_handlers: dict[int, Any] = {}
        self._old_term: list | None = None
        self._attach_wrapper: Any = None
        self._wake_r = self._wake_w = -1

    def run(self) -> int:
        # Signal handlers can only be set from the main thread; a library caller elsewhere
        # gets no forwarding, the rest works the same.
        handle_signals = threading.current_thread() is threading.main_thread()
        if handle_signals:
            self._install_signal_handlers()
        try:
            return self._run()
        except _Interrupted as exc:
            return 128 + exc.signum
        finally:
            try:
                # --rm, or a start that failed or never happened: leave nothing behind.
                if self.container_id and (self.spec.auto_remove or not self.started):
                    self.backend.remove_container(self.container_id)
            finally:
                if handle_signals:
                    self._restore_signal_handlers()

    def _run(self) -> int:
        self.container_id, self.name = self.backend.create_container(self.spec)
        # Attach and register the wait before starting: no output and no exit can be missed.
        sock = self.backend._call(f"cannot attach to container {self.name}", self._attach)
        waiter = None
        try:
            waiter = self.backend._call(f"cannot wait for container {self.name}", self._wait_request)
            try:
                self.api.start(self.container_id)
            except engine_exceptions() as exc:
                raise start_error(exc, self.name) from exc
            self.started = True
            return self.backend._call(f"lost container {self.name}", self._stream_until_exit, sock, waiter)
        finally:
            sock.close()
            if waiter is not None:
                waiter.close()

    # --- engine calls ---

    def _attach(self) -> socket.socket:
        params = {"stdin": int(self.spec.stdin), "stdout": 1, "stderr": 1, "stream": 1}
        wrapper = self.api.attach_socket(self.container_id, params=params)
        self._attach_wrapper = wrapper  # the SocketIO must live as long as its socket
        sock = getattr(wrapper, "_sock", wrapper)  # unix: a SocketIO around the socket
        sock.settimeout(None)  # the SDK's 60 s timeout must not cut off a quiet container
        return sock

    def _wait_request(self):
        """POST /wait with stream=True returns as soon as the engine sent its headers, i.e.
        once the waiter is registered; the body, the exit status, comes when the container
        is done (or, with --rm, removed)."""
        condition = "removed" if self.spec.auto_remove else "next-exit"
        url = self.api._url("/containers/{0}/wait", self.container_id)
        response = self.api._post(url, params={"condition": condition}, stream=True, timeout=None)
        self.api._raise_for_status(response)
        return response

    def _in_thread(self, what: str, fn: Callable[[], Any]) -> None:
        """Fire and forget: signal handlers must not block on HTTP, and the container may
        have exited meanwhile, which is no error."""

        def call() -> None:
            try:
                fn()
            except Exception:
                pass

        threading.Thread(target=call, name=f"ctr-{what}", daemon=True).start()

    def _forward(self, signum: int) -> None:
        self._in_thread("kill", lambda: self.api.kill(self.container_id, signal=int(signum)))

    def _resize(self) -> None:
        size = _terminal_size()
        if size is not None and self.started:
            rows, cols = size
            self._in_thread("resize", lambda: self.api.resize(self.container_id, height=rows, width=cols))

    # --- signals ---

    def _install_signal_handlers(self) -> None:
        def on_signal(signum: int, frame) -> None:
            if self.started:
                self._forward(signum)
            else:  # not running yet: give up, and let run() remove what was created
                raise _Interrupted(signum)

        for signum in FORWARDED_SIGNALS:
            self._old_handlers[signum] = signal.signal(signum, on_signal)
        if self.spec.tty:
            self._old_handlers[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, lambda s, f: self._resize())

    def _restore_signal_handlers(self) -> None:
        for signum, handler in self._old_handlers.items():
            signal.signal(signum, handler)
        self._old_handlers.clear()

    # --- streams ---

    def _stream_until_exit(self, sock: socket.socket, waiter) -> int:
        spec = self.spec
        if spec.tty:
            self._resize()
        pump = None
        if spec.stdin:
            self._wake_r, self._wake_w = os.pipe()
            pump = threading.Thread(target=self._pump_stdin, args=(sock,), name="ctr-stdin", daemon=True)
        try:
            if spec.tty and spec.stdin and os.isatty(0):
                self._make_raw(0)
            if pump:
                pump.start()
            if spec.tty:
                _copy_raw(sock, _Output())
            else:
                _copy_multiplexed(sock, _Output())
            status = waiter.json()
        finally:
            self._restore_terminal()
            if self._wake_w >= 0:
                os.write(self._wake_w, b"x")  # wakes a pump waiting for ctr's stdin,
                try:
                    sock.shutdown(socket.SHUT_RDWR)  # and this one blocked in sendall
                except OSError:
                    pass
                if pump and pump.is_alive():
                    pump.join(timeout=5)
                os.close(self._wake_w)
                os.close(self._wake_r)
                self._wake_r = self._wake_w = -1
        error = (status.get("Error") or {}).get("Message")
        if error:
            raise CtrError(f"cannot wait for container {self.name}: {error}")
        return int(status["StatusCode"])

    def _pump_stdin(self, sock: socket.socket) -> None:
        """ctr's fd 0 -> the container's stdin. EOF half-closes the socket, which the engine
        passes on (StdinOnce), so `echo hi | ctr run -i busybox cat` ends.

        With a tty, EOF becomes ^D instead, as on the native backend: the engine answers a
        half-close in tty mode by ending the output stream while the container runs on.
        """
        poller = select.poll()
        poller.register(0, select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while True:
            ready = {fd for fd, _ in poller.poll()}
            if self._wake_r in ready:
                return
            try:
                data = os.read(0, BUFSIZE)
            except OSError:  # fd 0 closed or unreadable: as good as EOF
                data = b""
            try:
                if data:
                    sock.sendall(data)
                    continue
                if self.spec.tty:
                    sock.sendall(b"\x04")
                else:
                    sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass  # the container is gone
            return

    def _make_raw(self, fd: int) -> None:
        import termios
        import tty

        self._old_term = termios.tcgetattr(fd)
        tty.setraw(fd, termios.TCSANOW)

    def _restore_terminal(self) -> None:
        if self._old_term is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, self._old_term)
            self._old_term = None


def _terminal_size() -> tuple[int, int] | None:
    for fd in (1, 0, 2):
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return None


class _Output:
    """Writes to ctr's fds 1 and 2. A reader that went away (`ctr run ... | head`) is
    not fatal: its stream is drained and dropped, the container runs to its end."""

    def __init__(self) -> None:
        self.dead: set[int] = set()

    def write(self, fd: int, data: memoryview | bytes) -> None:
        if fd in self.dead:
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(fd, view):]
        except BrokenPipeError:
            self.dead.add(fd)


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(BUFSIZE)
    except ConnectionResetError:
        return b""


def _copy_raw(sock: socket.socket, out: _Output) -> None:
    """A tty container: one stream, no framing."""
    while data := _recv(sock):
        out.write(1, data)


def _copy_multiplexed(sock: socket.socket, out: _Output) -> None:
    """Docker's attach framing: an 8-byte header (stream, 0, 0, 0, big-endian length), then
    the payload. Payload is written as it arrives, in slices of what recv returned."""
    header = bytearray()
    remaining = 0
    fd = 1
    while data := _recv(sock):
        view = memoryview(data)
        pos, end = 0, len(view)
        while pos < end:
            if remaining == 0:
                take = min(8 - len(header), end - pos)
                header += view[pos:pos + take]
                pos += take
                if len(header) < 8:
                    break
                fd = 2 if header[0] in (2, 3) else 1  # 2 stderr, 3 the engine's own errors
                remaining = int.from_bytes(header[4:8], "big")
                header.clear()
                continue
            chunk = view[pos:pos + remaining]
            out.write(fd, chunk)
            pos += len(chunk)
            remaining -= len(chunk)
