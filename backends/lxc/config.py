"""The container's liblxc config: the items ctr sets for a spec (root, mounts, hooks,
confinement, cgroup limits, the process), the files they name (seccomp profile in liblxc's
format, the privileged /dev script), and the config file saved and read back."""

from __future__ import annotations

import shlex
import shutil
from pathlib import Path

from ctr.backends.lxc.cgroups import cgroup_names, memory_events_file
from ctr.backends.lxc.log import log_errors
from ctr.errors import CtrError, Unsupported
from ctr.native.cgroups.mounted import controller_version, v1_mount
from ctr.spec import ContainerSpec

CPU_PERIOD = 100_000  # microseconds, Docker's default CFS period


def lxc_config(
    spec: ContainerSpec,
    cid: str,
    hostname: str,
    layers: list[str],
    upper: str,
    rootfs_mount: str,
    log_file: str,
    env: list[str],
    cwd: str,
    user: dict,
    oom_file: str | None = None,
    seccomp_file: str | None = None,
    devices_script: str | None = None,
) -> list[tuple[str, str]]:
    """The liblxc config items for a spec, in the order they are set; layers bottom first.
    `user` is what prepare_rootfs found: ids, home, resolved mount targets. With `oom_file`,
    a stop hook copies the memory cgroup's OOM counters there before liblxc removes it.
    `seccomp_file` is the container's profile in liblxc's own format (lxc_seccomp);
    `devices_script` makes the host's devices in its /dev (--privileged: lxc_devices_script)."""
    payload, monitor, pivot = cgroup_names(cid)
    items = _root_items(spec, hostname, layers, upper, rootfs_mount, log_file)
    items += _hook_items(spec, payload, oom_file, devices_script)
    items += _mount_items(spec, user["targets"])
    if not spec.tty:
        items.append(("lxc.console.path", "none"))  # PID 1 gets the monitor's stdio as it is
    items += _confinement_items(spec, seccomp_file)
    items += [
        ("lxc.cgroup.dir.container", payload),
        ("lxc.cgroup.dir.monitor", monitor),
        ("lxc.cgroup.dir.monitor.pivot", pivot),
    ]
    items += _cgroup_items(spec)
    items += _init_items(env, cwd, user)
    return items


def _root_items(
    spec: ContainerSpec, hostname: str, layers: list[str], upper: str, rootfs_mount: str, log_file: str
) -> list[tuple[str, str]]:
    """The log, the hostname, the overlay root, /proc, /sys, the cgroups and /dev."""
    items: list[tuple[str, str]] = [
        ("lxc.log.level", "ERROR"),
        ("lxc.log.file", log_file),
        ("lxc.uts.name", hostname),
        # overlayfs lists the topmost lower layer first; liblxc takes the last ":/" part as upper.
        ("lxc.rootfs.path", "overlay:" + ":".join([*reversed(layers), upper])),
        ("lxc.rootfs.mount", rootfs_mount),
    ]
    if spec.read_only:
        items.append(("lxc.rootfs.options", "ro"))
    items += [
        # :force mounts the container's cgroups even when it keeps CAP_SYS_ADMIN.
        # --privileged: /proc, /sys and the cgroups writable, as Docker leaves them then.
        (
            "lxc.mount.auto",
            "proc:rw sys:rw cgroup:rw:force" if spec.privileged else "proc:mixed sys:ro cgroup:ro:force",
        ),
        ("lxc.autodev", "1"),
        ("lxc.pty.max", "1024"),  # a devpts of its own, as Docker's /dev/pts
        ("lxc.tty.max", "0"),
        ("lxc.mount.entry", "shm dev/shm tmpfs rw,nosuid,nodev,noexec,mode=1777,size=65536k,create=dir 0 0"),
        ("lxc.mount.entry", "mqueue dev/mqueue mqueue rw,nosuid,nodev,noexec,create=dir 0 0"),
    ]
    return items


def _hook_items(
    spec: ContainerSpec, payload: str, oom_file: str | None, devices_script: str | None
) -> list[tuple[str, str]]:
    """What no config item can do, as hook commands run by liblxc."""
    # Hooks are shell commands; version 1: no arguments appended, the LXC_* variables in the environment.
    hooks: list[tuple[str, str]] = []
    mount = shutil.which("mount")
    if mount and not spec.privileged:
        # liblxc leaves the tmpfs under the cgroup mounts writable; Docker's is not. A mount
        # hook runs in the container's mount namespace after liblxc mounted the cgroups. No
        # config item can do it: every lxc.mount.auto cgroup mode mounts that tmpfs writable
        # (liblxc 5.0), lxc.mount.entry lines are applied before it, and a "remount" entry
        # first mounts a new filesystem over the target.
        hooks.append(
            (
                "lxc.hook.mount",
                f'{shlex.quote(mount)} -o remount,ro,nosuid,nodev,noexec "$LXC_ROOTFS_MOUNT/sys/fs/cgroup"',
            )
        )
        # Docker's read-only /proc paths: proc:mixed makes /proc/sys and /proc/sysrq-trigger
        # read-only, but not these; no mount entry can name the container's own /proc as a
        # source, and this hook runs after liblxc's proc mount.
        for path in ("/proc/bus", "/proc/fs", "/proc/irq"):
            if Path(path).exists():  # as the masked paths: what this kernel's /proc has
                target = f'"$LXC_ROOTFS_MOUNT{path}"'
                hooks.append(("lxc.hook.mount", f"{shlex.quote(mount)} --bind {target} {target}"))
                hooks.append(
                    ("lxc.hook.mount", f"{shlex.quote(mount)} -o remount,bind,ro,nosuid,nodev,noexec {target}")
                )
    if devices_script:
        # Docker's privileged /dev: the host's device nodes beside liblxc's own. The autodev
        # hook runs in the container's mount namespace once liblxc has populated its /dev.
        # A script file, as liblxc 5.0 runs only the first statement of a hook's command line.
        hooks.append(("lxc.hook.autodev", f"/bin/sh {shlex.quote(devices_script)}"))
    events = memory_events_file(payload)
    cat = shutil.which("cat")
    if oom_file and events and cat:
        # liblxc runs the stop hook on the host once PID 1 has ended, before it removes the
        # cgroups: the one moment the OOM kill count of a finished container can be read.
        # Always, not only with --memory: the kernel counts a host-wide OOM kill in the
        # container's memory cgroup too, and the native backend reports that as well.
        hooks.append(
            (
                "lxc.hook.stop",
                f"{shlex.quote(cat)} {shlex.quote(str(events))} > {shlex.quote(oom_file)} 2>/dev/null || true",
            )
        )
    return [("lxc.hook.version", "1"), *hooks] if hooks else []


def _mount_items(spec: ContainerSpec, targets: list[str]) -> list[tuple[str, str]]:
    """The spec's mounts (`targets`: resolved in the container) and Docker's masked paths."""
    from ctr.native.rootfs import MASKED_PATHS

    items: list[tuple[str, str]] = []
    for m, target in zip(spec.mounts, targets):
        opts = "rbind" + (",ro" if m.read_only else "")
        items.append(("lxc.mount.entry", f"{_fstab(m.source)} {_fstab(target.lstrip('/'))} none {opts} 0 0"))
    for path in () if spec.privileged else MASKED_PATHS:  # Docker's; optional, as not every kernel has each
        host = Path(path)
        if host.is_dir():
            items.append(("lxc.mount.entry", f"tmpfs {path.lstrip('/')} tmpfs ro,optional 0 0"))
        elif host.exists():
            items.append(("lxc.mount.entry", f"/dev/null {path.lstrip('/')} none bind,optional 0 0"))
    return items


def _confinement_items(spec: ContainerSpec, seccomp_file: str | None) -> list[tuple[str, str]]:
    """Capabilities, no_new_privs, the seccomp profile, the network namespace."""
    from ctr.native.caps import container_mask
    from ctr.native.caps import names as capnames

    items: list[tuple[str, str]] = []
    # liblxc would keep only what its bounding set holds anyway; say so in the config.
    caps = [c.removeprefix("CAP_").lower() for c in capnames(container_mask(spec))]
    items += [
        ("lxc.cap.keep", " ".join(caps) or "none"),
        ("lxc.no_new_privs", "1" if spec.no_new_privs() else "0"),
    ]
    if seccomp_file:
        items.append(("lxc.seccomp.profile", seccomp_file))
    if spec.network == "host":
        items.append(("lxc.net.0.type", "none"))  # no new network namespace
    else:
        items += [("lxc.net.0.type", "empty"), ("lxc.net.0.flags", "up")]  # lo only, and up
    return items


def _init_items(env: list[str], cwd: str, user: dict) -> list[tuple[str, str]]:
    """PID 1's environment, working directory, user and groups."""
    items = [("lxc.environment", e) for e in env]
    items += [
        ("lxc.init.cwd", cwd),
        ("lxc.init.uid", str(user["uid"])),
        ("lxc.init.gid", str(user["gid"])),
    ]
    if user["groups"]:
        items.append(("lxc.init.groups", ",".join(str(g) for g in user["groups"])))
    return items


def write_files(lxcdir: Path, spec: ContainerSpec, security: dict) -> tuple[str | None, str | None]:
    """<lxcpath>/<name> afresh, with the files the config names: the seccomp profile in liblxc's
    format (unless unconfined) and, with --privileged, the script that makes the host's devices
    in its /dev. Returns their paths (None: not made)."""
    shutil.rmtree(lxcdir, ignore_errors=True)  # of an earlier container of this name, if ever left
    lxcdir.mkdir(parents=True, mode=0o700)
    seccomp_file = None
    if security["profile"] != "unconfined":
        seccomp_file = lxcdir / "seccomp"
        seccomp_file.write_text(lxc_seccomp(spec, security))
    devices_script = None
    if spec.privileged:
        from ctr.native.devices import host_devices

        devices_script = lxcdir / "devices"
        devices_script.write_text(lxc_devices_script(host_devices()))
    return str(seccomp_file) if seccomp_file else None, str(devices_script) if devices_script else None


def lxc_devices_script(devices) -> str:
    """A shell script that makes `devices` (ctr.native.devices.host_devices) in the container's
    /dev with the host's number, mode and owner, as runc does for a privileged container;
    a node liblxc made already stays."""
    lines = ['dev="$LXC_ROOTFS_MOUNT/dev"']
    for d in devices:
        path = shlex.quote(d.path)
        if "/" in d.path:
            lines.append(f'mkdir -p "$dev"/{shlex.quote(d.path.rsplit("/", 1)[0])}')
        lines.append(
            f'[ -e "$dev"/{path} ] || {{ mknod -m {d.mode:o} "$dev"/{path} {d.type} {d.major} {d.minor}'
            f' && chown {d.uid}:{d.gid} "$dev"/{path}; }} || exit 1'
        )
    return "\n".join(lines) + "\n"


def lxc_seccomp(spec: ContainerSpec, security: dict) -> str:
    """The container's seccomp profile (Docker's JSON, resolved for its caps by ctr.native.seccomp
    exactly as the native backend resolves it) in liblxc's version 2 format, which liblxc
    compiles with the same libseccomp and loads in PID 1 before it execs the command.

    Why liblxc's own config and not ctr installing the filter: PID 1 is exec'd by liblxc,
    not by ctr, and a filter installed in liblxc's monitor would bind liblxc's own set-up
    (clone with namespace flags, mount, pivot_root) as well. The format says the same:
    "allowlist errno N" is the default action, a line per syscall and action, argument
    conditions as [index,value,op] or, for SCMP_CMP_MASKED_EQ, [index,datum,op,mask]
    (JSON: value is the mask, valueTwo the datum). On x86_64 liblxc adds every rule to
    x86_64, x86 and x32, so the few rules a profile confines to some architectures
    (arch_prctl, modify_ldt) reach the 32-bit ABIs too; the x86_64 ABI is exactly the native one."""
    from ctr.native import seccomp
    from ctr.security import profile_text

    flt = seccomp.parse(profile_text(security), security["profile"]).resolve(spec.capabilities())
    ops = {v: k for k, v in seccomp.OPERATORS.items()}

    def action(a: int) -> str:
        kind, data = a & 0xFFFF0000, a & 0xFFFF
        if a == seccomp.SCMP_ACT_ALLOW:
            return "allow"
        if kind == seccomp.SCMP_ACT_ERRNO:
            return f"errno {data}"
        if a in (seccomp.SCMP_ACT_KILL_THREAD, seccomp.SCMP_ACT_KILL_PROCESS):
            return "kill"
        if a == seccomp.SCMP_ACT_TRAP:
            return "trap"
        raise Unsupported(
            "lxc",
            "--security-opt seccomp=" + security["profile"],
            "liblxc's profiles know no SCMP_ACT_LOG or SCMP_ACT_TRACE",
        )

    def cond(index: int, op: int, value: int, value2: int) -> str:
        if ops[op] == "SCMP_CMP_MASKED_EQ":
            return f"[{index},{value2},{ops[op]},{value}]"
        return f"[{index},{value},{ops[op]}]"

    lines = ["2", f"allowlist {action(flt.default_action)}", "[all]"]
    for rule in flt.rules:
        indexes = [a[0] for a in rule.args]
        groups = [rule.args] if len(set(indexes)) == len(indexes) else [(a,) for a in rule.args]
        for name in rule.names:
            for group in groups:
                lines.append(
                    f"{name} {action(rule.action)}" + (" " + "".join(cond(*a) for a in group) if group else "")
                )
    return "\n".join(lines) + "\n"


def _cgroup_items(spec: ContainerSpec) -> list[tuple[str, str]]:
    """Limits and device rules, as v1 (lxc.cgroup.*) or v2 (lxc.cgroup2.*) keys per controller."""
    items: list[tuple[str, str]] = []

    def key(controller: str, name: str) -> str:
        return f"lxc.cgroup.{name}" if controller_version(controller) == 1 else f"lxc.cgroup2.{name}"

    if spec.memory is not None:
        if controller_version("memory") == 1:
            items.append(("lxc.cgroup.memory.limit_in_bytes", str(spec.memory)))
            if (v1_mount("memory") / "memory.memsw.limit_in_bytes").exists():
                # Docker's default --memory-swap: as much swap again as memory.
                items.append(("lxc.cgroup.memory.memsw.limit_in_bytes", str(2 * spec.memory)))
        else:
            items += [("lxc.cgroup2.memory.max", str(spec.memory)), ("lxc.cgroup2.memory.swap.max", str(spec.memory))]
    if spec.cpus is not None:
        quota = round(spec.cpus * CPU_PERIOD)
        if controller_version("cpu") == 1:
            items += [("lxc.cgroup.cpu.cfs_period_us", str(CPU_PERIOD)), ("lxc.cgroup.cpu.cfs_quota_us", str(quota))]
        else:
            items.append(("lxc.cgroup2.cpu.max", f"{quota} {CPU_PERIOD}"))
    if spec.pids_limit is not None:
        items.append((key("pids", "pids.max"), "max" if spec.pids_limit == -1 else str(spec.pids_limit)))
    # The device policy every backend shares (Docker's default); on cgroup2 liblxc compiles
    # the same keys into a BPF device program.
    from ctr.native.devices import container_policy, v1_writes

    prefix = "lxc.cgroup" if controller_version("devices") == 1 else "lxc.cgroup2"
    items += [(f"{prefix}.{filename}", rule) for filename, rule in v1_writes(container_policy(spec.privileged))]
    return items


def _fstab(path: str) -> str:
    """A path as an fstab field: liblxc reads mount entries with getmntent, which decodes these."""
    return path.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011").replace("\n", "\\012")


def save_config(name: str, lxcpath: Path, config: list[tuple[str, str]]) -> None:
    """Write the container's liblxc config to <lxcpath>/<name>/config, liblxc checking each item."""
    import lxc

    c = lxc.Container(name, str(lxcpath))
    log_file = dict(config).get("lxc.log.file", "")
    for k, v in config:
        if not c.append_config_item(k, v):  # see start_container for why not set_config_item
            reasons = log_errors(log_file)
            raise CtrError(f"liblxc refused {k} = {v} for container {name}" + (f": {reasons[-1]}" if reasons else ""))
    if not c.save_config():
        raise CtrError(f"cannot save the liblxc config of container {name} in {lxcpath / name}")


def read_config(path: Path) -> dict[str, str | list[str]]:
    """A liblxc config file as key -> value (a list for keys given more than once)."""
    out: dict[str, str | list[str]] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        key, sep, value = line.partition("=")
        if not sep or line.lstrip().startswith("#"):
            continue
        key, value = key.strip(), value.strip()
        if key not in out:
            out[key] = value
        elif isinstance(out[key], list):
            out[key].append(value)
        else:
            out[key] = [out[key], value]
    return out
