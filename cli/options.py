"""Options shared by several commands, declared once (sqlite-utils style)."""

from __future__ import annotations

import functools

import click

from ctr.errors import CtrError
from ctr.state.paths import Paths


class Context:
    """What every command gets: the backend chosen with --backend, and the state root."""

    def __init__(self, backend_name: str, paths: Paths) -> None:
        self.backend_name = backend_name
        self.paths = paths

    def prime_cgroups(self) -> None:
        """For a command about to move a process into a cgroup: let the kernel's slow first
        step overlap with importing the backend (see ctr.native.cgroups.prime.prime_attach).
        The docker engine moves its own processes, so only the backends that attach
        processes to cgroups themselves gain."""
        from ctr.backends import ATTACHES_CGROUPS

        if self.backend_name in ATTACHES_CGROUPS:
            from ctr.native.cgroups.prime import prime_attach

            prime_attach()

    def backend(self):
        from ctr.backends import get_backend

        return get_backend(self.backend_name, self.paths)


pass_obj = click.make_pass_decorator(Context)

_SPEC_OPTIONS = [
    click.option("--name", help="Name the container (generated when absent)."),
    click.option("--rm", "auto_remove", is_flag=True, help="Remove the container when it exits."),
    click.option("-i", "--interactive", "stdin", is_flag=True, help="Keep stdin open and pass it to the container."),
    click.option("-t", "--tty", is_flag=True, help="Allocate a pseudo-terminal."),
    click.option(
        "-e",
        "--env",
        multiple=True,
        metavar="KEY=VALUE",
        help="Set an environment variable (KEY alone: take it from ctr's environment).",
    ),
    click.option("-w", "--workdir", metavar="DIR", help="Working directory inside the container."),
    click.option("-u", "--user", metavar="USER[:GROUP]", help="User name or uid, optionally with group or gid."),
    click.option("-h", "--hostname", help="Container host name."),
    click.option("-v", "--volume", multiple=True, metavar="SRC:DST[:ro]", help="Bind mount a host path."),
    click.option("--read-only", is_flag=True, help="Mount the container's root filesystem read-only."),
    click.option("-m", "--memory", metavar="SIZE", help="Memory limit (e.g. 64m, 1g)."),
    click.option("--cpus", metavar="N", help="Number of CPUs (e.g. 0.5)."),
    click.option("--pids-limit", metavar="N", help="Maximum number of processes (-1 for unlimited)."),
    click.option("--cap-add", multiple=True, metavar="CAP", help="Add a Linux capability (or ALL)."),
    click.option("--cap-drop", multiple=True, metavar="CAP", help="Drop a Linux capability (or ALL)."),
    click.option(
        "--network",
        "--net",
        "network",
        default="none",
        show_default=True,
        type=click.Choice(["none", "host", "bridge"]),
        help="Network mode.",
    ),
    click.option("--entrypoint", metavar="CMD", help="Override the image's entrypoint ('' clears it)."),
    click.option("-l", "--label", multiple=True, metavar="KEY=VALUE", help="Set a label on the container."),
    click.option(
        "--security-opt",
        multiple=True,
        metavar="OPT",
        help="seccomp=unconfined|PROFILE.json, no-new-privileges[=true|false], apparmor=..., label=...",
    ),
    click.option(
        "--privileged",
        is_flag=True,
        help="As Docker's: every capability, no seccomp, no masked or read-only paths, every device.",
    ),
    click.option("--add-host", multiple=True, metavar="HOST:IP", help="Add a line to /etc/hosts (HOST:IP or HOST=IP)."),
    click.option("--group-add", multiple=True, metavar="GROUP", help="Add a supplementary group (name or gid)."),
    click.option(
        "--env-file", multiple=True, metavar="FILE", help="Read environment variables from a file (-e wins over it)."
    ),
    click.option("--stop-signal", metavar="SIGNAL", help="Signal `ctr stop` sends first (default SIGTERM)."),
    click.option("--stop-timeout", metavar="SECONDS", help="Seconds `ctr stop` waits before SIGKILL (default 10)."),
    click.option("--cidfile", metavar="FILE", help="Write the container ID to FILE (which must not exist)."),
]


def spec_options(func):
    """Decorate a command with every flag that becomes part of a ContainerSpec."""
    for option in reversed(_SPEC_OPTIONS):
        func = option(func)
    return func


def build_spec(image: str, command: tuple[str, ...], **opts):
    """Turn the parsed flags into a ContainerSpec; all text parsing is ctr.spec's."""
    from ctr.spec import (
        ContainerSpec,
        parse_cpus,
        parse_env,
        parse_env_file,
        parse_label,
        parse_memory,
        parse_pids_limit,
        parse_volume,
    )

    entrypoint = opts["entrypoint"]
    return ContainerSpec(
        image=image,
        command=tuple(command),
        entrypoint=None if entrypoint is None else (tuple([entrypoint]) if entrypoint else ()),
        # Docker's order: every --env-file, then -e, so that -e wins.
        env=tuple(e for f in opts["env_file"] for e in parse_env_file(f)) + parse_env(opts["env"]),
        workdir=opts["workdir"],
        user=opts["user"],
        hostname=opts["hostname"],
        mounts=tuple(parse_volume(v) for v in opts["volume"]),
        memory=parse_memory(opts["memory"]) if opts["memory"] else None,
        cpus=parse_cpus(opts["cpus"]) if opts["cpus"] else None,
        pids_limit=parse_pids_limit(opts["pids_limit"]) if opts["pids_limit"] else None,
        read_only=opts["read_only"],
        cap_add=opts["cap_add"],
        cap_drop=opts["cap_drop"],
        network=opts["network"],
        tty=opts["tty"],
        stdin=opts["stdin"],
        name=opts["name"],
        auto_remove=opts["auto_remove"],
        labels=tuple(parse_label(label) for label in opts["label"]),
        security_opt=opts["security_opt"],
        privileged=opts["privileged"],
        extra_hosts=opts["add_host"],
        group_add=opts["group_add"],
        stop_signal=opts["stop_signal"],
        stop_timeout=opts["stop_timeout"],
        cidfile=opts["cidfile"],
    )


def errors_to_exit(func):
    """Library errors become one line on stderr and Docker's exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except CtrError as exc:
            raise CtrExit(str(exc), exc.exit_code) from None

    return wrapper


class CtrExit(click.ClickException):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"ctr: {self.format_message()}", err=True)
