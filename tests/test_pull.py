"""PULL streams: round-robin over `uri`, pushes refused, switched off at once."""

from __future__ import annotations

import subprocess
import time

import httpx
import pytest

from tests.conftest import OnairServer, free_port, wait_until
from tests.ingest_media import create_stream, get_stream, patch_stream, source_args
from tests.media import push_rtmp, stop

pytestmark = pytest.mark.media


def srt_source(port: int) -> subprocess.Popen[bytes]:
    """A source a PULL can fetch: ffmpeg serving MPEG-TS as an SRT listener (one caller)."""
    cmd = [*source_args(), "-f", "mpegts", f"srt://127.0.0.1:{port}?mode=listener"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_pull_round_robin_and_switch_off(make_server) -> None:  # type: ignore[no-untyped-def]
    srv: OnairServer = make_server(pull_stall_timeout=3, allow_private_targets=True).start()
    dead = f"rtmp://127.0.0.1:{free_port()}/live/gone"
    port = free_port()
    source = srt_source(port)
    try:
        t0 = time.monotonic()
        stream = create_stream(srv, pull=True, uri=f"{dead} srt://127.0.0.1:{port}")
        sid = stream["id"]
        s = wait_until(lambda: (x := get_stream(srv, sid))["live"] and x, 30, what="pull live from the 2nd uri")
        print(f"\npull live {time.monotonic() - t0:.1f}s after create (first uri dead)")
        assert s["stream_source_type"] == "srt" and not s["backup_live"]
        http = httpx.Client(timeout=30)
        media = stream["hls_cmaf_url"].rsplit("/", 1)[0] + "/audio/index.m3u8"
        wait_until(lambda: http.get(media).text.count("#EXTINF") >= 1, 30, what="pulled segments")

        # pushes to a pull stream are refused
        push = push_rtmp(stream["push_url"], size="320x240", rate=15, seconds=20)
        assert push.wait(15) != 0

        # active=false stops pulling at once: the source loses its caller and exits
        patch_stream(srv, sid, active=False)
        off = time.monotonic()
        wait_until(lambda: not get_stream(srv, sid)["live"], 10, what="live=false")
        wait_until(lambda: source.poll() is not None, 20, what="source disconnected")
        assert time.monotonic() - off < 20
    finally:
        stop(source)


def test_pull_inactivity_switches_stream_off(make_server) -> None:  # type: ignore[no-untyped-def]
    srv: OnairServer = make_server(pull_inactivity_timeout=4, allow_private_targets=True).start()
    dead = f"rtmp://127.0.0.1:{free_port()}/live/gone"
    stream = create_stream(srv, pull=True, uri=dead)
    s = wait_until(lambda: not (x := get_stream(srv, stream["id"]))["active"] and x, 30, what="active=false")
    assert not s["live"]


def test_pull_from_https_hls(make_server) -> None:  # type: ignore[no-untyped-def]
    """An HLS source (here the node's own MPEG-TS HLS of a pushed stream) is pulled; type `https`."""
    srv: OnairServer = make_server(allow_private_targets=True).start()
    source_stream = create_stream(srv)
    pub = push_rtmp(source_stream["push_url"], size="320x240", rate=15)
    try:
        wait_until(lambda: httpx.get(source_stream["hls_mpegts_url"]).status_code == 200, 20, what="source HLS")
        pulled = create_stream(srv, pull=True, uri=source_stream["hls_mpegts_url"])
        s = wait_until(lambda: (x := get_stream(srv, pulled["id"]))["live"] and x, 30, what="HLS pull live")
        assert s["stream_source_type"] == "https"
        media = pulled["hls_cmaf_url"].rsplit("/", 1)[0] + "/audio/index.m3u8"
        wait_until(lambda: httpx.get(media).text.count("#EXTINF") >= 1, 30, what="segments pulled over HLS")
    finally:
        stop(pub)
