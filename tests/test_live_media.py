"""RTMP push → ABR transcode → LL-HLS, LL-DASH, MPEG-TS HLS and screenshots, end to end."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from onair.transcode.command import FIRST_KEYFRAME_INTERVAL_S
from tests.conftest import OnairServer, wait_until
from tests.ingest_media import create_stream, get_stream
from tests.media import codecs, ffprobe, parse_master, push_rtmp, stop

pytestmark = pytest.mark.media


def media_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


@pytest.fixture
def live(server: OnairServer):  # type: ignore[no-untyped-def]
    stream = create_stream(server)
    publisher = push_rtmp(stream["push_url"])
    started = time.monotonic()
    yield server, stream, publisher, started
    stop(publisher)


def test_rtmp_push_plays_in_every_format(live: Any) -> None:
    srv, stream, publisher, started = live
    sid = stream["id"]
    became_live = wait_until(lambda: get_stream(srv, sid)["live"] and time.monotonic(), 5, what="live=true")
    assert became_live - started <= 5.0

    http = httpx.Client(timeout=30)
    master_url = stream["hls_cmaf_url"]
    master = wait_until(lambda: (r := http.get(master_url)).status_code == 200 and r.text, 15, what="master")
    variants = parse_master(master, master_url)
    assert len(variants) >= 2, master
    for v in variants:
        assert int(v["BANDWIDTH"]) > 0 and re.match(r"^\d+x\d+$", v["RESOLUTION"]) and "avc1." in v["CODECS"]
    heights = sorted(int(v["RESOLUTION"].split("x")[1]) for v in variants)
    assert max(heights) == 720, "never upscaled past the 720p source, and the top rung is the source size"

    top = next(v for v in variants if v["RESOLUTION"] == "1280x720")
    media_url = top["uri"]
    rbase = media_url.rsplit("/", 1)[0]
    # wait until two complete segments exist
    playlist = wait_until(lambda: (t := http.get(media_url).text).count("#EXTINF") >= 2 and t, 20, what="segments")
    assert "#EXT-X-PART-INF:PART-TARGET=" in playlist and "CAN-BLOCK-RELOAD=YES" in playlist
    assert "#EXT-X-PRELOAD-HINT:TYPE=PART" in playlist and "#EXT-X-PROGRAM-DATE-TIME:" in playlist
    assert "#EXT-X-RENDITION-REPORT:" in playlist
    init = http.get(f"{rbase}/init.mp4").raise_for_status().content
    first_name, seg_name = [ln for ln in media_lines(playlist) if ln.endswith(".m4s")][:2]
    frames = []
    for name in (first_name, seg_name):
        probe = ffprobe(init + http.get(f"{rbase}/{name}").raise_for_status().content, count_frames=True)
        assert codecs(probe) == {"h264"}
        vstream = probe["streams"][0]
        assert (vstream["width"], vstream["height"]) == (1280, 720)
        frames.append(int(vstream["nb_read_frames"]))
    # at 30 fps: the first segment is cut at the early keyframe, the next one is a whole 2 s
    first = 30 * FIRST_KEYFRAME_INTERVAL_S
    assert first - 5 <= frames[0] <= first + 10 and 50 <= frames[1] <= 70, frames
    part_uri = re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', playlist)[0]
    part = http.get(f"{rbase}/{part_uri}").raise_for_status().content
    assert codecs(ffprobe(init + part)) == {"h264"}

    # audio rendition decodes too
    audio_url = master_url.rsplit("/", 1)[0] + "/audio/index.m3u8"
    aplaylist = http.get(audio_url).raise_for_status().text
    abase = audio_url.rsplit("/", 1)[0]
    aseg = next(ln for ln in media_lines(aplaylist) if ln.endswith(".m4s"))
    assert codecs(ffprobe(http.get(f"{abase}/init.mp4").content + http.get(f"{abase}/{aseg}").content)) == {"aac"}

    # blocking playlist reload: ask for the part after the preload hint and get it without polling
    hint = re.search(r'PRELOAD-HINT:TYPE=PART,URI="part(\d+)\.(\d+)\.m4s"', http.get(media_url).text)
    assert hint
    msn, part_idx = int(hint[1]), int(hint[2])
    t0 = time.monotonic()
    blocked = http.get(media_url, params={"_HLS_msn": msn, "_HLS_part": part_idx}).raise_for_status().text
    assert f'part{msn}.{part_idx}.m4s' in blocked, "the blocking reload must contain the requested part"
    assert time.monotonic() - t0 < 3
    too_far = http.get(media_url, params={"_HLS_msn": msn + 50})
    assert too_far.status_code == 400
    # _HLS_msn without _HLS_part means part 0 of that segment
    nxt = http.get(media_url, params={"_HLS_msn": msn + 1}).raise_for_status().text
    assert f"part{msn + 1}.0.m4s" in nxt

    # LL-DASH manifest and its segments
    mpd_text = http.get(stream["dash_url"]).raise_for_status().text
    mpd = ET.fromstring(mpd_text)
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    assert mpd.get("type") == "dynamic"
    assert mpd.find(".//d:ServiceDescription", ns) is not None
    utc = mpd.find(".//d:UTCTiming", ns)  # absolute: the older GStreamer dashdemux resolves no relative one
    assert utc is not None and utc.get("value") == f"{srv.base_url}/time"
    assert http.get(utc.get("value", "")).raise_for_status().text.endswith("Z")
    tmpl = mpd.find(".//d:AdaptationSet[@contentType='video']//d:SegmentTemplate", ns)
    if tmpl is None:
        tmpl = mpd.find(".//d:SegmentTemplate", ns)
    assert tmpl is not None and tmpl.get("availabilityTimeComplete") == "false"
    assert float(tmpl.get("availabilityTimeOffset", "0")) > 0
    rep = mpd.find(".//d:Representation", ns)
    assert rep is not None
    dash_base = stream["dash_url"].rsplit("/", 1)[0]
    init_path = tmpl.get("initialization", "").replace("$RepresentationID$", rep.get("id", ""))
    start = int(tmpl.get("startNumber", "0"))
    media_path = tmpl.get("media", "").replace("$RepresentationID$", rep.get("id", "")).replace("$Number$", str(start))
    dash_seg = http.get(f"{dash_base}/{media_path}").raise_for_status().content
    assert codecs(ffprobe(http.get(f"{dash_base}/{init_path}").content + dash_seg))

    # legacy HLS over MPEG-TS, with ?get_duration_sec=true
    ts_master_url = stream["hls_mpegts_url"] + "?get_duration_sec=true"
    ts_master = http.get(ts_master_url).raise_for_status().text
    ts_variants = parse_master(ts_master, ts_master_url)
    assert len(ts_variants) >= 2
    ts_media_url = ts_variants[0]["uri"]
    ts_playlist = wait_until(lambda: (t := http.get(ts_media_url).text).count(".ts") >= 1 and t, 15, what="ts")
    ts_seg = media_lines(ts_playlist)[0]
    assert re.search(r"\.ts\?duration_sec=\d+(\.\d+)?$", ts_seg), ts_seg
    ts_bytes = http.get(ts_media_url.split("?")[0].rsplit("/", 1)[0] + "/" + ts_seg).raise_for_status().content
    assert codecs(ffprobe(ts_bytes)) == {"h264", "aac"}

    # screenshot
    shot = wait_until(lambda: (r := http.get(stream["screenshot"])).status_code == 200 and r, 15, what="screenshot")
    assert shot.headers["content-type"] == "image/jpeg" and shot.content[:2] == b"\xff\xd8"
    shot_probe = ffprobe(shot.content)
    assert shot_probe["streams"][0]["codec_name"] == "mjpeg" and shot_probe["streams"][0]["width"] <= 1080

    # API stats while live
    s = get_stream(srv, sid)
    assert s["stream_source_type"] == "rtmp" and s["video_width"] == 1280 and s["video_height"] == 720
    assert s["transcoded_qualities"] and "720pa" in s["transcoded_qualities"]
    wait_until(lambda: (get_stream(srv, sid)["transcoding_speed"] or 0) > 0, 10, what="transcoding_speed")
    assert s["frame_rate"] == pytest.approx(30, abs=1)

    # CORS for players on other origins
    cors = http.get(master_url, headers={"Origin": "http://example.test"})
    assert cors.headers.get("access-control-allow-origin") in ("*", "http://example.test")
    # the media playlists and parts are served ahead of the framework (delivery/fast_path.py): the same headers
    for url in (media_url, f"{rbase}/{part_uri}", f"{rbase}/init.mp4"):
        fast = http.get(url, headers={"Origin": "http://example.test"})
        assert fast.status_code == 200, (url, fast.text)
        for h in ("access-control-allow-origin", "access-control-expose-headers"):
            assert fast.headers.get(h) == cors.headers.get(h), (url, h, fast.headers)
    assert "access-control-allow-origin" not in http.get(media_url).headers  # as the middleware: only with Origin
    missing = http.get(f"{rbase}/part999999.0.m4s", headers={"Origin": "http://example.test"})
    assert missing.status_code == 404 and missing.headers.get("access-control-allow-origin") == "*"

    # stopping the push: live false and finished_at_primary within 10 s, playlists end
    stopped_at = time.monotonic()
    stop(publisher)
    done = wait_until(lambda: not (s := get_stream(srv, sid))["live"] and s, 10, what="live=false")
    assert done["finished_at_primary"] and done["finished_at_primary"] >= done["started_at_primary"]
    assert time.monotonic() - stopped_at <= 10
    wait_until(lambda: "#EXT-X-ENDLIST" in http.get(media_url).text, 10, what="ENDLIST in LL-HLS")
    wait_until(lambda: "#EXT-X-ENDLIST" in http.get(ts_media_url).text, 10, what="ENDLIST in TS HLS")


def _refused(url: str) -> bool:
    proc = push_rtmp(url, size="320x240", rate=15, seconds=20)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        stop(proc)
        return False
    return proc.returncode != 0


def test_ingest_rules(server: OnairServer) -> None:
    stream = create_stream(server)
    off = create_stream(server, active=False)
    sid = stream["id"]
    # wrong key, unknown stream and a switched-off stream are refused at publish time
    assert _refused(stream["push_url"].replace(stream["token"], "0" * 32))
    assert _refused(stream["push_url"].replace(f"/in/{sid}?", "/in/999999?"))
    assert _refused(off["push_url"])
    assert not get_stream(server, off["id"])["live"]

    first = push_rtmp(stream["push_url"], size="320x240", rate=15)
    try:
        wait_until(lambda: get_stream(server, sid)["live"], 10, what="first publisher live")
        # a second publisher on the same key is refused; the first keeps going
        assert _refused(stream["push_url"])
        assert first.poll() is None and get_stream(server, sid)["live"]
        # switching the stream off disconnects the live publisher within seconds
        with server.client() as c:
            c.patch(f"/streaming/streams/{sid}", json={"stream": {"active": False}}).raise_for_status()
        t0 = time.monotonic()
        wait_until(lambda: first.poll() is not None, 10, what="publisher disconnected")
        assert time.monotonic() - t0 < 5
        s = wait_until(lambda: not (x := get_stream(server, sid))["live"] and x, 10, what="live=false")
        assert s["finished_at_primary"]
        assert _refused(stream["push_url"]), "a switched-off stream keeps refusing"
    finally:
        stop(first)


def test_silent_publisher_released(server: OnairServer) -> None:
    """A publisher that stops sending without closing is dropped within 10 s."""
    stream = create_stream(server)
    sid = stream["id"]
    pub = push_rtmp(stream["push_url"], size="320x240", rate=15)
    try:
        wait_until(lambda: get_stream(server, sid)["live"], 10, what="live")
        pub.send_signal(19)  # SIGSTOP: the TCP connection stays open, no data flows
        t0 = time.monotonic()
        wait_until(lambda: not get_stream(server, sid)["live"], 15, what="silent publisher released")
        assert time.monotonic() - t0 <= 12
    finally:
        pub.send_signal(18)
        stop(pub)


def test_garbage_to_rtmp_port_keeps_server_healthy(server: OnairServer) -> None:
    import os
    import socket

    def spray() -> None:
        for _ in range(5):
            with socket.create_connection(("127.0.0.1", server.ports["rtmp"]), timeout=5) as s:
                try:
                    s.sendall(os.urandom(65536))
                except OSError:
                    pass

    t = threading.Thread(target=spray)
    t.start()
    t.join(30)
    assert httpx.get(server.base_url + "/healthz").json()["status"] == "ok"
    stream = create_stream(server)
    pub = push_rtmp(stream["push_url"], size="320x240", rate=15)
    try:
        wait_until(lambda: get_stream(server, stream["id"])["live"], 10, what="live after garbage")
    finally:
        stop(pub)


def test_live_cycle_and_recording_on_postgresql(make_server: Any) -> None:
    """The ingest/lifecycle/recording state writes work on PostgreSQL too, not only SQLite."""
    from tests.conftest import _pg_database

    srv = make_server(database_url=_pg_database()).start()
    stream = create_stream(srv, auto_record=True)
    sid = stream["id"]
    pub = push_rtmp(stream["push_url"], size="320x240", rate=15, seconds=8)
    try:
        wait_until(lambda: get_stream(srv, sid)["live"], 10, what="live on PostgreSQL")
        wait_until(lambda: httpx.get(stream["hls_cmaf_url"]).status_code == 200, 15, what="master")
        pub.wait(30)
    finally:
        stop(pub)
    s = wait_until(lambda: not (x := get_stream(srv, sid))["live"] and x, 15, what="live=false")
    assert s["finished_at_primary"] >= s["started_at_primary"]
    with srv.client() as c:
        videos = wait_until(lambda: [v for v in c.get("/streaming/videos", params={"stream_id": sid}).json()
                                     if v["status"] == "ready"], 60, what="recording ready on PostgreSQL")
    assert 5_000 <= videos[0]["duration"] <= 11_000
