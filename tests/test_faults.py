"""Issue 7 fault tests: the server survives bad peers and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import time
from typing import Any

import httpx
import pytest

from tests.conftest import OnairServer, wait_until
from tests.media import push_rtmp, stop

pytestmark = pytest.mark.media


def _stream(srv: OnairServer, **fields: Any) -> dict[str, Any]:
    with srv.client() as c:
        data: dict[str, Any] = c.post("/streaming/streams", json={"name": "f", "active": True, **fields}).json()
        return data


def _get(srv: OnairServer, sid: int) -> dict[str, Any]:
    with srv.client() as c:
        data: dict[str, Any] = c.get(f"/streaming/streams/{sid}").json()
        return data


def test_sigterm_closes_live_sessions_and_state_is_consistent(make_server: Any) -> None:
    srv = make_server().start()
    stream = _stream(srv)
    pub = push_rtmp(stream["push_url"], size="320x240", rate=15)
    try:
        wait_until(lambda: _get(srv, stream["id"])["live"], 10, what="live")
        t0 = time.monotonic()
        assert srv.stop(signal.SIGTERM) == 0, srv.log_tail()
        assert time.monotonic() - t0 < 15
        wait_until(lambda: pub.poll() is not None, 10, what="publisher disconnected by shutdown")
        assert "Traceback" not in srv.log_tail(200)
    finally:
        stop(pub)
    srv.start()
    after = _get(srv, stream["id"])
    assert after["live"] is False and after["finished_at_primary"] >= after["started_at_primary"]
    assert after["token"] == stream["token"]


def test_sigkill_leaves_state_recoverable(make_server: Any) -> None:
    srv = make_server().start()
    stream = _stream(srv)
    pub = push_rtmp(stream["push_url"], size="320x240", rate=15)
    try:
        wait_until(lambda: _get(srv, stream["id"])["live"], 10, what="live")
        srv.stop(signal.SIGKILL)
    finally:
        stop(pub)
    srv.start()
    after = _get(srv, stream["id"])
    assert after["live"] is False and after["finished_at_primary"]
    # and it can go live again (ports were picked afresh: take the push URL from the API again)
    pub = push_rtmp(after["push_url"], size="320x240", rate=15)
    try:
        wait_until(lambda: _get(srv, stream["id"])["live"], 10, what="live again after crash")
    finally:
        stop(pub)


def _spray_tcp(port: int, tls: bool = False) -> None:
    for size in (1, 7, 1537, 3073, 65536):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
                sock: socket.socket = raw
                if tls:
                    ctx = ssl.create_default_context()
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    sock = ctx.wrap_socket(raw)
                sock.sendall(os.urandom(size))
                sock.settimeout(0.5)
                try:
                    sock.recv(4096)
                except (TimeoutError, OSError):
                    pass
        except OSError:
            pass


def test_garbage_to_every_port(make_server: Any) -> None:
    srv = make_server(rtmps_port=-1).start()
    for port in (srv.ports["http"], srv.ports["rtmp"]):
        _spray_tcp(port)
    if srv.ports.get("rtmps"):
        _spray_tcp(srv.ports["rtmps"], tls=True)
        _spray_tcp(srv.ports["rtmps"])
    if srv.ports.get("srt"):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            for _ in range(200):
                u.sendto(os.urandom(1316), ("127.0.0.1", srv.ports["srt"]))
    # garbage HTTP: a broken request line and a bogus chunked body
    with socket.create_connection(("127.0.0.1", srv.ports["http"]), timeout=3) as s:
        s.sendall(b"GET /\x00\xff HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert httpx.get(srv.base_url + "/healthz", timeout=5).json()["status"] == "ok"
    stream = _stream(srv)
    pub = push_rtmp(stream["push_url"], size="320x240", rate=15)
    try:
        wait_until(lambda: _get(srv, stream["id"])["live"], 10, what="live after garbage")
    finally:
        stop(pub)
