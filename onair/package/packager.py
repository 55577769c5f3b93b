"""Sans-IO CMAF packager, one per output track.

ffmpeg writes one fragmented MP4 per track (ftyp, moov, then moof+mdat pairs).
Each moof+mdat pair becomes one LL-HLS partial segment; parts are grouped into
segments that start on a sync sample. onair.formats.hls and onair.formats.dash render
the playlists and MPD of a TrackPackager (it fits their TrackView protocol).
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from onair.formats.fmp4 import BoxReader, FMP4Error, FragmentInfo, TrackInfo, parse_fragment, parse_init, shift_tfdt
from onair.formats.fmp4.split import sample_run, split_fragment
from onair.package.capture_clock import CaptureClock, follow_clock, rebase_offset
from onair.package.segment import Part, Segment, bitrates, evict_old

__all__ = [
    "Part",
    "Segment",
    "TrackPackager",
    "rebase_offset",
]

_FORCE_CUT_FACTOR = 4.0  # target durations without a sync sample after which we cut anyway (bounds memory)
_BANDWIDTH_SEGMENTS = 6  # segments of the bandwidth estimate
# Audio cut at a video boundary leaves no part under this many samples (5 AAC frames, ~0.1 s; else the cut
# moves to the fragment's edge): hls.js loaded a 1-2 frame audio part and then never the next one.
MIN_SPLIT_SAMPLES = 5


def _utcnow() -> datetime:
    return datetime.now(UTC)


SegmentCallback = Callable[["TrackPackager", Segment], None]


class TrackPackager:
    """Turns one ffmpeg fMP4 byte stream into an init segment plus a sliding window of segments/parts."""

    def __init__(
        self,
        name: str,
        *,
        target_segment: float = 2.0,
        first_segment: float | None = None,
        window_segments: int,
        memory_segments: int | None = None,
        on_segment_complete: SegmentCallback | None = None,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        """`window_segments` complete segments are listed in playlists (the DVR window when DVR is on);
        only the newest `memory_segments` of them keep their bytes in memory (default: all). A video track
        cuts each byte stream's first segment after `first_segment` (its encoder forces an early keyframe so
        that a player can start sooner), the others after `target_segment`."""
        if target_segment <= 0:
            raise ValueError("target_segment must be > 0")
        if window_segments < 1:
            raise ValueError("window_segments must be >= 1")
        self.name = name
        self.target_segment = target_segment
        self.first_segment = target_segment if first_segment is None else min(first_segment, target_segment)
        self.window_segments = window_segments
        self.memory_segments = window_segments if memory_segments is None else max(1, memory_segments)
        self.on_segment_complete = on_segment_complete
        # The track whose segment boundaries this one follows (audio follows the video): cut at the
        # leader's segment starts, a fragment split at the sample nearest them, the same numbers.
        self.leader: TrackPackager | None = None
        self._stream_first: tuple[int, float] | None = None  # (msn, start) of the byte stream's first segment
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
        self.clock = CaptureClock()  # program date-times and the DASH anchor
        self.ended = False
        # Continuity across encoder restarts/switches (see restart() and rebase_offset()).
        self.inits: dict[int, bytes] = {}
        self.init_version = 0
        self.discontinuity_sequence = 0  # discontinuities that slid out of the window
        self._restarting = False  # a new ftyp arrived; its moov is awaited
        self._rebase = False  # the next fragment starts a new timeline
        self._offset = 0  # added to decode times of the current byte stream
        self._discontinuity_next = False
        self._resume_end: float | None = None  # seconds: the timeline end of another node's output, resumed

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
    def wallclock_anchor(self) -> datetime | None:
        """Wall clock of (shifted) decode time 0: the DASH timeline's anchor (availabilityStartTime)."""
        return self.clock.anchor

    @property
    def max_part_duration(self) -> float:
        return self._max_part

    @property
    def part_target(self) -> float:
        """PART-TARGET: max part duration rounded up to the millisecond (printed parts never exceed it)."""
        return math.ceil(self._max_part * 1000 - 1e-6) / 1000 if self._max_part > 0 else 0.5

    @property
    def target_duration(self) -> int:
        """EXT-X-TARGETDURATION: longest segment rounded to the nearest integer (2.048 s AAC keeps 2)."""
        return max(1, math.floor(max(self._max_segment, self.target_segment) + 0.5))

    @property
    def max_segment_duration(self) -> float:
        return max(self._max_segment, self.target_segment)

    @property
    def frame_rate(self) -> float | None:
        ok = self.is_video and self._sample_ticks > 0
        return self._samples * self.track.timescale / self._sample_ticks if ok else None

    @property
    def bandwidth(self) -> int:
        """Peak bits/s over recent complete segments (falls back to the in-progress segment)."""
        return bitrates(self.segments, self.current, _BANDWIDTH_SEGMENTS)[0]

    @property
    def average_bandwidth(self) -> int:
        return bitrates(self.segments, self.current, _BANDWIDTH_SEGMENTS)[1]

    @property
    def last_msn(self) -> int | None:
        """MSN of the newest segment that has at least one part (in progress or complete)."""
        if self.current is not None and self.current.parts:
            return self.current.msn
        return self.segments[-1].msn if self.segments else None

    @property
    def first_msn(self) -> int | None:
        if self.segments:
            return self.segments[0].msn
        return self.current.msn if self.current is not None and self.current.parts else None

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
        idx = msn - self.segments[0].msn if self.segments else -1
        if 0 <= idx < len(self.segments) and self.segments[idx].msn == msn:
            return self.segments[idx]
        return None

    def get_part(self, msn: int, part_index: int) -> Part | None:
        seg = self.get_segment(msn)
        if seg is None or not 0 <= part_index < len(seg.parts):
            return None
        return seg.parts[part_index]

    @staticmethod
    def init_uri(version: int) -> str:
        return "init.mp4" if version == 0 else f"init-{version}.mp4"

    def set_origin(self, origin: datetime | None) -> None:
        """Capture clock of the byte stream that has not delivered a fragment yet (the first one, or
        the one after restart()): `origin` is when the media at its decode time 0 reached the node."""
        self.clock.expect(origin)

    def restart(self, origin: datetime | None = None) -> None:
        """The producer starts a new fMP4 byte stream (ffmpeg restarted or switched to another input).

        Drops any half-received box of the old stream; the new ftyp/moov and fragments that follow
        continue this track: msn keeps counting, decode times are shifted to continue, and the next
        segment is marked as a discontinuity. `origin`: see set_origin().
        """
        self.clock.expect(origin)
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
        if self._track is None or self._restarting or btype == "ftyp":
            self._on_init_box(btype, data)
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

    def _on_init_box(self, btype: str, data: bytes) -> None:
        """A box while the init segment (ftyp+moov) of the first or of a new byte stream is awaited."""
        if btype == "ftyp":
            if self._track is not None:
                # A new byte stream begins on this pipe (restarted/switched encoder): its moov follows.
                # (The box reader is at a box boundary here, so unlike restart() it stays as it is.)
                self._moof = self._frag = None
                self._restarting = True
            self._init_parts = [data]
        elif btype == "moov":
            if self._track is None:
                self._init_parts.append(data)
                self._first_init(b"".join(self._init_parts))
            else:
                self._new_init(b"".join([*self._init_parts, data]))
        elif btype in ("moof", "mdat"):
            raise FMP4Error(f"{self.name}: {btype} before moov")

    def _first_init(self, init: bytes) -> None:
        self._track = parse_init(init)
        self.init = init
        self.inits[0] = init
        if self._resume_end is not None:  # the first fragment goes on the resumed timeline (_start_timeline)
            self._next_decode, self._rebase = round(self._resume_end * self._track.timescale), True

    def resume(self, next_msn: int, discontinuities: int, timeline_end: float, anchor: datetime) -> None:
        """Continue the output another node made of this stream, before any input: numbering after its
        segments, a discontinuity, the same timeline (its end in seconds) and wall-clock anchor."""
        self._next_msn, self.discontinuity_sequence = next_msn, discontinuities
        self._resume_end, self.clock.anchor = timeline_end, anchor

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
            return cur_dur + frag_ticks / ts / 2 >= self.segment_target(cur.msn)
        if self.leader is not None:
            sample = self._sample_ticks / self._samples if self._samples else 0.0
            return (frag_start + sample * (MIN_SPLIT_SAMPLES - 0.5) >= self._next_boundary(cur)
                    or cur_dur >= _FORCE_CUT_FACTOR * self.target_segment)
        # Without a leader: cut on the fragment nearest each multiple of target on the absolute timeline so
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
        if self._rebase and not self._start_timeline(start, frag):
            return 0
        halves = self._split_at_boundary(data, frag, start + self._offset)
        if halves is not None:
            return sum(self._add_fragment(half, parse_fragment(half, track)) for half in halves)
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
        if self.clock.origin is None:
            self.clock.begin(now, start, ts)
        if cur is not None and self._should_cut(cur, start, frag.duration, sync=frag.first_sample_sync):
            self._complete(cur)
            cur = None
        if cur is None:
            cur = self._open_segment(start)
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
        self.pull_clock_back(now, self._next_decode / ts)
        self.follow_leader_clock()
        self._max_part = max(self._max_part, part.duration)
        self._samples += frag.sample_count
        self._sample_ticks += frag.duration
        return 1

    def segment_target(self, msn: int) -> float:
        """Nominal duration of segment `msn`: short for the first of a video byte stream, else one target."""
        first = self._stream_first
        short = first is not None and first[0] == msn and self.is_video
        return self.first_segment if short else self.target_segment

    def _next_boundary(self, cur: Segment) -> int:
        """Timeline ticks where the segment after `cur` begins: where the leader's segment of that number
        does; before it is there, whole targets after its newest segment of this byte stream (the first is
        shorter), or after this track's first segment of the stream."""
        msn = cur.msn + 1
        ref = first = self._stream_first or (cur.msn, cur.start)
        lead = self.leader
        if lead is not None and (seg := lead.get_segment(min(msn, lead.last_msn or 0))) is not None:
            if seg.msn == msn:
                return round(seg.start * cur.timescale)
            if seg.msn >= ref[0]:
                ref = (seg.msn, seg.start)
        elapsed = (msn - ref[0]) * self.target_segment
        if lead is not None and ref[0] == first[0]:
            # the leader's first segment ends at its first frame at or after first_segment
            fps = lead.frame_rate
            short = math.ceil(lead.first_segment * fps - 0.05) / fps if fps else lead.first_segment
            elapsed -= self.target_segment - short
        return round((ref[1] + elapsed) * cur.timescale)

    def _split_at_boundary(self, data: bytes, frag: FragmentInfo, start: int) -> tuple[bytes, bytes] | None:
        """The fragment (timeline start `start`) cut at the sample nearest the next boundary, when that
        falls inside it; None when it needs no cut (or cannot be cut: then its edge will do)."""
        cur = self.current
        if self.leader is None or cur is None or self.is_video or frag.sample_count < 2:
            return None
        boundary = self._next_boundary(cur)
        if not start < boundary < start + frag.duration:
            return None
        run = sample_run(data, self.track)
        if run is None:
            return None
        ends = list(itertools.accumulate(run.durations, initial=0))
        n = min(range(len(ends)), key=lambda i: abs(start + ends[i] - boundary))
        return split_fragment(run, n) if MIN_SPLIT_SAMPLES <= n <= len(run.durations) - MIN_SPLIT_SAMPLES else None

    def drop_in_progress(self) -> None:
        """Forget the segment in progress (the stream ends: its tail past the other renditions' end)."""
        if self.current is not None and self.current.parts:
            self.current, self._next_msn = None, self._next_msn - 1

    def _start_timeline(self, start: int, frag: FragmentInfo) -> bool:
        """First fragment of a new byte stream: fix its decode-time offset and close the segment in
        progress. False when the fragment must be dropped (it does not start on a sync sample)."""
        track = self.track
        if track.is_video and not frag.first_sample_sync:
            return False  # the new stream's first segment must start on a sync sample too
        self.clock.begin(self._clock(), start, track.timescale)
        # the new stream's first fragment goes where its capture time falls on the timeline
        self._offset = rebase_offset(start, self._next_decode, self.clock.timeline_ticks(start, track.timescale))
        self.clock.shifted(self._offset)
        self._rebase = False
        self._discontinuity_next = True
        if self.current is not None and self.current.parts:
            self._complete(self.current)
        self.current = None
        return True

    def _open_segment(self, start: int) -> Segment:
        # PDT from the capture clock + decode time: consecutive segments stay exactly one EXTINF
        # apart even when ffmpeg delivers its first GOPs in a burst
        ts = self.track.timescale
        pdt = self.clock.pdt(start, ts)
        seg = Segment(msn=self._next_msn, start_ticks=start, timescale=ts, program_date_time=pdt,
                      discontinuity=self._discontinuity_next, init_version=self.init_version)
        if self._discontinuity_next or self._stream_first is None:
            self._stream_first = (seg.msn, seg.start)
        self._discontinuity_next = False
        self._next_msn += 1
        self.current = seg
        self.follow_leader_clock()
        return seg

    def pull_clock_back(self, now: datetime, end: float) -> None:
        """The media up to timeline second `end` (of this track or a follower) has reached the node by `now`:
        the capture clock may move back, and the in-progress segment's date-time with it. A follower pulls
        its leader's clock too: one clock for the encoder, no track's media stamped after it arrived."""
        if self.clock.origin is not None:
            self.clock.pull_back(now, round(end * self.track.timescale), self.track.timescale)
            if (cur := self.current) is not None:
                cur.program_date_time = self.clock.pdt(cur.start_ticks, cur.timescale)
        if self.leader is not None:
            self.leader.pull_clock_back(now, end)

    def follow_leader_clock(self) -> None:
        """Date-times from the leader's, newest segments first (its in-progress one may have moved since)."""
        if self.leader is None:
            return
        for seg in [*([self.current] if self.current is not None else []), *reversed(self.segments)]:
            lead = self.leader.get_segment(seg.msn)
            if lead is not None and not follow_clock(seg, lead) and seg.complete:
                break

    def _complete(self, seg: Segment) -> None:
        seg.complete = True
        if self.current is seg:
            self.current = None
        self._max_segment = max(self._max_segment, seg.duration)
        self.segments.append(seg)
        while len(self.segments) > self.window_segments:
            self.discontinuity_sequence += self.segments.popleft().discontinuity  # a tag slid out: counted
        if len(self.inits) > 1:
            used = {s.init_version for s in self.segments} | {self.init_version}
            for version in [v for v in self.inits if v not in used]:
                del self.inits[version]
        if self.on_segment_complete is not None:
            self.on_segment_complete(self, seg)
        evict_old(self.segments, self.memory_segments)


    def trim(self, keep: int) -> list[int]:
        """Drop all but the newest `keep` complete segments (DVR cleanup); returns the dropped MSNs."""
        dropped: list[int] = []
        while len(self.segments) > max(0, keep):
            seg = self.segments.popleft()
            self.discontinuity_sequence += seg.discontinuity  # as when it slides out of the window
            dropped.append(seg.msn)
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
