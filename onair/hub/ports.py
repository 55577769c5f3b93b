"""Interface between protocol-specific ingest servers (RTMP, ...) and the platform."""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["IngestGateway", "IngestRefused", "IngestSession"]


class IngestRefused(Exception):
    """Publishing refused; str(exc) is the reason, `code` the WHIP X-Reason-Code (spec R21) when one applies."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class IngestSession(Protocol):
    input_format: str  # "flv" for RTMP
    closed: asyncio.Event  # set by the platform to kick the publisher

    async def feed(self, data: bytes) -> None: ...

    async def close(self, reason: str) -> None: ...


class IngestGateway(Protocol):
    async def open_session(
        self, *, protocol: str, app: str, stream_name: str, remote: str
    ) -> IngestSession: ...
