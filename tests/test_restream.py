"""Restreams: node A pushes its live stream on to node B, for real."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import OnairServer, free_port, wait_until
from tests.ingest_media import create_stream, get_stream
from tests.media import codecs, ffprobe, parse_master, push_rtmp, stop
from tests.test_dvr import api

pytestmark = pytest.mark.media


def restream(srv: OnairServer, method: str, path: str = "", **fields: Any) -> Any:
    body = {"json": {"restream": fields}} if method in ("POST", "PATCH") else {}
    return api(srv, method, f"/streaming/restreams{path}", **body)


def media_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def ll_hls_top(http: httpx.Client, stream: dict[str, Any]) -> tuple[str, str]:
    """(media playlist URL, text) of the top LL-HLS rendition once it lists two segments."""
    master_url = stream["hls_cmaf_url"]
    master = wait_until(lambda: (r := http.get(master_url)).status_code == 200 and r.text, 20, what="master")
    top = max(parse_master(master, master_url), key=lambda v: int(v["BANDWIDTH"]))
    text = wait_until(lambda: (t := http.get(top["uri"]).text).count("#EXTINF") >= 2 and t, 20, what="segments")
    return top["uri"], text


def ll_hls_decodes(http: httpx.Client, stream: dict[str, Any]) -> dict[str, Any]:
    url, text = ll_hls_top(http, stream)
    base = url.rsplit("/", 1)[0]
    seg = next(ln for ln in media_lines(text) if ln.endswith(".m4s"))
    probe = ffprobe(http.get(f"{base}/init.mp4").raise_for_status().content
                    + http.get(f"{base}/{seg}").raise_for_status().content, count_frames=True)
    assert codecs(probe) == {"h264"} and int(probe["streams"][0]["nb_read_frames"]) > 0
    return probe["streams"][0]  # type: ignore[no-any-return]


def ts_segment_codecs(http: httpx.Client, stream: dict[str, Any]) -> set[str]:
    master_url = stream["hls_mpegts_url"]
    master = wait_until(lambda: (r := http.get(master_url)).status_code == 200 and r.text, 20, what="ts master")
    media_url = parse_master(master, master_url)[0]["uri"]
    text = wait_until(lambda: (t := http.get(media_url).text).count(".ts") >= 1 and t, 20, what="ts segment")
    seg = media_lines(text)[0]
    return codecs(ffprobe(http.get(media_url.split("?")[0].rsplit("/", 1)[0] + "/" + seg).content))


def metric(srv: OnairServer, name: str) -> float:
    text = httpx.get(srv.base_url + "/metrics", timeout=10).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, re.M))


def test_restream_to_another_node(make_server: Callable[..., OnairServer]) -> None:
    a = make_server("a", allow_private_targets=True).start()  # B is on 127.0.0.1
    b = make_server("b").start()
    x = create_stream(a, name="source")
    plain, silent, hush, over_srt, top = (create_stream(b, name=n)
                                          for n in ("plain", "no audio", "silence", "srt", "transcoded"))
    r_plain = restream(a, "POST", name="to B", stream_id=x["id"], uri=plain["push_url"])
    r_silent = restream(a, "POST", stream_id=x["id"], uri=silent["push_url"], no_audio=True, no_audio_mode="drop")
    restream(a, "POST", stream_id=x["id"], uri=hush["push_url"], no_audio=True, no_audio_mode="silence")
    r_dead = restream(a, "POST", stream_id=x["id"], uri=f"rtmp://127.0.0.1:{free_port()}/live/nobody")
    r_top = restream(a, "POST", stream_id=x["id"], uri=top["push_url"], source="transcoded")
    assert not r_plain["live"] and r_plain["active"] and r_plain["client_id"]

    publisher = push_rtmp(x["push_url"], size="640x360", rate=15)
    http = httpx.Client(timeout=30)
    t0 = time.monotonic()
    try:
        # the active restreams start by themselves once X is live on A
        wait_until(lambda: get_stream(b, plain["id"])["live"], 20, what="B's stream live through the restream")
        took = time.monotonic() - t0
        assert restream(a, "GET", f"/{r_plain['id']}")["live"]
        v = ll_hls_decodes(http, plain)
        assert (v["width"], v["height"]) == (640, 360)
        assert ts_segment_codecs(http, plain) == {"h264", "aac"}

        # no_audio drop: B gets video only
        wait_until(lambda: get_stream(b, silent["id"])["live"], 20, what="no-audio restream live")
        assert ts_segment_codecs(http, silent) == {"h264"}
        wait_until(lambda: (q := get_stream(b, silent["id"])["transcoded_qualities"]) and q, 15, what="qualities")
        assert "audioa" not in get_stream(b, silent["id"])["transcoded_qualities"]
        # no_audio silence: the audio is replaced by a silent AAC track
        wait_until(lambda: get_stream(b, hush["id"])["live"], 20, what="silence restream live")
        assert ts_segment_codecs(http, hush) == {"h264", "aac"}

        # transcoded = A's top rendition (fed from A's MPEG-TS HLS output)
        wait_until(lambda: get_stream(b, top["id"])["live"], 30, what="transcoded restream live")
        assert ts_segment_codecs(http, top) == {"h264", "aac"}
        assert restream(a, "GET", f"/{r_top['id']}")["live"]

        # a restream created while X is live starts at once; SRT target
        r_srt = restream(a, "POST", stream_id=x["id"], uri=over_srt["push_url_srt"])
        wait_until(lambda: get_stream(b, over_srt["id"])["live"], 20, what="SRT restream live")
        assert get_stream(b, over_srt["id"])["stream_source_type"] == "srt"
        wait_until(lambda: restream(a, "GET", f"/{r_srt['id']}")["live"], 10, what="SRT restream live on A")

        # the dead target is retried, never live, and A's own playback is undisturbed
        assert not restream(a, "GET", f"/{r_dead['id']}")["live"]
        wait_until(lambda: metric(a, "onair_restream_restarts_total") >= 2, 20, what="dead target retried")
        assert metric(a, "onair_restreams_running") == 6
        url, before = ll_hls_top(http, x)
        # the newest complete segment's number (the window may not slide yet: it holds 40 s by default)
        wait_until(lambda: _newest_msn(http.get(url).text) > _newest_msn(before), 15, what="A's playlist keeps moving")
        ll_hls_decodes(http, x)
        assert get_stream(a, x["id"])["live"]

        # active=false stops the push: B's stream goes off within seconds
        assert not restream(a, "PATCH", f"/{r_plain['id']}", active=False)["live"]
        wait_until(lambda: not get_stream(b, plain["id"])["live"], 10, what="B's stream not live after active=false")
        # active=true again: back on while X is live
        restream(a, "PATCH", f"/{r_plain['id']}", active=True)
        wait_until(lambda: get_stream(b, plain["id"])["live"], 20, what="B live again after active=true")

        # deleting a restream stops its push
        with a.client() as c:
            assert c.delete(f"/streaming/restreams/{r_silent['id']}").status_code == 204
        wait_until(lambda: not get_stream(b, silent["id"])["live"], 10, what="push stopped after DELETE")

        # the source ending ends every restream
        stop(publisher)
        for s in (plain, hush, over_srt, top):
            wait_until(lambda s=s: not get_stream(b, s["id"])["live"], 15, what=f"{s['name']} ended with X")
        assert not restream(a, "GET", f"/{r_srt['id']}")["live"]
        wait_until(lambda: metric(a, "onair_restreams_running") == 0, 10, what="no restream running")
        print(f"\nrestream: B live {took:.1f}s after the push to A started")
    finally:
        stop(publisher)
        http.close()


class _Stuck:
    """Stands in for a transcoder: an MPEG-TS source, so any chunk is a valid start."""

    input_format = "mpegts"

    def resume_point(self) -> bytes:
        return b""


def test_tap_drops_a_stuck_consumer_without_blocking(tmp_path: Path) -> None:
    """A consumer that never reads: writes never wait, and the tap gives up past its backlog."""
    from onair.outputs.tap import SourceTap

    fake = tmp_path / "ffmpeg"
    fake.write_text("#!/bin/sh\nexec sleep 30\n")  # never reads its stdin
    fake.chmod(0o755)

    async def run() -> tuple[int, float]:
        tap = SourceTap(_Stuck(), [], ffmpeg=str(fake), max_backlog=1024 * 1024)  # type: ignore[arg-type]
        await tap.start()
        chunk = b"\x47" * 65536
        sent, slowest = 0, 0.0
        while sent < 64 * 1024 * 1024:
            t = time.monotonic()
            ok = tap.feed_nowait(chunk)
            slowest = max(slowest, time.monotonic() - t)
            if not ok:
                break
            sent += len(chunk)
        await tap.kill()
        return sent, slowest

    sent, slowest = asyncio.run(run())
    assert sent < 4 * 1024 * 1024, "the backlog is bounded"
    assert slowest < 0.05, "feeding never waits for the consumer"


def _newest_msn(playlist: str) -> int:
    first = int(re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist)[1])  # type: ignore[index]
    return first + playlist.count("#EXTINF:") - 1
