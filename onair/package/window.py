"""How many segments a live playlist lists: the short live window, or the whole DVR window."""

from __future__ import annotations

import math

SEGMENT_SECONDS = 2.0


def dvr_window_segments(dvr_seconds: int) -> int:
    return math.ceil(dvr_seconds / SEGMENT_SECONDS) + 1
