"""Program date-times and the DASH timeline follow the source's capture clock, never the packaging moment."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from onair.package.packager import TrackPackager
from tests.test_cmaf_packager import fragments
from tests.test_fmp4 import ffmpeg_video, needs_ffmpeg

pytestmark = [pytest.mark.media, needs_ffmpeg]

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


class ArrivalClock:
    """The wall clock as the packager reads it: set by the test to when each fragment comes out."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def newest_part_end(tp: TrackPackager) -> datetime:
    seg = tp.current if tp.current is not None and tp.current.parts else tp.segments[-1]
    return seg.program_date_time + timedelta(seconds=seg.duration)


@pytest.fixture(scope="module")
def video() -> tuple[bytes, list[bytes]]:
    return fragments(ffmpeg_video(seconds=8))


def test_pdt_is_capture_time_plus_media_time(video: tuple[bytes, list[bytes]]) -> None:
    init, frags = video
    clock = ArrivalClock(T0)
    tp = TrackPackager("v", window_segments=10, clock=clock)
    tp.set_origin(T0)
    tp.feed(init)
    for f in frags:
        # each fragment leaves the encoder about 2.7 s after its frames were captured (probe + encode)
        done = tp._next_decode / tp.track.timescale if tp._next_decode is not None else 0.0  # noqa: SLF001
        clock.now = T0 + timedelta(seconds=done + 0.6 + 2.7)
        tp.feed(f)
    tp.end()
    assert tp.wallclock_anchor == T0
    assert len(tp.segments) >= 3
    for seg in tp.segments:
        assert seg.program_date_time == T0 + timedelta(seconds=seg.start)


def test_a_burst_is_never_stamped_in_the_future(video: tuple[bytes, list[bytes]]) -> None:
    init, frags = video
    clock = ArrivalClock(T0 + timedelta(seconds=0.2))
    tp = TrackPackager("v", window_segments=10, clock=clock)
    tp.set_origin(T0)  # 8 s of media arrive within 0.2 s + 10 ms per fragment: faster than real time
    tp.feed(init)
    for f in frags:
        clock.now += timedelta(milliseconds=10)
        tp.feed(f)
        assert newest_part_end(tp) <= clock.now
        assert tp.wallclock_anchor is not None and tp._next_decode is not None  # noqa: SLF001
        assert tp.wallclock_anchor + timedelta(seconds=tp._next_decode / tp.track.timescale) <= clock.now  # noqa: SLF001
    # consecutive complete segments stay one EXTINF apart within a byte stream
    segs = list(tp.segments)
    for a, b in zip(segs, segs[1:], strict=False):
        if b.program_date_time != a.program_date_time + timedelta(seconds=a.duration):
            # only the segment in progress when the clock was pulled back may start earlier
            assert b.program_date_time < a.program_date_time + timedelta(seconds=a.duration)


def test_a_new_byte_stream_starts_at_its_own_capture_time(video: tuple[bytes, list[bytes]]) -> None:
    init, frags = video
    clock = ArrivalClock(T0 + timedelta(seconds=9))
    tp = TrackPackager("v", window_segments=20, clock=clock)
    tp.set_origin(T0)
    tp.feed(init)
    for f in frags:
        tp.feed(f)
    first_end = tp._next_decode / tp.track.timescale  # noqa: SLF001
    # the encoder restarts on media that came in 20 s after the first stream's: a gap of 12 s
    clock.now = T0 + timedelta(seconds=29)
    tp.restart(origin=T0 + timedelta(seconds=20))
    tp.feed(init)
    for f in frags:
        tp.feed(f)
    new = [s for s in tp.segments if s.start >= first_end]
    assert new and new[0].discontinuity
    assert new[0].program_date_time == T0 + timedelta(seconds=20)
    # the DASH timeline puts it where its capture time falls: 20 s after the anchor
    assert new[0].start == pytest.approx(20.0, abs=1 / tp.track.timescale)
    for seg in new:
        assert seg.program_date_time == T0 + timedelta(seconds=seg.start)
