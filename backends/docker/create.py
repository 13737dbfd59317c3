"""The Engine API's create request for a ContainerSpec: ctr's process in full (the engine
merges nothing of the image's), and every spec field on its field of the request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctr.backends.docker.streams import terminal_size
from ctr.process import Process
from ctr.spec import ContainerSpec

if TYPE_CHECKING:
    import docker


def create_body(
    api: docker.APIClient,
    spec: ContainerSpec,
    process: Process,
    engine_ref: str,
    ctr_labels: dict[str, str],
    foreground: bool = True,
    security: dict | None = None,
) -> dict[str, Any]:
    """The body of POST /containers/create: ctr's process in full, every spec field mapped.

    A foreground container's output goes to ctr's fds through the attach stream; a
    detached one's is kept by the engine's json-file driver, which `ctr logs` reads.
    """
    import docker

    if spec.privileged:
        # The engine's own --privileged (every capability, no seccomp, no masked paths,
        # /sys writable, every host device): it ignores --cap-add and --cap-drop then.
        cap_add, cap_drop = None, None
    elif "ALL" in spec.cap_add:
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
        privileged=spec.privileged,
        security_opt=_security_opt(spec, security),
        extra_hosts=list(spec.extra_hosts) or None,  # "NAME:IP", as the docker CLI sends them
        group_add=list(spec.group_add) or None,
        # In the foreground the engine's json-file copy of the output would be a second,
        # unread one, and halves the throughput; detached, it is the only one.
        log_config=docker.types.LogConfig(type="none" if foreground else "json-file"),
    )
    size = terminal_size() if spec.tty and foreground else None
    if size and docker.utils.version_gte(api.api_version, "1.42"):
        # The tty's size from its first instant. Older engines (20.10 is API 1.41) ignore
        # it and only learn the size by the resize right after start: a race.
        host_config["ConsoleSize"] = list(size)
    labels = dict(spec.labels)
    labels.update(ctr_labels)
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
        # Foreground (detach=False) this also sets StdinOnce: our EOF closes it. Detached,
        # stdin stays open with nothing attached, as with `docker run -d -i`.
        stdin_open=spec.stdin,
        detach=not foreground,
        labels=labels,
        host_config=host_config,
        stop_signal=spec.stop_signal,
        stop_timeout=spec.stop_timeout,
    )


def _security_opt(spec: ContainerSpec, security: dict | None) -> list[str]:
    """HostConfig.SecurityOpt as the docker CLI sends it: no-new-privileges (ctr's default on
    every backend), a custom seccomp profile as its JSON text (the engine takes no path),
    unconfined, or nothing for the engine's own default profile; apparmor= and label= as given."""
    import json

    from ctr.security import kept_seccomp

    opts = ["no-new-privileges"] if spec.no_new_privs() else []
    security = kept_seccomp(spec, security)
    if security["profile"] == "unconfined":
        opts.append("seccomp=unconfined")
    elif security["profile"] != "default":
        opts.append("seccomp=" + json.dumps(json.loads(security["text"]), separators=(",", ":")))
    opts += list(spec.lsm_options())
    return opts
