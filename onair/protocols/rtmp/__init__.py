"""RTMP/RTMPS ingest: a sans-IO protocol core plus asyncio glue."""

from onair.protocols.rtmp.protocol import (
    Event,
    MediaMessage,
    MetaData,
    ProtocolError,
    PublishEnded,
    PublishRequested,
    RTMPServerConnection,
)

__all__ = [
    "Event",
    "MediaMessage",
    "MetaData",
    "ProtocolError",
    "PublishEnded",
    "PublishRequested",
    "RTMPServerConnection",
]
