"""ctr.compare.rows: rows and difference marks from synthetic explain documents, the readable cells."""

from __future__ import annotations

import pytest

from ctr.compare.rows import FEATURES, build_rows, cap_summary, docker_size, human_bytes
from ctr.spec import CAPABILITIES, DEFAULT_CAPS
from tests.unit.compare.documents import NO_NET_RAW, make_doc, make_result, rows_by_key

# -- rows and difference marks -------------------------------------------------------------


def test_equal_columns_mark_nothing():
    rows = build_rows({"native": make_result(make_doc()), "lxc": make_result(make_doc(keeper="ctr"))})
    assert [r["key"] for r in rows if r["differs"]] == []
    by = rows_by_key(rows)
    assert by["cgroup.memory"]["display"] == {"native": "64m", "lxc": "64m"}
    assert by["cgroup.pids"]["display"]["native"] == "50"
    assert by["caps.effective"]["display"]["native"] == "default 14 -NET_RAW"
    assert by["caps.inheritable"]["display"]["native"] == "none"
    assert by["namespace.pid"]["display"]["native"] == "own"
    assert by["namespace.user"]["display"]["native"] == "host"
    assert by["security.uid_map"]["display"]["native"] == "identity"
    assert by["rootfs.masked_paths"]["display"]["native"] == "1 of 1"  # the absent /proc/scsi is not counted
    assert by["keeper.comm"]["display"]["native"] == "ctr"
    assert by["cost.keeper_rss_kb"]["display"]["native"] == "20.0 MiB"
    assert by["cost.writable_layer_bytes"]["display"]["native"] == "4.0 KiB"


def test_one_differing_column_marks_exactly_its_rows():
    docker = make_doc(seccomp="filter", filters=1, keeper="containerd-shim", rss_kb=12000, own_user_ns=True)
    rows = build_rows(
        {"native": make_result(make_doc()), "lxc": make_result(make_doc()), "docker": make_result(docker, total=500.0)}
    )
    assert [r["key"] for r in rows if r["differs"]] == [
        "namespace.user",
        "security.seccomp",
        "security.seccomp_filters",
        "keeper.comm",
    ]
    by = rows_by_key(rows)
    assert by["security.seccomp"]["display"] == {"native": "disabled", "lxc": "disabled", "docker": "filter"}
    # costs differ (RSS, total time) but are measurements: never marked
    assert not by["cost.keeper_rss_kb"]["differs"] and not by["cost.total_ms"]["differs"]
    assert not by["cost.total_ms"]["compared"]


def test_failed_backend_shows_dashes_and_marks_nothing():
    rows = build_rows({"native": make_result(make_doc()), "lxc": make_result(None, exit_code=None, total=None)})
    assert not any(r["differs"] for r in rows)
    by = rows_by_key(rows)
    assert by["cgroup.memory"]["display"]["lxc"] == "-" and by["cgroup.memory"]["values"]["lxc"] is None
    assert by["run.exit_code"]["display"]["lxc"] == "-"


def test_a_value_the_kernel_did_not_give_differs_from_one_it_did():
    rows = build_rows({"native": make_result(make_doc()), "lxc": make_result(make_doc(pids=None))})
    assert rows_by_key(rows)["cgroup.pids"]["differs"]
    assert rows_by_key(rows)["cgroup.pids"]["display"]["lxc"] == "-"


def test_exit_code_difference_is_marked():
    rows = build_rows({"native": make_result(make_doc(), exit_code=0), "docker": make_result(make_doc(), exit_code=1)})
    assert rows_by_key(rows)["run.exit_code"]["differs"]


def test_unlimited_values():
    by = rows_by_key(build_rows({"native": make_result(make_doc(memory="unlimited", pids="unlimited"))}))
    assert by["cgroup.memory"]["display"]["native"] == "unlimited"
    assert by["cgroup.pids"]["display"]["native"] == "unlimited"
    assert by["cgroup.cpus"]["display"]["native"] == "unlimited"


def test_every_feature_has_one_row_in_order():
    rows = build_rows({"native": make_result(make_doc())})
    assert [r["key"] for r in rows][: len(FEATURES)] == [f[0] for f in FEATURES]
    assert len({r["key"] for r in rows}) == len(rows)


@pytest.mark.parametrize(
    "caps, text",
    [
        (list(DEFAULT_CAPS), "default 14"),
        (NO_NET_RAW, "default 14 -NET_RAW"),
        (list(DEFAULT_CAPS) + ["CAP_SYS_ADMIN"], "default 14 +SYS_ADMIN"),
        ([c for c in NO_NET_RAW if c != "CAP_KILL"] + ["CAP_SYS_ADMIN"], "default 14 -KILL -NET_RAW +SYS_ADMIN"),
        (list(CAPABILITIES), "all 41"),
        ([c for c in CAPABILITIES if c != "CAP_SYS_ADMIN"], "all 41 -SYS_ADMIN"),
        (["CAP_CHOWN"], "CHOWN"),
        ([], "none"),
    ],
)
def test_cap_summary(caps, text):
    assert cap_summary(caps, 40) == text


def test_sizes():
    assert [docker_size(n) for n in (64 << 20, 1 << 30, 3 << 10, 1536, 1000)] == ["64m", "1g", "3k", "1536b", "1000b"]
    assert [human_bytes(n) for n in (0, 1023, 4096, 20 << 20)] == ["0 B", "1023 B", "4.0 KiB", "20.0 MiB"]
