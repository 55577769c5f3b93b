"""Helpers for tests that push real media with ffmpeg and inspect what onair serves."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any


def push_rtmp(url: str, *, size: str = "1280x720", rate: int = 30, seconds: float | None = None,
              realtime: bool = True, extra: list[str] | None = None) -> subprocess.Popen[bytes]:
    """A live H.264/AAC publisher like OBS: 2 s GOP, realtime pacing."""
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    if realtime:
        cmd.append("-re")
    cmd += ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}", "-f", "lavfi", "-i", "sine=frequency=440"]
    if seconds is not None:
        cmd += ["-t", str(seconds)]
    cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(2 * rate),
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", *(extra or []), "-f", "flv", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(5)


def ffprobe(data: bytes, *, fmt: str | None = None, count_frames: bool = False) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(data)
        f.flush()
        cmd = ["ffprobe", "-v", "error", "-show_streams", "-of", "json"]
        if count_frames:
            cmd.append("-count_frames")
        if fmt:
            cmd += ["-f", fmt]
        out = subprocess.run([*cmd, f.name], capture_output=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError(f"ffprobe failed: {out.stderr.decode(errors='replace')}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def codecs(probe: dict[str, Any]) -> set[str]:
    return {s["codec_name"] for s in probe.get("streams", [])}


def parse_master(text: str, base: str) -> list[dict[str, str]]:
    """Variant streams of an HLS master playlist: attributes plus absolute `uri`."""
    lines = text.splitlines()
    variants = []
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            attrs = dict(_attrs(line.split(":", 1)[1]))
            attrs["uri"] = base.rsplit("/", 1)[0] + "/" + lines[i + 1]
            variants.append(attrs)
    return variants


def _attrs(text: str) -> list[tuple[str, str]]:
    out, key, val, in_quote, cur = [], "", "", False, ""
    for ch in text + ",":
        if ch == '"':
            in_quote = not in_quote
        elif ch == "=" and not in_quote and not key:
            key, cur = cur, ""
            continue
        elif ch == "," and not in_quote:
            val, cur = cur, ""
            out.append((key, val.strip('"')))
            key = ""
            continue
        cur += ch
    return out


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# A frame counter burned into the picture: bit i of the frame number is a white box in a black band at the
# top (drawbox enabled by an expression of `n`), so the first frame of an output says which pushed frame it is.
COUNTER_BITS = 10
COUNTER_BAND = 1 / 8  # of the picture height


def counter_filter(width: int, height: int) -> str:
    cell, band = width // COUNTER_BITS, max(8, int(height * COUNTER_BAND)) // 2 * 2
    boxes = [f"drawbox=x={i * cell}:y=0:w={cell}:h={band}:color=white:t=fill:enable='mod(floor(n/{2 ** i}),2)'"
             for i in range(COUNTER_BITS)]
    return ",".join([f"drawbox=x=0:y=0:w={width}:h={band}:color=black:t=fill", *boxes])


def first_frame_counter(data: bytes, *, fmt: str | None = None) -> int:
    """The counter of the first decoded frame of `data` (a file, or init + fragments)."""
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(data)
        f.flush()
        size = json.loads(subprocess.run(
            ["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height", "-of", "json",
             *(["-f", fmt] if fmt else []), f.name], capture_output=True, timeout=60, check=True).stdout)["streams"][0]
        w, h = int(size["width"]), int(size["height"])
        gray = subprocess.run(["ffmpeg", "-v", "error", *(["-f", fmt] if fmt else []), "-i", f.name, "-map", "0:v:0",
                               "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                              capture_output=True, timeout=60, check=True).stdout
    assert len(gray) == w * h, (len(gray), w, h)
    y = int(h * COUNTER_BAND / 2)
    value = 0
    for i in range(COUNTER_BITS):
        x = int((i + 0.5) * w / COUNTER_BITS)
        value |= (gray[y * w + x] > 128) << i
    return value
