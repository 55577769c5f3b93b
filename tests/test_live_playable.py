"""`live` means playable: the moment it turns true, the master and every media playlist answer
at once with at least one complete segment, for RTMP and SRT sources."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.conftest import OnairServer, wait_until
from tests.ingest_media import create_stream, get_stream, push_srt
from tests.media import parse_master, push_rtmp, stop
from tests.test_clocks_live import parse_media

pytestmark = pytest.mark.media


@pytest.mark.parametrize("protocol", ["rtmp", "srt"])
def test_playlists_have_a_complete_segment_when_live_turns_true(server: OnairServer, protocol: str) -> None:
    stream = create_stream(server)
    sid = stream["id"]
    publisher = (push_rtmp(stream["push_url"], size="640x360", rate=25) if protocol == "rtmp"
                 else push_srt(stream["push_url_srt"]))
    http = httpx.Client(timeout=10)
    try:
        # before: not live, and the playlists are not served half-made
        assert get_stream(server, sid)["live"] is False
        wait_until(lambda: get_stream(server, sid)["live"], 30, interval=0.05, what="live=true")
        asked = time.monotonic()
        master = http.get(stream["hls_cmaf_url"])
        assert master.status_code == 200, master.text
        playlists = [v["uri"] for v in parse_master(master.text, stream["hls_cmaf_url"])]
        assert playlists
        playlists.append(stream["hls_cmaf_url"].rsplit("/", 1)[0] + "/audio/index.m3u8")
        for url in playlists:
            media = http.get(url)
            listed_by = time.time()
            assert media.status_code == 200, (url, media.text)
            assert "#EXTINF:" in media.text and ".m4s" in media.text, f"no complete segment in {url}:\n{media.text}"
            # and its clock is the source's: the newest part was not captured after it was listed
            newest = parse_media(media.text)[0][-1]
            assert newest.end <= listed_by + 0.002, f"{url}: newest part ends {newest.end - listed_by:+.3f} s ahead"
        assert time.monotonic() - asked < 1.0, "answered at once, not held until the output was ready"
        mpd = http.get(stream["dash_url"])
        assert mpd.status_code == 200 and "<S " in mpd.text
    finally:
        stop(publisher)
