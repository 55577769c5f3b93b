"""Nothing pushed is lost at the start, and LL-HLS parts are short.

The source carries a frame counter burned into its picture (tests/media.py `counter_filter`): the first
frame of the first LL-HLS segment and of the recording must be pushed frame 0.
"""

from __future__ import annotations

import re
import statistics

import httpx
import pytest

from tests.conftest import OnairServer, wait_until
from tests.ingest_media import create_stream, get_stream
from tests.media import counter_filter, first_frame_counter, parse_master, push_rtmp, stop
from tests.test_recording import ready_video

pytestmark = pytest.mark.media


def test_first_pushed_frame_reaches_the_output_and_the_recording(server: OnairServer) -> None:
    stream = create_stream(server, auto_record=True)
    publisher = push_rtmp(stream["push_url"], size="640x360", rate=30, extra=["-vf", counter_filter(640, 360)])
    http = httpx.Client(timeout=30)
    try:
        master_url = stream["hls_cmaf_url"]
        master = wait_until(lambda: (r := http.get(master_url)).status_code == 200 and r.text, 20, what="master")
        top = max(parse_master(master, master_url), key=lambda v: int(v["BANDWIDTH"]))
        playlist = wait_until(lambda: "#EXTINF" in (t := http.get(top["uri"]).text) and t, 20, what="a segment")
        assert "#EXT-X-MEDIA-SEQUENCE:0\n" in playlist, playlist
        first_seg = re.search(r"^(seg\d+\.m4s)$", playlist, re.M)
        assert first_seg, playlist
        base = top["uri"].rsplit("/", 1)[0]
        init = http.get(f"{base}/init.mp4").raise_for_status().content
        seg = http.get(f"{base}/{first_seg[1]}").raise_for_status().content
        assert first_frame_counter(init + seg) == 0, "the first pushed frame opens the first segment"
        # parts of the configured 200 ms (whole frames: 6 at 30 fps), PART-HOLD-BACK three of them
        part_target = float(re.search(r"PART-TARGET=([\d.]+)", playlist)[1])  # type: ignore[index]
        hold = float(re.search(r"PART-HOLD-BACK=([\d.]+)", playlist)[1])  # type: ignore[index]
        durations = [float(d) for d in re.findall(r"#EXT-X-PART:DURATION=([\d.]+)", playlist)]
        assert 0.2 <= part_target <= 0.27 and hold == pytest.approx(3 * part_target, abs=0.002), playlist
        # (a part that ends at a keyframe, the end of a segment, may be shorter)
        assert durations and max(durations) <= part_target and statistics.median(durations) >= 0.19, playlist
        wait_until(lambda: (get_stream(server, stream["id"])["recording_duration"] or 0) >= 3, 20, what="recording")
    finally:
        stop(publisher)
    with server.client() as c:
        videos = wait_until(lambda: c.get("/streaming/videos", params={"stream_id": stream["id"]}).json(), 30,
                            what="the recording listed")
    video = ready_video(server, videos[0]["id"])
    origin = http.get(video["origin_url"]).raise_for_status().content
    assert first_frame_counter(origin) == 0, "the recording starts with the first pushed frame"
    http.close()
