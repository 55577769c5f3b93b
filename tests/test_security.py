"""Security properties: no path traversal on playback, secrets never at rest or in logs, request limits.

One server with a live RTMP publisher serves the playback and secrecy tests (traversal is probed
while the stream's output directories really exist); the rate-limit test gets its own server so the
block it provokes cannot leak into other tests.
"""

from __future__ import annotations

import hashlib
import http.client
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import API_KEY, OnairServer, have, wait_until
from tests.media import push_rtmp, stop

# Bytes that would betray a leaked file: /etc/passwd, the SQLite database, this repository's files.
LEAK_MARKERS = [b"root:", b"SQLite format 3", b"[build-system]", b"from __future__", b"onair serve", b"#!/"]


def raw_get(srv: OnairServer, path: str) -> tuple[int, bytes]:
    """GET with the path sent byte for byte: http clients would normalise `..` away before sending."""
    conn = http.client.HTTPConnection("127.0.0.1", srv.http_port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnairServer]:
    server = OnairServer(tmp_path_factory.mktemp("security") / "node").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live(srv: OnairServer) -> Iterator[dict[str, Any]]:
    """A stream that is live (output directories exist), after one refused publish with a wrong token."""
    if not have("ffmpeg"):
        pytest.skip("ffmpeg is not installed")
    with srv.client() as c:
        stream: dict[str, Any] = c.post("/streaming/streams", json={"name": "sec", "active": True}).json()
    good_url = stream["push_url"]
    wrong_url = good_url.rsplit("?", 1)[0] + "?WrongToken0123456789"
    refused = push_rtmp(wrong_url, size="320x240", rate=15, seconds=3)
    try:
        refused.wait(20)
    finally:
        stop(refused)
    publisher = push_rtmp(good_url, size="320x240", rate=15)
    try:
        pid = stream["hls_cmaf_url"].split("/cmaf/", 1)[1].split("/", 1)[0]
        master = wait_until(lambda: (r := httpx.get(stream["hls_cmaf_url"], timeout=10)).status_code == 200 and r.text,
                            30, what="live master playlist")
        rendition = next(ln for ln in master.splitlines() if ln and not ln.startswith("#")).split("/")[0]
        yield {**stream, "pid": pid, "rendition": rendition, "wrong_token": "WrongToken0123456789"}
    finally:
        stop(publisher)


TRAVERSALS = [
    "/cmaf/{pid}/..%2F..%2Fetc/passwd",
    "/cmaf/{pid}/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/cmaf/{pid}/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/cmaf/{pid}/../../../../etc/passwd",
    "/cmaf/{pid}/../index.m3u8",
    "/cmaf/{pid}/%2e%2e/index.m3u8",
    "/cmaf/{pid}/%2e%2e/init.mp4",
    "/cmaf/{pid}/..%2F..%2F..%2Fonair.db/index.m3u8",
    "/cmaf/{pid}/{rendition}/..%2F..%2F..%2F..%2Fonair.db",
    "/cmaf/{pid}/{rendition}/%2e%2e%2f%2e%2e%2f%2e%2e%2fpasswd",
    "/cmaf/{pid}/{rendition}/seg1.m4s%00.txt",
    "/cmaf/..%2F..%2Fetc/master.m3u8",
    "/mpegts/{pid}/..%2F..%2Fetc/passwd",
    "/mpegts/{pid}/../seg1.ts",
    "/mpegts/{pid}/%2e%2e/index.m3u8",
    "/mpegts/{pid}/{rendition}/..%2F..%2F..%2F..%2Fonair.db",
    "/mpegts/{pid}/{rendition}/..%2Findex.m3u8",
    "/mpegts/{pid}/{rendition}/seg1.ts%00",
    "/mpegts/..%2F..%2F/master_mpegts.m3u8",
    "/videoplatform/streams/1/..%2F..%2Fetc/screenshots/last.jpg",
    "/videoplatform/streams/..%2F..%2F/{sid}/screenshots/last.jpg",
    "/videoplatform/streams/1/%2e%2e/screenshots/last.jpg",
    "/player/static/..%2F..%2F..%2Fpyproject.toml",
    "/player/static/%2e%2e%2froutes.py",
    "/player/static/..",
    "/player/vendor/..%2F..%2Fpackage.json",
    "/videos/1_abc/..%2F..%2F..%2Fonair.db",
    "/videos/1_abc/hls/../../../../onair.db",
    "/videos/..%2F..%2F/master.m3u8",
    "/rec/{pid}/..%2F..%2F..%2Fonair.db",
    "/rec/{pid}/rec_abc/..%2F..%2F..%2Fonair.db",
    "/streams/..%2F..%2Fetc%2Fpasswd",
]


@pytest.mark.media
@pytest.mark.parametrize("template", TRAVERSALS)
def test_playback_paths_do_not_traverse(srv: OnairServer, live: dict[str, Any], template: str) -> None:
    path = template.format(pid=live["pid"], sid=live["id"], rendition=live["rendition"])
    status, body = raw_get(srv, path)
    assert status in (400, 404), f"{path} -> {status}: {body[:200]!r}"
    for marker in LEAK_MARKERS:
        assert marker not in body, f"{path} leaked {marker!r}"


@pytest.mark.media
def test_live_playback_still_served(live: dict[str, Any]) -> None:
    """The traversal probes hit real, live paths: the same stream plays normally."""
    assert httpx.get(live["hls_cmaf_url"], timeout=10).status_code == 200


@pytest.mark.media
def test_stream_tokens_never_logged(srv: OnairServer, live: dict[str, Any]) -> None:
    token = live["push_url"].rsplit("?", 1)[1]
    log = srv.log_path.read_text(errors="replace")
    assert "publish refused" in log and "publish accepted" in log, srv.log_tail()
    assert token not in log
    assert live["wrong_token"] not in log


def test_api_key_stored_hashed(srv: OnairServer) -> None:
    with srv.client() as c:
        assert c.get("/streaming/streams").status_code == 200  # the key works
    stored = b"".join(p.read_bytes() for p in srv.data_dir.glob("onair.db*"))
    assert stored, "no SQLite database files in the data dir"
    assert API_KEY.encode() not in stored
    assert hashlib.sha256(API_KEY.encode()).hexdigest().encode() in stored  # hashed at rest, not absent
    assert API_KEY not in srv.log_path.read_text(errors="replace")


def test_body_size_limit(srv: OnairServer) -> None:
    big = json.dumps({"name": "x" * (2 << 20), "active": True})
    with srv.client() as c:
        r = c.post("/streaming/streams", content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text[:200]

        # without Content-Length (chunked transfer) the limit holds as well
        def chunks() -> Iterator[bytes]:
            data = big.encode()
            for i in range(0, len(data), 64 << 10):
                yield data[i : i + (64 << 10)]

        r = c.post("/streaming/streams", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text[:200]
        # a normal body still works
        assert c.post("/streaming/streams", json={"name": "small"}).status_code in (200, 201)


def test_failed_auth_rate_limited_but_never_the_right_key(server: OnairServer) -> None:
    """Wrong keys from one address end in 429; the right key from that same address still works (behind a
    reverse proxy every client shares the proxy's address: nobody can lock the operator out)."""
    statuses = []
    with httpx.Client(base_url=server.base_url, timeout=10) as c:
        for i in range(30):
            statuses.append(c.get("/streaming/streams", headers={"Authorization": f"APIKey wrong-{i}"}).status_code)
        assert statuses[0] == 401
        assert statuses[-1] == 429, statuses
        assert c.get("/streaming/streams").status_code == 429  # no key at all counts as a failure too
        r = c.get("/streaming/streams", headers={"Authorization": f"APIKey {API_KEY}"})
        assert r.status_code == 200, r.text
        r = c.get("/streaming/streams", headers={"Authorization": "APIKey wrong-again"})
        assert r.status_code == 429, r.text
        retry = r.headers.get("Retry-After")
        assert retry is not None and retry.isdigit() and int(retry) > 0
        # the block expires
        wait_until(lambda: c.get("/streaming/streams", headers={"Authorization": "APIKey wrong"}).status_code == 401,
                   20, interval=1.0, what="the block to expire")


def test_new_operator_key_revokes_the_old_one(make_server: Any) -> None:
    srv = make_server(api_key="operator-key-A-0123456789").start()

    def status(key: str) -> int:
        return httpx.get(srv.base_url + "/streaming/streams", headers={"Authorization": f"APIKey {key}"},
                         timeout=10).status_code

    assert status("operator-key-A-0123456789") == 200
    srv.stop()
    srv.settings["api_key"] = "operator-key-B-0123456789"
    srv.start()
    assert status("operator-key-B-0123456789") == 200
    assert status("operator-key-A-0123456789") == 401
    assert status(API_KEY) == 401
    # unset: the generated key (stored in the data dir) becomes the operator key, and B stops working
    srv.stop()
    srv.settings["api_key"] = ""
    srv.start()
    generated = (srv.data_dir / "api_key").read_text().strip()
    assert generated and status(generated) == 200
    assert status("operator-key-B-0123456789") == 401
