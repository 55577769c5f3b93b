"""Instant clips: whole segments of the DVR window between `start` and `start+duration`.

Once the range has been packaged, its segments (from memory, or the DVR store on disk) are copied to
the clip's own directory so the clip outlives the DVR window (until its expiration)::

    {clips}/{clip_id}/meta.json
    {clips}/{clip_id}/{track}/init.mp4, seg{i}.m4s, index.m3u8   (fMP4 HLS per rendition)
    {clips}/{clip_id}/master.m3u8, master.mp4, {rendition}.m3u8, {rendition}.mp4

Rendition tokens are `media_{n}_{height}` (lowest first), as in the spec's examples.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.formats.hls import render_clip_master, render_clip_media, render_clip_variant
from onair.outputs.library import VideoLibrary
from onair.outputs.recording import Recordings
from onair.package.packager import Segment, TrackPackager
from onair.store.models import Clip, Stream
from onair.transcode.ffmpeg_run import run_ffmpeg

if TYPE_CHECKING:
    from onair.hub.live_stream import LiveStream
    from onair.hub.registry import StreamHub

log = logging.getLogger("onair.outputs.clips")

SLACK_S = 3.0  # wait this long past the clip end for the segment holding it to complete


@dataclass
class _Track:
    name: str
    init: bytes
    segments: list[tuple[float, bytes]]  # (duration, bytes)

    @property
    def bandwidth(self) -> int:
        """Average bits/s over the clip."""
        return int(sum(len(b) for _, b in self.segments) * 8 / max(0.1, sum(x for x, _ in self.segments)))


def _collect(output: LiveStream, tp: TrackPackager, start: float, end: float) -> _Track | None:
    if tp.init is None:
        return None
    picked: list[tuple[float, bytes]] = []
    for seg in list(tp.segments):
        if not _overlaps(seg, start, end):
            continue
        data: bytes | None = seg.data if not seg.evicted else (
            output.archive.read(tp.name, seg.msn) if output.archive is not None else None)
        if data:
            picked.append((seg.duration, data))
    return _Track(tp.name, tp.init, picked) if picked else None


def _overlaps(seg: Segment, start: float, end: float) -> bool:
    s = seg.program_date_time.timestamp()
    return s + seg.duration > start and s < end


class Clipper:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], library: VideoLibrary,
                 recordings: Recordings, ffmpeg: str = "ffmpeg") -> None:
        self.sessionmaker = sessionmaker
        self.library = library
        self.recordings = recordings
        self.ffmpeg = ffmpeg
        self._tasks: set[asyncio.Task[None]] = set()

    def clip_dir(self, clip_id: str) -> Path:
        return self.library.clip_dir(clip_id)

    async def requested(self, clip_id: str, hub: StreamHub) -> int | None:
        """Schedule the cut; with vod_required the Video row is created now. Returns its id."""
        async with self.sessionmaker() as db:
            clip = await db.get(Clip, clip_id)
            stream = await db.get(Stream, clip.stream_id) if clip is not None else None
            if clip is None or stream is None:
                return None
            video_id: int | None = None
            slug = ""
            if clip.vod_required:
                when = datetime.fromtimestamp(clip.start, UTC).strftime("%Y-%m-%d %H:%M:%S")
                video_id, slug = await self.recordings.new_video(stream, f"Clip: {stream.name}, {when} UTC", None)
                clip.video_id = video_id
                await db.commit()
        task = asyncio.create_task(self._cut(clip_id, clip.stream_id, clip.start, clip.duration, clip.expiration,
                                             hub, stream, video_id, slug))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return video_id

    async def _cut(self, clip_id: str, stream_id: int, start: int, duration: int, expiration: int,
                   hub: StreamHub, stream: Stream, video_id: int | None, slug: str) -> None:
        end = start + duration
        try:
            output = hub.get(stream_id)
            # wait for the range to be packaged (or the stream to end)
            while True:  # a deadline on the wall clock, polled: nothing signals "packaged up to t"
                if output is None or output.ended or time.time() >= end + SLACK_S:
                    break
                await asyncio.sleep(min(1.0, max(0.05, end + SLACK_S - time.time())))
            d = self.clip_dir(clip_id)
            ok = output is not None and output.package is not None and await self._write(output, d, start, end)
            if not ok:
                log.warning("clip has no media in the DVR window", extra={"clip": clip_id})
                if video_id is not None:
                    await self.recordings.set_video(video_id, status="error", error="no DVR data for the clip")
            else:
                await self._store(clip_id, d)
                if video_id is not None:
                    await self.recordings.import_file(video_id, slug, stream, d / "master.mp4")
            await asyncio.sleep(max(0.0, expiration - time.time()))
        finally:
            if time.time() >= expiration:
                await asyncio.to_thread(shutil.rmtree, self.clip_dir(clip_id), True)
                await self._store(clip_id, None)

    async def _store(self, clip_id: str, d: Path | None) -> None:
        """Upload the cut clip (`d`) to the object storage, or delete it there (None): every node serves it."""
        storage = self.library.storage
        if storage is None:
            return
        try:
            if d is not None:
                await storage.upload_dir(d, self.library.clip_name(clip_id))
            else:
                await storage.delete_dir(self.library.clip_name(clip_id))
        except storage.errors as exc:  # this node still serves it from its disk
            log.warning("clip not stored", extra={"clip": clip_id, "error": type(exc).__name__})

    async def _write(self, output: LiveStream, d: Path, start: float, end: float) -> bool:
        pkg = output.package
        assert pkg is not None
        videos: list[tuple[int, _Track]] = []
        for r in pkg.video.values():
            tr = _collect(output, r.packager, start, end)
            if tr is not None:
                videos.append((r.packager.track.height, tr))
        audio = _collect(output, pkg.audio.packager, start, end) if pkg.audio is not None else None
        if not videos and audio is None:
            return False
        videos.sort(key=lambda x: x[0])
        tracks = [t for _, t in videos] + ([audio] if audio is not None else [])

        def write_tracks() -> None:
            for tr in tracks:
                td = d / tr.name
                td.mkdir(parents=True, exist_ok=True)
                (td / "init.mp4").write_bytes(tr.init)
                for i, (_, data) in enumerate(tr.segments):
                    (td / f"seg{i}.m4s").write_bytes(data)
                (td / "index.m3u8").write_text(render_clip_media([duration for duration, _ in tr.segments]))
                # one fMP4 file per track for the MP4 muxes below
                (d / f"{tr.name}.fmp4").write_bytes(tr.init + b"".join(data for _, data in tr.segments))

        await asyncio.to_thread(write_tracks)
        renditions: list[str] = []
        audio_uri = f"rec_{d.name}/{audio.name}/index.m3u8" if audio is not None else None
        variants: list[tuple[str, int]] = []  # (media playlist URI, bandwidth), lowest first
        for n, (height, tr) in enumerate(videos, start=1):
            token = f"media_{n}_{height}"
            renditions.append(token)
            variants.append((f"rec_{d.name}/{tr.name}/index.m3u8", tr.bandwidth))
            (d / f"{token}.m3u8").write_text(render_clip_variant(*variants[-1], audio_uri))
            await self._mux(d, tr, audio, d / f"{token}.mp4")
        if not videos and audio is not None:
            await self._mux(d, None, audio, d / "master.mp4")
        else:
            shutil.copyfile(d / f"{renditions[-1]}.mp4", d / "master.mp4")  # the top rendition
        (d / "master.m3u8").write_text(render_clip_master(variants, audio_uri))
        meta: dict[str, Any] = {"renditions": renditions, "start": start, "end": end}
        (d / "meta.json").write_text(json.dumps(meta))
        return True

    async def _mux(self, d: Path, video: _Track | None, audio: _Track | None, out: Path) -> None:
        args: list[str] = ["-copyts"]  # keep the tracks' shared timeline (A/V sync), normalised by faststart mux
        for tr in (video, audio):
            if tr is not None:
                args += ["-i", str(d / f"{tr.name}.fmp4")]
        n = sum(1 for tr in (video, audio) if tr is not None)
        for j in range(n):
            args += ["-map", str(j)]
        tmp = out.with_suffix(".tmp.mp4")
        rc, err = await run_ffmpeg([*args, "-c", "copy", "-avoid_negative_ts", "make_zero",
                                    "-movflags", "+faststart", "-f", "mp4", str(tmp)], ffmpeg=self.ffmpeg)
        if rc == 0:
            tmp.replace(out)
        else:
            log.warning("clip mux failed", extra={"out": str(out), "error": err[-300:]})
