"""An OCI runtime config.json in `ctr convert`: read (read_oci) and written (write_oci), with
the mounts, namespaces and masked paths every ctr backend sets up as a runtime would.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ctr.convert.conversion import (
    CPU_PERIOD,
    DEFAULT_PATH,
    Conversion,
    caps_from_set,
    effective_caps,
    is_default,
    numeric_user,
    parse_caps,
    resolved_process,
    security_warnings,
)
from ctr.errors import InvalidSpec

OCI_STANDARD_MOUNTS = ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup")


def read_oci(text: str, origin: str = "") -> Conversion:
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise InvalidSpec(f"OCI config {origin or '<stdin>'} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or "process" not in doc and "ociVersion" not in doc:
        raise InvalidSpec(f"{origin or '<stdin>'} is not an OCI runtime config.json (no ociVersion or process)")
    conv = Conversion()
    spec = conv.spec
    _read_oci_process(conv, dict(doc.get("process") or {}))
    root = dict(doc.get("root") or {})
    spec["read_only"] = bool(root.get("readonly"))
    if root.get("path"):
        conv.warn(f"root.path = {root['path']}", "a ctr container's root comes from its image")
    spec["hostname"] = doc.get("hostname") or None
    for n, m in enumerate(doc.get("mounts") or []):
        options = m.get("options") or []
        dst = m.get("destination", "")
        if m.get("type") == "bind" or "bind" in options or "rbind" in options:
            spec["mounts"].append({"source": m.get("source", ""), "target": dst, "read_only": "ro" in options})
        elif dst not in OCI_STANDARD_MOUNTS:
            conv.warn(f"mounts[{n}] ({m.get('type')} at {dst})", "only bind mounts have an equivalent")
    linux = dict(doc.get("linux") or {})
    _read_oci_resources(conv, dict(linux.pop("resources", None) or {}))
    _read_oci_linux(conv, linux)
    spec["labels"] = dict(doc.get("annotations") or {})
    for k in doc:
        if k not in ("ociVersion", "process", "root", "hostname", "mounts", "linux", "annotations"):
            conv.warn(k, "no equivalent in a ctr spec")
    return conv


def _read_oci_process(conv: Conversion, process: dict) -> None:
    spec = conv.spec
    args = list(process.pop("args", None) or [])
    spec["command"], spec["entrypoint"] = args, [] if args else None  # the full argv: no image entrypoint before it
    spec["env"] = list(process.pop("env", None) or [])
    cwd = process.pop("cwd", None)
    spec["workdir"] = cwd if cwd and cwd != "/" else None
    user = dict(process.pop("user", None) or {})
    uid, gid = user.pop("uid", 0), user.pop("gid", 0)
    spec["user"] = None if (uid, gid) == (0, 0) else f"{uid}:{gid}"
    for k, v in user.items():
        if not is_default(v):
            conv.warn(f"process.user.{k} = {json.dumps(v)}", "ctr takes the groups from the image's /etc/group")
    spec["tty"] = bool(process.pop("terminal", False))
    caps = process.pop("capabilities", None)
    if caps is not None:
        bounding = caps.get("bounding") or caps.get("effective") or []
        spec["cap_add"], spec["cap_drop"] = caps_from_set(parse_caps(conv, "process.capabilities", bounding))
        for k in ("effective", "permitted", "inheritable", "ambient"):
            if caps.get(k) and sorted(caps[k]) != sorted(bounding) and k != "inheritable":
                conv.warn(f"process.capabilities.{k}", "ctr gives one set as bounding, effective and permitted alike")
    if process.pop("noNewPrivileges", True) is not True:
        conv.warn("process.noNewPrivileges = false", "every ctr backend sets no_new_privs")
    for k, v in process.items():
        if k == "consoleSize":
            continue
        if not is_default(v):
            conv.warn(f"process.{k} = {json.dumps(v)}", "no equivalent in a ctr spec")


def _read_oci_resources(conv: Conversion, resources: dict) -> None:
    spec = conv.spec
    memory = resources.pop("memory", None) or {}
    spec["memory"] = memory.get("limit") or None
    for k, v in memory.items():
        if k not in ("limit", "swap") and not is_default(v):
            conv.warn(f"linux.resources.memory.{k}", "only the memory limit has an equivalent")
    cpu = resources.pop("cpu", None) or {}
    if cpu.get("quota") and cpu["quota"] > 0:
        spec["cpus"] = round(cpu["quota"] / (cpu.get("period") or CPU_PERIOD), 4)
    for k, v in cpu.items():
        if k not in ("quota", "period") and not is_default(v):
            conv.warn(f"linux.resources.cpu.{k} = {json.dumps(v)}", "only the CPU quota has an equivalent (cpus)")
    pids = (resources.pop("pids", None) or {}).get("limit")
    spec["pids_limit"] = pids if pids not in (None, 0) else None
    resources.pop("devices", None)  # ctr applies Docker's default device rules on every backend
    for k, v in resources.items():
        if not is_default(v):
            conv.warn(f"linux.resources.{k}", "no equivalent in a ctr spec")


def _read_oci_linux(conv: Conversion, linux: dict) -> None:
    """linux.namespaces, and what else of linux a spec has no field for."""
    spec = conv.spec
    namespaces = {ns.get("type"): ns for ns in linux.pop("namespaces", None) or []}
    spec["network"] = "none" if "network" in namespaces else "host"
    if (namespaces.get("network") or {}).get("path"):
        conv.warn(f"linux.namespaces network path {namespaces['network']['path']}", "ctr makes a new network namespace")
    for ns in ("user",):
        if ns in namespaces:
            conv.warn(f"linux.namespaces {ns}", "ctr runs no user namespaces")
    for ns in ("pid", "ipc", "uts", "mount"):
        if ns not in namespaces:
            conv.warn(f"linux.namespaces (no {ns})", f"ctr always gives a container its own {ns} namespace")
    for k in (
        "maskedPaths",
        "readonlyPaths",
        "cgroupsPath",
        "seccomp",
        "uidMappings",
        "gidMappings",
        "sysctl",
        "devices",
        "rootfsPropagation",
        "mountLabel",
        "intelRdt",
        "personality",
    ):
        v = linux.pop(k, None)
        if k in ("maskedPaths", "readonlyPaths", "cgroupsPath") or is_default(v):
            continue  # ctr applies Docker's fixed lists; the cgroup path is ctr's choice
        conv.warn(f"linux.{k}", "no equivalent in a ctr spec")
    for k, v in linux.items():
        if not is_default(v):
            conv.warn(f"linux.{k}", "no equivalent in a ctr spec")


def write_oci(spec: dict, resolve: Callable[[str], Any] | None = None) -> tuple[str, list[str]]:
    from ctr.native.rootfs import MASKED_PATHS, READONLY_PATHS

    warnings: list[str] = security_warnings(spec, "OCI config")
    args, env, cwd, user, complete = resolved_process(spec, resolve)
    if not any(e.startswith("PATH=") for e in env):
        env = [DEFAULT_PATH] + env
    if spec.get("image"):
        warnings.append(f"image = {spec['image']}: an OCI bundle has no image; unpack it into root.path (rootfs)")
    if not complete:
        warnings.append(
            f"entrypoint/command: the image {spec.get('image')} adds to them at run time and is not in "
            "this ctr's store; process.args holds only the spec's part"
        )
    ids = numeric_user(user)
    if ids is None:
        warnings.append(f"user = {user}: an OCI config takes numeric ids; written as 0:0")
        ids = (0, 0)
    caps = effective_caps(spec)
    mounts = _oci_mounts(spec)
    namespaces = _oci_namespaces(spec, warnings)
    resources = _oci_resources(spec)
    doc = {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": bool(spec.get("tty")),
            "user": {"uid": ids[0], "gid": ids[1]},
            "args": args,
            "env": env,
            "cwd": cwd or "/",
            "capabilities": {k: caps for k in ("bounding", "effective", "permitted")},
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": bool(spec.get("read_only"))},
        "hostname": spec.get("hostname") or "",
        "mounts": mounts,
        "linux": {
            "resources": resources,
            "namespaces": namespaces,
            "maskedPaths": list(MASKED_PATHS),
            "readonlyPaths": list(READONLY_PATHS),
        },
    }
    if spec.get("labels"):
        doc["annotations"] = dict(spec["labels"])
    if spec.get("name"):
        warnings.append(
            f"name = {spec['name']}: the container id is given to the runtime (runc run ID), not in config.json"
        )
    if spec.get("stdin"):
        warnings.append("stdin = true: whether stdin stays open is up to whoever runs the bundle")
    if spec.get("auto_remove"):
        warnings.append(
            "auto_remove = true: `runc run` removes the container when it exits anyway; detached, the caller deletes it"
        )
    if not spec.get("hostname"):
        del doc["hostname"]
    return json.dumps(doc, indent=2) + "\n", warnings


def _oci_mounts(spec: dict) -> list[dict]:
    """What runc's `spec` gives every container, then the spec's bind mounts."""
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
        {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
        {
            "destination": "/sys/fs/cgroup",
            "type": "cgroup",
            "source": "cgroup",
            "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
        },
    ]
    for m in spec.get("mounts") or []:
        mounts.append(
            {
                "destination": m["target"],
                "type": "bind",
                "source": m["source"],
                "options": ["rbind", "ro" if m.get("read_only") else "rw"],
            }
        )
    return mounts


def _oci_namespaces(spec: dict, warnings: list[str]) -> list[dict]:
    namespaces = [{"type": t} for t in ("pid", "ipc", "uts", "mount", "cgroup")]
    network = spec.get("network") or "none"
    if network != "host":
        namespaces.append({"type": "network"})
    if network == "bridge":
        warnings.append(
            "network = bridge: an OCI config has no network setup; the container gets a network "
            "namespace with lo only, unless a hook adds an interface"
        )
    return namespaces


def _oci_resources(spec: dict) -> dict:
    resources: dict = {"devices": [{"allow": False, "access": "rwm"}]}
    if spec.get("memory") is not None:
        resources["memory"] = {"limit": spec["memory"]}
    if spec.get("cpus") is not None:
        resources["cpu"] = {"quota": round(spec["cpus"] * CPU_PERIOD), "period": CPU_PERIOD}
    if spec.get("pids_limit") is not None:
        resources["pids"] = {"limit": spec["pids_limit"]}
    return resources
