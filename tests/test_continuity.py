"""The packager continues a track across a restarted/switched encoder byte stream."""

from __future__ import annotations

import pytest

from onair.formats.dash import render_dash_mpd
from onair.formats.fmp4 import parse_fragment, parse_init, shift_tfdt
from onair.formats.hls import render_hls_media
from onair.package.packager import TrackPackager, rebase_offset
from tests.test_cmaf_packager import FakeClock, feed_chunked, fragments
from tests.test_fmp4 import ffmpeg_video, needs_ffmpeg

pytestmark = [pytest.mark.media, needs_ffmpeg]


def test_shift_tfdt_and_offset() -> None:
    init, frags = fragments(ffmpeg_video(seconds=2))
    track = parse_init(init)
    before = parse_fragment(frags[1][: int.from_bytes(frags[1][:4], "big")], track).base_media_decode_time
    shifted = shift_tfdt(frags[1], 123456)
    assert len(shifted) == len(frags[1])
    after = parse_fragment(shifted[: int.from_bytes(shifted[:4], "big")], track).base_media_decode_time
    assert before is not None and after == before + 123456
    assert rebase_offset(0, 1000, None) == 1000
    assert rebase_offset(10, 1000, 5000) == 4990


def test_restart_keeps_msn_and_marks_discontinuity() -> None:
    first = ffmpeg_video(seconds=6)
    second = ffmpeg_video(seconds=6, size="320x180")  # another encoder: a different init
    tp = TrackPackager("v", target_segment=2.0, window_segments=4, clock=FakeClock())
    feed_chunked(tp, first[: len(first) - 777], seed=1)  # the old stream stops mid-box
    msn_before = tp.last_msn
    end_before = tp._next_decode
    assert msn_before is not None and end_before is not None
    tp.restart()
    feed_chunked(tp, second, seed=2)
    tp.end()
    segs = list(tp.segments)
    assert segs[-1].msn > msn_before
    msns = [s.msn for s in segs]
    assert msns == list(range(msns[0], msns[0] + len(msns))), "media sequence numbers never repeat or skip"
    starts = [s.start_ticks for s in segs]
    assert starts == sorted(starts), "decode time stays monotonic"
    new = [s for s in segs if s.init_version == 1]
    assert new and new[0].discontinuity and new[0].start_ticks >= end_before
    text = render_hls_media(tp)
    assert "#EXT-X-DISCONTINUITY\n" in text and '#EXT-X-MAP:URI="init-1.mp4"' in text
    assert tp.inits[1] == tp.init
    mpd = render_dash_mpd([tp], None, availability_start=tp.wallclock_anchor or FakeClock()(), now=FakeClock()(),
                          ended=True)
    assert "v/init-1.mp4" in mpd
    # once the old segments left the window, the discontinuity sequence counts the boundary
    for _ in range(5):
        tp.ended = False
        tp.restart()
        feed_chunked(tp, second, seed=3)
    assert tp.discontinuity_sequence > 0
    assert f"#EXT-X-DISCONTINUITY-SEQUENCE:{tp.discontinuity_sequence}" in render_hls_media(tp)


def test_implicit_restart_on_new_ftyp() -> None:
    data = ffmpeg_video(seconds=4)
    tp = TrackPackager("v", target_segment=2.0, window_segments=10, clock=FakeClock())
    tp.feed(data)
    n = tp.last_msn
    tp.feed(data)  # same encoder settings again: init unchanged, no new EXT-X-MAP
    tp.end()
    assert tp.last_msn is not None and n is not None and tp.last_msn > n
    assert tp.init_version == 0 and any(s.discontinuity for s in tp.segments)
    assert "init-" not in render_hls_media(tp)


def test_another_node_carries_the_output_on() -> None:
    """A record of one package's output (as an origin reports it) makes a new package go on from it."""
    from onair.package.continuity import OutputContinuity, continuity_of, resume
    from onair.package.live import LiveStreamPackage

    old = LiveStreamPackage(["v"], None, window_segments=4, clock=FakeClock())
    old.set_origin(FakeClock()())
    feed_chunked(old.rendition("v"), ffmpeg_video(seconds=7), seed=4)
    record = continuity_of(old)
    assert record is not None and record.last_msn == old.video["v"].packager.last_msn
    assert OutputContinuity.from_json(record.to_json()) == record  # as it travels between nodes
    for bad in (None, [], {"last_msn": -1}, {**record.to_json(), "anchor": "noon"},
                {**record.to_json(), "timeline_end": float("nan")}, {**record.to_json(), "anchor": "2024-05-01T12:00"}):
        assert OutputContinuity.from_json(bad) is None

    new = LiveStreamPackage(["v"], None, window_segments=4, clock=FakeClock())
    resume(new, record)
    new.set_origin(FakeClock()())
    feed_chunked(new.rendition("v"), ffmpeg_video(seconds=5, size="320x180"), seed=5)
    tp = new.video["v"].packager
    first = tp.segments[0]
    assert first.msn == record.last_msn + 2 and first.discontinuity
    assert first.start >= record.timeline_end  # the timeline goes on, never back
    # the same anchor, moved back only because this fake clock runs behind the media fed at once
    assert tp.wallclock_anchor is not None and tp.wallclock_anchor <= record.anchor
    text = render_hls_media(tp)
    assert f"#EXT-X-MEDIA-SEQUENCE:{first.msn}\n" in text and "#EXT-X-DISCONTINUITY\n" in text


def test_a_dvr_cleanup_counts_the_discontinuities_it_drops() -> None:
    """Trimmed segments leave the playlist like slid-out ones: their tags move into the discontinuity sequence."""
    video = ffmpeg_video(seconds=4)
    tp = TrackPackager("v", target_segment=2.0, window_segments=20, clock=FakeClock())
    feed_chunked(tp, video, seed=6)
    tp.restart()
    feed_chunked(tp, video, seed=7)
    tp.end()
    tagged = [s.msn for s in tp.segments if s.discontinuity]
    assert tagged and tp.discontinuity_sequence == 0
    text = render_hls_media(tp)
    dropped = tp.trim(len(tp.segments) - (tagged[0] - tp.segments[0].msn) - 1)  # up to the first tagged one
    assert dropped[-1] == tagged[0] and tp.discontinuity_sequence == 1
    assert "DISCONTINUITY-SEQUENCE" not in text and "#EXT-X-DISCONTINUITY-SEQUENCE:1\n" in render_hls_media(tp)
