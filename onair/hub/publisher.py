"""One accepted ingest connection: the `IngestSession` that protocol adapters feed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from prometheus_client import Counter

from onair.hub.keys import StreamKey

__all__ = ["FrameReader", "Publisher", "PublisherSink"]

INGEST_BYTES = Counter("onair_ingest_bytes_total", "Source bytes received", ["protocol"])


GOP_REPLAY_BYTES = 8 << 20


class PublisherSink(Protocol):
    """Where a publisher's bytes and its end go (the hub)."""

    async def publisher_data(self, publisher: Publisher, data: bytes) -> None: ...

    async def publisher_closed(self, publisher: Publisher, reason: str) -> None: ...


class FrameReader(Protocol):
    """Gets the encoded frames of a publisher that has them apart (WHIP: H.264 access units, Opus packets).

    `timestamp` is the frame's RTP time of its track (90 kHz video, 48 kHz audio), from 0 at its first frame.
    """

    def on_frame(self, kind: str, data: bytes, timestamp: int, *, keyframe: bool) -> None: ...


class Publisher:
    def __init__(self, sink: PublisherSink, key: StreamKey, protocol: str, input_format: str, *,
                 started: float, pulled: bool = False) -> None:
        self.sink = sink
        self.key = key
        self.protocol = protocol
        self.input_format = input_format
        self.closed = asyncio.Event()
        self.started = started  # monotonic seconds
        self.bytes_in = 0
        self.pulled = pulled  # fed by the node's own PULL client
        self.announced = False  # its first bytes have been announced (PublisherLive)
        self.resumed = False  # continues a session within its reconnect window
        self.ended = False
        self.frame_readers: list[FrameReader] = []  # e.g. WHEP passing a WebRTC source through
        # the frames since the newest video keyframe: a reader that attaches later starts from it (a WebRTC
        # encoder sends keyframes only when asked, so the next one may be many seconds away)
        self._gop: list[tuple[str, bytes, int, bool]] = []
        self._gop_bytes = 0
        # how the source is asked for a keyframe, when it can be (a WebRTC encoder answers a PLI at once)
        self.keyframe_request: Callable[[], None] | None = None

    @property
    def stream_id(self) -> int:
        return self.key.stream_id

    async def feed(self, data: bytes) -> None:
        if self.ended:
            return
        self.bytes_in += len(data)
        INGEST_BYTES.labels(self.protocol).inc(len(data))
        await self.sink.publisher_data(self, data)

    def frame(self, kind: str, data: bytes, timestamp: int, *, keyframe: bool) -> None:
        """An encoded frame besides the byte stream (only adapters that have frames apart call this)."""
        if self.ended:
            return
        self._keep(kind, data, timestamp, keyframe)
        for reader in list(self.frame_readers):
            reader.on_frame(kind, data, timestamp, keyframe=keyframe)

    def _keep(self, kind: str, data: bytes, timestamp: int, keyframe: bool) -> None:
        if kind == "video" and keyframe:
            self._gop.clear()
            self._gop_bytes = 0
        elif not self._gop:
            return  # nothing is kept before the first keyframe
        if self._gop_bytes + len(data) > GOP_REPLAY_BYTES:
            self._gop.clear()  # a GOP this long is not worth replaying: readers wait for the next keyframe
            self._gop_bytes = 0
            return
        self._gop.append((kind, data, timestamp, keyframe))
        self._gop_bytes += len(data)

    def request_keyframe(self) -> bool:
        """Ask the source for a keyframe soon; False when it cannot be asked."""
        if self.keyframe_request is None or self.ended:
            return False
        self.keyframe_request()
        return True

    def add_frame_reader(self, reader: FrameReader) -> None:
        """Attach a reader; it gets the frames since the newest keyframe at once, then each new frame."""
        self.frame_readers.append(reader)
        for kind, data, timestamp, keyframe in self._gop:
            reader.on_frame(kind, data, timestamp, keyframe=keyframe)

    async def close(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.closed.set()
        await self.sink.publisher_closed(self, reason)
