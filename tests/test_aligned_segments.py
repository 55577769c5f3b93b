"""Audio is cut where the video's segments begin: same segment numbers, starts within a few audio frames (no
audio part shorter than MIN_SPLIT_SAMPLES frames)."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from onair.formats.fmp4 import parse_fragment, parse_init
from onair.formats.fmp4.split import sample_run, split_fragment
from onair.package.live import LiveStreamPackage
from onair.package.packager import MIN_SPLIT_SAMPLES, TrackPackager
from onair.transcode.command import (
    FIRST_KEYFRAME_INTERVAL_S,
    FMP4_MOVFLAGS,
    FRAG_DURATION_US,
    KEYFRAME_INTERVAL_S,
    forced_keyframes,
)
from tests.test_clocks_live import parse_media
from tests.test_cmaf_packager import fragments
from tests.test_fmp4 import ffmpeg_audio, ffmpeg_video, needs_ffmpeg

pytestmark = [pytest.mark.media, needs_ffmpeg]

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
AAC_FRAME = 1024


def pcm(mp4: bytes) -> bytes:
    cmd = ["ffmpeg", "-v", "error", "-f", "mp4", "-i", "pipe:0", "-f", "s16le", "pipe:1"]
    return subprocess.run(cmd, input=mp4, capture_output=True, check=True, timeout=60).stdout


def test_a_split_fragment_decodes_to_the_same_samples() -> None:
    init, frags = fragments(ffmpeg_audio(seconds=3))
    track = parse_init(init)
    halves: list[bytes] = []
    for frag in frags:
        run = sample_run(frag, track)
        assert run is not None and len(run.durations) > 7
        first, second = split_fragment(run, 7)
        a, b, whole = (parse_fragment(x, track) for x in (first, second, frag))
        assert (a.sample_count, b.sample_count) == (7, whole.sample_count - 7)
        assert a.base_media_decode_time == whole.base_media_decode_time
        assert b.base_media_decode_time == (whole.base_media_decode_time or 0) + a.duration
        assert a.duration + b.duration == whole.duration
        halves += [first, second]
    assert pcm(init + b"".join(halves)) == pcm(init + b"".join(frags))
    with pytest.raises(ValueError):
        split_fragment(run, 0)


def _by_time(vinit: bytes, vfrags: list[bytes], ainit: bytes, afrags: list[bytes]) -> list[tuple[str, bytes]]:
    """Both tracks' fragments in the order of their decode times, as ffmpeg's pipes deliver them."""
    vt, at = parse_init(vinit), parse_init(ainit)
    timed = [(float(parse_fragment(f, vt).base_media_decode_time or 0) / vt.timescale, "v", f) for f in vfrags]
    timed += [(float(parse_fragment(f, at).base_media_decode_time or 0) / at.timescale, "audio", f) for f in afrags]
    return [("v", vinit), ("audio", ainit)] + [(name, f) for _, name, f in sorted(timed, key=lambda x: x[0])]


def _packaged(vinit: bytes, vfrags: list[bytes], ainit: bytes, afrags: list[bytes], audio_first: bool,
              first_segment: float | None = None, *, now: timedelta = timedelta(hours=1),
              end: bool = True) -> tuple[TrackPackager, TrackPackager]:
    """The video and audio packagers after both tracks were fed, in time order or all the audio first; the wall
    clock stands at T0 + `now` (the origin is T0)."""
    pkg = LiveStreamPackage(["v"], "audio", window_segments=20, first_segment=first_segment,
                            clock=lambda: T0 + now)
    pkg.set_origin(T0)
    order = _by_time(vinit, vfrags, ainit, afrags)
    if audio_first:
        order = [*order[:2], *(x for x in order[2:] if x[0] == "audio"), *(x for x in order[2:] if x[0] == "v")]
    for name, data in order:
        pkg.feed(name, data)
    if end:
        pkg.end()
    assert pkg.audio is not None
    return pkg.video["v"].packager, pkg.audio.packager


@pytest.mark.parametrize("audio_first", [False, True])
def test_audio_segments_follow_the_video_segments(audio_first: bool) -> None:
    vinit, vfrags = fragments(ffmpeg_video(seconds=11))
    ainit, afrags = fragments(ffmpeg_audio(seconds=11))
    # audio first: the whole audio ahead of the video, every boundary is predicted, none seen yet
    video, audio = _packaged(vinit, vfrags, ainit, afrags, audio_first)
    vsegs, asegs = list(video.segments), list(audio.segments)
    assert len(vsegs) >= 5
    assert [s.msn for s in asegs] == [s.msn for s in vsegs]
    frame = AAC_FRAME / audio.track.timescale
    for v, a in zip(vsegs[1:], asegs[1:], strict=True):
        assert abs(v.start - a.start) <= (MIN_SPLIT_SAMPLES - 0.5) * frame + 1e-9, (v.msn, v.start, a.start)
    for v, a in zip(vsegs[:-1], asegs[:-1], strict=True):
        off = abs(v.duration - a.duration)
        assert off <= (2 * MIN_SPLIT_SAMPLES - 1) * frame + 1e-9, (v.msn, v.duration, a.duration)
    assert audio.part_target <= 0.52
    short = [(s.msn, i, p.sample_count) for s in asegs[:-1] for i, p in enumerate(s.parts)
             if p.sample_count < MIN_SPLIT_SAMPLES]
    assert not short, short


LIVE_FRAGMENTS = ["-f", "mp4", "-movflags", FMP4_MOVFLAGS, "-frag_duration", str(FRAG_DURATION_US), "pipe:1"]


def live_like(source: str, seconds: int, *codec: str) -> bytes:
    cmd = ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", source, "-t", str(seconds), *codec, *LIVE_FRAGMENTS]
    return subprocess.run(cmd, check=True, capture_output=True, timeout=120).stdout


def live_keyframed_video(seconds: int, rate: int = 30) -> bytes:
    """Video keyframed and fragmented as the live transcoder does it (x264's own GOP one interval, as there)."""
    return live_like(f"testsrc2=size=320x180:rate={rate}", seconds,
                     "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-sc_threshold", "0",
                     "-g", str(KEYFRAME_INTERVAL_S * rate), "-force_key_frames", forced_keyframes())


@pytest.mark.parametrize(("audio_first", "rate"), [(False, 30), (True, 30), (False, 25)])
def test_the_first_segment_is_short_and_the_audio_follows_it(audio_first: bool, rate: int) -> None:
    """At 25 and 30 fps alike the early keyframe is a whole number of frames in; the audio cuts where it is."""
    vinit, vfrags = fragments(live_keyframed_video(seconds=9, rate=rate))
    ainit, afrags = fragments(live_like("sine=frequency=440:sample_rate=48000", 9, "-c:a", "aac"))
    # audio first: its first boundary is predicted before the video's first segment is cut
    video, audio = _packaged(vinit, vfrags, ainit, afrags, audio_first, first_segment=FIRST_KEYFRAME_INTERVAL_S)
    vsegs, asegs = list(video.segments), list(audio.segments)
    durations = [round(s.duration, 3) for s in vsegs]
    assert FIRST_KEYFRAME_INTERVAL_S <= durations[0] < FIRST_KEYFRAME_INTERVAL_S + 1 / rate, durations
    assert set(durations[1:-1]) == {float(KEYFRAME_INTERVAL_S)}, durations
    assert video.segment_target(vsegs[0].msn) == FIRST_KEYFRAME_INTERVAL_S
    assert video.segment_target(vsegs[1].msn) == KEYFRAME_INTERVAL_S
    assert [s.msn for s in asegs] == [s.msn for s in vsegs]
    frame = AAC_FRAME / audio.track.timescale
    for v, a in zip(vsegs[1:], asegs[1:], strict=True):
        assert abs(v.start - a.start) <= (MIN_SPLIT_SAMPLES - 0.5) * frame + 1e-9, (v.msn, v.start, a.start)


@pytest.mark.parametrize("audio_first", [False, True])
def test_audio_program_date_times_follow_the_video_clock(audio_first: bool) -> None:
    """Fed in a burst (media far ahead of the wall clock: both tracks' clocks are pulled back), the audio's
    date-times stay on the video's clock: players place the audio on the video timeline by them."""
    vinit, vfrags = fragments(ffmpeg_video(seconds=7))
    ainit, afrags = fragments(ffmpeg_audio(seconds=7))
    video, audio = _packaged(vinit, vfrags, ainit, afrags, audio_first, now=timedelta(seconds=0.1), end=False)
    assert len(video.segments) >= 2
    for v, a in zip(video.segments, audio.segments, strict=False):
        gap = (a.program_date_time - v.program_date_time).total_seconds()
        assert abs(gap - (a.start - v.start)) < 0.001, (v.msn, gap, a.start - v.start)


def test_the_stream_is_ready_once_a_player_would_start_past_the_short_first_segment() -> None:
    """`ready` (the stream's `live`) turns true the moment every media playlist can be answered at once: a
    player starting PART-HOLD-BACK behind its newest part starts past segment 0 (a request made earlier is
    held: hls.js started inside the short first segment stalls at its end)."""
    vinit, vfrags = fragments(live_keyframed_video(seconds=4, rate=25))
    ainit, afrags = fragments(live_like("sine=frequency=440:sample_rate=48000", 4, "-c:a", "aac"))
    pkg = LiveStreamPackage(["v"], "audio", window_segments=20, first_segment=FIRST_KEYFRAME_INTERVAL_S,
                            clock=lambda: T0 + timedelta(hours=1))
    pkg.set_origin(T0)
    saw_first_segment_only = False
    for name, data in _by_time(vinit, vfrags, ainit, afrags):
        pkg.feed(name, data)
        if all(r.packager.segments for r in pkg.renditions()) and not pkg.ready:
            saw_first_segment_only = True  # segment 0 complete everywhere, yet not ready: the hold
        if pkg.ready:
            break
    assert pkg.ready and saw_first_segment_only
    for r in pkg.renditions():
        text = pkg.render_media(r.name)
        entries = parse_media(text)[0]
        hold = re.search(r"PART-HOLD-BACK=([0-9.]+)", text)
        assert hold and entries[0].duration is not None, text
        assert entries[-1].end - float(hold[1]) >= entries[0].end - 1e-3, f"{r.name} starts in segment 0:\n{text}"
        assert not r.starts_in_first_segment()
