"""RTMP numbers on the wire: message type ids, user control events, the chunk stream ids we send on."""

from __future__ import annotations

from typing import Final

RTMP_VERSION: Final = 3
HANDSHAKE_SIZE: Final = 1536
OUR_CHUNK_SIZE: Final = 4096
WINDOW_ACK_SIZE: Final = 2_500_000
PUBLISH_STREAM_ID: Final = 1

# Message type ids
MSG_SET_CHUNK_SIZE: Final = 1
MSG_ABORT: Final = 2
MSG_ACK: Final = 3
MSG_USER_CONTROL: Final = 4
MSG_WINDOW_ACK_SIZE: Final = 5
MSG_SET_PEER_BANDWIDTH: Final = 6
MSG_AUDIO: Final = 8
MSG_VIDEO: Final = 9
MSG_DATA_AMF3: Final = 15
MSG_COMMAND_AMF3: Final = 17
MSG_DATA_AMF0: Final = 18
MSG_COMMAND_AMF0: Final = 20
MSG_AGGREGATE: Final = 22

# User control event types
UC_STREAM_BEGIN: Final = 0
UC_PING_REQUEST: Final = 6
UC_PING_RESPONSE: Final = 7

# Chunk stream ids we send on (conventional values, as FMS/nginx-rtmp use).
CSID_CONTROL: Final = 2
CSID_COMMAND: Final = 3
CSID_STATUS: Final = 5

U32_MASK: Final = 0xFFFFFFFF
