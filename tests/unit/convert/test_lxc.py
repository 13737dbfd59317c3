"""ctr.convert.lxc: an LXC config round trip keeps every convertible key, and every other key is named."""

from __future__ import annotations

import json

from ctr.convert import convert
from ctr.convert.lxc import parse_lxc_config, read_lxc, write_lxc
from ctr.images.model import ImageConfig
from tests.unit.convert.samples import CONVERTIBLE_LXC, UNCONVERTIBLE_LXC


def semantic(items: list[tuple[str, str]]) -> dict:
    """An LXC config reduced to what it means, so v1 and v2 cgroup keys compare equal."""
    return read_lxc("\n".join(f"{k} = {v}" for k, v in items)).spec


def test_lxc_round_trip_keeps_every_convertible_key():
    ctr_json, warnings = convert(CONVERTIBLE_LXC, "lxc", "ctr")
    assert warnings == ["image: the source names none; set one before using this spec"]
    back, warnings = convert(ctr_json, "ctr", "lxc")
    assert warnings == []
    original, result = parse_lxc_config(CONVERTIBLE_LXC), parse_lxc_config(back)
    assert semantic(result) == semantic(original)
    keys = {k for k, _ in result}
    for key, _value in original:
        if key.startswith("lxc.cgroup."):
            assert key in keys or key.replace("lxc.cgroup.", "lxc.cgroup2.").split(".limit_in")[0] in " ".join(keys)
        else:
            assert key in keys, f"{key} was lost"
    assert ("lxc.uts.name", "web1") in result
    assert ("lxc.init.cmd", "/bin/httpd -f -p 8080") in result
    assert [v for k, v in result if k == "lxc.environment"] == ["A=1", "B=two words"]
    assert ("lxc.cap.drop", "sys_module mac_admin mac_override sys_time") in result
    assert ("lxc.net.0.type", "none") in result
    assert ("lxc.ephemeral", "1") in result
    # A fixpoint: converting again changes nothing.
    again, _ = convert(back, "lxc", "ctr")
    assert json.loads(again) == json.loads(ctr_json)


def test_lxc_spec_values():
    spec = read_lxc(CONVERTIBLE_LXC).spec
    assert spec["hostname"] == "web1"  # quotes removed, as liblxc does
    assert spec["command"] == ["/bin/httpd", "-f", "-p", "8080"]
    assert spec["user"] == "1000:100" and spec["workdir"] == "/srv"
    assert spec["memory"] == 256 << 20 and spec["cpus"] == 0.5 and spec["pids_limit"] == 64
    assert spec["mounts"] == [
        {"source": "/tmp", "target": "/tmp/host", "read_only": False},
        {"source": "/etc/hostname", "target": "/etc/host-name", "read_only": True},
    ]
    assert spec["read_only"] and spec["auto_remove"] and spec["network"] == "host"
    assert spec["cap_add"] == ["ALL"]
    assert spec["cap_drop"] == ["CAP_SYS_MODULE", "CAP_MAC_ADMIN", "CAP_MAC_OVERRIDE", "CAP_SYS_TIME"]


def test_lxc_defaults_mean_what_liblxc_does():
    spec = read_lxc("lxc.uts.name = a\n").spec
    assert spec["network"] == "none"  # no lxc.net: a new network namespace with lo only
    assert spec["cap_add"] == ["ALL"] and spec["cap_drop"] == []  # liblxc keeps every capability
    out, _ = write_lxc(spec)
    assert "lxc.cap" not in out  # ...so nothing needs saying on the way back
    keep = read_lxc("lxc.cap.keep = chown kill\n").spec
    assert keep["cap_drop"] == ["ALL"] and keep["cap_add"] == ["CAP_CHOWN", "CAP_KILL"]
    assert "lxc.cap.keep = chown kill" in write_lxc(keep)[0]
    assert read_lxc("lxc.cap.keep = none\n").spec["cap_add"] == []


def test_every_unconvertible_lxc_key_is_named():
    conv = read_lxc(UNCONVERTIBLE_LXC)
    text = "\n".join(conv.warnings)
    for key, _ in parse_lxc_config(UNCONVERTIBLE_LXC):
        if key in ("lxc.net.0.type",):
            continue  # veth is bridge
        assert key in text, f"{key} was dropped silently"
    assert conv.spec["network"] == "bridge"
    assert "FROM_HOST" in text
    assert "lxc.mount.entry = shm dev/shm tmpfs" in text


def test_lxc_from_its_file_name(tmp_path):
    config = tmp_path / "web7" / "config"
    config.parent.mkdir()
    config.write_text("lxc.uts.name = x\n")
    assert read_lxc(config.read_text(), origin=str(config)).spec["name"] == "web7"


def test_ctr_to_lxc_names_what_lxc_cannot_hold():
    spec = {
        "image": "busybox",
        "name": "web",
        "command": ["sh", "-c", "echo hi there"],
        "user": "nobody",
        "tty": True,
        "stdin": True,
        "labels": {"team": "a"},
        "env": ["A=1"],
    }
    out, warnings = convert(json.dumps(spec), "ctr", "lxc")
    text = "\n".join(warnings)
    for key in ("image", "name", "user", "tty", "stdin", "labels.team", "command", "entrypoint/command"):
        assert f"{key} " in text or f"{key}:" in text, key
    assert "lxc.environment = A=1" in out


def test_ctr_to_lxc_merges_the_image_config_when_known():
    config = ImageConfig(entrypoint=("/entry",), cmd=("default",), env=("PATH=/bin", "X=1"), workdir="/w", user="7")
    out, warnings = convert(
        json.dumps({"image": "app", "env": ["Y=2"]}),
        "ctr",
        "lxc",
        resolve=lambda image: config if image == "app" else None,
    )
    items = parse_lxc_config(out)
    assert ("lxc.init.cmd", "/entry default") in items
    assert ("lxc.init.cwd", "/w") in items and ("lxc.init.uid", "7") in items
    assert [v for k, v in items if k == "lxc.environment"] == ["PATH=/bin", "X=1", "Y=2"]
    assert not any(w.startswith("entrypoint/command") for w in warnings)
