"""Page templates are filled in one pass: a name holding `{{config}}` is shown as text, not as the config JSON."""

from __future__ import annotations

import html
import re

import httpx

from onair.templates import fill
from tests.conftest import OnairServer

NAME = "x{{config}}y{{title}}<b>&"


def title_of(page: str) -> str:
    m = re.search(r"<title>(.*?)</title>", page, re.S)
    assert m is not None, page[:300]
    return m[1]


def test_fill_is_one_pass() -> None:
    assert fill("<t>{{title}}</t><s>{{config}}</s>", {"title": "{{config}}", "config": "{{title}}"}) == (
        "<t>{{config}}</t><s>{{title}}</s>")
    assert fill("{{a}} {{unknown}} {{ a }}", {"a": "1"}) == "1 {{unknown}} {{ a }}"


def test_stream_name_with_placeholders_stays_text(server: OnairServer) -> None:
    with server.client() as c:
        stream = c.post("/streaming/streams", json={"name": NAME, "active": True}).raise_for_status().json()
        bc = c.post("/streaming/broadcasts", json={"broadcast": {"name": NAME, "stream_ids": [stream["id"]]}}
                    ).raise_for_status().json()
    pid = stream["iframe_url"].rsplit("/", 1)[1]
    pages = {"player": stream["iframe_url"], "golive": f"{server.base_url}/streams/{pid}/golive",
             "broadcast": bc["iframe_url"]}
    for what, url in pages.items():
        r = httpx.get(url, timeout=10)
        assert r.status_code == 200, (what, r.status_code)
        assert title_of(r.text).endswith(html.escape(NAME)), what  # golive: "Go live: {name}"
        # the config JSON went in once, into its script block, and nowhere else
        assert r.text.count('"hls_url"' if what == "golive" else '"info_url"') == 1, what
