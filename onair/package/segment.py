"""What the packager makes of a track: segments of parts (moof+mdat pairs), with their timing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

__all__ = ["Part", "Segment", "bitrates", "evict_old"]


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

    def drop_bytes(self) -> None:
        """Evict: drop the media bytes, keep the timing metadata that playlists list."""
        self.evicted = True
        self._data = None
        self.parts = [Part(b"", p.duration, p.independent, p.decode_time, p.duration_ticks, p.sample_count)
                      for p in self.parts]


def bitrates(segments: Sequence[Segment], current: Segment | None, count: int) -> tuple[int, int]:
    """(peak, average) bits/s over the newest `count` complete segments that still hold their bytes, or over
    the segment in progress when there are none."""
    recent = [s for s in list(segments)[-count:] if not s.evicted and s.duration > 0]
    if not recent and current is not None and current.parts and current.duration > 0:
        recent = [current]
    duration = sum(s.duration for s in recent)
    peak = max((s.size * 8 / s.duration for s in recent), default=0.0)
    return int(peak), int(sum(s.size for s in recent) * 8 / duration) if duration > 0 else 0


def evict_old(segments: Sequence[Segment], keep: int) -> None:
    """Drop the bytes of all but the newest `keep` segments (walking back to the first already evicted)."""
    for i in range(len(segments) - keep - 1, -1, -1):
        if segments[i].evicted:
            break
        segments[i].drop_bytes()
