"""Piece writers: how one source session of a recording is put on disk, crash-safe as it is written.

* ``origin``: the publisher's source bytes remuxed without re-encoding (``ffmpeg -c copy``) to a
  fragmented MP4 (``empty_moov``): a killed writer leaves a playable prefix;
* ``transcoded``: the top rendition's and the audio's packaged fMP4 segments appended to
  ``init + segments`` files (also fragmented MP4).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from onair.outputs.tap import SourceTap
from onair.package.packager import Segment, TrackPackager
from onair.transcode.transcoder import Transcoder

if TYPE_CHECKING:
    from onair.hub.live_stream import LiveStream

log = logging.getLogger("onair.outputs.recording")


class OriginWriter:
    """The source bytes, remuxed without re-encoding to a fragmented MP4 by a cheap ffmpeg."""

    def __init__(self, path: Path, transcoder: Transcoder, ffmpeg: str) -> None:
        self.path = path
        self.tap = SourceTap(
            transcoder,
            ["-map", "0:v?", "-map", "0:a?", "-c", "copy",
             "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "1000000",
             "-flush_packets", "1", path.name],
            ffmpeg=ffmpeg, input_args=["-fflags", "+genpts"], cwd=path.parent,
        )  # fmt: skip

    @property
    def files(self) -> list[str]:
        return [self.path.name]

    async def start(self) -> None:
        await self.tap.start()

    @property
    def pid(self) -> int | None:
        return self.tap.pid

    async def feed(self, data: bytes) -> None:
        """Called with each source chunk right after the transcoder got it."""
        was_dead = self.tap.dead
        await self.tap.feed(data)
        if self.tap.dead and not was_dead:
            log.warning("origin recorder ffmpeg went away", extra={"path": str(self.path)})

    async def close(self) -> None:
        await self.tap.close()


class TranscodedWriter:
    """The top rendition and the audio, as packaged: init + complete segments appended to fMP4 files."""

    def __init__(self, base: Path, output: LiveStream) -> None:
        self.base = base
        self.output = output
        plan = output.transcoder.plan
        self.video_track = plan[0].name if plan else None
        self._inits: dict[str, bytes] = {}
        self._t0: float | None = None  # start (s) of the first recorded video segment
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rec")
        self.write_failed = False

    def track_path(self, track: str) -> Path:
        return self.base.with_name(f"{self.base.name}.{track}.mp4")

    @property
    def files(self) -> list[str]:
        return [self.track_path(t).name for t in self._inits]

    @property
    def pid(self) -> int | None:
        return None

    async def start(self) -> None:
        self.output.segment_listeners.append(self.on_segment)

    async def feed(self, data: bytes) -> None:
        pass

    def on_segment(self, tp: TrackPackager, seg: Segment) -> None:
        if tp.init is None or (tp.is_video and tp.name != self.video_track):
            return
        if tp.is_video and self._t0 is None:
            self._t0 = seg.start
        if self._t0 is None or seg.start + seg.duration <= self._t0:
            return  # audio waits for the first video segment so both begin together
        known = self._inits.get(tp.name)
        if known is not None and known != tp.init:
            return  # the transcoder restarted with new streams: the rest goes unrecorded in this piece
        head = tp.init if known is None else b""
        self._inits[tp.name] = tp.init
        self._io.submit(self._append, self.track_path(tp.name), head + seg.data)

    def _append(self, path: Path, data: bytes) -> None:
        try:
            with path.open("ab") as f:
                f.write(data)
                f.flush()
        except OSError as exc:  # full disk: this segment is lost; the recorder's disk guard closes the recording
            if not self.write_failed:
                log.warning("recording write failed", extra={"path": path.name, "error": str(exc)})
            self.write_failed = True

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.output.segment_listeners.remove(self.on_segment)
        await asyncio.get_running_loop().run_in_executor(None, self._io.shutdown, True)


Writer = OriginWriter | TranscodedWriter
