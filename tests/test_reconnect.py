"""Reconnect window: a publisher that drops and comes back within `reconnect_window` continues the session.

`live` stays true throughout, the playlists go on (media sequence counting, EXT-X-DISCONTINUITY, no
ENDLIST), and one recording Video covers both halves.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import OnairServer, wait_until
from tests.media import parse_master, push_rtmp, stop
from tests.test_dvr import api
from tests.test_recording import ready_video, stream_state

pytestmark = pytest.mark.media


def _media_playlist(http: httpx.Client, master_url: str) -> str:
    master = http.get(master_url)
    if master.status_code != 200:
        return ""
    uri = parse_master(master.text, master_url)[0]["uri"]
    return http.get(uri).text


def _last_msn(playlist: str) -> int:
    seq = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist)
    if seq is None:
        return -1
    return int(seq[1]) + playlist.count("#EXTINF") - 1


def test_publisher_back_within_the_window_continues_the_session(make_server: Callable[..., OnairServer]) -> None:
    srv = make_server().start()
    stream = api(srv, "POST", "/streaming/streams", json={"name": "blink", "active": True, "auto_record": True,
                                                          "reconnect_window": 30})
    sid = stream["id"]
    assert stream["reconnect_window"] == 30
    http = httpx.Client(timeout=30)
    first = push_rtmp(stream["push_url"], size="320x240", rate=15)
    first_started = time.monotonic()
    second = None
    try:
        wait_until(lambda: stream_state(srv, sid)["live"], 15, what="live")
        wait_until(lambda: _last_msn(_media_playlist(http, stream["hls_cmaf_url"])) >= 3, 30, what="4 segments")
        before = _last_msn(_media_playlist(http, stream["hls_cmaf_url"]))
        first.send_signal(signal.SIGKILL)  # the encoder's network goes away: no goodbye
        first.wait(10)
        first_half = time.monotonic() - first_started
        # for 15 s nobody pushes: the stream stays live and its playlist never ends
        gap_end = time.monotonic() + 15
        while time.monotonic() < gap_end:
            state = stream_state(srv, sid)
            assert state["live"] is True, "live must stay true within the reconnect window"
            assert "#EXT-X-ENDLIST" not in _media_playlist(http, stream["hls_cmaf_url"])
            time.sleep(1.0)  # the pace of the observation, not a synchronisation
        second = push_rtmp(stream["push_url"], size="320x240", rate=15)
        second_started = time.monotonic()
        wait_until(lambda: _last_msn(_media_playlist(http, stream["hls_cmaf_url"])) >= before + 3, 30,
                   what="new segments after the reconnect")
        playlist = _media_playlist(http, stream["hls_cmaf_url"])
        assert "#EXT-X-DISCONTINUITY" in playlist and "#EXT-X-ENDLIST" not in playlist
        assert _last_msn(playlist) > before  # the media sequence goes on from where it was
        stop(second)
        second = None
        second_half = time.monotonic() - second_started
        # the second drop ends the session once the stream is switched off (no window then)
        wait_until(lambda: stream_state(srv, sid)["live"], 5, what="still live while reconnecting")
        api(srv, "PATCH", f"/streaming/streams/{sid}", json={"active": False})
        wait_until(lambda: not stream_state(srv, sid)["live"], 10, what="not live after switch-off")
        videos: list[dict[str, Any]] = wait_until(
            lambda: (v := api(srv, "GET", f"/streaming/videos?stream_id={sid}")) and v, 30, what="a video")
        assert len(videos) == 1, videos
        done = ready_video(srv, videos[0]["id"], timeout=90)
        # both halves are in the one Video: longer than either alone could be
        assert done["duration"] >= 1000 * (max(first_half, second_half) + 2), (done["duration"], first_half,
                                                                                 second_half)
        assert len(api(srv, "GET", f"/streaming/videos?stream_id={sid}")) == 1
    finally:
        for proc in (first, second):
            if proc is not None:
                stop(proc)
        http.close()
