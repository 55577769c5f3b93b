"""Sans-IO CMAF packager (one per output track) and LL-HLS / LL-DASH manifest rendering.

ffmpeg writes one fragmented MP4 per track (ftyp, moov, then moof+mdat pairs).
Each moof+mdat pair becomes one LL-HLS partial segment; parts are grouped into
segments that start on a sync sample. URL layout, relative to the master playlist::

    master.m3u8 / index.mpd
    {track}/index.m3u8  {track}/init.mp4  {track}/seg{msn}.m4s  {track}/part{msn}.{i}.m4s
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from onair.formats.fmp4 import BoxReader, FMP4Error, FragmentInfo, TrackInfo, parse_fragment, parse_init, shift_tfdt

__all__ = [
    "Part",
    "Segment",
    "TrackPackager",
    "rebase_offset",
    "render_dash_mpd",
    "render_hls_master",
    "render_hls_media",
]

# Segments whose parts are still listed in media playlists (RFC 8216bis: ~3 target durations).
PART_SEGMENTS = 3
# Without any sync sample for this many target durations we cut anyway to bound memory.
_FORCE_CUT_FACTOR = 4.0
# Segments used for the bandwidth estimate.
_BANDWIDTH_SEGMENTS = 6


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class Part:
    data: bytes  # moof + mdat
    duration: float  # seconds
    independent: bool
    decode_time: int  # track timescale units
    duration_ticks: int
    sample_count: int


@dataclass(slots=True, eq=False)
class Segment:
    msn: int
    start_ticks: int
    timescale: int
    program_date_time: datetime
    parts: list[Part] = field(default_factory=list)
    complete: bool = False
    discontinuity: bool = False  # first segment of a new encoder byte stream (EXT-X-DISCONTINUITY)
    init_version: int = 0  # which init segment (TrackPackager.inits) its parts need
    # Bytes dropped from memory (older than the in-memory window); a DVR store serves them from disk.
    evicted: bool = False
    _data: bytes | None = field(default=None, init=False, repr=False)

    @property
    def start(self) -> float:
        return self.start_ticks / self.timescale

    @property
    def duration_ticks(self) -> int:
        return sum(p.duration_ticks for p in self.parts)

    @property
    def duration(self) -> float:
        return self.duration_ticks / self.timescale

    @property
    def size(self) -> int:
        return sum(len(p.data) for p in self.parts)

    @property
    def independent(self) -> bool:
        return bool(self.parts) and self.parts[0].independent

    @property
    def data(self) -> bytes:
        """Concatenated part bytes; joined once and cached when the segment is complete."""
        if self._data is not None:
            return self._data
        joined = b"".join(p.data for p in self.parts)
        if self.complete:
            self._data = joined
        return joined


SegmentCallback = Callable[["TrackPackager", Segment], None]


def rebase_offset(first_start: int, next_decode: int | None, wallclock_ticks: int | None) -> int:
    """Offset for the fragments of a new byte stream whose first decode time is `first_start`.

    A restarted (or switched-over) encoder begins a new fMP4 stream with decode times from ~0. Its
    fragments are shifted (tfdt rewritten, see shift_tfdt) to continue at the end of the previous
    stream (`next_decode`), or later when the wall clock moved on further during the gap, so that
    DASH availability times stay close to real time. HLS marks the boundary EXT-X-DISCONTINUITY.
    """
    target = next_decode or 0
    if wallclock_ticks is not None:
        target = max(target, wallclock_ticks)
    return target - first_start


class TrackPackager:
    """Turns one ffmpeg fMP4 byte stream into an init segment plus a sliding window of segments/parts."""

    def __init__(
        self,
        name: str,
        *,
        target_segment: float = 2.0,
        window_segments: int,
        memory_segments: int | None = None,
        on_segment_complete: SegmentCallback | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """`window_segments` complete segments are listed in playlists (the DVR window when DVR is on);
        only the newest `memory_segments` of them keep their bytes in memory (default: all)."""
        if target_segment <= 0:
            raise ValueError("target_segment must be > 0")
        if window_segments < 1:
            raise ValueError("window_segments must be >= 1")
        self.name = name
        self.target_segment = target_segment
        self.window_segments = window_segments
        self.memory_segments = window_segments if memory_segments is None else max(1, memory_segments)
        self.on_segment_complete = on_segment_complete
        self._clock = clock
        self._reader = BoxReader()
        self._init_parts: list[bytes] = []
        self.init: bytes | None = None
        self._track: TrackInfo | None = None
        self._moof: bytes | None = None
        self._frag: FragmentInfo | None = None
        self.segments: deque[Segment] = deque()
        self.current: Segment | None = None
        self._next_msn = 0
        self._next_decode: int | None = None
        self._max_part = 0.0
        self._max_segment = 0.0
        self._samples = 0
        self._sample_ticks = 0
        self.wallclock_anchor: datetime | None = None  # wall clock at decode time 0
        self.ended = False
        # Continuity across encoder restarts/switches (see restart() and rebase_offset()).
        self.inits: dict[int, bytes] = {}
        self.init_version = 0
        self.discontinuity_sequence = 0  # discontinuities that slid out of the window
        self._restarting = False  # a new ftyp arrived; its moov is awaited
        self._rebase = False  # the next fragment starts a new timeline
        self._offset = 0  # added to decode times of the current byte stream
        self._discontinuity_next = False

    # -- properties ---------------------------------------------------------------

    @property
    def track(self) -> TrackInfo:
        if self._track is None:
            raise LookupError(f"{self.name}: init segment not received yet")
        return self._track

    @property
    def has_init(self) -> bool:
        return self._track is not None

    @property
    def is_video(self) -> bool:
        return self._track is not None and self._track.is_video

    @property
    def max_part_duration(self) -> float:
        return self._max_part

    @property
    def part_target(self) -> float:
        """PART-TARGET: max part duration rounded up to the millisecond (printed parts never exceed it)."""
        if self._max_part <= 0:
            return 0.5
        return math.ceil(self._max_part * 1000 - 1e-6) / 1000

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION: longest segment rounded to the nearest integer (RFC 8216 4.4.3.1).

        Nearest rather than ceil so that 2.048 s AAC segments keep a target of 2 like the video.
        """
        return max(1, math.floor(max(self._max_segment, self.target_segment) + 0.5))

    @property
    def max_segment_duration(self) -> float:
        return max(self._max_segment, self.target_segment)

    @property
    def frame_rate(self) -> float | None:
        if not self.is_video or self._sample_ticks <= 0:
            return None
        return self._samples * self.track.timescale / self._sample_ticks

    @property
    def bandwidth(self) -> int:
        """Peak bits/s over recent complete segments (falls back to the in-progress segment)."""
        rates = [s.size * 8 / s.duration for s in self._recent() if s.duration > 0]
        return int(max(rates)) if rates else 0

    @property
    def average_bandwidth(self) -> int:
        recent = [s for s in self._recent() if s.duration > 0]
        dur = sum(s.duration for s in recent)
        return int(sum(s.size for s in recent) * 8 / dur) if dur > 0 else 0

    def _recent(self) -> list[Segment]:
        recent = [s for s in list(self.segments)[-_BANDWIDTH_SEGMENTS:] if not s.evicted]  # evicted: no bytes
        if not recent and self.current is not None and self.current.parts:
            recent = [self.current]
        return recent

    @property
    def last_msn(self) -> int | None:
        """MSN of the newest segment that has at least one part (in progress or complete)."""
        if self.current is not None and self.current.parts:
            return self.current.msn
        if self.segments:
            return self.segments[-1].msn
        return None

    @property
    def first_msn(self) -> int | None:
        if self.segments:
            return self.segments[0].msn
        if self.current is not None and self.current.parts:
            return self.current.msn
        return None

    def last_part_ref(self) -> tuple[int, int] | None:
        """(msn, part index) of the newest part."""
        for seg in (self.current, self.segments[-1] if self.segments else None):
            if seg is not None and seg.parts:
                return seg.msn, len(seg.parts) - 1
        return None

    def next_part_ref(self) -> tuple[int, int]:
        """Best guess of the next part to be produced (for EXT-X-PRELOAD-HINT)."""
        cur = self.current
        if cur is None or not cur.parts:
            return self._next_msn, 0
        last = cur.parts[-1]
        # Predict the cut with the same rule feed() uses, assuming the next fragment looks like the last.
        start = last.decode_time + last.duration_ticks
        if self._should_cut(cur, start, last.duration_ticks, sync=True):
            return cur.msn + 1, 0
        return cur.msn, len(cur.parts)

    def get_segment(self, msn: int) -> Segment | None:
        cur = self.current
        if cur is not None and cur.msn == msn and cur.parts:
            return cur
        if not self.segments:
            return None
        idx = msn - self.segments[0].msn
        if 0 <= idx < len(self.segments):
            seg = self.segments[idx]
            if seg.msn == msn:
                return seg
        return None

    def get_part(self, msn: int, part_index: int) -> Part | None:
        seg = self.get_segment(msn)
        if seg is None or not 0 <= part_index < len(seg.parts):
            return None
        return seg.parts[part_index]

    @staticmethod
    def init_uri(version: int) -> str:
        return "init.mp4" if version == 0 else f"init-{version}.mp4"

    def restart(self) -> None:
        """The producer starts a new fMP4 byte stream (ffmpeg restarted or switched to another input).

        Drops any half-received box of the old stream; the new ftyp/moov and fragments that follow
        continue this track: msn keeps counting, decode times are shifted to continue, and the next
        segment is marked as a discontinuity.
        """
        self._reader = BoxReader()
        self._moof = self._frag = None
        if self._track is not None:
            self._restarting = True
            self._init_parts = []

    # -- input --------------------------------------------------------------------

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Consume ffmpeg output; returns the number of new parts (raises FMP4Error on bad input)."""
        if self.ended:
            return 0
        added = 0
        for box in self._reader.feed(data):
            added += self._on_box(box.type, box.data)
        return added

    def _on_box(self, btype: str, data: bytes) -> int:
        if self._track is None:
            if btype == "ftyp":
                self._init_parts = [data]
            elif btype == "moov":
                self._init_parts.append(data)
                init = b"".join(self._init_parts)
                self._track = parse_init(init)
                self.init = init
                self.inits[0] = init
            elif btype in ("moof", "mdat"):
                raise FMP4Error(f"{self.name}: {btype} before moov")
            return 0
        if btype == "ftyp":
            # A new byte stream begins on this pipe (restarted/switched encoder): its moov follows.
            # (The box reader is at a box boundary here, so unlike restart() it stays as it is.)
            self._moof = self._frag = None
            self._restarting = True
            self._init_parts = [data]
            return 0
        if self._restarting:
            if btype == "moov":
                self._new_init(b"".join([*self._init_parts, data]))
            elif btype in ("moof", "mdat"):
                raise FMP4Error(f"{self.name}: {btype} before moov")
            return 0
        if btype == "moof":
            self._moof = data
            self._frag = parse_fragment(data, self._track)
            return 0
        if btype == "mdat":
            if self._moof is None or self._frag is None:
                raise FMP4Error(f"{self.name}: mdat without moof")
            moof, frag = self._moof, self._frag
            self._moof = self._frag = None
            return self._add_fragment(b"".join((moof, data)), frag)
        if btype == "moov" and self.init is not None and not self.init.endswith(data):
            raise FMP4Error(f"{self.name}: init segment changed mid-stream")
        # ftyp/moov repeats, styp, sidx, prft, emsg, free, mfra: not needed for packaging.
        return 0

    def _new_init(self, init: bytes) -> None:
        self._restarting = False
        self._rebase = True
        if init == self.init:
            return
        old_ts = self.track.timescale
        self._track = parse_init(init)
        self.init = init
        self.init_version += 1
        self.inits[self.init_version] = init
        if self._next_decode is not None and self._track.timescale != old_ts:
            self._next_decode = self._next_decode * self._track.timescale // old_ts

    def _should_cut(self, cur: Segment, frag_start: int, frag_ticks: int, *, sync: bool) -> bool:
        ts = cur.timescale
        cur_dur = (frag_start - cur.start_ticks) / ts
        if self.is_video:
            if not sync:
                return cur_dur >= _FORCE_CUT_FACTOR * self.target_segment
            # Cut at the keyframe closest to the target (GOP == target gives exact segments).
            return cur_dur + frag_ticks / ts / 2 >= self.target_segment
        # Audio: cut on the fragment nearest each multiple of target on the absolute timeline so
        # audio segments stay aligned with video segments instead of drifting by a part per segment.
        half = frag_ticks / ts / 2
        return (
            math.floor((frag_start / ts + half) / self.target_segment)
            > math.floor((cur.start + half) / self.target_segment)
            or cur_dur >= _FORCE_CUT_FACTOR * self.target_segment
        )

    def _add_fragment(self, data: bytes, frag: FragmentInfo) -> int:
        track = self.track
        ts = track.timescale
        start = frag.base_media_decode_time
        if start is None:
            start = self._next_decode if self._next_decode is not None else 0
        if frag.duration <= 0:
            raise FMP4Error(f"{self.name}: fragment without duration")
        if self._rebase:
            if track.is_video and not frag.first_sample_sync:
                return 0  # the new stream's first segment must start on a sync sample too
            wall = None
            if self.wallclock_anchor is not None:
                wall = round((self._clock() - self.wallclock_anchor).total_seconds() * ts)
            self._offset = rebase_offset(start, self._next_decode, wall)
            self._rebase = False
            self._discontinuity_next = True
            if self.current is not None and self.current.parts:
                self._complete(self.current)
            self.current = None
        if self._offset:
            start += self._offset
            data = shift_tfdt(data, self._offset)
        if self._next_decode is not None and start + frag.duration <= self._next_decode:
            # e.g. an encoder restart reusing this pipe: timing would corrupt the window.
            raise FMP4Error(f"{self.name}: decode time went backwards ({start} < {self._next_decode})")
        cur = self.current
        if cur is None and track.is_video and not frag.first_sample_sync:
            return 0  # a segment must start on a sync sample; wait for the first keyframe
        now = self._clock()
        if self.wallclock_anchor is None:
            self.wallclock_anchor = now - timedelta(seconds=start / ts)
        if cur is not None and self._should_cut(cur, start, frag.duration, sync=frag.first_sample_sync):
            self._complete(cur)
            cur = None
        if cur is None:
            # PDT from the wall-clock anchor + decode time: consecutive segments stay exactly one
            # EXTINF apart even when ffmpeg delivers its first GOPs in a burst
            pdt = self.wallclock_anchor + timedelta(seconds=start / ts)
            cur = Segment(msn=self._next_msn, start_ticks=start, timescale=ts, program_date_time=pdt,
                          discontinuity=self._discontinuity_next, init_version=self.init_version)
            self._discontinuity_next = False
            self._next_msn += 1
            self.current = cur
        part = Part(
            data=data,
            duration=frag.duration / ts,
            independent=frag.first_sample_sync,
            decode_time=start,
            duration_ticks=frag.duration,
            sample_count=frag.sample_count,
        )
        cur.parts.append(part)
        self._next_decode = start + frag.duration
        self._max_part = max(self._max_part, part.duration)
        self._samples += frag.sample_count
        self._sample_ticks += frag.duration
        return 1

    def _complete(self, seg: Segment) -> None:
        seg.complete = True
        if self.current is seg:
            self.current = None
        self._max_segment = max(self._max_segment, seg.duration)
        self.segments.append(seg)
        while len(self.segments) > self.window_segments:
            if self.segments.popleft().discontinuity:
                self.discontinuity_sequence += 1
        if len(self.inits) > 1:
            used = {s.init_version for s in self.segments} | {self.init_version}
            for version in [v for v in self.inits if v not in used]:
                del self.inits[version]
        if self.on_segment_complete is not None:
            self.on_segment_complete(self, seg)
        self._evict_old()

    def _evict_old(self) -> None:
        # Walk back from the oldest in-memory segment until one that is already evicted.
        for i in range(len(self.segments) - self.memory_segments - 1, -1, -1):
            old = self.segments[i]
            if old.evicted:
                break
            old.evicted = True
            old._data = None
            # keep timing metadata for playlists; drop the media bytes
            old.parts = [Part(b"", p.duration, p.independent, p.decode_time, p.duration_ticks, p.sample_count)
                         for p in old.parts]

    def trim(self, keep: int) -> list[int]:
        """Drop all but the newest `keep` complete segments (DVR cleanup); returns the dropped MSNs."""
        dropped: list[int] = []
        while len(self.segments) > max(0, keep):
            dropped.append(self.segments.popleft().msn)
        return dropped

    def end(self) -> None:
        """Stream finished: finalise the in-progress segment; further input is ignored."""
        if self.ended:
            return
        self.ended = True
        cur = self.current
        if cur is not None and cur.parts:
            self._complete(cur)
        self.current = None


# ---------------------------------------------------------------------------
# Rendering helpers


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def _fmt_ceil(x: float) -> str:
    return f"{math.ceil(x * 1000 - 1e-6) / 1000:.3f}"


def _iso(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _xs_duration(seconds: float) -> str:
    return f"PT{max(seconds, 0.0):.3f}S"


def _ready(tracks: Iterable[TrackPackager]) -> list[TrackPackager]:
    return [t for t in tracks if t.has_init]


def _video_sort_key(t: TrackPackager) -> tuple[int, int]:
    return (t.track.width * t.track.height, t.bandwidth)


# ---------------------------------------------------------------------------
# HLS


def render_hls_master(video_tracks: Sequence[TrackPackager], audio_track: TrackPackager | None) -> str:
    """Multivariant playlist; variants sorted by resolution then bandwidth, highest first."""
    audio = audio_track if audio_track is not None and audio_track.has_init else None
    lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-INDEPENDENT-SEGMENTS"]
    a_bw = a_avg = 0
    if audio is not None:
        a = audio.track
        a_bw, a_avg = audio.bandwidth, audio.average_bandwidth
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="{audio.name}",DEFAULT=YES,AUTOSELECT=YES,'
            f'CHANNELS="{a.channels or 2}",URI="{audio.name}/index.m3u8"'
        )
    videos = sorted(_ready(video_tracks), key=_video_sort_key, reverse=True)
    for v in videos:
        t = v.track
        codecs = t.codec + (f",{audio.track.codec}" if audio is not None else "")
        attrs = [
            f"BANDWIDTH={max(v.bandwidth + a_bw, 1)}",
            f"AVERAGE-BANDWIDTH={max(v.average_bandwidth + a_avg, 1)}",
            f"RESOLUTION={t.width}x{t.height}",
            f'CODECS="{codecs}"',
        ]
        fr = v.frame_rate
        if fr:
            attrs.append(f"FRAME-RATE={fr:.3f}")
        if audio is not None:
            attrs.append('AUDIO="aud"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(f"{v.name}/index.m3u8")
    if not videos and audio is not None:
        # Audio-only stream: expose the audio playlist as the single variant.
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={max(a_bw, 1)},CODECS="{audio.track.codec}"')
        lines.append(f"{audio.name}/index.m3u8")
    return "\n".join(lines) + "\n"


def render_hls_media(
    track: TrackPackager,
    *,
    other_tracks_for_reports: Sequence[TrackPackager] = (),
    part_hold_back: float | None = None,
    skip: bool = False,
    ended: bool | None = None,
) -> str:
    """LL-HLS media playlist for one track. `skip=True` renders a delta update (_HLS_skip=YES)."""
    if ended is None:
        ended = track.ended
    td = track.target_duration
    part_target = track.part_target
    phb = part_hold_back if part_hold_back is not None else 3 * part_target
    phb = max(phb, 2 * part_target)  # RFC 8216bis minimum
    skip_until = 6 * td
    segs: list[Segment] = list(track.segments)
    cur = track.current if track.current is not None and track.current.parts else None
    first_msn = segs[0].msn if segs else (cur.msn if cur is not None else 0)
    first = segs[0] if segs else cur
    map_version = first.init_version if first is not None else track.init_version

    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:9",
        f"#EXT-X-TARGETDURATION:{td}",
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"CAN-SKIP-UNTIL={_fmt(skip_until)},PART-HOLD-BACK={_fmt_ceil(phb)}",
        f"#EXT-X-PART-INF:PART-TARGET={_fmt(part_target)}",
        f"#EXT-X-MEDIA-SEQUENCE:{first_msn}",
    ]
    if track.discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{track.discontinuity_sequence}")
    lines.append(f'#EXT-X-MAP:URI="{track.init_uri(map_version)}"')

    def boundary(seg: Segment) -> list[str]:
        # A new encoder byte stream: timestamps jump, and the init segment may differ.
        nonlocal map_version
        out = ["#EXT-X-DISCONTINUITY"] if seg.discontinuity else []
        if seg.init_version != map_version:
            map_version = seg.init_version
            out.append(f'#EXT-X-MAP:URI="{track.init_uri(map_version)}"')
        return out

    skipped = 0
    if skip and segs:
        # Skip complete segments that end more than CAN-SKIP-UNTIL before the playlist end.
        total_end = (cur.start + cur.duration) if cur is not None else segs[-1].start + segs[-1].duration
        while skipped < len(segs) and segs[skipped].start + segs[skipped].duration < total_end - skip_until:
            skipped += 1
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")

    with_parts = {s.msn for s in segs[-PART_SEGMENTS:]}
    for seg in segs[skipped:]:
        lines.extend(boundary(seg))
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(seg.program_date_time)}")
        if seg.msn in with_parts:
            lines.extend(_part_lines(seg))
        lines.append(f"#EXTINF:{_fmt(seg.duration)},")
        lines.append(f"seg{seg.msn}.m4s")
    if cur is not None:
        lines.extend(boundary(cur))
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{_iso(cur.program_date_time)}")
        lines.extend(_part_lines(cur))
    if ended:
        lines.append("#EXT-X-ENDLIST")
    else:
        msn, idx = track.next_part_ref()
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part{msn}.{idx}.m4s"')
    for other in other_tracks_for_reports:
        if other is track:
            continue
        ref = other.last_part_ref()
        if ref is None:
            continue
        lines.append(
            f'#EXT-X-RENDITION-REPORT:URI="../{other.name}/index.m3u8",LAST-MSN={ref[0]},LAST-PART={ref[1]}'
        )
    return "\n".join(lines) + "\n"


def _part_lines(seg: Segment) -> list[str]:
    out = []
    for i, p in enumerate(seg.parts):
        line = f'#EXT-X-PART:DURATION={_fmt(p.duration)},URI="part{seg.msn}.{i}.m4s"'
        if p.independent:
            line += ",INDEPENDENT=YES"
        out.append(line)
    return out


# ---------------------------------------------------------------------------
# DASH


def render_dash_mpd(
    video_tracks: Sequence[TrackPackager],
    audio_track: TrackPackager | None,
    *,
    availability_start: datetime,
    now: datetime,
    ended: bool = False,
    latency_target: float = 3.0,
    include_in_progress: bool = False,
) -> str:
    """LL-DASH MPD (dynamic while live, static once ended) with one SegmentTimeline per Representation.

    `availability_start` must be the wall-clock time of decode time 0 (see
    TrackPackager.wallclock_anchor) so that AST + t/timescale matches segment arrival.
    `include_in_progress` also lists the in-progress segment with its nominal duration, which
    SegmentTimeline clients need to request it before it completes.
    """
    videos = sorted(_ready(video_tracks), key=_video_sort_key, reverse=True)
    audio = audio_track if audio_track is not None and audio_track.has_init else None
    tracks = videos + ([audio] if audio is not None else [])
    max_seg = max((t.max_segment_duration for t in tracks), default=2.0)
    max_part = max((t.part_target for t in tracks), default=0.5)
    starts = [t.segments[0].start for t in tracks if t.segments]
    ends = [t.segments[-1].start + t.segments[-1].duration for t in tracks if t.segments]

    mpd = ET.Element(
        "MPD",
        {
            "xmlns": "urn:mpeg:dash:schema:mpd:2011",
            "profiles": "urn:mpeg:dash:profile:isoff-live:2011",
            "type": "static" if ended else "dynamic",
            "availabilityStartTime": _iso(availability_start),
            "publishTime": _iso(now),
            "maxSegmentDuration": _xs_duration(max_seg),
            "minBufferTime": _xs_duration(max(max_part, 0.5)),
        },
    )
    pto_seconds = 0.0
    if ended:
        pto_seconds = min(starts, default=0.0)
        mpd.set("mediaPresentationDuration", _xs_duration(max(ends, default=0.0) - pto_seconds))
    else:
        window = min((sum(s.duration for s in t.segments) for t in tracks if t.segments), default=max_seg)
        mpd.set("minimumUpdatePeriod", _xs_duration(min(max_seg, 2.0)))
        mpd.set("timeShiftBufferDepth", _xs_duration(window))
        mpd.set("suggestedPresentationDelay", _xs_duration(latency_target))
        sd = ET.SubElement(mpd, "ServiceDescription", {"id": "0"})
        ET.SubElement(
            sd,
            "Latency",
            {
                "target": str(int(latency_target * 1000)),
                "min": str(int(latency_target * 750)),
                "max": str(int(latency_target * 2000)),
            },
        )
        ET.SubElement(sd, "PlaybackRate", {"min": "0.96", "max": "1.04"})

    period = ET.SubElement(mpd, "Period", {"id": "0", "start": "PT0S"})
    if videos:
        aset = ET.SubElement(
            period,
            "AdaptationSet",
            {
                "id": "0",
                "contentType": "video",
                "mimeType": "video/mp4",
                "segmentAlignment": "true",
                "startWithSAP": "1",
            },
        )
        for v in videos:
            t = v.track
            attrs = {
                "id": v.name,
                "bandwidth": str(max(v.bandwidth, 1)),
                "codecs": t.codec,
                "width": str(t.width),
                "height": str(t.height),
            }
            fr = v.frame_rate
            if fr:
                attrs["frameRate"] = _frame_rate_str(fr)
            rep = ET.SubElement(aset, "Representation", attrs)
            _segment_template(rep, v, ended, pto_seconds, include_in_progress)
    if audio is not None:
        a = audio.track
        aset = ET.SubElement(
            period,
            "AdaptationSet",
            {
                "id": "1",
                "contentType": "audio",
                "mimeType": "audio/mp4",
                "segmentAlignment": "true",
                "startWithSAP": "1",
            },
        )
        rep = ET.SubElement(
            aset,
            "Representation",
            {
                "id": audio.name,
                "bandwidth": str(max(audio.bandwidth, 1)),
                "codecs": a.codec,
                "audioSamplingRate": str(a.sample_rate),
            },
        )
        ET.SubElement(
            rep,
            "AudioChannelConfiguration",
            {"schemeIdUri": "urn:mpeg:mpegB:cicp:ChannelConfiguration", "value": str(a.channels or 2)},
        )
        _segment_template(rep, audio, ended, pto_seconds, include_in_progress)
    ET.SubElement(mpd, "UTCTiming", {"schemeIdUri": "urn:mpeg:dash:utc:http-iso:2014", "value": "/time"})
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(mpd, encoding="unicode") + "\n"


def _frame_rate_str(fr: float) -> str:
    if abs(fr - round(fr)) < 1e-3:
        return str(round(fr))
    for den in (1001, 1000):
        num = fr * den
        if abs(num - round(num)) < 0.5:
            return f"{round(num)}/{den}"
    return f"{fr:.3f}"


def _segment_template(
    rep: ET.Element, tp: TrackPackager, ended: bool, pto_seconds: float, include_in_progress: bool
) -> None:
    ts = tp.track.timescale
    segs = list(tp.segments)
    attrs = {
        "timescale": str(ts),
        "initialization": f"{tp.name}/{tp.init_uri(tp.init_version)}",
        "media": f"{tp.name}/seg$Number$.m4s",
        "startNumber": str(segs[0].msn if segs else tp.first_msn or 0),
    }
    if ended:
        attrs["presentationTimeOffset"] = str(round(pto_seconds * ts))
    else:
        ato = max(tp.target_segment - tp.part_target, 0.0)
        attrs["availabilityTimeOffset"] = _fmt(ato)
        attrs["availabilityTimeComplete"] = "false"
    tmpl = ET.SubElement(rep, "SegmentTemplate", attrs)
    timeline = ET.SubElement(tmpl, "SegmentTimeline")
    entries = [(s.start_ticks, s.duration_ticks) for s in segs]
    cur = tp.current
    if include_in_progress and not ended and cur is not None and cur.parts:
        entries.append((cur.start_ticks, max(cur.duration_ticks, round(tp.target_segment * ts))))
        if not segs:
            tmpl.set("startNumber", str(cur.msn))
    # Run-length encode equal, contiguous durations with @r.
    runs: list[list[int]] = []  # [t, d, r]
    for t, d in entries:
        if runs:
            last = runs[-1]
            if last[1] == d and last[0] + d * (last[2] + 1) == t:
                last[2] += 1
                continue
        runs.append([t, d, 0])
    for t, d, r in runs:
        s = {"t": str(t), "d": str(d)}
        if r:
            s["r"] = str(r)
        ET.SubElement(timeline, "S", s)
