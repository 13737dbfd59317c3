"""`ctr convert`: every pair of formats converts; unknown formats and bad input are refused; the ctr format."""

from __future__ import annotations

import json

import pytest

from ctr.convert import READ_FORMATS, WRITE_FORMATS, convert
from ctr.convert.docker import read_docker
from ctr.convert.lxc import read_lxc
from ctr.errors import InvalidSpec
from tests.unit.convert.samples import CONVERTIBLE_LXC, DOCKER_INSPECT, UNCONVERTIBLE_LXC


@pytest.mark.parametrize("source", READ_FORMATS)
@pytest.mark.parametrize("target", WRITE_FORMATS)
def test_every_pair_converts(source, target):
    inputs = {
        "lxc": CONVERTIBLE_LXC + UNCONVERTIBLE_LXC,
        "docker": json.dumps(DOCKER_INSPECT),
        "oci": convert(json.dumps({"image": "", "command": ["true"]}), "ctr", "oci")[0],
        "ctr": json.dumps({"image": "busybox", "command": ["true"], "labels": {"a": "b"}}),
    }
    out, warnings = convert(inputs[source], source, target)
    assert out.strip()
    assert all(isinstance(w, str) and ": " in w for w in warnings)


def test_unknown_formats_and_bad_input():
    with pytest.raises(InvalidSpec, match="cannot read"):
        convert("", "podman", "ctr")
    with pytest.raises(InvalidSpec, match="cannot write"):
        convert("", "ctr", "podman")
    with pytest.raises(InvalidSpec, match="not 'key = value'"):
        read_lxc("lxc.uts.name\n")
    with pytest.raises(InvalidSpec, match="2 containers"):
        read_docker(json.dumps([DOCKER_INSPECT, DOCKER_INSPECT]))


def test_ctr_reader_takes_records_and_names_unknown_fields():
    record = {"backend": "native", "spec": {"image": "busybox", "command": ["true"], "bogus": 1}}
    out, warnings = convert(json.dumps(record), "ctr", "ctr")
    assert json.loads(out)["command"] == ["true"]
    assert warnings == ["bogus: not a field of a ctr spec"]
