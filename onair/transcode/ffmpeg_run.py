"""Running the configured ffmpeg and ffprobe binaries for one-shot jobs (recording, clips)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from onair.formats.probe import MediaInfo, parse_ffprobe_media_json

STEP_TIMEOUT_S = 600.0  # one remux step of a finished recording; longer means ffmpeg is stuck


def ffprobe_for(ffmpeg: str) -> str:
    """The ffprobe of the configured ffmpeg binary (same build), else ffprobe from PATH.

    ``/opt/ff/bin/ffmpeg`` → ``/opt/ff/bin/ffprobe`` if that file exists; a bare name such as
    ``ffmpeg-6`` → ``ffprobe-6`` if it is on PATH.
    """
    path = Path(ffmpeg)
    name = path.name.replace("ffmpeg", "ffprobe")
    if path.parent != Path("."):
        sibling = path.with_name(name)
        if sibling.exists():
            return str(sibling)
    elif name != path.name and shutil.which(name):
        return name
    return "ffprobe"


async def run_ffmpeg(args: list[str], *, ffmpeg: str, cwd: Path | None = None) -> tuple[int, str]:
    """Run ``ffmpeg args`` to completion (killed after STEP_TIMEOUT_S); returns (rc, stderr tail).

    ``ffmpeg`` is the configured binary and deliberately has no default.
    """
    proc = await asyncio.create_subprocess_exec(
        ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, cwd=str(cwd) if cwd else None,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    try:
        _, err = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -9, "timeout"
    return proc.returncode or 0, err.decode("utf-8", "replace")[-2000:]


async def probe_file(path: Path, ffprobe: str) -> MediaInfo:
    """Duration, size and codecs of a media file (empty MediaInfo when ffprobe cannot read it)."""
    proc = await asyncio.create_subprocess_exec(
        ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    out, _ = await proc.communicate()
    return parse_ffprobe_media_json(out.decode("utf-8", "replace"))
