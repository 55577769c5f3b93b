"""Sans-IO RTMP server connection (publish/ingest side only).

Feed received bytes to :meth:`RTMPServerConnection.receive_data`, act on the
returned events, and send whatever :meth:`RTMPServerConnection.data_to_send`
returns. No sockets, no clocks (except for the S1 timestamp), no asyncio.
"""

from __future__ import annotations

import enum
import os
import struct
import time
from dataclasses import dataclass
from typing import Any, Final, Literal

from onair.formats import amf0
from onair.formats.flv import TAG_AUDIO, TAG_VIDEO

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "Event",
    "MAX_CHUNK_SIZE",
    "MAX_MESSAGE_SIZE",
    "MediaMessage",
    "MetaData",
    "OUR_CHUNK_SIZE",
    "ProtocolError",
    "PublishEnded",
    "PublishRequested",
    "RTMPServerConnection",
    "WINDOW_ACK_SIZE",
]

RTMP_VERSION: Final = 3
HANDSHAKE_SIZE: Final = 1536
DEFAULT_CHUNK_SIZE: Final = 128
OUR_CHUNK_SIZE: Final = 4096
WINDOW_ACK_SIZE: Final = 2_500_000
# Limits that bound memory use when the peer sends garbage.
# The length field is 24 bits (< 16 MiB) so the message cap has to sit below that to mean
# anything; 8 MiB is still far above any real keyframe.
MAX_MESSAGE_SIZE: Final = 8 * 1024 * 1024
MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024
MAX_CHUNK_STREAMS: Final = 64
MAX_PENDING_BYTES: Final = 32 * 1024 * 1024

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

_EXTENDED_TS: Final = 0xFFFFFF
_U32_MASK: Final = 0xFFFFFFFF


# --------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class PublishRequested:
    """The client wants to publish; answer with accept_publish() or reject_publish()."""

    app: str
    name: str  # as sent, including any "?query" part (often carries a token)
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


# --------------------------------------------------------------------------- internals


class _Fatal(Exception):
    pass


class _State(enum.Enum):
    C0 = enum.auto()
    C1 = enum.auto()
    C2 = enum.auto()
    CHUNKS = enum.auto()
    FAILED = enum.auto()


class _Publish(enum.Enum):
    NONE = enum.auto()
    PENDING = enum.auto()
    PUBLISHING = enum.auto()
    REJECTED = enum.auto()
    ENDED = enum.auto()


@dataclass(slots=True)
class _ChunkStream:
    """Per chunk-stream header state that later compressed headers inherit."""

    timestamp: int = 0
    delta: int = 0
    length: int = 0
    type_id: int = 0
    stream_id: int = 0
    extended: bool = False  # last full/partial header used an extended timestamp
    ext_value: int = 0  # extended timestamp of the current message's first chunk
    partial: bytearray | None = None  # payload of the message being reassembled
    remaining: int = 0


_MSG_HEADER_SIZE: Final = (11, 7, 3, 0)


class RTMPServerConnection:
    """Server side of one RTMP connection that accepts a single publish."""

    def __init__(self) -> None:
        self._state = _State.C0
        self._buf = bytearray()
        self._out = bytearray()
        self._in_chunk_size = DEFAULT_CHUNK_SIZE
        self._out_chunk_size = DEFAULT_CHUNK_SIZE
        self._streams: dict[int, _ChunkStream] = {}
        self._pending_bytes = 0
        self._bytes_received = 0
        self._last_ack = 0
        self._ack_window = WINDOW_ACK_SIZE
        self._connected = False
        self._publish = _Publish.NONE
        self._publish_stream_id = PUBLISH_STREAM_ID
        self.app = ""
        self.tc_url = ""
        self.stream_name = ""

    # ------------------------------------------------------------------ public API

    @property
    def failed(self) -> bool:
        return self._state is _State.FAILED

    @property
    def publishing(self) -> bool:
        return self._publish is _Publish.PUBLISHING

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        if self._state is _State.FAILED:
            return []
        events: list[Event] = []
        self._buf += data
        pos = 0
        try:
            while True:
                new_pos = self._step(pos, events)
                if new_pos is None:
                    break
                pos = new_pos
        except _Fatal as exc:
            self._fail(str(exc), events)
            return events
        del self._buf[:pos]
        if self._state is _State.CHUNKS:
            self._maybe_ack(len(data))
        return events

    def accept_publish(self) -> None:
        if self._publish is _Publish.ENDED:
            # The publisher ended in the same batch of data (a PublishEnded event follows): nothing to answer.
            return
        if self._publish is not _Publish.PENDING:
            raise RuntimeError("no publish request pending")
        self._publish = _Publish.PUBLISHING
        self._send_user_control(UC_STREAM_BEGIN, self._publish_stream_id)
        self._send_status(
            "status", "NetStream.Publish.Start", f"{self.stream_name.split('?', 1)[0]} is now published."
        )

    def reject_publish(self, description: str, code: str = "NetStream.Publish.BadName") -> None:
        """Send an error status; the caller should flush data_to_send() and close."""
        if self._publish is _Publish.ENDED:
            return  # as in accept_publish: ended before the answer
        if self._publish is not _Publish.PENDING:
            raise RuntimeError("no publish request pending")
        self._publish = _Publish.REJECTED
        self._send_status("error", code, description)

    # ------------------------------------------------------------------ parsing

    def _fail(self, reason: str, events: list[Event]) -> None:
        self._state = _State.FAILED
        self._buf.clear()
        self._streams.clear()
        events.append(ProtocolError(reason))

    def _step(self, pos: int, events: list[Event]) -> int | None:
        """Consume one unit (handshake part or chunk) at ``pos``; None if more data is needed."""
        buf = self._buf
        avail = len(buf) - pos
        if self._state is _State.C0:
            if avail < 1:
                return None
            if buf[pos] != RTMP_VERSION:
                raise _Fatal(f"unsupported RTMP version {buf[pos]}")
            self._state = _State.C1
            return pos + 1
        if self._state is _State.C1:
            if avail < HANDSHAKE_SIZE:
                return None
            c1 = bytes(buf[pos : pos + HANDSHAKE_SIZE])
            # Simple handshake: S1 = time + zero + random, S2 = echo of C1. Clients sending a
            # digest C1 (ffmpeg, OBS) only validate S1's digest when S1 claims a version, which
            # our zero field does not.
            s1 = struct.pack(">II", int(time.monotonic() * 1000) & _U32_MASK, 0) + os.urandom(
                HANDSHAKE_SIZE - 8
            )
            self._out += bytes([RTMP_VERSION]) + s1 + c1
            self._state = _State.C2
            return pos + HANDSHAKE_SIZE
        if self._state is _State.C2:
            if avail < HANDSHAKE_SIZE:
                return None
            self._state = _State.CHUNKS  # C2 content is not checked: clients are sloppy here
            return pos + HANDSHAKE_SIZE
        if self._state is _State.CHUNKS:
            return self._parse_chunk(pos, events)
        return None

    def _parse_chunk(self, pos: int, events: list[Event]) -> int | None:
        buf = self._buf
        end = len(buf)
        if pos >= end:
            return None
        b0 = buf[pos]
        fmt = b0 >> 6
        csid = b0 & 0x3F
        p = pos + 1
        if csid == 0:
            if p + 1 > end:
                return None
            csid = 64 + buf[p]
            p += 1
        elif csid == 1:
            if p + 2 > end:
                return None
            csid = 64 + buf[p] + (buf[p + 1] << 8)
            p += 2

        cs = self._streams.get(csid)
        if cs is None:
            if fmt != 0:
                raise _Fatal(f"chunk type {fmt} on new chunk stream {csid}")
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise _Fatal("too many chunk streams")

        hsize = _MSG_HEADER_SIZE[fmt]
        if p + hsize > end:
            return None
        ts_field = 0
        length = cs.length if cs else 0
        type_id = cs.type_id if cs else 0
        stream_id = cs.stream_id if cs else 0
        if fmt <= 2:
            ts_field = int.from_bytes(buf[p : p + 3], "big")
        if fmt <= 1:
            length = int.from_bytes(buf[p + 3 : p + 6], "big")
            type_id = buf[p + 6]
        if fmt == 0:
            stream_id = int.from_bytes(buf[p + 7 : p + 11], "little")
        p += hsize

        if fmt <= 2:
            extended = ts_field == _EXTENDED_TS
        else:
            assert cs is not None
            extended = cs.extended
        continuing = fmt == 3 and cs is not None and cs.partial is not None
        ext_value = 0
        if extended:
            # Type 3 chunks repeat the extended timestamp when their message's header used one
            # (the spec and ffmpeg/librtmp do); some encoders omit it on continuation chunks,
            # so there it is only skipped if it matches the value from the message header.
            if p + 4 > end:
                return None
            ext_value = int.from_bytes(buf[p : p + 4], "big")
            if not continuing or (cs is not None and ext_value == cs.ext_value):
                p += 4

        if not continuing and length > MAX_MESSAGE_SIZE:
            raise _Fatal(f"message length {length} exceeds limit")
        remaining = cs.remaining if continuing and cs is not None else length
        take = min(self._in_chunk_size, remaining)
        if p + take > end:
            return None

        # The whole chunk is available: commit header state.
        if cs is None:
            cs = self._streams[csid] = _ChunkStream()
        if not continuing:
            if cs.partial is not None:
                # A new header while a message is half read: drop the stale part (ffmpeg does too).
                self._pending_bytes -= len(cs.partial)
                cs.partial = None
            if fmt == 0:
                cs.timestamp = ext_value if extended else ts_field
                # Per spec, a type 3 chunk after a type 0 uses the type 0 timestamp as its delta.
                cs.delta = cs.timestamp
            elif fmt in (1, 2):
                cs.delta = ext_value if extended else ts_field
                cs.timestamp = (cs.timestamp + cs.delta) & _U32_MASK
            else:  # type 3 starting a new message: repeat the previous delta
                if extended:
                    cs.delta = ext_value
                cs.timestamp = (cs.timestamp + cs.delta) & _U32_MASK
            if fmt <= 2:
                cs.extended = extended
            cs.ext_value = ext_value
            cs.length = length
            cs.type_id = type_id
            cs.stream_id = stream_id
            cs.partial = bytearray()
            cs.remaining = length

        assert cs.partial is not None
        if self._pending_bytes + take > MAX_PENDING_BYTES:
            raise _Fatal("too much partially received message data")
        cs.partial += buf[p : p + take]
        self._pending_bytes += take
        cs.remaining -= take
        p += take
        if cs.remaining == 0:
            payload = bytes(cs.partial)
            self._pending_bytes -= len(cs.partial)
            cs.partial = None
            self._on_message(cs.type_id, cs.stream_id, cs.timestamp, payload, events)
        return p

    def _maybe_ack(self, n: int) -> None:
        self._bytes_received += n
        if self._ack_window > 0 and self._bytes_received - self._last_ack >= self._ack_window:
            self._last_ack = self._bytes_received
            self._send(CSID_CONTROL, MSG_ACK, 0, struct.pack(">I", self._bytes_received & _U32_MASK))

    # ------------------------------------------------------------------ messages

    def _on_message(self, type_id: int, stream_id: int, ts: int, payload: bytes, events: list[Event]) -> None:
        if type_id == MSG_SET_CHUNK_SIZE:
            size = self._u32(payload) & 0x7FFFFFFF
            if not 1 <= size <= MAX_CHUNK_SIZE:
                raise _Fatal(f"invalid chunk size {size}")
            self._in_chunk_size = size
        elif type_id == MSG_ABORT:
            cs = self._streams.get(self._u32(payload))
            if cs is not None and cs.partial is not None:
                self._pending_bytes -= len(cs.partial)
                cs.partial = None
        elif type_id == MSG_WINDOW_ACK_SIZE:
            self._ack_window = self._u32(payload)
        elif type_id == MSG_USER_CONTROL:
            if len(payload) < 2:
                raise _Fatal("short user control message")
            event_type = int.from_bytes(payload[:2], "big")
            if event_type == UC_PING_REQUEST:
                self._send_user_control(UC_PING_RESPONSE, self._u32(payload[2:]))
        elif type_id in (MSG_AUDIO, MSG_VIDEO):
            if self._publish in (_Publish.PENDING, _Publish.PUBLISHING) and payload:
                kind: Literal["audio", "video"] = "audio" if type_id == MSG_AUDIO else "video"
                events.append(MediaMessage(kind, ts, payload))
        elif type_id in (MSG_DATA_AMF0, MSG_DATA_AMF3):
            if type_id == MSG_DATA_AMF3 and payload[:1] == b"\x00":
                payload = payload[1:]
            self._on_data(ts, payload, events)
        elif type_id in (MSG_COMMAND_AMF0, MSG_COMMAND_AMF3):
            if type_id == MSG_COMMAND_AMF3 and payload[:1] == b"\x00":
                payload = payload[1:]
            self._on_command(stream_id, payload, events)
        elif type_id == MSG_AGGREGATE:
            self._on_aggregate(ts, payload, events)
        # MSG_ACK, MSG_SET_PEER_BANDWIDTH and unknown types need no action.

    @staticmethod
    def _u32(payload: bytes) -> int:
        if len(payload) < 4:
            raise _Fatal("short control message")
        return int.from_bytes(payload[:4], "big")

    def _on_aggregate(self, ts: int, payload: bytes, events: list[Event]) -> None:
        # An aggregate is a run of FLV tags; sub-tag timestamps are relative to the first one.
        p = 0
        base: int | None = None
        while p + 11 <= len(payload):
            tag_type = payload[p]
            size = int.from_bytes(payload[p + 1 : p + 4], "big")
            sub_ts = int.from_bytes(payload[p + 4 : p + 7], "big") | (payload[p + 7] << 24)
            body_end = p + 11 + size
            if body_end > len(payload):
                raise _Fatal("truncated aggregate message")
            if base is None:
                base = sub_ts
            if tag_type not in (MSG_AUDIO, MSG_VIDEO, MSG_DATA_AMF0):
                raise _Fatal(f"unexpected tag type {tag_type} in aggregate message")
            self._on_message(
                tag_type, 0, (ts + sub_ts - base) & _U32_MASK, payload[p + 11 : body_end], events
            )
            p = body_end + 4  # skip PreviousTagSize

    def _on_data(self, ts: int, payload: bytes, events: list[Event]) -> None:
        try:
            name, p = amf0.decode_value(payload, 0)
            if name == "@setDataFrame":
                name, p = amf0.decode_value(payload, p)
            if name != "onMetaData":
                return
            value, end = amf0.decode_value(payload, p)
        except amf0.AMF0Error:
            return  # broken metadata is not worth dropping the stream for
        if not isinstance(value, dict):
            return
        if self._publish not in (_Publish.PENDING, _Publish.PUBLISHING):
            return
        body = amf0.encode("onMetaData") + payload[p:end]
        events.append(MetaData(dict(value), ts, body))

    def _on_command(self, stream_id: int, payload: bytes, events: list[Event]) -> None:
        try:
            values = amf0.decode_all(payload)
        except amf0.AMF0Error as exc:
            raise _Fatal(f"malformed AMF0 command: {exc}") from exc
        if len(values) < 2 or not isinstance(values[0], str):
            raise _Fatal("malformed command message")
        name: str = values[0]
        txn = values[1] if isinstance(values[1], float) else 0.0
        args = values[2:]

        if name == "connect":
            self._on_connect(txn, args)
            return
        if not self._connected:
            raise _Fatal(f"command {name!r} before connect")
        if name in ("releaseStream", "FCPublish"):
            self._send_command(CSID_COMMAND, 0, "_result", txn, None, amf0.UNDEFINED)
        elif name == "createStream":
            self._send_command(CSID_COMMAND, 0, "_result", txn, None, float(PUBLISH_STREAM_ID))
        elif name == "publish":
            self._on_publish(stream_id, txn, args, events)
        elif name in ("FCUnpublish", "deleteStream", "closeStream"):
            if self._publish is _Publish.PUBLISHING or self._publish is _Publish.PENDING:
                self._publish = _Publish.ENDED
                events.append(PublishEnded(name))
        elif name in ("play", "play2", "getStreamLength"):
            # Ingest only: nobody plays from us.
            if txn > 0:
                self._send_error(txn, "NetStream.Play.Failed", "playback is not supported")
            if name != "getStreamLength":
                self._send_status("error", "NetStream.Play.Failed", "playback is not supported", stream_id)
        elif txn > 0:
            self._send_error(txn, "NetConnection.Call.Failed", "unsupported command")

    def _on_connect(self, txn: float, args: list[Any]) -> None:
        if self._connected:
            raise _Fatal("duplicate connect")
        cmd = args[0] if args and isinstance(args[0], dict) else {}
        app = cmd.get("app")
        tc_url = cmd.get("tcUrl")
        self.app = app if isinstance(app, str) else ""
        self.tc_url = tc_url if isinstance(tc_url, str) else ""
        self._connected = True
        self._send(CSID_CONTROL, MSG_WINDOW_ACK_SIZE, 0, struct.pack(">I", WINDOW_ACK_SIZE))
        self._send(CSID_CONTROL, MSG_SET_PEER_BANDWIDTH, 0, struct.pack(">IB", WINDOW_ACK_SIZE, 2))
        self._send(CSID_CONTROL, MSG_SET_CHUNK_SIZE, 0, struct.pack(">I", OUR_CHUNK_SIZE))
        self._out_chunk_size = OUR_CHUNK_SIZE
        self._send_command(
            CSID_COMMAND,
            0,
            "_result",
            txn,
            {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
            {
                "level": "status",
                "code": "NetConnection.Connect.Success",
                "description": "Connection succeeded.",
                "objectEncoding": 0.0,
            },
        )

    def _on_publish(self, stream_id: int, txn: float, args: list[Any], events: list[Event]) -> None:
        if self._publish is not _Publish.NONE:
            raise _Fatal("publish while already publishing")
        name = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        ptype = args[2] if len(args) > 2 and isinstance(args[2], str) else "live"
        self._publish = _Publish.PENDING
        self._publish_stream_id = stream_id or PUBLISH_STREAM_ID
        self.stream_name = name
        events.append(PublishRequested(app=self.app, name=name, tc_url=self.tc_url, publish_type=ptype))

    # ------------------------------------------------------------------ sending

    def _send(self, csid: int, type_id: int, stream_id: int, payload: bytes, timestamp: int = 0) -> None:
        # Always a type 0 header (csid < 64 here), then type 3 continuations.
        out = self._out
        out.append(csid)
        out += min(timestamp, _EXTENDED_TS).to_bytes(3, "big")
        out += len(payload).to_bytes(3, "big")
        out.append(type_id)
        out += stream_id.to_bytes(4, "little")
        ext = timestamp >= _EXTENDED_TS
        if ext:
            out += timestamp.to_bytes(4, "big")
        size = self._out_chunk_size
        for i in range(0, max(len(payload), 1), size):
            if i:
                out.append(0xC0 | csid)
                if ext:
                    out += timestamp.to_bytes(4, "big")
            out += payload[i : i + size]

    def _send_user_control(self, event_type: int, value: int) -> None:
        self._send(CSID_CONTROL, MSG_USER_CONTROL, 0, struct.pack(">HI", event_type, value & _U32_MASK))

    def _send_command(self, csid: int, stream_id: int, *values: Any) -> None:
        self._send(csid, MSG_COMMAND_AMF0, stream_id, amf0.encode(*values))

    def _send_error(self, txn: float, code: str, description: str) -> None:
        self._send_command(
            CSID_COMMAND, 0, "_error", txn, None, {"level": "error", "code": code, "description": description}
        )

    def _send_status(self, level: str, code: str, description: str, stream_id: int | None = None) -> None:
        sid = self._publish_stream_id if stream_id is None else stream_id
        info = {"level": level, "code": code, "description": description}
        self._send_command(CSID_STATUS, sid, "onStatus", 0.0, None, info)
