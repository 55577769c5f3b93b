"""ABR ladder definition and planning (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rendition:
    """One video rendition of the ladder.

    ``width``/``height`` are given for a landscape source; :func:`plan_ladder` adapts them to the
    actual source aspect ratio and orientation. ``name`` is the quality name ("720p"), which stays
    the same for vertical sources even though their pixel height is then the long side.
    """

    name: str
    width: int
    height: int
    video_kbps: int
    fps_max: float = 60.0


def fps_max_for(height: int) -> float:
    """Frame-rate cap of a quality: 60 fps from 720p up, 30 fps below (product rule)."""
    return 60.0 if height >= 720 else 30.0


def _quality(name: str, width: int, height: int, video_kbps: int) -> Rendition:
    return Rendition(name, width, height, video_kbps, fps_max_for(height))


# System qualities (defaults of the commercial product).
R1080P = _quality("1080p", 1920, 1080, 4050)
R720P = _quality("720p", 1280, 720, 1800)
R480P = _quality("480p", 854, 480, 800)
R360P = _quality("360p", 640, 360, 450)
R240P = _quality("240p", 426, 240, 200)
VOD1080 = _quality("vod1080", 1920, 1080, 4050)
VOD720 = _quality("vod720", 1280, 720, 1800)
VOD360 = _quality("vod360", 640, 360, 450)


@dataclass(frozen=True)
class SystemQuality:
    """A system quality as stored in a quality set: its stable id and its rendition."""

    id: int
    rendition: Rendition

    def as_row(self) -> dict[str, Any]:
        """The stored ``qualities`` entry; ``fps_max`` is not stored, it follows the height."""
        r = self.rendition
        return {"id": self.id, "name": r.name, "width": r.width, "height": r.height, "video_kbps": r.video_kbps}


@dataclass(frozen=True)
class SystemLadder:
    """A system quality set seeded into the database; ids are stable."""

    id: int
    kind: str  # "live" or "vod"
    name: str
    default: bool
    qualities: tuple[SystemQuality, ...]

    @property
    def renditions(self) -> tuple[Rendition, ...]:
        return tuple(q.rendition for q in self.qualities)

    def as_row(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "name": self.name, "default": self.default,
                "qualities": [q.as_row() for q in self.qualities]}


Q1080P = SystemQuality(1, R1080P)
Q720P = SystemQuality(2, R720P)
Q480P = SystemQuality(3, R480P)
Q360P = SystemQuality(4, R360P)
Q240P = SystemQuality(5, R240P)
QVOD1080 = SystemQuality(11, VOD1080)
QVOD720 = SystemQuality(12, VOD720)
QVOD360 = SystemQuality(13, VOD360)

# System ladders (H.264 + AAC). Names follow the product's rendition naming.
LIVE_ABR_1080P = SystemLadder(1, "live", "Live ABR 1080p (H.264/AAC)", True, (Q1080P, Q720P, Q480P, Q360P))
LIVE_ABR_720P = SystemLadder(2, "live", "Live ABR 720p (H.264/AAC)", False, (Q720P, Q480P, Q360P))
LIVE_LOW_480P = SystemLadder(3, "live", "Live low bitrate 480p/360p/240p", False, (Q480P, Q360P, Q240P))
VOD_ABR_1080P = SystemLadder(4, "vod", "VOD ABR 1080p (H.264/AAC)", True, (QVOD1080, QVOD720, QVOD360))
SYSTEM_LADDERS: tuple[SystemLadder, ...] = (LIVE_ABR_1080P, LIVE_ABR_720P, LIVE_LOW_480P, VOD_ABR_1080P)
DEFAULT_LADDER: tuple[Rendition, ...] = LIVE_ABR_1080P.renditions
AUDIO_KBPS = 128
AUDIO_TRACK = "audio"


def renditions_from_qualities(qualities: Sequence[Mapping[str, Any]]) -> list[Rendition]:
    """The renditions of a stored quality set's ``qualities`` (rows as :meth:`SystemQuality.as_row`)."""
    return [_quality(str(q["name"]), int(q["width"]), int(q["height"]), int(q["video_kbps"])) for q in qualities]


def _even_floor(v: float) -> int:
    return max(2, int(v) // 2 * 2)


def _even_round(v: float) -> int:
    return max(2, int(round(v / 2.0)) * 2)


def plan_ladder(renditions: Sequence[Rendition], source_width: int, source_height: int) -> list[Rendition]:
    """Select and size the renditions for a source; never upscales.

    The ladder's ``height`` is compared to the source's short side (so a 720x1280 vertical source
    gets "720p" and below). Output sizes follow the source aspect ratio (snapped to the ladder's
    nominal width when within 2 px, e.g. 854x480 for 16:9), are even (x264/yuv420p need it) and
    never exceed the source size. Result is sorted from highest to lowest. If no rendition fits
    (tiny source), the lowest one is kept at the source size and renamed ``<short side>p``.
    """
    if source_width <= 0 or source_height <= 0:
        raise ValueError(f"invalid source size {source_width}x{source_height}")
    if not renditions:
        return []
    vertical = source_height > source_width
    short_src, long_src = (source_width, source_height) if vertical else (source_height, source_width)
    max_short, max_long = _even_floor(short_src), _even_floor(long_src)

    def place(r: Rendition, name: str, short: int, long: int, nominal_long: int) -> Rendition:
        if abs(long - nominal_long) <= 2:
            long = nominal_long
        long, short = min(long, max_long), min(short, max_short)
        w, h = (short, long) if vertical else (long, short)
        return Rendition(name, w, h, r.video_kbps, r.fps_max)

    plan: list[Rendition] = []
    seen: set[str] = set()
    for r in sorted(renditions, key=lambda r: r.height, reverse=True):
        if r.height > short_src or r.name in seen:
            continue
        seen.add(r.name)
        short = _even_floor(r.height)
        plan.append(place(r, r.name, short, _even_round(short * long_src / short_src), r.width))
    if not plan:
        lowest = min(renditions, key=lambda r: r.height)
        plan.append(place(lowest, f"{max_short}p", max_short, max_long, max_long))
    return plan


def transcoded_quality_names(plan: Sequence[Rendition]) -> list[str]:
    """Product quality names: ``audioa`` then ``<name>a`` by ascending height, e.g. ``360pa``."""
    ordered = sorted(plan, key=lambda r: min(r.width, r.height))
    return ["audioa", *(f"{r.name}a" for r in ordered)]
