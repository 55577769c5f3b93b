"""RTMP/RTMPS ingest: a sans-IO protocol core (chunks.py, events.py, protocol.py) plus asyncio glue."""

from onair.protocols.rtmp.chunks import Budget, Limits
from onair.protocols.rtmp.events import (
    Event,
    MediaMessage,
    MetaData,
    ProtocolError,
    PublishEnded,
    PublishRequested,
)
from onair.protocols.rtmp.protocol import RTMPServerConnection

__all__ = [
    "Budget",
    "Event",
    "Limits",
    "MediaMessage",
    "MetaData",
    "ProtocolError",
    "PublishEnded",
    "PublishRequested",
    "RTMPServerConnection",
]
