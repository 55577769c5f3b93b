"""Parsing of source stream information from ffmpeg stderr / ffprobe JSON (pure functions)."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceInfo:
    width: int | None = None
    height: int | None = None
    fps: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None

    @property
    def has_video(self) -> bool:
        return self.video_codec is not None

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None


# "  Stream #0:0: Video: h264 (High), yuv420p(progressive), 1280x720 [SAR 1:1 DAR 16:9], 25 fps, ..."
# "  Stream #0:1[0x101](und): Audio: aac (LC) ([15][0][0][0] / 0x000F), 48000 Hz, stereo, fltp"
_STREAM_RE = re.compile(r"^\s*Stream #(\d+):\d+\S*?:\s*(Video|Audio):\s*([A-Za-z0-9_\-]+)(.*)$")
_SIZE_RE = re.compile(r"(?:^|[\s,])(\d{2,5})x(\d{2,5})(?=[\s,\[]|$)")
_FPS_RE = re.compile(r"([\d.]+)(k?) (fps|tbr)\b")


def _parse_rate(value: str, kilo: str) -> float | None:
    try:
        rate = float(value) * (1000.0 if kilo else 1.0)
    except ValueError:
        return None
    return rate if 0 < rate < 1000 else None


def parse_ffmpeg_input_info(stderr_text: str) -> SourceInfo:
    """Extract the first video/audio stream of input #0 from ffmpeg's stderr header.

    Only lines between "Input #0" and the first "Output #"/"Stream mapping" are considered, so the
    output stream descriptions (which also say "Video: h264 ..., 1280x720") are never mistaken for
    the source. Prefers "fps" over "tbr" for the frame rate. Missing fields stay ``None``.
    """
    width = height = None
    fps: float | None = None
    vcodec = acodec = None
    in_input = False
    for line in stderr_text.splitlines():
        stripped = line.strip()
        if stripped.startswith("Input #"):
            in_input = stripped.startswith("Input #0")
            continue
        if stripped.startswith(("Output #", "Stream mapping")):
            if in_input:
                break
            continue
        if not in_input:
            continue
        m = _STREAM_RE.match(line)
        if not m or m.group(1) != "0":
            continue
        kind, codec, rest = m.group(2), m.group(3), m.group(4)
        if kind == "Video" and vcodec is None:
            vcodec = codec
            sm = _SIZE_RE.search(rest)
            if sm:
                width, height = int(sm.group(1)), int(sm.group(2))
            rates = {unit: _parse_rate(v, k) for v, k, unit in _FPS_RE.findall(rest)}
            fps = rates.get("fps") or rates.get("tbr")
        elif kind == "Audio" and acodec is None:
            acodec = codec
    return SourceInfo(width, height, fps, vcodec, acodec)


def _parse_ratio(text: object) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    num, _, den = text.partition("/")
    try:
        value = float(num) / float(den) if den else float(num)
    except (ValueError, ZeroDivisionError):
        return None
    return value if 0 < value < 1000 else None


def _name(value: object) -> str:
    return value if isinstance(value, str) and value else "unknown"


def parse_ffprobe_json(text: str) -> SourceInfo:
    """Parse ``ffprobe -show_streams -of json`` output; first video and first audio stream win."""
    try:
        data = json.loads(text or "{}")
    except (ValueError, RecursionError):  # JSONDecodeError, over-long integers, absurd nesting
        return SourceInfo()
    streams = data.get("streams") if isinstance(data, dict) else None
    width = height = None
    fps: float | None = None
    vcodec = acodec = None
    for st in streams if isinstance(streams, list) else []:
        if not isinstance(st, dict):
            continue
        if st.get("codec_type") == "video" and vcodec is None:
            vcodec = _name(st.get("codec_name"))
            w, h = st.get("width"), st.get("height")
            if isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0:
                width, height = w, h
            # avg_frame_rate is the measured rate; r_frame_rate can be a timebase-ish guess (e.g. 1000).
            fps = _parse_ratio(st.get("avg_frame_rate")) or _parse_ratio(st.get("r_frame_rate"))
        elif st.get("codec_type") == "audio" and acodec is None:
            acodec = _name(st.get("codec_name"))
    return SourceInfo(width, height, fps, vcodec, acodec)


@dataclass
class MediaInfo:
    """A media file as ffprobe sees it: duration and the first video/audio stream."""

    duration: float = 0.0
    width: int | None = None
    height: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None


def parse_ffprobe_media_json(text: str) -> MediaInfo:
    """Parse ``ffprobe -show_format -show_streams -of json`` of a file; first video/audio stream win."""
    try:
        data = json.loads(text or "{}")
    except ValueError:
        return MediaInfo()
    info = MediaInfo()
    with contextlib.suppress(TypeError, ValueError):
        info.duration = float(data.get("format", {}).get("duration") or 0.0)
    for s in data.get("streams", []):
        if s.get("codec_type") == "video" and info.width is None:
            info.width, info.height, info.video_codec = s.get("width"), s.get("height"), s.get("codec_name")
        elif s.get("codec_type") == "audio" and info.audio_codec is None:
            info.audio_codec = s.get("codec_name")
    return info
