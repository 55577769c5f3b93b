"""Backup ingest with failover: the output continues from the backup feed."""

from __future__ import annotations

import re
import signal
import time

import httpx
import pytest

from tests.conftest import OnairServer, wait_until
from tests.ingest_media import create_stream, get_stream, push_srt
from tests.media import push_rtmp, stop

pytestmark = pytest.mark.media


def _playlist_state(http: httpx.Client, url: str) -> tuple[int, int, bool]:
    """(last msn with a part, number of complete segments, has a discontinuity) of a media playlist."""
    text = http.get(url).text
    msns = [int(m) for m in re.findall(r"(?:part|seg)(\d+)(?:\.\d+)?\.m4s", text)]
    return (max(msns) if msns else -1), text.count("#EXTINF"), "#EXT-X-DISCONTINUITY" in text


def test_primary_killed_backup_takes_over(make_server) -> None:  # type: ignore[no-untyped-def]
    srv: OnairServer = make_server(failback_delay=4).start()
    stream = create_stream(srv)
    sid = stream["id"]
    assert stream["backup_push_url_srt"].endswith(f"streamid={sid}b#{stream['token']}")
    http = httpx.Client(timeout=30)
    primary = push_rtmp(stream["push_url"], size="640x360", rate=25)
    backup = None
    try:
        wait_until(lambda: get_stream(srv, sid)["live"], 15, what="primary live")
        media = stream["hls_cmaf_url"].rsplit("/", 1)[0] + "/audio/index.m3u8"
        wait_until(lambda: _playlist_state(http, media)[1] >= 2, 30, what="primary segments")

        backup = push_srt(stream["backup_push_url_srt"])
        s = wait_until(lambda: (x := get_stream(srv, sid))["backup_live"] and x, 15, what="backup_live")
        assert s["live"] and s["started_at_backup"] and s["stream_source_type"] == "rtmp"
        assert s["active_ingest_region_backup"]

        before, _, _ = _playlist_state(http, media)
        primary.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        primary.wait(5)
        # the media sequence keeps growing past the switch (no restart at 0, marked discontinuity)
        wait_until(lambda: (st := _playlist_state(http, media))[2] and st[0] > before, 30,
                   what="first part from the backup")
        first_part = time.monotonic() - killed
        wait_until(lambda: _playlist_state(http, media)[0] >= before + 2, 30, what="backup segments")
        full_segment = time.monotonic() - killed
        print(f"\nfailover: first part from backup {first_part:.2f}s, next complete segment {full_segment:.2f}s"
              " after the primary was killed")
        s = get_stream(srv, sid)
        assert not s["live"] and s["backup_live"] and s["stream_source_type"] == "srt"
        assert s["finished_at_primary"]
        assert first_part < 15

        # the video renditions continue too, and the init segment they reference is served
        master = http.get(stream["hls_cmaf_url"]).raise_for_status().text
        variant = next(ln for ln in master.splitlines() if ln.endswith("index.m3u8") and "audio" not in ln)
        vurl = stream["hls_cmaf_url"].rsplit("/", 1)[0] + "/" + variant
        vtext = http.get(vurl).text
        for uri in re.findall(r'#EXT-X-MAP:URI="([^"]+)"', vtext):
            assert http.get(vurl.rsplit("/", 1)[0] + "/" + uri).status_code == 200

        # the primary returns: after failback_delay of continuous delivery it feeds again
        primary = push_rtmp(stream["push_url"], size="640x360", rate=25)
        wait_until(lambda: (x := get_stream(srv, sid))["live"] and x["stream_source_type"] == "rtmp", 30,
                   what="switch back to the primary")
        after, _, _ = _playlist_state(http, media)
        wait_until(lambda: _playlist_state(http, media)[0] > after, 30, what="segments after switching back")
    finally:
        stop(primary)
        if backup is not None:
            stop(backup)
    wait_until(lambda: not (x := get_stream(srv, sid))["live"] and not x["backup_live"], 20, what="all ingest off")


def test_backup_key_rules(server: OnairServer) -> None:
    stream = create_stream(server)
    sid = stream["id"]
    backup = push_rtmp(stream["backup_push_url"], size="320x240", rate=15)
    try:
        # a backup alone carries the stream (backup_live without live)
        s = wait_until(lambda: (x := get_stream(server, sid))["backup_live"] and x, 15, what="backup alone")
        assert not s["live"] and s["stream_source_type"] == "rtmp" and s["started_at_backup"]
        # one connection per key: a second backup publisher is refused
        second = push_rtmp(stream["backup_push_url"], size="320x240", rate=15, seconds=20)
        assert second.wait(15) != 0
    finally:
        stop(backup)
    wait_until(lambda: not get_stream(server, sid)["backup_live"], 15, what="backup_live=false")


def test_silent_primary_fails_over_after_3s(make_server) -> None:  # type: ignore[no-untyped-def]
    """A primary that stops delivering without disconnecting: the 3 s no-data rule switches to the backup."""
    srv: OnairServer = make_server().start()
    stream = create_stream(srv)
    sid = stream["id"]
    http = httpx.Client(timeout=30)
    primary = push_rtmp(stream["push_url"], size="320x240", rate=15)
    backup = None
    try:
        wait_until(lambda: get_stream(srv, sid)["stream_source_type"] == "rtmp", 20, what="primary feeding")
        backup = push_srt(stream["backup_push_url_srt"], size="320x240")
        wait_until(lambda: (x := get_stream(srv, sid))["live"] and x["backup_live"], 20, what="both ingests live")
        media = stream["hls_cmaf_url"].rsplit("/", 1)[0] + "/audio/index.m3u8"
        wait_until(lambda: _playlist_state(http, media)[1] >= 2, 30, what="primary segments")
        before, _, _ = _playlist_state(http, media)
        primary.send_signal(signal.SIGSTOP)  # connection open, no data
        stopped = time.monotonic()
        wait_until(lambda: get_stream(srv, sid)["stream_source_type"] == "srt", 15, what="switch to the backup")
        switched = time.monotonic() - stopped
        wait_until(lambda: (st := _playlist_state(http, media))[2] and st[0] > before, 30,
                   what="parts from the backup")
        print(f"\nsilent primary: switched to backup after {switched:.2f}s, "
              f"first backup part after {time.monotonic() - stopped:.2f}s")
        assert 2.5 <= switched <= 8
    finally:
        primary.send_signal(signal.SIGCONT)
        stop(primary)
        if backup is not None:
            stop(backup)
