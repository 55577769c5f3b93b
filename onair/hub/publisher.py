"""One accepted ingest connection: the `IngestSession` that protocol adapters feed."""

from __future__ import annotations

import asyncio
from typing import Protocol

from prometheus_client import Counter

from onair.hub.keys import StreamKey

__all__ = ["FrameReader", "Publisher", "PublisherSink"]

INGEST_BYTES = Counter("onair_ingest_bytes_total", "Source bytes received", ["protocol"])


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
        if not self.ended:
            for reader in list(self.frame_readers):
                reader.on_frame(kind, data, timestamp, keyframe=keyframe)

    async def close(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.closed.set()
        await self.sink.publisher_closed(self, reason)
