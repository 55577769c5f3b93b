"""DVR window on disk, dvr_cleanup, instant clips, and an auto-recorded push, in one 50 s push."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest

from tests.conftest import OnairServer, wait_until
from tests.media import codecs, ffprobe, parse_master, push_rtmp, stop

pytestmark = pytest.mark.media

PUSH_S = 50


def extinf_total(text: str) -> float:
    return sum(float(x) for x in re.findall(r"#EXTINF:([0-9.]+)", text))


def uris(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln and not ln.startswith("#")]


def api(srv: OnairServer, method: str, path: str, **kw: Any) -> Any:
    with srv.client() as c:
        r = c.request(method, path, **kw)
        r.raise_for_status()
        return r.json() if r.content else None


def test_dvr_window_clip_and_auto_record(server: OnairServer) -> None:
    stream = api(server, "POST", "/streaming/streams", json={
        "name": "dvr test", "active": True, "dvr_enabled": True, "dvr_duration": 60, "auto_record": True})
    sid = stream["id"]
    publisher = push_rtmp(stream["push_url"], size="320x240", rate=15, seconds=PUSH_S)
    started = time.monotonic()
    http = httpx.Client(timeout=30)
    try:
        wait_until(lambda: api(server, "GET", f"/streaming/streams/{sid}")["live"], 10, what="live")
        master_url = stream["hls_cmaf_url"]
        master = wait_until(lambda: (r := http.get(master_url)).status_code == 200 and r.text, 20, what="master")
        media_url = parse_master(master, master_url)[0]["uri"]
        rbase = media_url.rsplit("/", 1)[0]

        # recording_duration grows while auto_record records
        wait_until(lambda: (api(server, "GET", f"/streaming/streams/{sid}")["recording_duration"] or 0) > 3, 20,
                   what="recording_duration")

        # the DVR playlist reaches back >= 30 s (a live window would hold 12 s)
        playlist = wait_until(lambda: extinf_total(t := http.get(media_url).text) >= 30 and t, 60,
                              what="30 s of DVR in the playlist")
        reached_at = time.monotonic() - started
        assert reached_at <= 40, f"DVR reached 30 s only after {reached_at:.0f}s"  # the bound
        oldest = next(u for u in uris(playlist) if u.endswith(".m4s"))
        init = http.get(f"{rbase}/init.mp4").raise_for_status().content
        old_seg = http.get(f"{rbase}/{oldest}").raise_for_status().content  # from disk, not memory
        assert codecs(ffprobe(init + old_seg)) == {"h264"}
        ts_master = http.get(stream["hls_mpegts_url"]).raise_for_status().text
        ts_url = parse_master(ts_master, stream["hls_mpegts_url"])[0]["uri"]
        assert extinf_total(http.get(ts_url).text) >= 26, "MPEG-TS HLS shares the DVR window"
        mpd = http.get(stream["dash_url"]).raise_for_status().text
        depth = float(re.search(r'timeShiftBufferDepth="PT([0-9.]+)S"', mpd)[1])  # type: ignore[index]
        assert depth >= 28

        # clips: one from 20 s back in the DVR window, one of the next 4 s (425 Too Early until it ends)
        clip = api(server, "PUT", f"/streaming/streams/{sid}/clip_recording",
                   json={"start": int(time.time()) - 20, "duration": 6, "vod_required": True})
        assert clip["video_id"] and clip["hls_master"].endswith("_master.m3u8")
        soon = api(server, "PUT", f"/streaming/streams/{sid}/clip_recording",
                   json={"duration": 4, "vod_required": False})
        assert soon["video_id"] is None
        assert http.get(soon["mp4_master"]).status_code == 425
        clip_mp4 = wait_until(lambda: (r := http.get(clip["mp4_master"])).status_code == 200 and r.content, 30,
                              what="clip mp4")
        probe = ffprobe(clip_mp4)
        assert codecs(probe) == {"h264", "aac"}
        clips = api(server, "GET", f"/streaming/streams/{sid}/clip_recording")
        assert {c["id"] for c in clips} == {clip["id"], soon["id"]} and clips[0]["renditions"]
        clip_master = http.get(clip["hls_master"]).raise_for_status().text
        variant = parse_master(clip_master, clip["hls_master"])[0]["uri"]
        clip_len = extinf_total(http.get(variant).raise_for_status().text)
        assert 4 <= clip_len <= 12, clip_len  # whole segments, up to one more at each end

        wait_until(lambda: http.get(soon["mp4_master"]).status_code == 200, 30, what="second clip")

        # dvr_cleanup empties the window: only the live edge stays
        with server.client() as c:
            assert c.put(f"/streaming/streams/{sid}/dvr_cleanup").status_code == 204
        assert extinf_total(http.get(media_url).text) <= 10
        assert extinf_total(http.get(ts_url).text) <= 10

        # the auto-recorded push becomes a ready Video of ~50 s
        assert publisher.wait(PUSH_S + 30) == 0
        pushed = time.monotonic() - started
        videos = wait_until(lambda: [v for v in api(server, "GET", "/streaming/videos", params={"stream_id": sid})
                                     if v["status"] == "ready" and v["id"] != clip["video_id"]], 60,
                            what="recording ready")
        video = api(server, "GET", f"/streaming/videos/{videos[0]['id']}")
        assert video["stream_id"] == sid and video["record_type"] == "origin"
        assert video["name"].startswith("Stream Record: dvr test, ")
        assert PUSH_S * 0.9 * 1000 <= video["duration"] <= PUSH_S * 1.1 * 1000, (video["duration"], pushed)
        hls = http.get(video["hls_url"]).raise_for_status().text
        vod_media = parse_master(hls, video["hls_url"])[0]["uri"]
        vod_total = extinf_total(http.get(vod_media).raise_for_status().text)
        assert PUSH_S * 0.9 <= vod_total <= PUSH_S * 1.1, vod_total
        first_ts = uris(http.get(vod_media).text)[0]
        assert codecs(ffprobe(http.get(vod_media.rsplit("/", 1)[0] + "/" + first_ts).content)) == {"h264", "aac"}
        mp4 = http.get(video["origin_url"] + "/download").raise_for_status()
        assert "attachment" in mp4.headers["content-disposition"]
        assert float(ffprobe(mp4.content)["streams"][0]["duration"]) == pytest.approx(video["duration"] / 1000, 1)
        poster = http.get(video["screenshot"]).raise_for_status().content
        assert poster[:2] == b"\xff\xd8"
        print(f"\nDVR 30 s after {reached_at:.1f}s; recorded {video['duration'] / 1000:.2f}s of a {PUSH_S}s push "
              f"(HLS {vod_total:.2f}s); clip {clip_len:.2f}s")

        clip_video = wait_until(lambda: (v := api(server, "GET", f"/streaming/videos/{clip['video_id']}"))
                                ["status"] == "ready" and v, 30, what="clip video")
        assert 4000 <= clip_video["duration"] <= 12000
    finally:
        stop(publisher)
        http.close()


def _dvr_files(server: OnairServer, sid: int) -> list[str]:
    root = server.data_dir / "live" / str(sid) / "dvr"
    return sorted(str(p.relative_to(root)) for p in root.glob("*/seg*.m4s"))


def test_dvr_cleanup_in_every_state(server: OnairServer) -> None:
    """dvr_cleanup answers 204 on a stream never live, live, and just ended (and then really cleans the
    playlists and the disk); 404 once the stream is deleted."""
    stream = api(server, "POST", "/streaming/streams", json={
        "name": "dvr cleanup", "active": True, "dvr_enabled": True, "dvr_duration": 60})
    sid = stream["id"]
    with server.client() as c:
        assert c.put(f"/streaming/streams/{sid}/dvr_cleanup").status_code == 204  # never live
    publisher = push_rtmp(stream["push_url"], size="320x240", rate=15, seconds=24)
    http = httpx.Client(timeout=30)
    try:
        master_url = stream["hls_cmaf_url"]
        master = wait_until(lambda: (r := http.get(master_url)).status_code == 200 and r.text, 20, what="master")
        media_url = parse_master(master, master_url)[0]["uri"]
        with server.client() as c:
            assert c.put(f"/streaming/streams/{sid}/dvr_cleanup").status_code == 204  # live
        ts_master = wait_until(lambda: (r := http.get(stream["hls_mpegts_url"])).status_code == 200 and r.text, 20,
                               what="ts master")
        ts_url = parse_master(ts_master, stream["hls_mpegts_url"])[0]["uri"]
        assert publisher.wait(60) == 0
        wait_until(lambda: not api(server, "GET", f"/streaming/streams/{sid}")["live"], 15, what="push ended")
        before = http.get(media_url).text
        assert len([u for u in uris(before) if u.endswith(".m4s")]) > 4, before
        assert len([u for u in uris(http.get(ts_url).text) if ".ts" in u]) > 4
        assert len(_dvr_files(server, sid)) > 4
        oldest = next(u for u in uris(before) if u.endswith(".m4s"))
        assert http.get(media_url.rsplit("/", 1)[0] + "/" + oldest).status_code == 200

        with server.client() as c:
            r = c.put(f"/streaming/streams/{sid}/dvr_cleanup")  # just ended
            assert r.status_code == 204, r.text
        after = http.get(media_url).text
        assert len([u for u in uris(after) if u.endswith(".m4s")]) <= 3, after
        ts_after = http.get(ts_url).text
        assert len([u for u in uris(ts_after) if ".ts" in u]) <= 3, ts_after
        assert http.get(media_url.rsplit("/", 1)[0] + "/" + oldest).status_code == 404
        # per track, only the kept live edge stays on disk
        wait_until(lambda: len(_dvr_files(server, sid)) <= 3 * len(parse_master(master, master_url)) + 3, 10,
                   what=f"DVR files removed: {_dvr_files(server, sid)}")

        with server.client() as c:
            assert c.delete(f"/streaming/streams/{sid}").status_code == 204
            assert c.put(f"/streaming/streams/{sid}/dvr_cleanup").status_code == 404  # deleted
    finally:
        stop(publisher)
        http.close()
    assert "Traceback" not in server.log_path.read_text(errors="replace")
