"""Turning the pieces of a recording into the library files (remux only, in ffmpeg subprocesses).

Each piece becomes a plain MP4; the plain MP4s are concatenated into the library MP4 (faststart,
for download), which is then cut into a VOD HLS (MPEG-TS and fMP4), a DASH presentation and a poster.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from onair.formats.hls import vod_master_playlist
from onair.formats.probe import MediaInfo
from onair.transcode.ffmpeg_run import probe_file, run_ffmpeg

log = logging.getLogger("onair.outputs.recording")

HLS_SEGMENT_S = 4
# The two VOD HLS flavours: (sub-directory, master playlist, ffmpeg hls muxer arguments).
VOD_HLS = (
    ("hls", "master.m3u8", ["-hls_segment_filename", "seg%d.ts"]),
    ("cmaf", "master-cmaf.m3u8", ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
                                  "-hls_segment_filename", "seg%d.m4s"]),
)


def _codecs(info: MediaInfo) -> str:
    """RFC 6381 codec strings of what recordings carry (H.264 High, AAC-LC)."""
    return ",".join(c for c in ("avc1.64001f" if info.video_codec == "h264" else None,
                                "mp4a.40.2" if info.audio_codec == "aac" else None) if c)


def piece_inputs(directory: Path, piece: dict[str, Any]) -> list[Path]:
    """The non-empty files a piece left: one MP4 (origin) or one per track (transcoded)."""
    base = piece["base"]
    if piece["kind"] == "origin":
        inputs = [directory / f"{base}.mp4"]
    else:
        inputs = sorted(directory.glob(f"{base}.*.mp4"))
    return [p for p in inputs if p.is_file() and p.stat().st_size > 0]


def recording_end(journal: dict[str, Any], plain: list[Path]) -> datetime:
    """When the recording ended: from the journal, else (crash) the last write of its pieces."""
    if journal.get("ended_at"):
        return datetime.fromisoformat(journal["ended_at"])
    return datetime.fromtimestamp(max(p.stat().st_mtime for p in plain), UTC)


async def wait_gone(pid: int | None, timeout: float = 15.0) -> None:  # noqa: ASYNC109
    """Wait for an orphaned writer of a crashed run: it flushes and exits on EOF."""
    if not pid:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if ") Z" in stat or ") X" in stat:
            return  # exited, waiting to be reaped
        await asyncio.sleep(0.2)


@dataclass(frozen=True)
class Finisher:
    """The finishing steps, run with the configured ffmpeg/ffprobe binaries."""

    ffmpeg: str
    ffprobe: str

    async def remux_pieces(self, directory: Path, pieces: list[dict[str, Any]]) -> list[Path]:
        """Each piece → ``n{i}.mp4`` (a truncated fragmented MP4 still yields its prefix); the playable ones."""
        plain: list[Path] = []
        for i, piece in enumerate(pieces):
            inputs = piece_inputs(directory, piece)
            if not inputs:
                continue
            out = directory / f"n{i}.mp4"
            args: list[str] = ["-copyts"] if len(inputs) > 1 else []  # keep A/V alignment of separate tracks
            for p in inputs:
                args += ["-i", str(p)]
            for j in range(len(inputs)):
                args += ["-map", f"{j}"]
            await run_ffmpeg([*args, "-c", "copy", "-f", "mp4", str(out)], ffmpeg=self.ffmpeg)
            if out.is_file() and (await probe_file(out, self.ffprobe)).duration > 0:
                plain.append(out)
        return plain

    async def concat(self, directory: Path, plain: list[Path], out: Path) -> MediaInfo:
        """The plain MP4s joined into ``out`` (faststart: plays while downloading); raises if ffmpeg fails."""
        listing = directory / "concat.txt"
        listing.write_text("".join(f"file '{p.name}'\n" for p in plain))
        rc, err = await run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-map", "0", "-c", "copy",
                                    "-movflags", "+faststart", "-f", "mp4", str(out)], ffmpeg=self.ffmpeg)
        if rc != 0 or not out.is_file():
            raise RuntimeError(f"concat failed: {err.strip()[-300:]}")
        return await probe_file(out, self.ffprobe)

    async def vod_hls(self, src: Path, vdir: Path, video_id: int) -> None:
        """VOD HLS: MPEG-TS (hls/) and fMP4 (cmaf/); a failure only loses that flavour."""
        for sub, _, extra in VOD_HLS:
            d = vdir / sub
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            rc, err = await run_ffmpeg(["-i", str(src), "-map", "0", "-c", "copy", "-f", "hls",
                                        "-hls_time", str(HLS_SEGMENT_S), "-hls_playlist_type", "vod",
                                        *extra, "index.m3u8"], cwd=d, ffmpeg=self.ffmpeg)
            if rc != 0:
                log.warning("VOD HLS failed", extra={"video_id": video_id, "kind": sub, "error": err[-300:]})

    async def dash(self, src: Path, vdir: Path, video_id: int) -> None:
        """DASH (dash_url = master.mpd): separate video/audio representations."""
        shutil.rmtree(vdir / "dash", ignore_errors=True)
        (vdir / "dash").mkdir()
        rc, err = await run_ffmpeg(["-i", str(src), "-map", "0", "-c", "copy", "-f", "dash",
                                    "-seg_duration", str(HLS_SEGMENT_S), "-use_template", "1", "-use_timeline", "1",
                                    "-init_seg_name", "dash/init-$RepresentationID$.m4s",
                                    "-media_seg_name", "dash/chunk-$RepresentationID$-$Number%05d$.m4s",
                                    "master.mpd"], cwd=vdir, ffmpeg=self.ffmpeg)
        if rc != 0:
            log.warning("VOD DASH failed", extra={"video_id": video_id, "error": err[-300:]})

    async def poster(self, src: Path, vdir: Path, info: MediaInfo) -> None:
        """poster.jpg from a frame near the start (videos only)."""
        if not info.width:
            return
        at = f"{min(2.0, info.duration / 2):.2f}"
        await run_ffmpeg(["-ss", at, "-i", str(src), "-frames:v", "1", "-q:v", "3", str(vdir / "poster.jpg")],
                         ffmpeg=self.ffmpeg)


def write_master_playlists(vdir: Path, info: MediaInfo, size: int) -> None:
    """master.m3u8 and master-cmaf.m3u8 of the VOD HLS flavours."""
    bandwidth = int(size * 8 / info.duration) if info.duration > 0 else 1
    resolution = f"{info.width}x{info.height}" if info.width else None
    for sub, name, _ in VOD_HLS:
        (vdir / name).write_text(vod_master_playlist(bandwidth, resolution, _codecs(info), f"{sub}/index.m3u8"))
