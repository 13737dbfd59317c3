"""Parsing of user text into ContainerSpec, and the image-config merge rules."""

import pytest

from ctr.errors import InvalidSpec
from ctr.images.model import ImageConfig
from ctr.process import resolve_process
from ctr.spec import (
    DEFAULT_CAPS,
    ContainerSpec,
    Mount,
    parse_capability,
    parse_cpus,
    parse_env,
    parse_memory,
    parse_pids_limit,
    parse_volume,
    validate_name,
)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("256m", 256 << 20),
        ("64M", 64 << 20),
        ("1g", 1 << 30),
        ("1.5g", int(1.5 * (1 << 30))),
        ("7340032", 7340032),
        ("10mb", 10 << 20),
        ("8192k", 8 << 20),
    ],
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("text", ["12q", "", "m", "-5m", "1m", "abc"])
def test_parse_memory_rejects(text):
    with pytest.raises(InvalidSpec, match="memory"):
        parse_memory(text)


def test_parse_cpus():
    assert parse_cpus("0.5") == 0.5
    for bad in ("-1", "0", "x", "1000"):
        with pytest.raises(InvalidSpec, match="cpus"):
            parse_cpus(bad)


def test_parse_pids_limit():
    assert parse_pids_limit("20") == 20
    assert parse_pids_limit("-1") == -1
    for bad in ("0", "-2", "x"):
        with pytest.raises(InvalidSpec, match="pids"):
            parse_pids_limit(bad)


def test_parse_volume(tmp_path):
    assert parse_volume(f"{tmp_path}:/data") == Mount(str(tmp_path), "/data", False)
    assert parse_volume(f"{tmp_path}:/data:ro") == Mount(str(tmp_path), "/data", True)
    assert parse_volume(f"{tmp_path}:/data/../x:rw").target == "/x"


@pytest.mark.parametrize(
    "text,why",
    [
        ("/nonexistent-ctr-src:/x", "does not exist"),
        ("relative:/x", "named volumes"),
        ("/tmp:relative", "must be absolute"),
        ("/tmp:/x:rx", "mode"),
        ("/tmp", "use /host/path"),
    ],
)
def test_parse_volume_rejects(text, why):
    with pytest.raises(InvalidSpec, match=why):
        parse_volume(text)


def test_parse_env_takes_bare_names_from_environment():
    assert parse_env(["A=1", "B", "C"], {"B": "2"}) == ("A=1", "B=2")
    with pytest.raises(InvalidSpec):
        parse_env(["=x"], {})


def test_capabilities_follow_dockers_rules():
    assert parse_capability("net_raw") == "CAP_NET_RAW"
    assert parse_capability("CAP_SYS_ADMIN") == "CAP_SYS_ADMIN"
    with pytest.raises(InvalidSpec, match="unknown capability"):
        parse_capability("NOPE")
    assert set(ContainerSpec("busybox").capabilities()) == set(DEFAULT_CAPS)
    s = ContainerSpec("busybox", cap_drop=["NET_RAW"], cap_add=["sys_admin"])
    assert "CAP_NET_RAW" not in s.capabilities() and "CAP_SYS_ADMIN" in s.capabilities()
    assert ContainerSpec("busybox", cap_drop=["ALL"], cap_add=["CHOWN"]).capabilities() == ("CAP_CHOWN",)
    assert "CAP_SYS_ADMIN" in ContainerSpec("busybox", cap_add=["ALL"], cap_drop=["KILL"]).capabilities()
    assert "CAP_KILL" not in ContainerSpec("busybox", cap_add=["ALL"], cap_drop=["KILL"]).capabilities()


@pytest.mark.parametrize("name", ["web", "a.b-c_d", "X1"])
def test_valid_names(name):
    assert validate_name(name) == name


@pytest.mark.parametrize("name", ["", "-x", "../etc", "a/b", "a b", ".hidden", "x" * 200])
def test_invalid_names(name):
    with pytest.raises(InvalidSpec, match="invalid container name"):
        validate_name(name)


def test_spec_validation_names_the_field():
    with pytest.raises(InvalidSpec, match="memory"):
        ContainerSpec("busybox", memory=10)
    with pytest.raises(InvalidSpec, match="network"):
        ContainerSpec("busybox", network="weird")
    with pytest.raises(InvalidSpec, match="working directory"):
        ContainerSpec("busybox", workdir="rel")
    with pytest.raises(InvalidSpec, match="must be a sequence"):
        ContainerSpec("busybox", command="echo hi")


def test_spec_round_trips_through_dict(tmp_path):
    s = ContainerSpec(
        "busybox",
        command=["echo", "hi"],
        env=["A=1"],
        mounts=[Mount(str(tmp_path), "/d", True)],
        memory=64 << 20,
        cap_add=["SYS_ADMIN"],
        labels={"k": "v"},
        entrypoint=["/bin/sh", "-c"],
    )
    assert ContainerSpec.from_dict(s.to_dict()) == s


CONFIG = ImageConfig(
    entrypoint=("/entry",), cmd=("default",), env=("PATH=/bin", "A=image"), workdir="/srv", user="nobody"
)


def test_resolve_process_uses_image_config():
    p = resolve_process(ContainerSpec("img"), CONFIG)
    assert p.args == ("/entry", "default")
    assert p.env == ("PATH=/bin", "A=image")
    assert (p.cwd, p.user) == ("/srv", "nobody")


def test_resolve_process_overrides_like_docker():
    p = resolve_process(ContainerSpec("img", command=["x"], env=["A=spec"], workdir="/w", user="0"), CONFIG)
    assert p.args == ("/entry", "x") and "A=spec" in p.env and "A=image" not in p.env
    assert (p.cwd, p.user) == ("/w", "0")
    # --entrypoint clears the image's Cmd
    assert resolve_process(ContainerSpec("img", entrypoint=["/other"]), CONFIG).args == ("/other",)
    assert resolve_process(ContainerSpec("img", entrypoint=[], command=["ls"]), CONFIG).args == ("ls",)
    with pytest.raises(InvalidSpec, match="no command"):
        resolve_process(ContainerSpec("img", entrypoint=[]), CONFIG)


def test_privileged_is_every_capability_and_unconfined(tmp_path):
    from ctr.spec import CAPABILITIES

    # Docker 20.10 gives a privileged container every capability before it looks at
    # --cap-add or --cap-drop, and the engine skips seccomp for it.
    spec = ContainerSpec("busybox", privileged=True, cap_drop=["NET_RAW"], security_opt=["seccomp=unconfined"])
    assert spec.capabilities() == CAPABILITIES
    assert spec.seccomp_profile() == "unconfined"
    profile = tmp_path / "p.json"
    spec = ContainerSpec("busybox", privileged=True, security_opt=[f"seccomp={profile}"])
    assert spec.seccomp_profile() == "unconfined" and spec.requested_seccomp() == str(profile)
    assert ContainerSpec.from_dict(spec.to_dict()) == spec
    assert (
        ContainerSpec.from_dict(
            {k: v for k, v in ContainerSpec("busybox").to_dict().items() if k != "privileged"}
        ).privileged
        is False
    )


def test_privileged_still_checks_a_named_profile(tmp_path):
    from ctr.security import check_security_opts

    missing = tmp_path / "missing.json"
    with pytest.raises(InvalidSpec, match="seccomp="):
        check_security_opts(ContainerSpec("busybox", privileged=True, security_opt=[f"seccomp={missing}"]), "native")
    good = tmp_path / "good.json"
    good.write_text('{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}')
    kept = check_security_opts(ContainerSpec("busybox", privileged=True, security_opt=[f"seccomp={good}"]), "native")
    assert kept == {"profile": "unconfined"}
