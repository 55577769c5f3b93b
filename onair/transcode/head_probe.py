"""ffprobe on the first bytes of a live source, to learn its streams before ffmpeg is started.

The ladder depends on the source resolution, so the transcoder buffers the source head, feeds it
to a short-lived ``ffprobe`` and replays the buffered head into ffmpeg once the ladder is planned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from onair.formats.probe import SourceInfo, parse_ffprobe_json
from onair.transcode.command import ANALYZEDURATION_US, PROBESIZE

log = logging.getLogger("onair.transcode.head_probe")

PROBE_TIMEOUT_S = 10.0
HEAD_MAX_BYTES = 16 * 1024 * 1024


class HeadProbe:
    """One ffprobe process reading the source head from stdin; keeps the head for replay."""

    def __init__(self, ffprobe: str, input_format: str, stream_id: int) -> None:
        self.ffprobe = ffprobe
        self.input_format = input_format
        self.stream_id = stream_id  # for the logs
        self._proc: asyncio.subprocess.Process | None = None
        self._head: list[bytes] = []
        self._head_bytes = 0
        self._input_closed = False
        self._first_data = asyncio.Event()
        self._lock = asyncio.Lock()  # a write to ffprobe's stdin never races its close

    async def start(self) -> None:
        # Same probing limits as ffmpeg, so ffmpeg sees the streams ffprobe saw.
        self._proc = await asyncio.create_subprocess_exec(
            self.ffprobe, "-v", "error",
            "-probesize", str(PROBESIZE), "-analyzeduration", str(ANALYZEDURATION_US),
            "-f", self.input_format, "-i", "pipe:0", "-show_streams", "-of", "json",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip

    async def feed(self, data: bytes) -> None:
        """Keep ``data`` for the replay and pass it on to ffprobe while it still reads."""
        self._first_data.set()
        self._head.append(data)
        self._head_bytes += len(data)
        async with self._lock:
            await self._write(data)

    async def _write(self, data: bytes) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None or self._input_closed:
            return
        if proc.returncode is not None or proc.stdin.is_closing():
            self._input_closed = True
            return
        try:
            proc.stdin.write(data)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self._input_closed = True  # ffprobe has seen enough and exited
        if self._head_bytes > HEAD_MAX_BYTES and not self._input_closed:
            proc.stdin.close()  # EOF makes ffprobe report what it found so far
            self._input_closed = True

    async def result(self) -> SourceInfo:
        """The streams ffprobe found; waits for the first data, then at most PROBE_TIMEOUT_S."""
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        out_task = asyncio.create_task(proc.stdout.read())
        await self._first_data.wait()
        try:
            await asyncio.wait_for(proc.wait(), PROBE_TIMEOUT_S)
        except TimeoutError:
            log.warning("stream %s: ffprobe timed out, using what it found", self.stream_id)
            async with self._lock:
                if proc.stdin is not None:
                    proc.stdin.close()
                self._input_closed = True
            try:
                await asyncio.wait_for(proc.wait(), 3.0)
            except TimeoutError:
                self.kill()
                await proc.wait()
        info = parse_ffprobe_json((await out_task).decode("utf-8", "replace"))
        if proc.stdin is not None:
            proc.stdin.close()
        return info

    def take_head(self) -> bytes:
        """The buffered source head, for ffmpeg; the buffer is emptied."""
        head = b"".join(self._head)
        self.clear()
        return head

    def clear(self) -> None:
        self._head.clear()
        self._head_bytes = 0

    def kill(self) -> None:
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
