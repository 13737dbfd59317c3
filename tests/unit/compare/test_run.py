"""ctr.compare.run and the `ctr compare` command against a fake backend: the run/cleanup logic,
the JSON document's keys against docs/compare-schema.md."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ctr.backends.base import Backend, BackendInfo
from ctr.cli.compare import compare_command
from ctr.compare import run as compare_mod
from ctr.compare.run import compare, container_names, tree_size
from ctr.errors import CommandNotFound, CtrError, NotFound, Unsupported
from ctr.spec import ContainerSpec
from ctr.state.paths import Paths
from ctr.state.records import Record
from tests.unit.compare.documents import make_doc

DOCS = Path(__file__).resolve().parents[3] / "docs" / "compare-schema.md"


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
    compare(
        ContainerSpec(image="busybox", command=("true",), entrypoint=("/bin/x",), memory=64 << 20),
        ["native"],
        Paths.default(tmp_path / "root"),
    )
    explain_spec, run_spec = specs
    assert explain_spec.command == ("sleep", "600") and explain_spec.entrypoint == ()
    assert run_spec.command == ("true",) and run_spec.entrypoint == ("/bin/x",)
    assert explain_spec.memory == run_spec.memory == 64 << 20


def test_a_failing_backend_is_recorded_and_the_others_run(fake, tmp_path):
    fake["docker"].fail = {"start": CtrError("engine said no")}
    result = compare(ContainerSpec(image="busybox", command=("true",)), None, Paths.default(tmp_path / "root"))
    errors = result["results"]["docker"]["errors"]
    assert [(e["phase"], e["message"], e["exit_code"]) for e in errors] == [
        ("explain", "engine said no", 125),
        ("timing", "engine said no", 125),
    ]
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
    assert set(native["timing"]) == {
        "name",
        "create_ms",
        "start_ms",
        "total_ms",
        "exit_code",
        "start_error",
        "writable_layer",
    }
    assert set(native["explain"]["writable_layer"]) == {"path", "bytes", "files", "reason"}
    for row in result["rows"]:
        assert set(row) == {"key", "group", "label", "compared", "differs", "values", "display"}
        assert f"`{row['key']}`" in text or row["key"].startswith("namespace."), row["key"]
        for key in ("key", "group", "label"):
            assert row[key]


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
    r = CliRunner().invoke(
        compare_command,
        ["--format", "json", "busybox", "true"],
        obj=Context("native", Paths.default(tmp_path / "root")),
    )
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

    r = CliRunner().invoke(
        compare_command,
        ["--rm", "--backends", "native", "busybox", "true"],
        obj=Context("native", Paths.default(tmp_path / "root")),
    )
    assert r.exit_code == 0, r.output
    assert r.stdout.splitlines()[0] == "ctr compare --backends native busybox true"
