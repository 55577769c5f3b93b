"""`viewers` on a stream: players watching now (a short sliding window), also as the onair_viewers gauge."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable

import httpx
import pytest

from tests.conftest import OnairServer, wait_until
from tests.media import parse_master, push_rtmp, stop
from tests.test_dvr import api
from tests.test_recording import stream_state

pytestmark = pytest.mark.media


def _watch(master_url: str, address: str, agent: str, stop_event: threading.Event) -> None:
    """A player: follows the LL-HLS playlist with blocking reloads and fetches the parts, from its own address."""
    transport = httpx.HTTPTransport(local_address=address)
    with httpx.Client(transport=transport, timeout=15, headers={"User-Agent": agent}) as http:
        master = http.get(master_url)
        while master.status_code != 200:  # the stream is not playable yet: a player retries
            if stop_event.wait(0.2):
                return
            master = http.get(master_url)
        media = parse_master(master.text, master_url)[0]["uri"]
        while not stop_event.is_set():
            text = http.get(media).text
            parts = re.findall(r'URI="(part\d+\.\d+\.m4s)"', text)
            hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s"', text)
            if parts:
                http.get(media.rsplit("/", 1)[0] + "/" + parts[-1])
            if hint is None:
                return
            http.get(media, params={"_HLS_msn": hint[1], "_HLS_part": hint[2]})


def _gauge(srv: OnairServer) -> float:
    text = httpx.get(f"http://127.0.0.1:{srv.http_port}/metrics").text
    m = re.search(r"^onair_viewers (\S+)$", text, re.M)
    return float(m[1]) if m else -1.0


def test_viewers_count_players_watching_now(make_server: Callable[..., OnairServer]) -> None:
    srv = make_server().start()
    stream = api(srv, "POST", "/streaming/streams", json={"name": "watched", "active": True})
    sid = stream["id"]
    assert stream["viewers"] == 0
    publisher = push_rtmp(stream["push_url"], size="320x240", rate=15)
    done = threading.Event()
    players: list[threading.Thread] = []
    try:
        wait_until(lambda: stream_state(srv, sid)["live"], 15, what="live")
        # only the three players fetch the stream: any other client would be a viewer too
        for n in (2, 3, 4):
            t = threading.Thread(target=_watch, args=(stream["hls_cmaf_url"], f"127.0.0.{n}", f"player-{n}", done),
                                 daemon=True)
            t.start()
            players.append(t)
        wait_until(lambda: stream_state(srv, sid)["viewers"] == 3, 30, what="3 viewers")
        wait_until(lambda: _gauge(srv) == 3, 10, what="the gauge at 3")
        done.set()
        for t in players:
            t.join(20)
        wait_until(lambda: stream_state(srv, sid)["viewers"] == 0, 30, interval=1.0, what="0 viewers")
        wait_until(lambda: _gauge(srv) == 0, 5, what="the gauge at 0")
    finally:
        done.set()
        stop(publisher)
