"""The hub's ports: what ingest adapters call, and what the hub needs from the layers around it.

Ingest adapters (RTMP, RTMPS, SRT, WHIP, PULL) all enter through `IngestGateway.open_session`. The hub
reads who may publish and how a stream is transcoded through `StreamCatalog` (the store implements it),
and hands its live streams to readers attached by the composition root (DVR, recording, restreams).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from onair.transcode.ladder import Rendition

if TYPE_CHECKING:
    from onair.package.continuity import OutputContinuity
    from onair.package.packager import Segment, TrackPackager

__all__ = [
    "ContinuityRecords",
    "FeedLeases",
    "IngestGateway",
    "IngestRefused",
    "IngestSession",
    "PublishConfig",
    "SegmentArchive",
    "SegmentListener",
    "SingleNodeLeases",
    "StreamCatalog",
]


class IngestRefused(Exception):
    """Publishing refused; str(exc) is the reason, `code` the WHIP X-Reason-Code when one applies."""

    def __init__(self, reason: str, code: int | None = None) -> None:
        super().__init__(reason)
        self.code = code


class IngestSession(Protocol):
    input_format: str  # "flv" for RTMP, "mpegts" for SRT, WHIP and PULL over HTTP
    closed: asyncio.Event  # set by the hub to kick the publisher

    async def feed(self, data: bytes) -> None: ...

    def frame(self, kind: str, data: bytes, timestamp: int, *, keyframe: bool) -> None: ...

    # set by an adapter whose source sends a keyframe when asked (WHIP); readers call it through the hub
    keyframe_request: Callable[[], None] | None

    async def close(self, reason: str) -> None: ...


class IngestGateway(Protocol):
    async def open_session(
        self, *, protocol: str, app: str, stream_name: str, remote: str, pull: bool = False
    ) -> IngestSession: ...


@dataclass(frozen=True)
class PublishConfig:
    """What the hub needs to know of a stream to accept a publisher and start its output."""

    stream_id: int
    token: str
    active: bool
    pull: bool
    renditions: tuple[Rendition, ...]
    dvr_seconds: int | None  # None: DVR off
    endlist: bool  # hls_mpegts_endlist_tag
    client_user_id: int | None
    reconnect_window: float = 0.0  # seconds a dropped publisher may come back and continue the session


class StreamCatalog(Protocol):
    async def publish_config(self, stream_id: int) -> PublishConfig | None: ...


SegmentListener = Callable[["TrackPackager", "Segment"], None]


class SegmentArchive(Protocol):
    """Segment bytes older than the in-memory window (the DVR store on disk)."""

    def read(self, track: str, msn: int) -> bytes | None: ...

    def filter_ts(self, rendition: str, playlist: str) -> str:
        """The MPEG-TS playlist without what a DVR cleanup removed."""
        ...



class FeedLeases(Protocol):
    """Who receives a stream's feed (primary or backup) across nodes: the one-connection-per-key rule in a cluster.

    The hub claims a lease before it accepts a publisher and releases it when the publisher ends. A lease the
    holder loses (it could not renew it in time) is reported to the hub, which ends that publisher.
    """

    async def claim(self, stream_id: int, backup: bool) -> bool:
        """True when this node now holds the feed; False when another node does. Raises when it cannot tell."""
        ...

    async def release(self, stream_id: int, backup: bool) -> None: ...

    async def claim_pull(self, stream_id: int) -> bool:
        """True when this node now pulls the PULL stream's sources (exactly one node does); False when another
        node does. Raises when it cannot tell. A claim the holder loses is reported to the puller."""
        ...

    async def release_pull(self, stream_id: int) -> None: ...


class ContinuityRecords(Protocol):
    """Where each stream's live output has got to, kept by the cluster so that a new origin carries it on."""

    async def load(self, stream_id: int) -> OutputContinuity | None:
        """The newest record of the stream's output on another node, None when there is none (or it is old)."""
        ...


class SingleNodeLeases:
    """One node: the hub's own in-use check is the whole rule, there is nobody else to ask."""

    async def claim(self, stream_id: int, backup: bool) -> bool:
        return True

    async def release(self, stream_id: int, backup: bool) -> None:
        return None

    async def claim_pull(self, stream_id: int) -> bool:
        return True

    async def release_pull(self, stream_id: int) -> None:
        return None
