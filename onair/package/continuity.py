"""Where a stream's live output has got to, so that another node can carry it on (sans-IO).

When a stream's feed moves to another node (its node died, the encoder reconnected elsewhere), the new origin's
playlists must go on from the old ones: later media sequence numbers, the discontinuity count, the same
timeline and wall-clock anchor (the DASH availabilityStartTime), a discontinuity where the new encoder starts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from onair.package.live import LiveStreamPackage

__all__ = ["OutputContinuity", "continuity_of", "resume"]


@dataclass(frozen=True, slots=True)
class OutputContinuity:
    last_msn: int  # the newest segment with parts (complete or not)
    discontinuities: int  # EXT-X-DISCONTINUITY tags so far, those slid out of the window included
    timeline_end: float  # seconds: where the newest part ends on the output's timeline
    anchor: datetime  # wall clock of timeline time 0

    def to_json(self) -> dict[str, Any]:
        return {"last_msn": self.last_msn, "discontinuities": self.discontinuities,
                "timeline_end": self.timeline_end, "anchor": self.anchor.isoformat()}

    @classmethod
    def from_json(cls, data: Any) -> OutputContinuity | None:
        """None for anything that is not a well-formed record (it comes from another process)."""
        if not isinstance(data, dict):
            return None
        msn, count, end, anchor = (data.get(k) for k in ("last_msn", "discontinuities", "timeline_end", "anchor"))
        if not (isinstance(msn, int) and isinstance(count, int) and msn >= 0 and count >= 0
                and isinstance(end, int | float) and math.isfinite(end) and end >= 0 and isinstance(anchor, str)):
            return None
        try:
            when = datetime.fromisoformat(anchor)
        except ValueError:
            return None
        return cls(msn, count, float(end), when) if when.tzinfo is not None else None


def continuity_of(package: LiveStreamPackage) -> OutputContinuity | None:
    """The output so far, from its leading track (None before it has a segment)."""
    renditions = package.renditions()
    tp = renditions[0].packager if renditions else None
    if tp is None or tp.last_msn is None or tp.wallclock_anchor is None:
        return None
    newest = tp.current if tp.current is not None and tp.current.parts else tp.segments[-1]
    listed = sum(1 for s in tp.segments if s.discontinuity)
    return OutputContinuity(tp.last_msn, tp.discontinuity_sequence + listed, newest.start + newest.duration,
                            tp.wallclock_anchor)


def resume(package: LiveStreamPackage, record: OutputContinuity) -> None:
    """Start `package` (no input yet) where `record` left off. The record may be up to a report period old: the
    old origin may have begun one more segment since, so numbering skips one rather than reuse its number. The
    old tags have all slid out of the new window; the new first segment's own tag is the next one."""
    for rendition in package.renditions():
        rendition.packager.resume(record.last_msn + 2, record.discontinuities, record.timeline_end,
                                  record.anchor)
