"""Webhooks: signed event notifications to a real HTTP receiver, from real pushes, at least once.

The receiver is a threaded http.server on 127.0.0.1 (so the servers that deliver to it set
allow_private_targets); each test checks what arrived, in which order, and what the deliveries API says.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import OnairServer, wait_until
from tests.media import parse_master, push_rtmp, stop
from tests.test_dvr import api

ALL_TYPES = ["stream.live", "stream.idle", "stream.backup_live", "stream.reconnecting", "video.ready"]


@dataclass
class Received:
    at: float  # time.time() when it arrived
    headers: dict[str, str]
    raw: bytes
    status: int  # what the receiver answered

    @property
    def body(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.raw)
        return parsed


class Receiver:
    """Records every POST; `respond(event_id, nth try of that event)` picks the status it answers."""

    def __init__(self, respond: Callable[[str, int], int] = lambda _event, _n: 200) -> None:
        self.respond = respond
        self.received: list[Received] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                try:
                    event_id = str(json.loads(raw).get("id"))
                except ValueError:
                    event_id = ""
                with receiver.lock:
                    nth = 1 + sum(1 for r in receiver.received if r.raw and json.loads(r.raw).get("id") == event_id)
                    status = receiver.respond(event_id, nth)
                    receiver.received.append(Received(time.time(), dict(self.headers.items()), raw, status))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/onair"

    def all(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def accepted(self) -> list[Received]:
        return [r for r in self.all() if 200 <= r.status < 300]

    def types(self) -> list[str]:
        return [r.body["type"] for r in self.accepted()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def last_segment(http: httpx.Client, master_url: str) -> int:
    """The media sequence number of the newest segment of the first variant (-1 before any)."""
    master = http.get(master_url)
    if master.status_code != 200:
        return -1
    playlist = http.get(parse_master(master.text, master_url)[0]["uri"]).text
    seq = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist)
    return -1 if seq is None else int(seq[1]) + playlist.count("#EXTINF") - 1


def verify(secret: str, received: Received) -> None:
    """What a receiver does: recompute the HMAC of "<t>.<raw body>" and check that t is recent."""
    fields = dict(part.split("=", 1) for part in received.headers["Onair-Signature"].split(","))
    expected = hmac.new(secret.encode(), f"{fields['t']}.".encode() + received.raw, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, fields["v1"]), "signature must verify with the webhook's secret"
    assert abs(received.at - int(fields["t"])) < 30, "signature timestamp must be recent"
    assert received.headers["Content-Type"].startswith("application/json")


def created_recently(body: dict[str, Any], within: float = 120) -> None:
    created = datetime.strptime(body["created_at"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert abs(time.time() - created.timestamp()) < within, body["created_at"]


def create_webhook(srv: OnairServer, url: str, events: list[str] | None = None) -> dict[str, Any]:
    with srv.client() as c:
        r = c.post("/streaming/webhooks", json={"url": url} | ({"events": events} if events else {}))
    assert r.status_code == 201, r.text
    hook: dict[str, Any] = r.json()
    return hook


def deliveries(srv: OnairServer, webhook_id: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = api(srv, "GET", f"/streaming/webhooks/{webhook_id}/deliveries")
    return rows


def secret_not_logged(srv: OnairServer, secret: str) -> None:
    assert secret not in srv.log_path.read_text(errors="replace"), "the webhook secret must never be logged"


@pytest.mark.media
def test_push_sends_live_idle_and_video_ready(make_server: Callable[..., OnairServer], receiver: Receiver) -> None:
    srv = make_server(allow_private_targets=True).start()
    hook = create_webhook(srv, receiver.url)
    assert hook["events"] == ALL_TYPES and hook["active"] is True and len(hook["secret"]) >= 32
    stream = api(srv, "POST", "/streaming/streams", json={"name": "hooked", "active": True, "auto_record": True})
    sid = stream["id"]
    publisher = push_rtmp(stream["push_url"], size="320x240", rate=15)
    try:
        wait_until(lambda: "stream.live" in receiver.types(), 30, what="stream.live at the receiver")
        assert receiver.types() == ["stream.live"], "nothing but stream.live while the push runs"
        wait_until(lambda: (api(srv, "GET", f"/streaming/streams/{sid}")["recording_duration"] or 0) >= 4, 30,
                   what="4 s recorded")
    finally:
        stop(publisher)
    wait_until(lambda: "stream.idle" in receiver.types(), 30, what="stream.idle at the receiver")
    wait_until(lambda: "video.ready" in receiver.types(), 120, what="video.ready at the receiver")
    assert receiver.types() == ["stream.live", "stream.idle", "video.ready"], receiver.types()
    live, idle, ready = receiver.accepted()
    for r in (live, idle, ready):
        verify(hook["secret"], r)
        created_recently(r.body)
        assert set(r.body) == {"id", "type", "created_at", "data"}
    assert len({r.body["id"] for r in (live, idle, ready)}) == 3, "every event has its own id"
    # data is the Stream object as the API returns it: the same keys, the live state of that moment
    now = api(srv, "GET", f"/streaming/streams/{sid}")
    assert set(live.body["data"]) == set(now) and set(idle.body["data"]) == set(now)
    assert live.body["data"]["id"] == sid and live.body["data"]["live"] is True
    assert idle.body["data"]["id"] == sid and idle.body["data"]["live"] is False
    assert live.body["data"]["started_at_primary"] == now["started_at_primary"]
    assert idle.body["data"]["finished_at_primary"] == now["finished_at_primary"]
    # video.ready carries the Video object of the recording, ready
    video = ready.body["data"]
    assert video["stream_id"] == sid and video["status"] == "ready" and video["duration"] >= 3000
    assert set(video) == set(api(srv, "GET", f"/streaming/videos/{video['id']}"))
    # the receiver answered before the sender wrote down the answer: wait for the record
    rows = wait_until(lambda: (d := deliveries(srv, hook["id"])) and all(x["status"] != "pending" for x in d) and d,
                      10, what="the deliveries recorded")
    assert [d["type"] for d in rows] == ["video.ready", "stream.idle", "stream.live"]  # newest first
    for d in rows:
        assert d["status"] == "delivered" and d["attempts"] == 1 and d["last_status_code"] == 200, d
        assert d["delivered_at"] and d["next_retry_at"] is None and d["last_error"] is None
    assert {d["event_id"] for d in rows} == {r.body["id"] for r in (live, idle, ready)}
    secret_not_logged(srv, hook["secret"])


@pytest.mark.media
def test_failed_deliveries_are_retried_across_a_restart(make_server: Callable[..., OnairServer],
                                                        database_url: str | None) -> None:
    """On SQLite and PostgreSQL: the table is the queue, the claims are compare-and-set updates."""
    receiver = Receiver(respond=lambda _event, nth: 500 if nth <= 2 else 200)
    try:
        srv = make_server(database_url=database_url, allow_private_targets=True).start()
        hook = create_webhook(srv, receiver.url, ["stream.live"])
        assert hook["events"] == ["stream.live"]
        stream = api(srv, "POST", "/streaming/streams", json={"name": "flaky receiver", "active": True})
        publisher = push_rtmp(stream["push_url"], size="320x240", rate=15)
        try:
            wait_until(lambda: receiver.all(), 30, what="the first try")
            first = wait_until(lambda: (d := deliveries(srv, hook["id"])) and d[0]["attempts"] == 1
                               and d[0]["last_status_code"] == 500 and d[0], 10, what="the failure recorded")
        finally:
            stop(publisher)
        assert first["status"] == "pending" and first["last_error"] == "HTTP 500" and first["next_retry_at"]
        assert first["type"] == "stream.live" and first["delivered_at"] is None
        srv.stop()
        before_restart = len(receiver.all())
        assert before_restart in (1, 2), "the server was stopped before the third try"
        srv.start()
        wait_until(lambda: receiver.accepted(), 30, what="the delivery after the restart")
        tries = receiver.all()
        assert [r.status for r in tries] == [500, 500, 200], [r.status for r in tries]
        assert len({r.body["id"] for r in tries}) == 1, "every try is the same event"
        assert len(tries) > before_restart, "the restarted server carried on"
        assert tries[1].at - tries[0].at >= 0.9 or before_restart == 1, "the retry waits (backoff)"
        for r in tries:
            verify(hook["secret"], r)
        assert tries[0].raw == tries[2].raw, "the same body each time"
        row = wait_until(lambda: (d := deliveries(srv, hook["id"])[0])["status"] == "delivered" and d, 10,
                         what="delivered in the API")
        assert row["attempts"] == 3 and row["last_status_code"] == 200 and row["last_error"] is None, row
        assert row["event_id"] == first["event_id"] and row["delivered_at"] and row["next_retry_at"] is None
        assert len(deliveries(srv, hook["id"])) == 1
        with srv.client() as c:  # a webhook goes with its deliveries
            assert c.delete(f"/streaming/webhooks/{hook['id']}").status_code == 204
            assert c.get(f"/streaming/webhooks/{hook['id']}/deliveries").status_code == 404
        secret_not_logged(srv, hook["secret"])
    finally:
        receiver.close()


@pytest.mark.media
def test_reconnect_window_sends_reconnecting_not_idle(make_server: Callable[..., OnairServer],
                                                      receiver: Receiver) -> None:
    srv = make_server(allow_private_targets=True).start()
    hook = create_webhook(srv, receiver.url)
    stream = api(srv, "POST", "/streaming/streams", json={"name": "blinking", "active": True, "reconnect_window": 30})
    sid = stream["id"]
    http = httpx.Client(timeout=30)
    first = push_rtmp(stream["push_url"], size="320x240", rate=15)
    second = None
    try:
        wait_until(lambda: "stream.live" in receiver.types(), 30, what="stream.live")
        wait_until(lambda: last_segment(http, stream["hls_cmaf_url"]) >= 1, 30, what="segments")
        first.send_signal(signal.SIGKILL)  # the encoder's network goes away
        first.wait(10)
        wait_until(lambda: "stream.reconnecting" in receiver.types(), 30, what="stream.reconnecting")
        reconnecting = receiver.accepted()[-1]
        verify(hook["secret"], reconnecting)
        assert reconnecting.body["data"]["id"] == sid and reconnecting.body["data"]["live"] is True
        before = last_segment(http, stream["hls_cmaf_url"])
        second = push_rtmp(stream["push_url"], size="320x240", rate=15)
        wait_until(lambda: last_segment(http, stream["hls_cmaf_url"]) >= before + 2, 30,
                   what="new segments after the reconnect")
        # the outbox rows are written with the state: none for the resumed session, no idle
        assert [d["type"] for d in deliveries(srv, hook["id"])] == ["stream.reconnecting", "stream.live"]
        assert receiver.types() == ["stream.live", "stream.reconnecting"]
        stop(second)
        second = None
        wait_until(lambda: receiver.types().count("stream.reconnecting") == 2, 30, what="the second drop")
        api(srv, "PATCH", f"/streaming/streams/{sid}", json={"active": False})  # closes the window
        wait_until(lambda: "stream.idle" in receiver.types(), 30, what="stream.idle once the window closed")
        assert receiver.types() == ["stream.live", "stream.reconnecting", "stream.reconnecting", "stream.idle"]
        assert receiver.accepted()[-1].body["data"]["live"] is False
    finally:
        for proc in (first, second):
            if proc is not None:
                stop(proc)
        http.close()
    secret_not_logged(srv, hook["secret"])


def test_api_validation_and_private_targets(make_server: Callable[..., OnairServer],
                                           database_url: str | None) -> None:
    srv = make_server(database_url=database_url).start()  # allow_private_targets off, as by default
    with srv.client() as c:
        def refused(body: dict[str, Any], field: str) -> list[str]:
            r = c.post("/streaming/webhooks", json=body)
            assert r.status_code == 422, (body, r.status_code, r.text)
            messages: list[str] = r.json()["errors"][field]
            return messages

        for url in ("http://127.0.0.1:9/hook", "http://localhost:8080/", "http://[::1]/", "http://10.1.2.3/",
                    "http://192.168.0.10/x", "http://169.254.169.254/latest", "http://0.0.0.0/",
                    "http://[::ffff:127.0.0.1]/"):
            assert any("ONAIR_ALLOW_PRIVATE_TARGETS" in m for m in refused({"url": url}, "url")), url
        for url in ("not a url", "ftp://example.com/x", "http://", "http://example.com:99999/", ""):
            refused({"url": url}, "url")
        assert refused({}, "url") == ["can't be blank"]
        assert "unknown event type 'stream.exploded'" in refused(
            {"url": "https://hooks.example.com/a", "events": ["stream.live", "stream.exploded"]}, "events")[0]
        refused({"url": "https://hooks.example.com/a", "events": []}, "events")
        refused({"url": "https://hooks.example.com/a", "events": "stream.live"}, "events")
        assert c.post("/streaming/webhooks", json={"url": "https://hooks.example.com/a"},
                      headers={"Authorization": ""}).status_code == 401

        r = c.post("/streaming/webhooks", json={"url": "https://hooks.example.com/a", "events": ["video.ready",
                                                                                                "stream.live"]})
        assert r.status_code == 201, r.text
        hook = r.json()
        assert set(hook) >= {"id", "url", "events", "secret", "active", "created_at"}
        assert hook["events"] == ["stream.live", "video.ready"] and hook["active"] is True
        other = c.post("/streaming/webhooks", json={"url": "https://hooks.example.com/b"}).json()
        assert other["secret"] != hook["secret"]
        assert [h["id"] for h in c.get("/streaming/webhooks").json()] == [other["id"], hook["id"]]
        assert c.get(f"/streaming/webhooks/{hook['id']}").json() == hook
        r = c.patch(f"/streaming/webhooks/{hook['id']}", json={"url": "http://127.0.0.1/"})
        assert r.status_code == 422 and "url" in r.json()["errors"]
        r = c.patch(f"/streaming/webhooks/{hook['id']}", json={"events": ["nope"]})
        assert r.status_code == 422 and "events" in r.json()["errors"]
        r = c.patch(f"/streaming/webhooks/{hook['id']}", json={"active": False, "events": ["stream.idle"],
                                                               "url": "https://hooks.example.com/c"})
        assert r.status_code == 200, r.text
        changed = r.json()
        assert (changed["active"], changed["events"], changed["url"]) == (False, ["stream.idle"],
                                                                          "https://hooks.example.com/c")
        assert changed["secret"] == hook["secret"]
        assert c.get(f"/streaming/webhooks/{hook['id']}/deliveries").json() == []
        assert c.delete(f"/streaming/webhooks/{hook['id']}").status_code == 204
        assert c.get(f"/streaming/webhooks/{hook['id']}").status_code == 404
        assert c.get(f"/streaming/webhooks/{hook['id']}/deliveries").status_code == 404
        assert c.patch("/streaming/webhooks/999999", json={"active": True}).status_code == 404
    secret_not_logged(srv, hook["secret"])
    secret_not_logged(srv, other["secret"])


def _loopback_name() -> str:
    """A name in /etc/hosts (other than localhost) for a loopback address, as Debian gives the host name."""
    for line in Path("/etc/hosts").read_text().splitlines():
        fields = line.split("#", 1)[0].split()
        if fields and fields[0].startswith("127."):
            for name in fields[1:]:
                if "localhost" not in name:
                    return name
    pytest.skip("no loopback host name in /etc/hosts")


@pytest.mark.media
def test_a_name_resolving_to_loopback_is_refused_at_delivery(make_server: Callable[..., OnairServer],
                                                             receiver: Receiver) -> None:
    """A host name the API cannot judge, resolving to a loopback address: the sender resolves every target
    before each try and refuses it, so the receiver on loopback never hears a thing."""
    name = _loopback_name()
    srv = make_server().start()
    port = receiver.server.server_address[1]
    hook = create_webhook(srv, f"http://{name}:{port}/hooks", ["stream.live"])
    stream = api(srv, "POST", "/streaming/streams", json={"name": "sneaky", "active": True})
    publisher = push_rtmp(stream["push_url"], size="160x120", rate=10)
    try:
        row = wait_until(lambda: (d := deliveries(srv, hook["id"])) and d[0]["attempts"] >= 1
                         and d[0]["last_error"] and d[0], 30, what="a refused try")
    finally:
        stop(publisher)
    assert row["status"] == "pending" and row["last_status_code"] is None
    assert row["last_error"].startswith("target refused:") and "loopback" in row["last_error"], row
    assert receiver.all() == []
    secret_not_logged(srv, hook["secret"])


@pytest.mark.media
def test_a_crash_while_live_is_reported_idle_at_the_next_start(make_server: Callable[..., OnairServer],
                                                               receiver: Receiver) -> None:
    """kill -9 ends no session: the next start finds the stream marked live, resets it and says so."""
    srv = make_server(allow_private_targets=True).start()
    hook = create_webhook(srv, receiver.url, ["stream.live", "stream.idle"])
    stream = api(srv, "POST", "/streaming/streams", json={"name": "crashing", "active": True})
    sid = stream["id"]
    publisher = push_rtmp(stream["push_url"], size="160x120", rate=10)
    try:
        wait_until(lambda: receiver.types() == ["stream.live"], 30, what="stream.live")
        srv.stop(signal.SIGKILL)
    finally:
        stop(publisher)
    assert receiver.types() == ["stream.live"]
    srv.start()
    wait_until(lambda: "stream.idle" in receiver.types(), 30, what="stream.idle after the restart")
    assert receiver.types() == ["stream.live", "stream.idle"]
    idle = receiver.accepted()[-1]
    verify(hook["secret"], idle)
    assert idle.body["data"]["id"] == sid and idle.body["data"]["live"] is False
    assert idle.body["data"] == api(srv, "GET", f"/streaming/streams/{sid}")
    secret_not_logged(srv, hook["secret"])
