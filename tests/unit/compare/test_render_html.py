"""ctr.compare.render_html: the self-contained page."""

from __future__ import annotations

import re
from html.parser import HTMLParser

from ctr.compare.render_html import render_html
from tests.unit.compare.documents import result_with_difference


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
    result = result_with_difference()
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
    result = result_with_difference()
    result["spec"]["command"] = ["sh", "-c", "echo <b>&"]
    assert "<b>&" not in render_html(result)
