"""ABR ladder definition and planning (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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


# System quality sets (defaults of the commercial product).
R1080P = Rendition("1080p", 1920, 1080, 4050, 60.0)
R720P = Rendition("720p", 1280, 720, 1800, 60.0)
R480P = Rendition("480p", 854, 480, 800, 30.0)
R360P = Rendition("360p", 640, 360, 450, 30.0)
DEFAULT_LADDER: tuple[Rendition, ...] = (R1080P, R720P, R480P, R360P)
AUDIO_KBPS = 128
AUDIO_TRACK = "audio"


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
