"""Statistics from real playback: ffprobe samples, stream minutes, viewers and watch time."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.conftest import wait_until
from tests.ingest_media import create_stream, get_stream
from tests.media import push_rtmp, stop

pytestmark = pytest.mark.media


def test_statistics_follow_a_watched_stream(make_server: Any) -> None:
    srv = make_server(stats_period=2).start()
    stream = create_stream(srv, client_user_id=4242)
    sid = stream["id"]
    pub = push_rtmp(stream["push_url"], size="320x240", rate=15)
    start = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    try:
        wait_until(lambda: get_stream(srv, sid)["live"], 10, what="live")
        # two viewers from two loopback source addresses, each running an LL-HLS blocking-reload loop
        viewers = [httpx.Client(timeout=10, transport=httpx.HTTPTransport(local_address=a))
                   for a in ("127.0.0.1", "127.0.0.2")]
        media = stream["hls_cmaf_url"].rsplit("/", 1)[0] + "/audio/index.m3u8"
        wait_until(lambda: "PRELOAD-HINT" in viewers[0].get(media).text, 20, what="LL-HLS playlist")
        deadline = time.monotonic() + 7
        while time.monotonic() < deadline:
            for client in viewers:
                hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s"', client.get(media).text)
                assert hint
                client.get(media, params={"_HLS_msn": hint[1], "_HLS_part": hint[2]})
        end = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
        with srv.client() as c:
            def series(path: str, **q: Any) -> list[Any]:
                r = c.get(f"/streaming/statistics/{path}", params={"from": start, "to": end, "granularity": "1h", **q})
                r.raise_for_status()
                data: list[Any] = r.json()[0]["metrics"]["streams"]
                return data

            uniq = wait_until(lambda: (s := series("stream/viewers", stream_id=sid)) and s[0][1] >= 2 and s, 15,
                              what="two unique viewers")
            assert uniq[0][1] == 2
            assert series("stream/viewers", client_user_id=4242)[0][1] == 2
            assert series("stream/viewers", client_user_id=1) == []
            minutes = series("stream/watching_duration", stream_id=sid)
            assert minutes and minutes[0][1] >= 1  # rounded up per bucket
            total = c.get("/streaming/statistics/stream/watching_duration/total",
                          params={"stream_id": sid}).json()[0]
            assert total["duration"] >= 1 and total["stream_id"] == str(sid)
            assert series("stream") and series("max_stream")[0][1] == 1
            probe = c.get("/streaming/statistics/ffprobe",
                          params={"date_from": start, "date_to": end, "stream_id": str(sid), "interval": 1,
                                  "units": "hour"}).json()["data"]
            assert probe and probe[0]["max_height"] == 240 and probe[0]["avg_bitrate"] > 0
    finally:
        stop(pub)
