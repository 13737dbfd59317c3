"""ctr.convert.oci: an OCI runtime config.json read and written."""

from __future__ import annotations

import json

from ctr.convert import convert
from ctr.convert.oci import read_oci


def test_oci_round_trip():
    spec = {
        "image": "",
        "command": ["/bin/sh", "-c", "echo hi"],
        "entrypoint": [],
        "env": ["PATH=/bin", "A=1"],
        "workdir": "/w",
        "user": "5:6",
        "hostname": "h",
        "memory": 64 << 20,
        "cpus": 0.25,
        "pids_limit": 9,
        "read_only": True,
        "cap_add": ["CAP_CHOWN", "CAP_KILL"],
        "cap_drop": ["ALL"],
        "network": "none",
        "mounts": [{"source": "/tmp", "target": "/t", "read_only": True}],
        "labels": {"k": "v"},
        "tty": True,
    }
    oci, warnings = convert(json.dumps(spec), "ctr", "oci")
    doc = json.loads(oci)
    assert doc["process"]["args"] == ["/bin/sh", "-c", "echo hi"]
    assert doc["process"]["user"] == {"uid": 5, "gid": 6}
    assert doc["process"]["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_KILL"]
    assert {"type": "network"} in doc["linux"]["namespaces"]
    assert doc["linux"]["resources"]["cpu"] == {"quota": 25000, "period": 100000}
    back = read_oci(oci)
    assert back.warnings == ["root.path = rootfs: a ctr container's root comes from its image"]
    for key, value in spec.items():
        assert back.spec[key] == value, key


def test_oci_names_what_it_cannot_take():
    doc = {
        "ociVersion": "1.0.2",
        "process": {
            "args": ["x"],
            "rlimits": [{"type": "RLIMIT_NOFILE"}],
            "apparmorProfile": "p",
            "noNewPrivileges": False,
        },
        "root": {"path": "rootfs"},
        "linux": {"namespaces": [{"type": "user"}], "seccomp": {"defaultAction": "x"}, "uidMappings": [{"hostID": 1}]},
        "mounts": [{"destination": "/run", "type": "tmpfs", "source": "tmpfs"}],
        "hooks": {"prestart": []},
    }
    text = "\n".join(read_oci(json.dumps(doc)).warnings)
    for key in (
        "process.rlimits",
        "process.apparmorProfile",
        "process.noNewPrivileges",
        "root.path",
        "linux.namespaces user",
        "linux.seccomp",
        "linux.uidMappings",
        "mounts[0] (tmpfs at /run)",
        "hooks",
        "no pid",
    ):
        assert key in text, key
