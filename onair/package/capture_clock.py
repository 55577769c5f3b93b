"""The capture clock of one track: which wall-clock moment each decode time stands for (sans-IO).

A byte stream's `origin` is when the media at its own decode time 0 reached the node (the source's
first media, carried through the transcoder, whose output timestamps start at the input's first
one). Program date-times are origin + media time, never the moment the encoder's output arrives.
The `anchor` is the wall clock of decode time 0 of the track's (shifted) timeline: the DASH
availabilityStartTime. Media cannot have been captured after it reached the node, so a source
running ahead of real time (a burst, a replayed GOP) pulls both back instead of stamping the future.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from onair.package.segment import Segment

__all__ = ["CaptureClock", "follow_clock", "rebase_offset"]


class CaptureClock:
    def __init__(self) -> None:
        self.anchor: datetime | None = None
        self.origin: datetime | None = None  # of the current byte stream
        self._next_origin: datetime | None = None
        self._shift = 0  # ticks the current byte stream's decode times are shifted by on the timeline

    def expect(self, origin: datetime | None) -> None:
        """The origin of the next byte stream (None: unknown, its first fragment's arrival stands in)."""
        self._next_origin = origin

    def begin(self, now: datetime, own_start: int, timescale: int) -> None:
        """The next byte stream's first fragment (its own decode time `own_start`) is here."""
        origin, self._next_origin = self._next_origin, None
        self.origin = origin if origin is not None else now - timedelta(seconds=own_start / timescale)
        if self.anchor is None:
            self.anchor = self.origin
        self._shift = 0

    def timeline_ticks(self, own_start: int, timescale: int) -> int | None:
        """Where on the timeline the current stream's first fragment was captured (None: no timeline yet)."""
        if self.anchor is None or self.origin is None:
            return None
        return round((self.origin - self.anchor).total_seconds() * timescale) + own_start

    def shifted(self, shift: int) -> None:
        """The current byte stream's decode times are moved by `shift` ticks onto the timeline."""
        self._shift = shift

    def pdt(self, ticks: int, timescale: int) -> datetime:
        """Capture time of timeline decode time `ticks` of the current byte stream."""
        assert self.origin is not None
        return self.origin + timedelta(seconds=(ticks - self._shift) / timescale)

    def pull_back(self, now: datetime, end: int, timescale: int) -> timedelta:
        """The media up to timeline decode time `end` has reached the node by `now`: no clock may say
        it was captured later. Returns how far the program date-times moved back (zero mostly)."""
        assert self.origin is not None and self.anchor is not None
        ahead = self.pdt(end, timescale) - now
        if ahead > timedelta(0):
            self.origin -= ahead
        timeline_ahead = self.anchor + timedelta(seconds=end / timescale) - now
        if timeline_ahead > timedelta(0):
            self.anchor -= timeline_ahead
        return max(ahead, timedelta(0))


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


def follow_clock(seg: Segment, lead: Segment) -> bool:
    """Stamp `seg` from `lead`, its leader's segment of the same number: the tracks of one encoder share its
    clock, so the date-times differ by the media time between their starts (players place renditions by
    them: hls.js puts the audio on the video's timeline by date-time, and two clocks pulled back tens of ms
    apart left it missing a short audio part). False when it had that stamp already, or the two are not
    of one byte stream."""
    if lead.discontinuity != seg.discontinuity or abs(seg.start - lead.start) >= 1:
        return False
    pdt = lead.program_date_time + timedelta(seconds=seg.start - lead.start)
    changed, seg.program_date_time = pdt != seg.program_date_time, pdt
    return changed
