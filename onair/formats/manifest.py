"""What the LL-HLS and LL-DASH renderers read of a packaged track, and the text helpers they share.

The renderers take these structural types rather than the packager's classes so that formats/
stays free of the rest of onair (onair.package.packager.TrackPackager, Segment and Part fit them).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol, TypeVar

from onair.formats.fmp4 import TrackInfo

__all__ = [
    "PartView",
    "SegmentView",
    "TrackView",
    "fmt_ms",
    "fmt_ms_ceil",
    "iso_ms",
    "ready",
    "videos_best_first",
]


class PartView(Protocol):
    """One partial segment (a moof+mdat pair)."""

    @property
    def duration(self) -> float: ...  # seconds

    @property
    def independent(self) -> bool: ...  # starts with a sync sample


class SegmentView(Protocol):
    """One media segment: complete, or in progress with the parts it has so far."""

    @property
    def msn(self) -> int: ...

    @property
    def start(self) -> float: ...  # seconds on the track timeline

    @property
    def duration(self) -> float: ...

    @property
    def start_ticks(self) -> int: ...  # track timescale units

    @property
    def duration_ticks(self) -> int: ...

    @property
    def program_date_time(self) -> datetime: ...

    @property
    def discontinuity(self) -> bool: ...  # first segment of a new encoder byte stream

    @property
    def init_version(self) -> int: ...  # which init segment its parts need

    @property
    def parts(self) -> Sequence[PartView]: ...


class TrackView(Protocol):
    """One output track: its init segment's description and its window of segments."""

    @property
    def name(self) -> str: ...  # also the URL path segment of its files

    @property
    def has_init(self) -> bool: ...

    @property
    def track(self) -> TrackInfo: ...  # only read when has_init

    @property
    def ended(self) -> bool: ...

    @property
    def segments(self) -> Sequence[SegmentView]: ...  # complete segments, oldest first

    @property
    def current(self) -> SegmentView | None: ...  # the segment in progress

    @property
    def first_msn(self) -> int | None: ...

    @property
    def init_version(self) -> int: ...  # init segment of the current byte stream

    @property
    def discontinuity_sequence(self) -> int: ...

    @property
    def target_segment(self) -> float: ...  # configured segment duration

    def segment_target(self, msn: int) -> float: ...  # nominal duration of that segment

    @property
    def target_duration(self) -> int: ...  # EXT-X-TARGETDURATION

    @property
    def max_segment_duration(self) -> float: ...

    @property
    def part_target(self) -> float: ...

    @property
    def bandwidth(self) -> int: ...  # peak bits/s

    @property
    def average_bandwidth(self) -> int: ...

    @property
    def frame_rate(self) -> float | None: ...

    def init_uri(self, version: int) -> str: ...

    def last_part_ref(self) -> tuple[int, int] | None: ...  # (msn, part index) of the newest part

    def next_part_ref(self) -> tuple[int, int]: ...  # the part to hint with EXT-X-PRELOAD-HINT


_T = TypeVar("_T", bound=TrackView)


def fmt_ms(x: float) -> str:
    """Seconds with millisecond precision."""
    return f"{x:.3f}"


def fmt_ms_ceil(x: float) -> str:
    """Seconds rounded up to the millisecond (for lower bounds a player must respect)."""
    return f"{math.ceil(x * 1000 - 1e-6) / 1000:.3f}"


def iso_ms(dt: datetime) -> str:
    """UTC ISO 8601 with milliseconds and a Z (EXT-X-PROGRAM-DATE-TIME, MPD times)."""
    dt = dt.astimezone(UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def ready(track: _T | None) -> _T | None:
    """`track` if its init segment is known (only then can a manifest describe it)."""
    return track if track is not None and track.has_init else None


def videos_best_first(tracks: Iterable[_T]) -> list[_T]:
    """The video tracks with an init segment, by resolution then bandwidth, highest first."""
    return sorted(
        (t for t in tracks if t.has_init), key=lambda t: (t.track.width * t.track.height, t.bandwidth), reverse=True
    )
