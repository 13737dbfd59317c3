"""compare without containers: rows and difference marks from synthetic explain documents,
the JSON document's keys against docs/compare-schema.md, the text table, the HTML page,
and the run/cleanup logic against a fake backend."""

from __future__ import annotations

import copy
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from ctr.compare import run as compare_mod
from ctr.backends.base import Backend, BackendInfo
from ctr.compare.run import compare, container_names, tree_size
from ctr.compare.rows import FEATURES, build_rows, cap_summary, docker_size, human_bytes, keeper_of
from ctr.state.paths import Paths
from ctr.state.records import Record
from ctr.cli.compare import compare_command
from ctr.compare.render_text import render_table, spec_arguments
from ctr.compare.render_html import render_html
from ctr.errors import CommandNotFound, CtrError, NotFound, Unsupported
from ctr.spec import CAPABILITIES, DEFAULT_CAPS, ContainerSpec

DOCS = Path(__file__).resolve().parents[3] / "docs" / "compare-schema.md"
NO_NET_RAW = [c for c in CAPABILITIES if c in DEFAULT_CAPS and c != "CAP_NET_RAW"]


def make_doc(*, memory: object = 64 << 20, pids: object = 50, caps: list[str] = NO_NET_RAW, seccomp: str = "disabled",
             filters: int = 0, keeper: str = "ctr", rss_kb: int = 20480, own_user_ns: bool = False) -> dict:
    """The parts of an explain document (docs/explain-schema.md) that the rows read."""
    shared = {"user", "time"} - ({"user"} if own_user_ns else set())
    cap_set = {"hex": "0", "names": caps}
    identity = [[0, 0, 4294967295]]
    return {
        "schema_version": 1,
        "pid": 4242,
        "process": {"pid": 4242, "comm": "sleep", "keeper": {"pid": 4240, "chain": [
            {"pid": 4240, "comm": keeper, "cmdline": keeper, "vm_rss_kb": rss_kb, "in_pid_namespace": False, "keeper": True},
            {"pid": 1, "comm": "systemd", "cmdline": "/sbin/init", "vm_rss_kb": 9000, "in_pid_namespace": False, "keeper": False},
        ]}},
        "namespaces": {ns: {"inode": 1, "host_inode": 1 if ns in shared else 2, "shared_with_host": ns in shared}
                       for ns in ("pid", "net", "mnt", "uts", "ipc", "user", "cgroup", "time")},
        "cgroups": {"mode": "v2", "limits": {"memory": memory, "memory_usage": 1 << 20, "cpus": None, "cpu_quota_us": None,
                                             "cpu_period_us": 100000, "cpu_shares": None, "cpu_weight": 100,
                                             "pids": pids, "pids_current": 1, "freezer": "thawed"}},
        "capabilities": {"CapEff": cap_set, "CapPrm": cap_set, "CapBnd": cap_set,
                         "CapInh": {"hex": "0", "names": []}, "CapAmb": {"hex": "0", "names": []}, "last_cap": 40},
        "security": {"seccomp_mode": 2 if seccomp == "filter" else 0, "seccomp": seccomp, "seccomp_filters": filters,
                     "no_new_privs": True, "uid": {"real": 0, "effective": 0, "saved": 0, "filesystem": 0},
                     "gid": {"real": 0, "effective": 0, "saved": 0, "filesystem": 0},
                     "uid_map": identity, "uid_map_identity": True, "gid_map": identity, "gid_map_identity": True},
        "rootfs": {"fstype": "overlay", "read_only": False},
        "masked_paths": [{"path": "/proc/kcore", "present": True, "masked": True, "by": "/dev/null"},
                         {"path": "/proc/scsi", "present": False, "masked": False, "by": None}],
        "readonly_paths": [{"path": "/proc/sys", "present": True, "read_only": True, "mount_point": "/proc/sys"}],
        "unreadable": [],
    }


def make_result(doc: dict | None, exit_code: int | None = 0, total: float | None = 100.0) -> dict:
    keeper = keeper_of(doc) if doc else None
    layer = {"path": "/x/upper", "bytes": 4096, "files": 1, "reason": None}
    return {"backend": "?", "versions": {},
            "explain": {"name": "e", "pid": 4242 if doc else None, "doc": doc, "keeper": keeper,
                        "writable_layer": layer if doc else None},
            "timing": {"name": "r", "create_ms": 2.5, "start_ms": 40.0, "total_ms": total, "exit_code": exit_code,
                       "start_error": None, "writable_layer": layer},
            "errors": []}


def rows_by_key(rows: list[dict]) -> dict[str, dict]:
    return {r["key"]: r for r in rows}


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
    rows = build_rows({"native": make_result(make_doc()), "lxc": make_result(make_doc()),
                       "docker": make_result(docker, total=500.0)})
    assert [r["key"] for r in rows if r["differs"]] == [
        "namespace.user", "security.seccomp", "security.seccomp_filters", "keeper.comm"]
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


@pytest.mark.parametrize("caps, text", [
    (list(DEFAULT_CAPS), "default 14"),
    (NO_NET_RAW, "default 14 -NET_RAW"),
    (list(DEFAULT_CAPS) + ["CAP_SYS_ADMIN"], "default 14 +SYS_ADMIN"),
    ([c for c in NO_NET_RAW if c != "CAP_KILL"] + ["CAP_SYS_ADMIN"], "default 14 -KILL -NET_RAW +SYS_ADMIN"),
    (list(CAPABILITIES), "all 41"),
    ([c for c in CAPABILITIES if c != "CAP_SYS_ADMIN"], "all 41 -SYS_ADMIN"),
    (["CAP_CHOWN"], "CHOWN"),
    ([], "none"),
])
def test_cap_summary(caps, text):
    assert cap_summary(caps, 40) == text


def test_sizes():
    assert [docker_size(n) for n in (64 << 20, 1 << 30, 3 << 10, 1536, 1000)] == ["64m", "1g", "3k", "1536b", "1000b"]
    assert [human_bytes(n) for n in (0, 1023, 4096, 20 << 20)] == ["0 B", "1023 B", "4.0 KiB", "20.0 MiB"]


def test_tree_size_counts_files_not_directories(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"12345")
    (tmp_path / "link").symlink_to("/nonexistent/target")
    (tmp_path / "dirlink").symlink_to(tmp_path / "d")  # not followed
    assert tree_size(tmp_path) == (5 + len("/nonexistent/target") + len(str(tmp_path / "d")), 3)
    with pytest.raises(FileNotFoundError):
        tree_size(tmp_path / "missing")


# -- compare() against a fake backend --------------------------------------------------------


class FakeBackend(Backend):
    """Keeps containers in a dict; counts what was made and removed."""

    name = "fake"
    made: dict[str, str] = {}
    removed: list[str] = []
    fail: dict[str, BaseException] = {}  # method name -> what it raises
    upper: Path | None = None

    @classmethod
    def probe(cls) -> BackendInfo:
        return BackendInfo(cls.name, True, "", {"fake": "1"})

    def run(self, spec):  # pragma: no cover - compare never runs in the foreground
        raise AssertionError("compare must not use run()")

    def _maybe_fail(self, what: str) -> None:
        if what in self.fail:
            raise self.fail[what]

    def create(self, spec):
        self._maybe_fail("create")
        assert not spec.tty and not spec.stdin and not spec.auto_remove
        self.made[spec.name] = "created"
        return Record(id="0" * 64, name=spec.name, backend=self.name, spec=spec.to_dict())

    def start(self, name):
        self._maybe_fail("start")
        self.made[name] = "running"

    def get(self, name):
        if name not in self.made:
            raise NotFound(f"no such container: {name}")
        return Record(id="0" * 64, name=name, backend=self.name, spec={}, status=self.made[name], pid=4242)

    def wait(self, name):
        self._maybe_fail("wait")
        self.made[name] = "exited"
        return 3

    def remove(self, name, force=False):
        if name not in self.made:
            raise NotFound(f"no such container: {name}")
        del self.made[name]
        self.removed.append(name)

    def inspect(self, name):
        return {"rootfs": {"upper": str(self.upper)}} if self.upper else {"rootfs": {}}


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Two fake backends, "native" and "docker", and a fake explain_pid."""
    classes = {}
    for name in ("native", "docker"):
        classes[name] = type(f"Fake_{name}", (FakeBackend,), {"name": name, "made": {}, "removed": [], "fail": {}})
    classes["docker"].upper = tmp_path / "upper"
    (tmp_path / "upper").mkdir()
    (tmp_path / "upper" / "written").write_bytes(b"x" * 100)

    monkeypatch.setattr(compare_mod, "REGISTRY", {n: ("", "") for n in classes})
    monkeypatch.setattr(compare_mod, "backend_class", lambda name: classes[name])
    monkeypatch.setattr(compare_mod, "probe", lambda name: classes[name].probe())
    monkeypatch.setattr(compare_mod, "_await_exec", lambda pid, args: None)
    import ctr.native.explain

    docs = {"native": make_doc(), "docker": make_doc(seccomp="filter", filters=1, keeper="containerd-shim")}
    seen = []

    def explain_pid(pid):
        backend = next(b for b, c in classes.items() if any(n.endswith("-explain") for n in c.made))
        seen.append(backend)
        return copy.deepcopy(docs[backend])

    monkeypatch.setattr(ctr.native.explain, "explain_pid", explain_pid)
    return classes


def test_compare_document(fake, tmp_path):
    spec = ContainerSpec(image="busybox", command=("true",), memory=64 << 20, name="cmp")
    result = compare(spec, None, Paths.default(tmp_path / "root"))
    assert result["backends"] == ["native", "docker"]
    assert result["name_prefix"] == "cmp"
    assert result["differences"] == ["security.seccomp", "security.seccomp_filters", "keeper.comm"]
    native, docker = result["results"]["native"], result["results"]["docker"]
    assert native["timing"]["exit_code"] == 3 and native["timing"]["total_ms"] >= native["timing"]["create_ms"]
    assert native["explain"]["keeper"]["comm"] == "ctr"
    assert native["explain"]["writable_layer"]["bytes"] is None
    assert "does not report a writable layer" in native["explain"]["writable_layer"]["reason"]
    assert docker["explain"]["writable_layer"]["bytes"] == 100
    assert native["errors"] == docker["errors"] == []
    # everything made was removed, under the documented names
    for name, cls in fake.items():
        assert cls.made == {}
        assert sorted(cls.removed) == sorted(container_names("cmp", name))
    json.dumps(result)  # JSON-able throughout


def test_explain_run_replaces_the_command(fake, tmp_path, monkeypatch):
    specs = []
    original = FakeBackend.create

    def create(self, spec):
        specs.append(spec)
        return original(self, spec)

    monkeypatch.setattr(FakeBackend, "create", create)
    compare(ContainerSpec(image="busybox", command=("true",), entrypoint=("/bin/x",), memory=64 << 20),
            ["native"], Paths.default(tmp_path / "root"))
    explain_spec, run_spec = specs
    assert explain_spec.command == ("sleep", "600") and explain_spec.entrypoint == ()
    assert run_spec.command == ("true",) and run_spec.entrypoint == ("/bin/x",)
    assert explain_spec.memory == run_spec.memory == 64 << 20


def test_a_failing_backend_is_recorded_and_the_others_run(fake, tmp_path):
    fake["docker"].fail = {"start": CtrError("engine said no")}
    result = compare(ContainerSpec(image="busybox", command=("true",)), None, Paths.default(tmp_path / "root"))
    errors = result["results"]["docker"]["errors"]
    assert [(e["phase"], e["message"], e["exit_code"]) for e in errors] == [
        ("explain", "engine said no", 125), ("timing", "engine said no", 125)]
    assert result["results"]["native"]["errors"] == []
    assert fake["docker"].made == {}  # created, failed to start, removed all the same
    assert result["differences"] == []  # docker has no document: it takes no part


def test_unsupported_create_makes_nothing_to_remove(fake, tmp_path):
    fake["docker"].fail = {"create": Unsupported("docker", "create")}
    result = compare(ContainerSpec(image="busybox", command=("true",)), None, Paths.default(tmp_path / "root"))
    assert [e["phase"] for e in result["results"]["docker"]["errors"]] == ["explain", "timing"]  # no cleanup noise


def test_command_not_found_is_an_outcome(fake, tmp_path, monkeypatch):
    calls = []

    def start(self, name):
        calls.append(name)
        if name.endswith("-run"):
            raise CommandNotFound("exec: nosuch: not found")
        self.made[name] = "running"

    monkeypatch.setattr(FakeBackend, "start", start)
    result = compare(ContainerSpec(image="busybox", command=("nosuch",)), ["native"], Paths.default(tmp_path / "root"))
    timing = result["results"]["native"]["timing"]
    assert (timing["exit_code"], timing["start_ms"]) == (127, None) and "nosuch" in timing["start_error"]
    assert result["results"]["native"]["errors"] == []


def test_ctrl_c_removes_what_was_made(fake, tmp_path):
    fake["native"].fail = {"wait": KeyboardInterrupt()}
    with pytest.raises(KeyboardInterrupt):
        compare(ContainerSpec(image="busybox", command=("true",), name="cc"), None, Paths.default(tmp_path / "root"))
    assert fake["native"].made == {}
    assert sorted(fake["native"].removed) == ["cc-native-explain", "cc-native-run"]
    assert fake["docker"].removed == []  # never reached


def test_taken_names_are_refused_before_anything_runs(fake, tmp_path):
    paths = Paths.default(tmp_path / "root")
    (paths.containers / "web-docker-run").mkdir(parents=True)
    with pytest.raises(CtrError, match='"web-docker-run" is already in use'):
        compare(ContainerSpec(image="busybox", name="web"), None, paths)
    assert fake["native"].made == {} and fake["native"].removed == []


def test_tty_and_stdin_are_refused(fake, tmp_path):
    with pytest.raises(CtrError, match="drop -t and -i"):
        compare(ContainerSpec(image="busybox", tty=True), None, Paths.default(tmp_path))


# -- the JSON schema -------------------------------------------------------------------------


def _documented_fields(section: str) -> set[str]:
    """First-column `names` of the markdown table under heading `section`."""
    text = DOCS.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    fields = set()
    for line in body.splitlines():
        if line.startswith("| `"):
            fields |= set(re.findall(r"`([a-z_.]+)`", line.split("|")[1]))
    return fields


def test_document_keys_are_the_documented_ones(fake, tmp_path):
    result = compare(ContainerSpec(image="busybox", command=("true",)), None, Paths.default(tmp_path / "root"))
    assert set(result) == _documented_fields("Top level")
    assert set(result["machine"]) == _documented_fields("`machine`")
    text = DOCS.read_text()
    native = result["results"]["native"]
    assert set(native) == {"backend", "versions", "explain", "timing", "errors"}
    assert set(native["explain"]) == {"name", "pid", "doc", "keeper", "writable_layer"}
    assert set(native["timing"]) == {"name", "create_ms", "start_ms", "total_ms", "exit_code", "start_error",
                                     "writable_layer"}
    assert set(native["explain"]["writable_layer"]) == {"path", "bytes", "files", "reason"}
    for row in result["rows"]:
        assert set(row) == {"key", "group", "label", "compared", "differs", "values", "display"}
        assert f"`{row['key']}`" in text or row["key"].startswith("namespace."), row["key"]
        for key in ("key", "group", "label"):
            assert row[key]


# -- rendering -------------------------------------------------------------------------------


def _result_with_difference() -> dict:
    results = {"native": make_result(make_doc()), "lxc": make_result(make_doc()),
               "docker": make_result(make_doc(seccomp="filter", filters=1), total=None)}
    results["docker"]["timing"]["total_ms"] = None  # a missing bar
    rows = build_rows(results)
    return {"schema_version": 1, "spec": ContainerSpec(image="busybox", command=("sleep", "1"), memory=64 << 20,
                                                       pids_limit=50, cap_drop=("NET_RAW",)).to_dict(),
            "name_prefix": "compare-x", "explain_command": ["sleep", "600"],
            "machine": {"hostname": "h", "kernel": "6.1.0", "arch": "x86_64", "os": "Debian", "cgroup": "v2",
                        "cpus": 2, "memory_bytes": 1 << 30, "date": "2024-01-01T00:00:00+00:00", "ctr_version": "0.1.0"},
            "backends": list(results), "results": results, "rows": rows,
            "differences": [r["key"] for r in rows if r["differs"]]}


def test_text_table_marks_differing_rows():
    text = render_table(_result_with_difference())
    lines = text.splitlines()
    assert lines[0] == "ctr compare --backends native,lxc,docker --memory 64m --pids-limit 50 --cap-drop NET_RAW busybox sleep 1"
    seccomp = next(line for line in lines if "seccomp " in line and "filters" not in line)
    assert seccomp.startswith("≠") and seccomp.split()[-3:] == ["disabled", "disabled", "filter"]
    memory = next(line for line in lines if "memory limit" in line)
    assert memory.startswith(" ") and memory.split()[-3:] == ["64m", "64m", "64m"]
    assert sum(1 for line in lines if line.startswith("≠")) == 2
    assert lines[-1] == "2 rows differ: seccomp, seccomp filters"


def test_spec_arguments_round_trip():
    spec = ContainerSpec(image="busybox", command=("sh", "-c", "echo hi"), env=("A=1",), user="65534",
                         read_only=True, cpus=0.5, cap_add=("SYS_ADMIN",), network="host", entrypoint=())
    assert spec_arguments(spec.to_dict()) == [
        "-e", "A=1", "-u", "65534", "--read-only", "--cpus", "0.5", "--cap-add", "SYS_ADMIN", "--network", "host",
        "--entrypoint", "", "busybox", "sh", "-c", "echo hi"]


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.stack: list[str] = []
        self.in_svg = 0

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs) | {"_in_svg": self.in_svg > 0}))
        if tag == "svg":
            self.in_svg += 1

    def handle_endtag(self, tag):
        if tag == "svg":
            self.in_svg -= 1


def test_html_page():
    result = _result_with_difference()
    page = render_html(result)
    parser = _Page()
    parser.feed(page)
    tags = parser.tags
    assert [t for t, _ in tags].count("table") == 1
    rows = [a for t, a in tags if t == "tr" and "data-key" in a]
    assert [a["data-key"] for a in rows] == [r["key"] for r in result["rows"]]
    assert [a["data-key"] for a in rows if "differs" in a["class"].split()] == result["differences"]
    svgs = [a for t, a in tags if t == "svg"]
    assert len(svgs) == 1
    bars = [(a["data-backend"], a["data-timing"]) for t, a in tags if t == "rect" and a.get("class") == "bar"]
    assert all(a["_in_svg"] for t, a in tags if t == "rect")
    expected = [(b, t) for t in ("create", "start", "total") for b in result["backends"]]
    expected.remove(("docker", "total"))  # no value, no bar: "n/a" instead
    assert bars == expected
    # self-contained: nothing to fetch, nothing to run
    assert not [t for t, _ in tags if t in ("script", "link", "img", "iframe")]
    assert not re.search(r"(?:src|href)=|url\(|@import|https?://(?!www\.w3\.org/2000/svg)", page)
    assert "6.1.0" in page and "2024-01-01" in page  # the machine
    assert "--pids-limit 50" in page  # the spec


def test_html_escapes_what_it_shows():
    result = _result_with_difference()
    result["spec"]["command"] = ["sh", "-c", "echo <b>&"]
    assert "<b>&" not in render_html(result)


# -- the command -----------------------------------------------------------------------------


def test_cli_refuses_tty_and_stdin(fake):
    for flag in ("-t", "-i"):
        r = CliRunner().invoke(compare_command, [flag, "busybox", "true"])
        assert r.exit_code == 125 and "drop -t and -i" in r.output, r.output


def test_cli_refuses_an_unusable_named_backend(fake, monkeypatch):
    monkeypatch.setattr(compare_mod, "probe", lambda name: BackendInfo(name, False, "engine down"))
    r = CliRunner().invoke(compare_command, ["--backends", "docker", "busybox", "true"])
    assert r.exit_code == 125
    assert r.output.strip() == "ctr: backend docker is not usable: engine down"


def test_cli_json_and_exit_code_of_a_failing_backend(fake, tmp_path):
    from ctr.cli.options import Context

    fake["docker"].fail = {"create": CtrError("no")}
    r = CliRunner().invoke(compare_command, ["--format", "json", "busybox", "true"],
                           obj=Context("native", Paths.default(tmp_path / "root")))
    assert r.exit_code == 125
    doc = json.loads(r.stdout)
    assert doc["results"]["docker"]["errors"][0]["message"] == "no"
    assert "ctr: compare: docker: explain: no" in r.stderr


def test_help_hides_flags_compare_does_not_take():
    text = CliRunner().invoke(compare_command, ["--help"]).output
    flags = set()
    for line in text.split("Options:")[1].splitlines():
        if line.strip().startswith("-"):
            flags |= set(re.findall(r"--?[\w-]+", re.split(r"\s{2,}", line.strip())[0]))
    assert {"--backends", "--format", "-o", "-m", "--memory", "--cap-drop", "--name"} <= flags
    assert not {"-t", "--tty", "-i", "--interactive", "--rm", "-d", "--detach"} & flags


def test_cli_accepts_rm_as_implied(fake, tmp_path):
    from ctr.cli.options import Context

    r = CliRunner().invoke(compare_command, ["--rm", "--backends", "native", "busybox", "true"],
                           obj=Context("native", Paths.default(tmp_path / "root")))
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "ctr compare --backends native busybox true"
