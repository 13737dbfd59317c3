"""--security-opt on every backend: the checks they share, and the seccomp profile that
native and lxc install themselves (docker hands the same choice to the engine).

A container's record keeps what it was made with (`record.extra["seccomp"]`): the
profile ("default", "unconfined" or the file's path) and, for a file, its text as
read at create, so a later start does not depend on the file staying put, as Docker
keeps a profile's JSON in the container's HostConfig.
"""

from __future__ import annotations

from pathlib import Path

from ctr.errors import InvalidSpec, Unsupported, os_reason
from ctr.spec import ContainerSpec
from ctr.state.paths import Paths


def host_lsms() -> set[str]:
    """The Linux security modules active here that --security-opt can name."""
    found = set()
    try:
        found.update(Path("/sys/kernel/security/lsm").read_text().strip().split(","))
    except OSError:
        pass
    try:
        if Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y":
            found.add("apparmor")
    except OSError:
        pass
    if Path("/sys/fs/selinux/enforce").exists():
        found.add("selinux")
    return found


def check_security_opts(spec: ContainerSpec, backend: str, applies_lsm: bool = False) -> dict:
    """Refuse what cannot be honoured before anything is made; returns what the record keeps.
    `applies_lsm`: the backend can apply apparmor= and label= where the host has the LSM
    (the engine can; ctr's own runtimes apply no LSM profile)."""
    for opt in spec.lsm_options():
        key = opt.partition("=")[0]
        lsm = "apparmor" if key == "apparmor" else "selinux"
        if lsm not in host_lsms():
            raise Unsupported(backend, f"--security-opt {opt}", f"this host has no {lsm} security module")
        if not applies_lsm:
            raise Unsupported(backend, f"--security-opt {opt}", f"ctr applies no {lsm} profile")
    profile = spec.requested_seccomp()
    if profile in ("default", "unconfined"):
        return {"profile": spec.seccomp_profile()}
    from ctr.native import seccomp

    try:
        text = Path(profile).read_text()
    except OSError as exc:
        raise InvalidSpec(f"invalid --security-opt seccomp={profile}: {os_reason(exc)}") from None
    except UnicodeDecodeError:
        raise InvalidSpec(f"invalid --security-opt seccomp={profile}: not JSON: not UTF-8 text") from None
    seccomp.parse(text, profile)
    if spec.privileged:
        return {"profile": "unconfined"}  # checked, then not used: the engine does the same
    return {"profile": profile, "text": text}


def kept_seccomp(spec: ContainerSpec, kept: dict | None) -> dict:
    """What a record keeps of the container's profile (check_security_opts), or for a record
    from before it was kept, the spec's choice."""
    return kept or {"profile": spec.seccomp_profile()}


def seccomp_program(paths: Paths, spec: ContainerSpec, kept: dict | None) -> bytes | None:
    """The compiled filter for a container (None: unconfined), from ctr's cache when it can."""
    from ctr.native import seccomp

    kept = kept_seccomp(spec, kept)
    if kept["profile"] == "unconfined":
        return None
    return seccomp.compiled(profile_text(kept), kept["profile"], spec.capabilities(), paths.data / "cache" / "seccomp")


def profile_text(kept: dict) -> str:
    """The JSON of the profile `kept` names: ctr's default, or the file's text as read at create."""
    from ctr.native import seccomp

    return seccomp.DEFAULT_PROFILE.read_text() if kept["profile"] == "default" else kept["text"]


def installed_seccomp(record) -> dict | None:
    """Which profile ctr had installed in a container (explain's 'seccomp profile' row):
    'default' (ctr's), a file, 'unconfined', or 'engine default' (docker's own, which ctr
    leaves to the engine), and for ctr's how many of the native syscalls it refuses
    whatever the arguments and how many it allows for some arguments only."""
    from ctr.errors import CtrError
    from ctr.native import seccomp

    try:
        spec = ContainerSpec.from_dict(record.spec)
    except (TypeError, CtrError):
        return None  # a record without a spec ctr can read: nothing to say
    kept = kept_seccomp(spec, record.extra.get("seccomp"))
    profile = kept["profile"]
    if profile == "unconfined":
        return {"profile": "unconfined"}
    if profile == "default" and record.backend == "docker":
        return {"profile": "engine default"}
    verdicts = seccomp.parse(profile_text(kept), profile).resolve(spec.capabilities()).verdicts()
    values = list(verdicts.values())
    return {
        "profile": profile,
        "syscalls": len(values),
        "refused": values.count("refused"),
        "by_argument": values.count("by argument"),
    }
