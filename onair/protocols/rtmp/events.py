"""What :class:`~onair.protocols.rtmp.protocol.RTMPServerConnection` reports to its caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from onair.formats.flv import TAG_AUDIO, TAG_VIDEO

__all__ = ["Event", "MediaMessage", "MetaData", "ProtocolError", "PublishEnded", "PublishRequested"]


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """The client wants to publish; answer with accept_publish() or reject_publish().

    Parsing pauses until then: what follows the publish command is read under the budget that the answer
    selects (see :class:`~onair.protocols.rtmp.chunks.Limits`).
    """

    app: str
    name: str  # as sent, including any "?query" part (often carries a token): never log it
    tc_url: str
    publish_type: str = "live"


@dataclass(frozen=True, slots=True)
class PublishEnded:
    reason: str  # the command that ended it: FCUnpublish, deleteStream, closeStream


@dataclass(frozen=True, slots=True)
class MetaData:
    data: dict[str, Any]
    timestamp_ms: int = 0
    # Body for an FLV script tag: AMF0 "onMetaData" + the value exactly as received.
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class MediaMessage:
    kind: Literal["audio", "video"]
    timestamp_ms: int
    payload: bytes

    @property
    def tag_type(self) -> int:
        return TAG_AUDIO if self.kind == "audio" else TAG_VIDEO


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """Fatal: the connection is unusable afterwards and should be closed."""

    reason: str


Event = PublishRequested | PublishEnded | MetaData | MediaMessage | ProtocolError
