"""What other nodes report of the live streams they receive (pure: messages and time in, answers out)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from onair.hub.live_stream import LiveStatus

__all__ = ["STALE_S", "RemoteLive", "StatusBoard", "snapshot_entry"]

STALE_S = 3.0  # nodes report every second: three missed reports and the figures are gone


@dataclass(frozen=True)
class RemoteLive:
    node: str
    status: LiveStatus
    recording_duration: float | None
    viewers: int


def snapshot_entry(status: LiveStatus, recording_duration: float | None, viewers: int) -> dict[str, Any]:
    """One stream of a node's report, as JSON."""
    return {"transcoding_speed": status.transcoding_speed, "frame_rate": status.frame_rate,
            "video_width": status.video_width, "video_height": status.video_height,
            "transcoded_qualities": status.transcoded_qualities, "recording_duration": recording_duration,
            "viewers": viewers}


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _parse(node: str, entry: Any) -> RemoteLive | None:
    if not isinstance(entry, dict):
        return None
    qualities = entry.get("transcoded_qualities")
    if not (isinstance(qualities, list) and all(isinstance(q, str) for q in qualities)):
        qualities = None
    viewers = entry.get("viewers")
    status = LiveStatus(transcoding_speed=_number(entry.get("transcoding_speed")),
                        frame_rate=_number(entry.get("frame_rate")), video_width=_number(entry.get("video_width")),
                        video_height=_number(entry.get("video_height")), transcoded_qualities=qualities)
    return RemoteLive(node=node, status=status, recording_duration=_number(entry.get("recording_duration")),
                      viewers=viewers if isinstance(viewers, int) and not isinstance(viewers, bool) and viewers >= 0
                      else 0)


class StatusBoard:
    """The latest report of every other node; a stream's entry lasts STALE_S after the report that carried it."""

    def __init__(self, stale_s: float = STALE_S) -> None:
        self.stale_s = stale_s
        self._entries: dict[int, tuple[float, RemoteLive]] = {}

    def report(self, node: str, streams: Any, now: float) -> None:
        """A node's report: {stream id: snapshot_entry}; streams it no longer lists are no longer its."""
        for sid in [sid for sid, (_, live) in self._entries.items() if live.node == node]:
            del self._entries[sid]
        if not isinstance(streams, dict):
            return
        for key, entry in streams.items():
            parsed = _parse(node, entry)
            if parsed is not None and str(key).isdigit():
                self._entries[int(key)] = (now, parsed)

    def get(self, stream_id: int, now: float) -> RemoteLive | None:
        found = self._entries.get(stream_id)
        if found is None or now - found[0] > self.stale_s:
            return None
        return found[1]
