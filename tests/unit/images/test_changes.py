"""--change: Dockerfile instructions for an imported root filesystem."""

from __future__ import annotations

import pytest

from ctr.errors import InvalidSpec
from ctr.images.changes import parse_changes
from ctr.images.model import ImageConfig


@pytest.mark.parametrize(
    "changes, expected",
    [
        (['CMD ["sh", "-c", "echo hi"]'], ImageConfig(cmd=("sh", "-c", "echo hi"))),
        (["CMD echo hi"], ImageConfig(cmd=("/bin/sh", "-c", "echo hi"))),
        (["cmd [not json"], ImageConfig(cmd=("/bin/sh", "-c", "[not json"))),
        (["CMD []"], ImageConfig()),
        (
            ['ENTRYPOINT ["/app", "--flag"]', "CMD --help"],
            ImageConfig(entrypoint=("/app", "--flag"), cmd=("/bin/sh", "-c", "--help")),
        ),
        (["ENTRYPOINT /app run"], ImageConfig(entrypoint=("/bin/sh", "-c", "/app run"))),
        (['ENV A=1 B="two words" C=a\\ b'], ImageConfig(env=("A=1", "B=two words", "C=a b"))),
        (["ENV LEGACY some value here"], ImageConfig(env=("LEGACY=some value here",))),
        (
            ["ENV A=1", "ENV B=$A-${A}-${NOPE:-dflt}-${A:+set} C='$A'"],
            ImageConfig(env=("A=1", "B=1-1-dflt-set", "C=$A")),
        ),
        (["ENV A=1 B=$A"], ImageConfig(env=("A=1", "B="))),  # Docker: words use the env before the line
        (["ENV A=1", "ENV A=2"], ImageConfig(env=("A=2",))),
        (["WORKDIR /srv", "WORKDIR app/../data"], ImageConfig(workdir="/srv/data")),
        (["WORKDIR rel"], ImageConfig(workdir="/rel")),
        (["ENV D=/opt", "WORKDIR $D/x"], ImageConfig(env=("D=/opt",), workdir="/opt/x")),
        (["USER nobody:nogroup"], ImageConfig(user="nobody:nogroup")),
        (["  user\t1000  "], ImageConfig(user="1000")),
    ],
)
def test_parse_changes(changes: list[str], expected: ImageConfig) -> None:
    assert parse_changes(changes)[0] == expected


def test_parse_changes_labels() -> None:
    assert parse_changes(['LABEL a=b "c d"=e'])[1] == {"a": "b", "c d": "e"}


@pytest.mark.parametrize(
    "change, match",
    [
        ("RUN echo hi", "RUN is not supported"),
        ("EXPOSE 80", "EXPOSE is not supported"),
        ("ENV", "ENV needs an argument"),
        ("ENV A", "ENV needs KEY=VALUE"),
        ("ENV A=1 =2", "is not KEY=VALUE"),
        ('ENV A="open', "unterminated double quote"),
        ("ENV A='open", "unterminated single quote"),
        ("ENV A=${B", "missing '}'"),
        ("ENV A=${B?x}", "bad substitution"),
        ("USER", "USER needs an argument"),
        ("CMD", "needs a command"),
    ],
)
def test_parse_changes_refuses(change: str, match: str) -> None:
    with pytest.raises(InvalidSpec, match=match):
        parse_changes([change])
