"""CMAF packager, LL-HLS / LL-DASH rendering and the asyncio blocking-reload layer, on real ffmpeg output."""

from __future__ import annotations

import asyncio
import itertools
import math
import random
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from onair.formats.dash import render_dash_mpd
from onair.formats.fmp4 import FMP4Error
from onair.formats.hls import render_hls_master, render_hls_media
from onair.package.live import LiveRendition, LiveStreamPackage
from onair.package.packager import Segment, TrackPackager
from tests.test_fmp4 import ffmpeg_audio, ffmpeg_video, ffprobe_json, needs_ffmpeg, split_boxes

pytestmark = [pytest.mark.media, needs_ffmpeg]

MPD_NS = {"d": "urn:mpeg:dash:schema:mpd:2011"}
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """Deterministic wall clock: advances 10 ms per reading."""

    def __init__(self) -> None:
        self._it = itertools.count()

    def __call__(self) -> datetime:
        return T0 + timedelta(milliseconds=10 * next(self._it))


def feed_chunked(tp: TrackPackager | LiveRendition, data: bytes, seed: int = 0) -> None:
    rng = random.Random(seed)
    pos = 0
    while pos < len(data):
        n = rng.randint(1, 9000)
        tp.feed(data[pos : pos + n])
        pos += n


def fragments(data: bytes) -> tuple[bytes, list[bytes]]:
    """(init bytes, [moof+mdat bytes, ...]) of an ffmpeg fMP4 stream."""
    boxes = split_boxes(data)
    init = b"".join(b.data for b in boxes if b.type in ("ftyp", "moov"))
    frags: list[bytes] = []
    moof = b""
    for b in boxes:
        if b.type == "moof":
            moof = b.data
        elif b.type == "mdat":
            frags.append(moof + b.data)
    return init, frags


def probe_frames(data: bytes) -> tuple[str, int]:
    info = ffprobe_json(data, "-count_frames", "-show_entries", "stream=codec_name,nb_read_frames")
    st = info["streams"][0]
    return st["codec_name"], int(st["nb_read_frames"])


@pytest.fixture(scope="module")
def video_tp() -> TrackPackager:
    tp = TrackPackager("360p", target_segment=2.0, window_segments=10, clock=FakeClock())
    feed_chunked(tp, ffmpeg_video(), seed=5)
    tp.end()
    return tp


@pytest.fixture(scope="module")
def audio_tp() -> TrackPackager:
    tp = TrackPackager("audio", target_segment=2.0, window_segments=10, clock=FakeClock())
    feed_chunked(tp, ffmpeg_audio(), seed=6)
    tp.end()
    return tp


# ---------------------------------------------------------------------------
# Packager


def test_video_segments_and_parts(video_tp: TrackPackager) -> None:
    tp = video_tp
    assert tp.track.codec == "avc1.64001e"
    assert tp.init is not None and tp.init.startswith(b"\x00\x00\x00\x1cftyp")
    assert tp.ended and tp.current is None
    segs = list(tp.segments)
    assert [s.msn for s in segs] == [0, 1, 2, 3]
    for s in segs:
        assert s.complete and s.independent
        assert s.duration == pytest.approx(2.0, abs=0.05)
        assert s.start == pytest.approx(2.0 * s.msn, abs=0.05)
        assert len(s.parts) == 4
        for p in s.parts:
            assert 0.4 <= p.duration <= 0.55
        assert [p.independent for p in s.parts] == [True, False, False, False]
        assert s.data == b"".join(p.data for p in s.parts)
    assert tp.max_part_duration == pytest.approx(0.52, abs=0.02)
    assert tp.target_duration == 2
    assert tp.frame_rate == pytest.approx(25.0)
    assert 100_000 < tp.average_bandwidth <= tp.bandwidth
    assert tp.get_segment(2) is segs[2] and tp.get_segment(9) is None
    assert tp.get_part(1, 3) is segs[1].parts[3] and tp.get_part(1, 4) is None


def test_audio_segments_aligned(audio_tp: TrackPackager) -> None:
    tp = audio_tp
    assert tp.track.codec == "mp4a.40.2"
    segs = list(tp.segments)
    assert len(segs) == 4
    for s in segs[:-1]:
        assert 1.5 <= s.duration <= 2.6
        assert all(p.independent for p in s.parts)
    # boundaries stay near multiples of the target instead of drifting
    for s in segs:
        assert abs(s.start - 2.0 * s.msn) <= 0.3
    assert sum(s.duration for s in segs) == pytest.approx(8.0, abs=0.1)
    assert tp.target_duration == 2


def test_segments_and_parts_decode(video_tp: TrackPackager, audio_tp: TrackPackager, tmp_path) -> None:
    init = video_tp.init
    assert init is not None
    total = 0
    for s in video_tp.segments:
        codec, frames = probe_frames(init + s.data)
        assert codec == "h264"
        assert frames == 50
        total += frames
        # the independent first part decodes on its own
        codec, frames = probe_frames(init + s.parts[0].data)
        assert codec == "h264" and frames == s.parts[0].sample_count == 13
    assert total == 200
    # a segment written to a file decodes too
    f = tmp_path / "seg.mp4"
    f.write_bytes(init + video_tp.segments[1].data)
    assert probe_frames(f.read_bytes()) == ("h264", 50)

    ainit = audio_tp.init
    assert ainit is not None
    for s in audio_tp.segments:
        codec, frames = probe_frames(ainit + s.data)
        assert codec == "aac" and frames == sum(p.sample_count for p in s.parts)
    codec, frames = probe_frames(ainit + audio_tp.segments[2].parts[1].data)
    assert codec == "aac" and frames == 24


def test_window_and_segment_callback() -> None:
    done: list[int] = []
    tp = TrackPackager(
        "v", window_segments=2, on_segment_complete=lambda t, s: done.append(s.msn), clock=FakeClock()
    )
    feed_chunked(tp, ffmpeg_video(), seed=9)
    assert done == [0, 1, 2]
    assert [s.msn for s in tp.segments] == [1, 2]
    assert tp.current is not None and tp.current.msn == 3 and not tp.current.complete
    assert tp.get_segment(0) is None and tp.get_segment(3) is tp.current
    tp.end()
    assert done == [0, 1, 2, 3] and [s.msn for s in tp.segments] == [2, 3]
    assert tp.feed(b"ignored after end") == 0


def test_garbage_input_raises_fmp4error() -> None:
    rng = random.Random(3)
    for i in range(50):
        tp = TrackPackager("v", window_segments=3)
        with pytest.raises(FMP4Error):
            for _ in range(100):
                tp.feed(rng.randbytes(rng.randint(1, 3000)))
            raise FMP4Error(f"round {i}: accepted 100 garbage chunks")
    # media before init
    init, frags = fragments(ffmpeg_video(seconds=2))
    with pytest.raises(FMP4Error):
        TrackPackager("v", window_segments=3).feed(frags[0])
    # encoder restart on the same pipe: decode time goes backwards
    tp = TrackPackager("v", window_segments=3)
    tp.feed(init + frags[0] + frags[1])
    with pytest.raises(FMP4Error):
        tp.feed(frags[0])


def test_leading_non_sync_fragments_dropped() -> None:
    init, frags = fragments(ffmpeg_video())
    tp = TrackPackager("v", window_segments=5)
    tp.feed(init)
    for f in frags[1:]:  # stream joined mid-GOP
        tp.feed(f)
    tp.end()
    assert [s.start for s in tp.segments] == pytest.approx([2.0, 4.0, 6.0])
    assert all(s.independent for s in tp.segments)


# ---------------------------------------------------------------------------
# HLS


def _tags(text: str) -> list[str]:
    lines = text.splitlines()
    assert lines[0] == "#EXTM3U"
    return lines


def _attrs(line: str) -> dict[str, str]:
    body = line.split(":", 1)[1]
    return {k: v.strip('"') for k, v in re.findall(r'([A-Z0-9-]+)=("[^"]*"|[^,]*)', body)}


def check_media_playlist(tp: TrackPackager, text: str) -> None:
    """Parse a media playlist line by line and check it against the packager state."""
    lines = _tags(text)
    assert "#EXT-X-VERSION:9" in lines
    td = int(next(x for x in lines if x.startswith("#EXT-X-TARGETDURATION:")).split(":")[1])
    part_target = float(_attrs(next(x for x in lines if x.startswith("#EXT-X-PART-INF:")))["PART-TARGET"])
    sc = _attrs(next(x for x in lines if x.startswith("#EXT-X-SERVER-CONTROL:")))
    assert sc["CAN-BLOCK-RELOAD"] == "YES"
    assert 3 * part_target - 1e-9 <= float(sc["PART-HOLD-BACK"]) <= 3 * part_target + 0.002  # 3x, ms rounded up
    assert float(sc["HOLD-BACK"]) == 3 * td
    msn = int(next(x for x in lines if x.startswith("#EXT-X-MEDIA-SEQUENCE:")).split(":")[1])
    assert '#EXT-X-MAP:URI="init.mp4"' in lines
    expected_msn = msn
    pending_parts: list[tuple[str, float, bool]] = []
    seen_segments = 0
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-PART:"):
            a = _attrs(line)
            pending_parts.append((a["URI"], float(a["DURATION"]), a.get("INDEPENDENT") == "YES"))
            assert float(a["DURATION"]) <= part_target
        elif line.startswith("#EXTINF:"):
            dur = float(line[len("#EXTINF:") :].rstrip(","))
            assert lines[i + 1] == f"seg{expected_msn}.m4s"
            seg = tp.get_segment(expected_msn)
            assert seg is not None and seg.complete
            assert dur == pytest.approx(seg.duration, abs=0.001)
            assert math.floor(dur + 0.5) <= td
            if pending_parts:
                _check_parts(seg, pending_parts)
            pending_parts = []
            expected_msn += 1
            seen_segments += 1
    if pending_parts:  # in-progress segment
        seg = tp.get_segment(expected_msn)
        assert seg is not None and not seg.complete
        _check_parts(seg, pending_parts)
    assert seen_segments == len(tp.segments)
    hints = [x for x in lines if x.startswith("#EXT-X-PRELOAD-HINT:")]
    if tp.ended:
        assert lines[-1].startswith("#EXT-X-RENDITION-REPORT") or lines[-1] == "#EXT-X-ENDLIST"
        assert "#EXT-X-ENDLIST" in lines and not hints
    else:
        (hint,) = hints
        a = _attrs(hint)
        assert a["TYPE"] == "PART"
        m = re.fullmatch(r"part(\d+)\.(\d+)\.m4s", a["URI"])
        assert m is not None
        hint_msn, hint_part = int(m[1]), int(m[2])
        cur = tp.current
        assert cur is not None
        assert (hint_msn, hint_part) in ((cur.msn, len(cur.parts)), (cur.msn + 1, 0))
        assert tp.get_part(hint_msn, hint_part) is None


def _check_parts(seg: Segment, parts: list[tuple[str, float, bool]]) -> None:
    assert [u for u, _, _ in parts] == [f"part{seg.msn}.{i}.m4s" for i in range(len(seg.parts))]
    for (_, dur, indep), p in zip(parts, seg.parts, strict=True):
        assert dur == pytest.approx(p.duration, abs=0.001)
        assert indep == p.independent


def test_hls_master(video_tp: TrackPackager, audio_tp: TrackPackager) -> None:
    lines = _tags(render_hls_master([video_tp], audio_tp))
    assert lines[1:3] == ["#EXT-X-VERSION:9", "#EXT-X-INDEPENDENT-SEGMENTS"]
    media = _attrs(next(x for x in lines if x.startswith("#EXT-X-MEDIA:")))
    assert media["TYPE"] == "AUDIO" and media["GROUP-ID"] == "aud" and media["URI"] == "audio/index.m3u8"
    i = next(i for i, x in enumerate(lines) if x.startswith("#EXT-X-STREAM-INF:"))
    inf = _attrs(lines[i])
    assert inf["CODECS"] == "avc1.64001e,mp4a.40.2"
    assert inf["RESOLUTION"] == "640x360"
    assert float(inf["FRAME-RATE"]) == pytest.approx(25.0)
    assert inf["AUDIO"] == "aud"
    assert int(inf["BANDWIDTH"]) >= int(inf["AVERAGE-BANDWIDTH"]) > 100_000
    assert lines[i + 1] == "360p/index.m3u8"


def test_hls_master_sorted_highest_first() -> None:
    small = TrackPackager("low", window_segments=3)
    feed_chunked(small, ffmpeg_video(seconds=4, size="320x180"))
    big = TrackPackager("high", window_segments=3)
    feed_chunked(big, ffmpeg_video(seconds=4))
    lines = render_hls_master([small, big], None).splitlines()
    uris = [x for x in lines if x and not x.startswith("#")]
    assert uris == ["high/index.m3u8", "low/index.m3u8"]
    assert not any(x.startswith("#EXT-X-MEDIA:") for x in lines)
    res = [_attrs(x)["RESOLUTION"] for x in lines if x.startswith("#EXT-X-STREAM-INF:")]
    assert res == ["640x360", "320x180"]


def test_hls_media_live_and_ended(video_tp: TrackPackager, audio_tp: TrackPackager) -> None:
    init, frags = fragments(ffmpeg_video())
    tp = TrackPackager("360p", window_segments=10, clock=FakeClock())
    tp.feed(init)
    for n, f in enumerate(frags, 1):
        tp.feed(f)
        text = render_hls_media(tp, other_tracks_for_reports=[audio_tp])
        check_media_playlist(tp, text)
        assert tp.current is not None
        assert sum(len(s.parts) for s in tp.segments) + len(tp.current.parts) == n
        report = _attrs(next(x for x in text.splitlines() if x.startswith("#EXT-X-RENDITION-REPORT:")))
        assert report == {"URI": "../audio/index.m3u8", "LAST-MSN": "3", "LAST-PART": "3"}
    text = render_hls_media(video_tp)
    check_media_playlist(video_tp, text)
    assert text.rstrip().endswith("#EXT-X-ENDLIST")


def test_hls_media_part_window_and_skip() -> None:
    # 1 s GOP / 1 s target -> target duration 1, CAN-SKIP-UNTIL 6 s, 16 segments in the window
    data = ffmpeg_video(seconds=16, size="160x90", gop=25)
    tp = TrackPackager("tiny", target_segment=1.0, window_segments=20, clock=FakeClock())
    feed_chunked(tp, data)
    assert tp.target_duration == 1
    full = render_hls_media(tp)
    check_media_playlist(tp, full)
    lines = full.splitlines()
    # parts only for the last 3 complete segments plus the in-progress one
    part_msns = {int(m[1]) for x in lines if (m := re.search(r'URI="part(\d+)\.', x)) and "#EXT-X-PART:" in x}
    cur = tp.current
    assert cur is not None
    assert part_msns == {cur.msn - 3, cur.msn - 2, cur.msn - 1, cur.msn}

    delta = render_hls_media(tp, skip=True).splitlines()
    skip = next(x for x in delta if x.startswith("#EXT-X-SKIP:"))
    skipped = int(_attrs(skip)["SKIPPED-SEGMENTS"])
    assert skipped >= 1
    segs_in_delta = [x for x in delta if x.startswith("seg")]
    assert segs_in_delta[0] == f"seg{tp.segments[0].msn + skipped}.m4s"
    assert len(segs_in_delta) + skipped == len(tp.segments)
    # the remaining playlist still spans more than CAN-SKIP-UNTIL (6 s)
    assert sum(float(x[8:].rstrip(",")) for x in delta if x.startswith("#EXTINF:")) + cur.duration > 6.0
    assert "#EXT-X-SKIP" not in full


# ---------------------------------------------------------------------------
# DASH


def test_dash_mpd_dynamic(video_tp: TrackPackager, audio_tp: TrackPackager) -> None:
    init, frags = fragments(ffmpeg_video())
    # captured at T0, packaged long after: the capture clock, not the packaging one, is the anchor
    live = TrackPackager("360p", window_segments=10, clock=lambda: T0 + timedelta(hours=1))
    live.set_origin(T0)
    live.feed(init)
    for f in frags[:-3]:
        live.feed(f)
    assert live.wallclock_anchor is not None
    now = T0 + timedelta(seconds=7)
    xml = render_dash_mpd([live], audio_tp, availability_start=live.wallclock_anchor, now=now,
                          utc_timing_url="http://node.example:8080/time")
    root = ET.fromstring(xml)
    assert root.tag == "{urn:mpeg:dash:schema:mpd:2011}MPD"
    assert root.get("type") == "dynamic"
    assert root.get("profiles") == "urn:mpeg:dash:profile:isoff-live:2011"
    for attr in ("minimumUpdatePeriod", "timeShiftBufferDepth", "maxSegmentDuration", "minBufferTime"):
        assert root.get(attr, "").startswith("PT")
    assert root.get("availabilityStartTime") == "2024-05-01T12:00:00.000Z"
    assert root.get("publishTime") == "2024-05-01T12:00:07.000Z"
    assert root.find("d:ServiceDescription/d:Latency", MPD_NS) is not None
    assert root.find("d:ServiceDescription/d:PlaybackRate", MPD_NS) is not None
    utc = root.find("d:UTCTiming", MPD_NS)
    assert utc is not None and utc.get("value") == "http://node.example:8080/time"
    assert utc.get("schemeIdUri") == "urn:mpeg:dash:utc:http-iso:2014"
    sets = root.findall("d:Period/d:AdaptationSet", MPD_NS)
    assert [s.get("contentType") for s in sets] == ["video", "audio"]
    assert sets[0].get("segmentAlignment") == "true"
    for aset, tp in zip(sets, (live, audio_tp), strict=True):
        rep = aset.find("d:Representation", MPD_NS)
        assert rep is not None and rep.get("id") == tp.name and rep.get("codecs") == tp.track.codec
        tmpl = rep.find("d:SegmentTemplate", MPD_NS)
        assert tmpl is not None
        assert tmpl.get("initialization") == f"{tp.name}/init.mp4"
        assert tmpl.get("media") == f"{tp.name}/seg$Number$.m4s"
        assert int(tmpl.get("timescale", "0")) == tp.track.timescale
        assert int(tmpl.get("startNumber", "-1")) == tp.segments[0].msn
        assert tmpl.get("availabilityTimeComplete") == "false"
        assert float(tmpl.get("availabilityTimeOffset", "0")) == pytest.approx(
            2.0 - tp.part_target, abs=0.001
        )
        total = 0
        expected_t = tp.segments[0].start_ticks
        for s in tmpl.findall("d:SegmentTimeline/d:S", MPD_NS):
            t, d, r = int(s.get("t", "0")), int(s.get("d", "0")), int(s.get("r", "0"))
            assert t == expected_t
            expected_t += d * (r + 1)
            total += d * (r + 1)
        assert total == sum(s.duration_ticks for s in tp.segments)
    # complete segments only: the in-progress one is reachable through availabilityTimeOffset
    video_total = sum(s.duration_ticks for s in live.segments)
    assert video_total / live.track.timescale == pytest.approx(6.0)  # 13 parts: 3 segments + 1 part
    # opt-in: the in-progress segment listed with its nominal duration
    xml = render_dash_mpd(
        [live], None, availability_start=live.wallclock_anchor, now=now, include_in_progress=True
    )
    s_last = ET.fromstring(xml).findall(".//d:S", MPD_NS)[-1]
    assert s_last.get("r") == "3" and int(s_last.get("d", "0")) == 2 * live.track.timescale


def test_dash_mpd_static_when_ended(video_tp: TrackPackager, audio_tp: TrackPackager) -> None:
    assert video_tp.wallclock_anchor is not None
    xml = render_dash_mpd(
        [video_tp], audio_tp, availability_start=video_tp.wallclock_anchor, now=T0, ended=True
    )
    root = ET.fromstring(xml)
    assert root.get("type") == "static"
    assert root.get("mediaPresentationDuration", "").startswith("PT8.")
    assert root.get("minimumUpdatePeriod") is None


# ---------------------------------------------------------------------------
# Async layer


def _live_package() -> tuple[LiveStreamPackage, bytes, list[bytes], bytes, list[bytes]]:
    vinit, vfrags = fragments(ffmpeg_video())
    ainit, afrags = fragments(ffmpeg_audio())
    pkg = LiveStreamPackage(["360p"], "audio", window_segments=6, clock=lambda: T0 + timedelta(hours=1))
    pkg.set_origin(T0)
    return pkg, vinit, vfrags, ainit, afrags


def test_the_first_mpd_already_announces_the_whole_time_shift_window() -> None:
    """dash.js caps its live delay at the first MPD's timeShiftBufferDepth for good: one short segment in,
    the MPD says the window the stream will keep (6 x 2 s), not the fraction of a second listed yet."""
    pkg, vinit, vfrags, ainit, afrags = _live_package()
    pkg.feed("360p", vinit)
    pkg.feed("audio", ainit)
    for f in vfrags[:5]:  # segment 0 complete (the keyframe at 2 s starts segment 1)
        pkg.feed("360p", f)
    for f in afrags[:5]:
        pkg.feed("audio", f)
    root = ET.fromstring(pkg.render_mpd(now=T0 + timedelta(seconds=3), include_in_progress=True))
    depth = root.get("timeShiftBufferDepth", "")
    assert depth.startswith("PT") and float(depth[2:-1]) == pytest.approx(12.0)


async def test_blocking_reload_wakes_on_next_part() -> None:
    pkg, vinit, vfrags, ainit, afrags = _live_package()
    v = pkg.video["360p"]
    pkg.feed("360p", vinit)
    pkg.feed("audio", ainit)
    pkg.feed("360p", vfrags[0])
    pkg.feed("audio", afrags[0])
    assert v.has_part(0, 0) and not v.has_part(0, 1)

    waiter = asyncio.create_task(v.wait_for_part(0, 1, timeout=30))
    nothing_done, _ = await asyncio.wait({waiter}, timeout=0)
    assert not nothing_done
    await asyncio.sleep(0)  # let the waiter block on the change event
    assert not waiter.done()
    # feed the part in two halves: the first half must not satisfy the waiter
    half = len(vfrags[1]) // 2
    pkg.feed("360p", vfrags[1][:half])
    await asyncio.sleep(0)
    assert not waiter.done()
    pkg.feed("360p", vfrags[1][half:])
    assert await asyncio.wait_for(waiter, 2.0) is True

    # missing _HLS_part means part 0: waiting for msn 1 resolves when segment 1 starts
    seg_waiter = asyncio.create_task(v.wait_for_part(1, None, timeout=30))
    for f in vfrags[2:4]:
        pkg.feed("360p", f)
    await asyncio.sleep(0)
    assert not seg_waiter.done()
    pkg.feed("360p", vfrags[4])  # keyframe at 2 s starts segment 1
    assert await asyncio.wait_for(seg_waiter, 2.0) is True
    assert v.packager.get_part(1, 0) is not None

    # a part index past the end of a completed segment is satisfied (the segment is complete)
    assert await asyncio.wait_for(v.wait_for_part(0, 7, timeout=30), 2.0) is True
    assert v.packager.get_part(0, 7) is None

    # timeouts return False
    assert await v.wait_for_part(1, 3, timeout=0.01) is False

    # too far ahead: last msn is 1 -> msn 3 ok, msn 4 is a 400
    assert not v.is_too_far_ahead(3)
    assert v.is_too_far_ahead(4)

    # rendition reports and master/MPD entry points work
    media = pkg.render_media("360p")
    assert '#EXT-X-RENDITION-REPORT:URI="../audio/index.m3u8",LAST-MSN=0,LAST-PART=0' in media
    assert "360p/index.m3u8" in pkg.render_master()
    assert pkg.availability_start == T0
    ET.fromstring(pkg.render_mpd(now=T0))

    # end() wakes waiters
    end_waiter = asyncio.create_task(v.wait_for_part(3, 0, timeout=30))
    await asyncio.sleep(0)
    pkg.end()
    assert await asyncio.wait_for(end_waiter, 2.0) is True
    assert pkg.ended
    assert "#EXT-X-ENDLIST" in pkg.render_media("360p")
    assert 'type="static"' in pkg.render_mpd()


async def test_segment_bytes_stream_while_in_progress() -> None:
    pkg, vinit, vfrags, _, _ = _live_package()
    v = pkg.video["360p"]
    v.feed(vinit)
    v.feed(vfrags[0])

    it = await asyncio.wait_for(v.wait_for_segment_bytes(0, timeout=5), 2.0)
    assert it is not None
    chunks: list[bytes] = []

    async def consume() -> None:
        async for chunk in it:
            chunks.append(chunk)

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0)
    assert chunks == [vfrags[0]]
    for f in vfrags[1:4]:
        v.feed(f)
        await asyncio.sleep(0)
    assert not consumer.done() and len(chunks) == 4
    v.feed(vfrags[4])  # starts segment 1 -> segment 0 complete, stream ends
    await asyncio.wait_for(consumer, 2.0)
    seg0 = v.packager.get_segment(0)
    assert seg0 is not None and b"".join(chunks) == seg0.data

    # a segment that has not started yet is awaited, then streamed
    pending = asyncio.create_task(v.wait_for_segment_bytes(2, timeout=30))
    await asyncio.sleep(0)
    assert not pending.done()
    for f in vfrags[5:9]:
        v.feed(f)
    it2 = await asyncio.wait_for(pending, 2.0)
    assert it2 is not None
    first = await asyncio.wait_for(anext(it2), 2.0)
    assert first == vfrags[8]

    # complete segments come in one piece; unknown / too far ahead -> None
    it3 = await v.wait_for_segment_bytes(1, timeout=1)
    assert it3 is not None
    assert [c async for c in it3] == [b"".join(vfrags[4:8])]
    assert await v.wait_for_segment_bytes(9, timeout=1) is None
    assert await v.wait_for_segment_bytes(3, timeout=0.01) is None


def test_a_media_playlist_is_rendered_once_per_change() -> None:
    """The viewers one part wakes share one rendering; any change of any rendition (a part, the window, the
    end) gives a new one, the same text render_media gives."""
    pkg, vinit, vfrags, ainit, afrags = _live_package()
    pkg.feed("360p", vinit)
    pkg.feed("audio", ainit)
    for v, a in zip(vfrags[:8], afrags[:8], strict=False):
        pkg.feed("360p", v)
        pkg.feed("audio", a)
    first = pkg.media_playlist("360p")
    assert pkg.media_playlist("360p") is first
    assert first.decode() == pkg.render_media("360p")
    assert pkg.media_playlist("360p", skip=True).decode() == pkg.render_media("360p", skip=True)
    pkg.feed("audio", afrags[8])  # another rendition moved: the rendition report changes
    after_audio = pkg.media_playlist("360p")
    assert after_audio is not first and after_audio.decode() == pkg.render_media("360p")
    pkg.rendition("360p").packager.trim(1)  # the window shrinks (DVR cleanup does this)
    assert pkg.media_playlist("360p").decode() == pkg.render_media("360p")
    pkg.end()
    assert b"#EXT-X-ENDLIST" in pkg.media_playlist("360p")
