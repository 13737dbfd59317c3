"""The device policy `ctr explain` reads from a cgroup: a v1 devices.list, or the v2 BPF programs."""

from __future__ import annotations

from ctr.native.explain_cgroups import device_policy_of
from ctr.native.explain_table import devices_text


def test_devices_v1_list_is_read_as_the_kernel_holds_it(tmp_path):
    d = tmp_path / "devices" / "ctr-abc"
    d.mkdir(parents=True)
    (d / "devices.list").write_text("b *:* m\nc *:* m\nc 1:3 rwm\n")
    doc = device_policy_of(d, None)
    assert doc == {
        "enforced_by": "devices.list",
        "default": "deny",
        "rules": ["b *:* m", "c *:* m", "c 1:3 rwm"],
        "source": str(d / "devices.list"),
        "programs": [],
        "error": None,
    }
    (d / "devices.list").write_text("a *:* rwm\n")
    assert device_policy_of(d, None)["default"] == "allow" and device_policy_of(d, None)["rules"] == []
    (d / "devices.list").unlink()  # the cgroup went away mid-read: no figure, no exception
    assert device_policy_of(d, None)["error"] == "devices.list unreadable or gone"


def test_devices_v2_program_is_decoded_or_listed(tmp_path, monkeypatch):
    from ctr.native import bpf_devices
    from ctr.native.devices import device_policy

    ours = bpf_devices.assemble(bpf_devices.program(device_policy()))
    programs = {
        7: bpf_devices.ProgInfo(7, bpf_devices.PROG_NAME, "ab", len(ours) // 8, ours),
        8: bpf_devices.ProgInfo(8, "runc", "cd", 3, b"\x00" * 24),
    }
    attached: list[int] = [7]
    monkeypatch.setattr(bpf_devices, "query", lambda d, effective_too=False: list(attached))
    monkeypatch.setattr(bpf_devices, "info", lambda i: programs[i])
    doc = device_policy_of(None, tmp_path)
    assert (doc["enforced_by"], doc["default"]) == ("bpf", "deny")
    assert doc["rules"] == [str(r) for r in device_policy()[1:]]
    assert doc["programs"] == [
        {"id": 7, "name": bpf_devices.PROG_NAME, "tag": "ab", "insns": len(ours) // 8, "decoded": True}
    ]
    attached[:] = [8]  # another runtime's program: listed, not guessed at
    doc = device_policy_of(None, tmp_path)
    assert doc["rules"] is None and doc["programs"][0]["decoded"] is False
    assert "not in a shape ctr decodes" in render_table_devices(doc)
    attached[:] = []
    assert device_policy_of(None, tmp_path)["default"] == "allow"

    def gone(d, effective_too=False):
        raise OSError(2, "No such file or directory")

    monkeypatch.setattr(bpf_devices, "query", gone)
    assert device_policy_of(None, tmp_path)["error"] == "BPF_PROG_QUERY: No such file or directory"


def render_table_devices(doc):
    return devices_text(doc)


def test_devices_hybrid_v1_root_and_a_v2_program(tmp_path, monkeypatch):
    """ctr's v2 driver on a hybrid host: the v1 devices cgroup is the root's (allow all), the
    policy is the program on the unified cgroup."""
    from ctr.native import bpf_devices
    from ctr.native.devices import device_policy

    (tmp_path / "devices.list").write_text("a *:* rwm\n")
    ours = bpf_devices.assemble(bpf_devices.program(device_policy()))
    monkeypatch.setattr(bpf_devices, "query", lambda d, effective_too=False: [7])
    monkeypatch.setattr(bpf_devices, "info", lambda i: bpf_devices.ProgInfo(7, "x", "ab", len(ours) // 8, ours))
    doc = device_policy_of(tmp_path, tmp_path / "unified")
    assert (doc["enforced_by"], doc["default"], doc["source"]) == ("bpf", "deny", str(tmp_path / "unified"))
    monkeypatch.setattr(bpf_devices, "query", lambda d, effective_too=False: [])
    doc = device_policy_of(tmp_path, tmp_path / "unified")
    assert (doc["enforced_by"], doc["default"], doc["rules"]) == ("devices.list", "allow", [])
