"""Issue 15's run flags parsed with Docker's rules: --add-host, --group-add, --env-file,
--stop-signal, --stop-timeout, --cidfile."""

from __future__ import annotations

import os
import signal

import pytest

from ctr.errors import InvalidSpec
from ctr.process import stop_plan
from ctr.spec import ContainerSpec, parse_add_host, parse_env_file, parse_signal, parse_stop_signal, parse_stop_timeout


@pytest.mark.parametrize(
    "text,expected",
    [
        ("db:10.0.0.5", "db:10.0.0.5"),
        ("db=10.0.0.5", "db:10.0.0.5"),
        ("v6:::1", "v6:::1"),
        ("v6=::1", "v6:::1"),
        ("v6:[::1]", "v6:::1"),
        ("a b:1.2.3.4", "a b:1.2.3.4"),  # the CLI does not look at the name further
        ("a: 1.2.3.4", "a: 1.2.3.4"),  # nor trim the address it checked trimmed
        ("gw:host-gateway", "gw:host-gateway"),
    ],
)
def test_add_host(text, expected):
    assert parse_add_host(text) == expected


@pytest.mark.parametrize(
    "text,message",
    [
        ("bad", 'bad format for add-host: "bad"'),
        (":1.2.3.4", 'bad format for add-host: ":1.2.3.4"'),
        ("a:1.2.3", 'invalid IP address in add-host: "1.2.3"'),
        ("a:fe80::1%eth0", 'invalid IP address in add-host: "fe80::1%eth0"'),
    ],
)
def test_add_host_rejects_with_dockers_words(text, message):
    with pytest.raises(InvalidSpec, match="^" + message.replace("[", r"\[") + "$"):
        parse_add_host(text)


def test_group_add_keeps_each_once_in_order():
    assert ContainerSpec("busybox", group_add=["audio", "10", "audio"]).group_add == ("audio", "10")
    with pytest.raises(InvalidSpec, match="--group-add"):
        ContainerSpec("busybox", group_add=["a:b"])


@pytest.mark.parametrize(
    "text,number", [("KILL", 9), ("sigusr1", 10), ("SIGTERM", 15), ("10", 10), ("RTMIN+2", signal.SIGRTMIN + 2)]
)
def test_parse_signal(text, number):
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["FOO", "0", "SIG", "99", "RTMAX+1", ""])
def test_parse_signal_rejects(text):
    with pytest.raises(InvalidSpec, match="invalid signal"):
        parse_signal(text)


def test_stop_signal_is_canonical_and_names_the_flag():
    assert parse_stop_signal("usr1") == "SIGUSR1"
    assert parse_stop_signal("9") == "SIGKILL"
    assert parse_stop_signal(str(signal.SIGRTMIN + 1)) == str(signal.SIGRTMIN + 1)
    with pytest.raises(InvalidSpec, match=r"^invalid --stop-signal 'FOO'"):
        parse_stop_signal("FOO")


def test_stop_timeout():
    assert parse_stop_timeout("3") == 3 and parse_stop_timeout("-1") == -1 and parse_stop_timeout(0) == 0
    for bad in ("x", "1.5", " 1", "1_0", ""):
        with pytest.raises(InvalidSpec, match="^invalid --stop-timeout"):
            parse_stop_timeout(bad)


def test_stop_plan_uses_the_containers_signal_and_timeout():
    assert stop_plan({}, None) == (signal.SIGTERM, 10)
    assert stop_plan({"stop_signal": "SIGUSR1", "stop_timeout": 3}, None) == (signal.SIGUSR1, 3)
    assert stop_plan({"stop_signal": "SIGUSR1", "stop_timeout": 3}, 1) == (signal.SIGUSR1, 1)
    assert stop_plan({"stop_timeout": -1}, None) == (signal.SIGTERM, None)


def test_env_file_as_dockers(tmp_path):
    f = tmp_path / "app.env"
    f.write_bytes(
        b"\xef\xbb\xbf# comment\n\n   \n  A=1\nB= two words \nSET\nUNSET\n  # indented comment\nC=x=y\r\nE=\n"
    )
    assert parse_env_file(str(f), {"SET": "from host"}) == ("A=1", "B= two words ", "SET=from host", "C=x=y", "E=")


@pytest.mark.parametrize(
    "line,message",
    [
        ("B =1", "variable 'B ' contains whitespaces"),
        ("A B", "variable 'A B' contains whitespaces"),
        ("=1", "no variable name on line '=1'"),
    ],
)
def test_env_file_rejects_names_the_file(tmp_path, line, message):
    f = tmp_path / "bad.env"
    f.write_text(line + "\n")
    with pytest.raises(InvalidSpec, match=f"^invalid --env-file {f}: {message}$"):
        parse_env_file(str(f), {})


def test_env_file_missing_names_the_file(tmp_path):
    with pytest.raises(InvalidSpec, match=f"^invalid --env-file {tmp_path}/nosuch: no such file or directory$"):
        parse_env_file(str(tmp_path / "nosuch"))


def test_new_fields_round_trip(tmp_path):
    spec = ContainerSpec(
        "busybox",
        extra_hosts=["a=1.2.3.4"],
        group_add=["10"],
        stop_signal="USR1",
        stop_timeout="3",
        cidfile=str(tmp_path / "id"),
    )
    assert (spec.extra_hosts, spec.stop_signal, spec.stop_timeout) == (("a:1.2.3.4",), "SIGUSR1", 3)
    assert ContainerSpec.from_dict(spec.to_dict()) == spec


def test_cli_env_file_then_e(tmp_path, monkeypatch):
    from ctr.cli.main import cli

    f = tmp_path / "app.env"
    f.write_text("A=file\nB=file\n")
    seen = {}

    class Fake:
        def create(self, spec):
            seen["env"] = spec.env
            raise InvalidSpec("stop here")

    monkeypatch.setattr("ctr.cli.options.Context.backend", lambda self: Fake())
    with pytest.raises(Exception, match="stop here"):
        cli.main(
            ["--root", str(tmp_path / "root"), "create", "--env-file", str(f), "-e", "A=flag", "busybox"],
            standalone_mode=False,
        )
    assert seen["env"] == ("A=file", "B=file", "A=flag")  # merged later: the last A wins, as Docker's


def test_cidfile_refuses_an_existing_file_before_create(tmp_path):
    from ctr.backends.base import writes_cidfile
    from ctr.errors import Conflict

    made = []

    class Rec:
        id = "abc123"

    @writes_cidfile
    def create(self, spec):
        made.append(spec)
        return Rec()

    path = tmp_path / "id"
    create(None, ContainerSpec("busybox", cidfile=str(path)))
    assert path.read_text() == "abc123"
    with pytest.raises(
        Conflict, match=f"^container ID file found, make sure the other container isn't running or delete {path}$"
    ):
        create(None, ContainerSpec("busybox", cidfile=str(path)))
    assert len(made) == 1

    @writes_cidfile
    def failing(self, spec):
        raise InvalidSpec("no")

    other = tmp_path / "other"
    with pytest.raises(InvalidSpec):
        failing(None, ContainerSpec("busybox", cidfile=str(other)))
    assert not os.path.exists(other)
