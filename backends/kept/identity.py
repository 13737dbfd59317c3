"""Who an exec runs as, in the native and the lxc backend alike (both end an exec in the
native runtime's own code): the container's identity with the exec's options on top."""

from __future__ import annotations

from ctr.process import ExecSpec
from ctr.spec import ContainerSpec
from ctr.state.paths import Paths
from ctr.state.records import Record


def terminal_size() -> bytes | None:
    """ctr's terminal size (struct winsize), from stdin or else stdout."""
    from ctr.native import tty

    return tty.winsize(0) or tty.winsize(1)


def exec_identity(record: Record, spec: ExecSpec, paths: Paths):
    """Who an exec runs as: the container's env, cwd, user, capabilities and seccomp filter
    (`paths`: where the compiled filters are cached), as runc exec applies the container's
    own, with the exec's own -e/-w/-u on top. Shared by native and lxc, whose exec ends the same way."""
    from ctr.native import caps
    from ctr.native.process import Identity
    from ctr.process import merge_env
    from ctr.security import seccomp_program

    process = record.extra["process"]
    cspec = ContainerSpec.from_dict(record.spec)
    program = seccomp_program(paths, cspec, record.extra.get("seccomp"))
    return Identity(
        args=tuple(spec.args),
        env=merge_env(process["env"], spec.env),
        cwd=spec.workdir or process["cwd"],
        user=spec.user if spec.user is not None else process["user"],
        caps_mask=caps.container_mask(cspec),
        tty=spec.tty,
        stdin=spec.stdin,
        winsize=terminal_size() if spec.tty else None,
        seccomp=program,
        no_new_privs=cspec.no_new_privs(),
        group_add=cspec.group_add,  # as moby's exec: getUser with the container's GroupAdd
    )
