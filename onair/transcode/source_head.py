"""The source head until the ladder is planned: described by the source's own headers, ffprobe only as the fallback.

The FLV sequence headers and metadata, or the MPEG-TS PMT and SPS, say at once what the ladder needs
(``onair.formats.source_header``), so ffmpeg starts with the first keyframe instead of after a second of
ffprobe. A head they do not describe (an unknown codec, no SPS in time) goes to ffprobe as before. Every byte
of the head is kept and replayed into ffmpeg: nothing pushed is lost.
"""

from __future__ import annotations

import asyncio
import logging

from onair.formats.probe import SourceInfo
from onair.formats.source_header import head_reader
from onair.transcode.head_probe import HeadProbe

log = logging.getLogger("onair.transcode.source_head")


class SourceHead:
    def __init__(self, ffprobe: str, input_format: str, stream_id: int) -> None:
        self.ffprobe = ffprobe
        self.input_format = input_format
        self.stream_id = stream_id  # for the logs
        self._reader = head_reader(input_format)
        self._chunks: list[bytes] = []
        self._decided = asyncio.Event()
        self._probe: HeadProbe | None = None
        self._lock = asyncio.Lock()  # the hand-over to ffprobe never interleaves with a feed
        self.described = False  # True when the source's own headers planned the ladder

    async def feed(self, data: bytes) -> None:
        async with self._lock:
            if self._probe is not None:
                await self._probe.feed(data)
                return
            self._chunks.append(data)
            self._reader.feed(data)
            if self._reader.done:
                self._decided.set()

    async def result(self) -> SourceInfo:
        """What the source is; waits for the head to say it, or for ffprobe when it does not."""
        await self._decided.wait()
        if self._reader.info is not None:
            self.described = True
            return self._reader.info
        log.info("stream %s: the source head does not describe the source (%s); asking ffprobe",
                 self.stream_id, self._reader.failed)
        async with self._lock:
            probe = self._probe = HeadProbe(self.ffprobe, self.input_format, self.stream_id)
            await probe.start()
            head, self._chunks = b"".join(self._chunks), []
            await probe.feed(head)
        return await probe.result()

    def take_head(self) -> bytes:
        """The buffered source head, for ffmpeg; the buffer is emptied."""
        if self._probe is not None:
            return self._probe.take_head()
        head, self._chunks = b"".join(self._chunks), []
        return head

    def clear(self) -> None:
        self._chunks = []
        if self._probe is not None:
            self._probe.clear()

    def kill(self) -> None:
        if self._probe is not None:
            self._probe.kill()
