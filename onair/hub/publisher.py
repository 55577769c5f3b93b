"""One accepted ingest connection: the `IngestSession` that protocol adapters feed."""

from __future__ import annotations

import asyncio
from typing import Protocol

from prometheus_client import Counter

from onair.hub.keys import StreamKey

__all__ = ["Publisher", "PublisherSink"]

INGEST_BYTES = Counter("onair_ingest_bytes_total", "Source bytes received", ["protocol"])


class PublisherSink(Protocol):
    """Where a publisher's bytes and its end go (the hub)."""

    async def publisher_data(self, publisher: Publisher, data: bytes) -> None: ...

    async def publisher_closed(self, publisher: Publisher, reason: str) -> None: ...


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

    @property
    def stream_id(self) -> int:
        return self.key.stream_id

    async def feed(self, data: bytes) -> None:
        if self.ended:
            return
        self.bytes_in += len(data)
        INGEST_BYTES.labels(self.protocol).inc(len(data))
        await self.sink.publisher_data(self, data)

    async def close(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self.closed.set()
        await self.sink.publisher_closed(self, reason)
