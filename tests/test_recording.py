"""Manual start/stop recording, and recovery of a recording interrupted by SIGKILL."""

from __future__ import annotations

import signal
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import OnairServer, wait_until
from tests.media import codecs, ffprobe, parse_master, push_rtmp, stop
from tests.test_dvr import api, extinf_total

pytestmark = pytest.mark.media


def stream_state(srv: OnairServer, sid: int) -> dict[str, Any]:
    data: dict[str, Any] = api(srv, "GET", f"/streaming/streams/{sid}")
    return data


def ready_video(srv: OnairServer, vid: int, timeout: float = 60) -> dict[str, Any]:
    video: dict[str, Any] = wait_until(lambda: (v := api(srv, "GET", f"/streaming/videos/{vid}"))["status"] == "ready"
                                       and v, timeout, what=f"video {vid} ready")
    return video


def test_manual_recording_and_sigkill_recovery(make_server: Callable[..., OnairServer]) -> None:
    srv = make_server().start()
    stream = api(srv, "POST", "/streaming/streams", json={"name": "manual", "active": True})
    sid = stream["id"]
    with srv.client() as c:
        assert c.put(f"/streaming/streams/{sid}/stop_recording").json() == {}, "nothing recording: {}"
    publisher = push_rtmp(stream["push_url"], size="320x240", rate=15)
    http = httpx.Client(timeout=30)
    try:
        wait_until(lambda: stream_state(srv, sid)["live"], 10, what="live")
        with srv.client() as c:
            assert c.put(f"/streaming/streams/{sid}/start_recording").status_code == 204
        wait_until(lambda: (stream_state(srv, sid)["recording_duration"] or 0) >= 8, 30, what="8 s recorded")
        video = api(srv, "PUT", f"/streaming/streams/{sid}/stop_recording")
        assert video["id"] and video["stream_id"] == sid and video["status"] in ("empty", "pending")
        assert video["name"].startswith("Stream Record: manual, ")
        done = ready_video(srv, video["id"])
        assert 6000 <= done["duration"] <= 12000, done["duration"]
        master = http.get(done["hls_url"]).raise_for_status().text
        assert extinf_total(http.get(parse_master(master, done["hls_url"])[0]["uri"]).text) >= 6
        assert codecs(ffprobe(http.get(done["origin_url"]).content)) == {"h264", "aac"}
        # dash_url: a static MPD whose first video segment decodes after its init segment
        mpd = ET.fromstring(http.get(done["dash_url"]).raise_for_status().text)
        ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
        assert mpd.get("type") == "static"
        tmpl = mpd.find(".//d:SegmentTemplate", ns)
        rep = mpd.find(".//d:Representation", ns)
        assert tmpl is not None and rep is not None
        rid, base = rep.get("id", ""), done["dash_url"].rsplit("/", 1)[0]
        init = http.get(f"{base}/{tmpl.get('initialization', '').replace('$RepresentationID$', rid)}").content
        first = tmpl.get("media", "").replace("$RepresentationID$", rid).replace(
            "$Number%05d$", f"{int(tmpl.get('startNumber', '1')):05d}")
        assert codecs(ffprobe(init + http.get(f"{base}/{first}").raise_for_status().content))

        # a second recording, interrupted by kill -9 of the server after ~8 s
        with srv.client() as c:
            assert c.put(f"/streaming/streams/{sid}/start_recording").status_code == 204
        wait_until(lambda: (stream_state(srv, sid)["recording_duration"] or 0) >= 8, 30, what="8 s recorded")
        recorded = stream_state(srv, sid)["recording_duration"]
        srv.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        stop(publisher)
        srv.start()
        videos = wait_until(lambda: [v for v in api(srv, "GET", "/streaming/videos", params={"stream_id": sid})
                                     if v["id"] != video["id"]], 30, what="interrupted recording listed")
        recovered = ready_video(srv, videos[0]["id"])
        took = time.monotonic() - killed_at
        assert recovered["duration"] >= (recorded - 3) * 1000, (recovered["duration"], recorded)
        hls = http.get(recovered["hls_url"]).raise_for_status().text
        total = extinf_total(http.get(parse_master(hls, recovered["hls_url"])[0]["uri"]).text)
        assert total >= recorded - 3
        print(f"\nmanual: {done['duration'] / 1000:.2f}s; killed at recording_duration={recorded}s, "
              f"recovered {recovered['duration'] / 1000:.2f}s (HLS {total:.2f}s) {took:.1f}s after the kill")
    finally:
        stop(publisher)
        http.close()


def test_long_recording_is_split(make_server) -> None:  # type: ignore[no-untyped-def]
    """Long recordings are split: with the maximum at 5 s, a 14 s auto-recorded push becomes consecutive Videos."""
    srv = make_server(recording_max_seconds=5).start()
    with srv.client() as c:
        stream = c.post("/streaming/streams", json={"name": "split", "active": True, "auto_record": True}).json()
    sid = stream["id"]
    publisher = push_rtmp(stream["push_url"], size="320x240", rate=15, seconds=14)
    try:
        wait_until(lambda: stream_state(srv, sid)["live"], 10, what="live")
        publisher.wait(40)
    finally:
        stop(publisher)
    with srv.client() as c:
        def ready() -> list[dict[str, object]]:
            vids = c.get("/streaming/videos", params={"stream_id": sid}).json()
            return vids if len(vids) >= 2 and all(v["status"] == "ready" for v in vids) else []

        videos = wait_until(ready, 90, what="split recordings ready")
    durations = sorted(int(v["duration"]) for v in videos)  # type: ignore[call-overload]
    assert len(videos) >= 2 and sum(durations) >= 9000, durations
    assert all(d <= 8000 for d in durations[:-1]), durations


def test_deleted_video_stops_its_recording_and_stays_deleted(make_server: Callable[..., OnairServer]) -> None:
    """A Video deleted while it is recorded (auto_record) or while it is being finished never comes back."""
    import json

    srv = make_server().start()
    stream = api(srv, "POST", "/streaming/streams", json={"name": "deleted", "active": True, "auto_record": True})
    sid = stream["id"]
    publisher = push_rtmp(stream["push_url"], size="320x240", rate=15)

    def discarded(vid: int) -> bool:
        lines = [json.loads(ln) for ln in srv.log_path.read_text(errors="replace").splitlines() if ln.startswith("{")]
        return any(x.get("video_id") == vid and "its Video was deleted" in x.get("msg", "") for x in lines)

    try:
        wait_until(lambda: (stream_state(srv, sid)["recording_duration"] or 0) > 2, 30, what="auto recording")
        [recorded] = api(srv, "GET", "/streaming/videos", params={"stream_id": sid})
        with srv.client() as c:
            assert c.delete(f"/streaming/videos/{recorded['id']}").status_code == 204
        # the recording stops at once; the stream stays live
        wait_until(lambda: stream_state(srv, sid)["recording_duration"] is None, 10, what="recording stopped")
        assert stream_state(srv, sid)["live"]

        # deleted while being finished: stop_recording, then DELETE at once
        with srv.client() as c:
            assert c.put(f"/streaming/streams/{sid}/start_recording").status_code == 204
        wait_until(lambda: (stream_state(srv, sid)["recording_duration"] or 0) > 3, 30, what="manual recording")
        finishing = api(srv, "PUT", f"/streaming/streams/{sid}/stop_recording")
        with srv.client() as c:
            assert c.delete(f"/streaming/videos/{finishing['id']}").status_code == 204
    finally:
        stop(publisher)
    ids = (recorded["id"], finishing["id"])

    def settled() -> bool:
        back = [v for v in api(srv, "GET", "/streaming/videos", params={"stream_id": sid}) if v["id"] in ids]
        assert not back, f"a deleted Video came back: {back}"
        return all(discarded(vid) for vid in ids)

    # past the recording grace period (10 s) and the finishing of both
    wait_until(settled, 60, what="both recordings dropped")
    with srv.client() as c:
        for vid in ids:
            assert c.get(f"/streaming/videos/{vid}").status_code == 404
    left = [p.name for p in (srv.data_dir / "recordings").iterdir() if p.name.split("_", 1)[0] in map(str, ids)]
    assert not left, left
    assert not any((srv.data_dir / "videos" / v["slug"]).exists() for v in (recorded, finishing) if v.get("slug"))
    assert "Traceback" not in srv.log_path.read_text(errors="replace")
