"""ctr.compare.render_text: the text table, and the spec as run flags."""

from __future__ import annotations

from ctr.compare.render_text import render_table, spec_arguments
from ctr.spec import ContainerSpec
from tests.unit.compare.documents import result_with_difference


def test_text_table_marks_differing_rows():
    text = render_table(result_with_difference())
    lines = text.splitlines()
    assert (
        lines[0]
        == "ctr compare --backends native,lxc,docker --memory 64m --pids-limit 50 --cap-drop NET_RAW busybox sleep 1"
    )
    seccomp = next(line for line in lines if "seccomp " in line and "filters" not in line)
    assert seccomp.startswith("≠") and seccomp.split()[-3:] == ["disabled", "disabled", "filter"]
    memory = next(line for line in lines if "memory limit" in line)
    assert memory.startswith(" ") and memory.split()[-3:] == ["64m", "64m", "64m"]
    assert sum(1 for line in lines if line.startswith("≠")) == 2
    assert lines[-1] == "2 rows differ: seccomp, seccomp filters"


def test_spec_arguments_round_trip():
    spec = ContainerSpec(
        image="busybox",
        command=("sh", "-c", "echo hi"),
        env=("A=1",),
        user="65534",
        read_only=True,
        cpus=0.5,
        cap_add=("SYS_ADMIN",),
        network="host",
        entrypoint=(),
    )
    assert spec_arguments(spec.to_dict()) == [
        "-e",
        "A=1",
        "-u",
        "65534",
        "--read-only",
        "--cpus",
        "0.5",
        "--cap-add",
        "SYS_ADMIN",
        "--network",
        "host",
        "--entrypoint",
        "",
        "busybox",
        "sh",
        "-c",
        "echo hi",
    ]
