"""What a running ffmpeg reports about itself: ``-progress`` blocks and its stderr header (pure).

Both turn into field changes of :class:`onair.transcode.transcoder.TranscoderStats`.
"""

from __future__ import annotations

from onair.formats.probe import parse_ffmpeg_input_info

HEADER_MAX_LINES = 200  # the input description is near the top; never buffer a chatty stderr


def parse_progress_value(key: str, value: str) -> float | None:
    value = value.strip().rstrip("x").strip()
    if not value or value == "N/A":
        return None
    try:
        return float(value)
    except ValueError:
        return None


class ProgressBlocks:
    """Splits the ``-progress`` byte stream into its key=value blocks (each ends with ``progress=``)."""

    def __init__(self) -> None:
        self._block: dict[str, str] = {}
        self._partial = b""

    def feed(self, chunk: bytes) -> list[dict[str, str]]:
        """The blocks completed by ``chunk`` (chunks may split lines anywhere)."""
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        done: list[dict[str, str]] = []
        for raw in lines:
            key, sep, value = raw.decode("utf-8", "replace").strip().partition("=")
            if not sep:
                continue
            self._block[key] = value
            if key == "progress":
                done.append(self._block)
                self._block = {}
        return done


def progress_changes(block: dict[str, str]) -> dict[str, object]:
    """Stats fields a progress block gives a value for (speed, fps, frames, out_time_s)."""
    changes: dict[str, object] = {}
    speed = parse_progress_value("speed", block.get("speed", ""))
    fps = parse_progress_value("fps", block.get("fps", ""))
    if speed is not None:
        changes["speed"] = speed
    if fps is not None:
        changes["fps"] = fps
    frame = block.get("frame", "")
    if frame.strip().isdigit():
        changes["frames"] = int(frame)
    out_us = block.get("out_time_us", "").strip()
    if out_us.lstrip("-").isdigit():
        changes["out_time_s"] = int(out_us) / 1e6
    return changes


class StderrHeader:
    """Collects ffmpeg's stderr lines up to the end of its input description."""

    def __init__(self) -> None:
        self._lines: list[str] = []
        self.done = False

    def feed(self, line: str) -> str | None:
        """The header text once ``line`` completes it (only once), else None."""
        if self.done:
            return None
        self._lines.append(line)
        if line.startswith(("Output #", "Stream mapping")) or len(self._lines) > HEADER_MAX_LINES:
            self.done = True
            return "\n".join(self._lines)
        return None


def header_changes(text: str) -> dict[str, object]:
    """Source fields from ffmpeg's own view of the input (it supersedes the head probe where known)."""
    info = parse_ffmpeg_input_info(text)
    changes: dict[str, object] = {}
    if info.width and info.height:
        changes.update(source_width=info.width, source_height=info.height)
    if info.fps:
        changes["source_fps"] = info.fps
    return changes
