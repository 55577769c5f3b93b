"""Sans-IO RTMP server connection (publish/ingest side only).

Feed received bytes to :meth:`RTMPServerConnection.receive_data`, act on the returned events, and send
whatever :meth:`RTMPServerConnection.data_to_send` returns. No sockets, no clocks, no randomness: the
caller passes the handshake's time and random bytes in, and enforces deadlines itself.
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Callable
from typing import Any, Final, Literal

from onair.formats import amf0
from onair.protocols.rtmp import wire
from onair.protocols.rtmp.chunks import (
    DEFAULT_CHUNK_SIZE,
    MAX_CHUNK_SIZE,
    Budget,
    ChunkReader,
    Fatal,
    Limits,
    Message,
    write_message,
)
from onair.protocols.rtmp.events import (
    Event,
    MediaMessage,
    MetaData,
    ProtocolError,
    PublishEnded,
    PublishRequested,
)
from onair.protocols.rtmp.handshake import Handshake
from onair.protocols.rtmp.wire import HANDSHAKE_SIZE, OUR_CHUNK_SIZE, U32_MASK, WINDOW_ACK_SIZE

__all__ = [
    "Budget", "DEFAULT_CHUNK_SIZE", "Event", "HANDSHAKE_SIZE", "Limits", "MAX_CHUNK_SIZE", "MAX_MESSAGE_SIZE",
    "MediaMessage", "MetaData", "OUR_CHUNK_SIZE", "ProtocolError", "PublishEnded", "PublishRequested",
    "RTMPServerConnection", "WINDOW_ACK_SIZE",
]

MAX_MESSAGE_SIZE: Final = Limits().publishing.max_message_size  # while publishing; far less before
_HEADER_SLACK: Final = 18  # longest chunk header: what may sit unparsed beyond the budget


class _Publish(enum.Enum):
    NONE = enum.auto()
    PENDING = enum.auto()
    PUBLISHING = enum.auto()
    REJECTED = enum.auto()
    ENDED = enum.auto()


def _u32(payload: bytes) -> int:
    if len(payload) < 4:
        raise Fatal("short control message")
    return int.from_bytes(payload[:4], "big")


class RTMPServerConnection:
    """Server side of one RTMP connection that accepts a single publish.

    ``epoch_ms`` and ``handshake_random`` fill S1 (its time field and random part; zeros by default: the
    simple handshake checks neither). ``limits`` bounds what the connection buffers, see :class:`Limits`.
    """

    def __init__(self, *, limits: Limits | None = None, epoch_ms: int = 0, handshake_random: bytes = b"") -> None:
        self._limits = limits or Limits()
        self._handshake = Handshake(epoch_ms, handshake_random)
        self._failed = False
        self._buf = bytearray()
        self._out = bytearray()
        self._reader = ChunkReader(self._limits.setup)
        self._out_chunk_size = DEFAULT_CHUNK_SIZE
        self._bytes_received = 0
        self._last_ack = 0
        self._ack_window = WINDOW_ACK_SIZE
        self._connected = False
        self._publish = _Publish.NONE
        self._accepted = False
        self._publish_stream_id = wire.PUBLISH_STREAM_ID
        self.app = ""
        self.tc_url = ""
        self.stream_name = ""

    # ------------------------------------------------------------------ public API

    @property
    def failed(self) -> bool:
        return self._failed

    @property
    def publishing(self) -> bool:
        return self._publish is _Publish.PUBLISHING

    @property
    def accepted(self) -> bool:
        """A publish was accepted (it may have ended since): the publishing budget applies."""
        return self._accepted

    @property
    def buffered(self) -> int:
        """Bytes held for the peer: unparsed input plus partially received messages."""
        return len(self._buf) + self._reader.buffered

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def receive_data(self, data: bytes) -> list[Event]:
        """Parse what is complete; ``b""`` resumes parsing after a publish request was answered."""
        if self._failed:
            return []
        events: list[Event] = []
        self._buf += data
        pos = 0
        try:
            while (new_pos := self._step(pos, events)) is not None:
                pos = new_pos
            del self._buf[:pos]
            if len(self._buf) > self._reader.budget.max_buffered + _HEADER_SLACK:
                raise Fatal("too much data before the publish request was answered")
        except Fatal as exc:
            self._fail(str(exc), events)
            return events
        if self._handshake.done:
            self._maybe_ack(len(data))
        return events

    def accept_publish(self) -> None:
        if self._publish is _Publish.ENDED:
            return  # ended before the answer: nothing to answer
        if self._publish is not _Publish.PENDING:
            raise RuntimeError("no publish request pending")
        self._publish = _Publish.PUBLISHING
        self._accepted = True
        self._reader.budget = self._limits.publishing
        self._send_user_control(wire.UC_STREAM_BEGIN, self._publish_stream_id)
        self._send_status(
            "status", "NetStream.Publish.Start", f"{self.stream_name.split('?', 1)[0]} is now published."
        )

    def reject_publish(self, description: str, code: str = "NetStream.Publish.BadName") -> None:
        """Send an error status; the caller should flush data_to_send() and close."""
        if self._publish is _Publish.ENDED:
            return
        if self._publish is not _Publish.PENDING:
            raise RuntimeError("no publish request pending")
        self._publish = _Publish.REJECTED
        self._send_status("error", code, description)

    def close(self) -> None:
        """Release every buffer; the connection ignores data from now on."""
        self._failed = True
        self._buf = bytearray()
        self._out = bytearray()
        self._reader.clear()

    # ------------------------------------------------------------------ parsing

    def _fail(self, reason: str, events: list[Event]) -> None:
        self.close()
        events.append(ProtocolError(reason))

    def _step(self, pos: int, events: list[Event]) -> int | None:
        """Consume one unit (handshake part or chunk) at ``pos``; None if more data is needed."""
        if not self._handshake.done:
            return self._handshake.step(self._buf, pos, self._out)
        if self._publish is _Publish.PENDING:
            return None  # paused until the publish request is answered
        read = self._reader.read(self._buf, pos)
        if read is None:
            return None
        pos, message = read
        if message is not None:
            self._on_message(message, events)
        return pos

    def _maybe_ack(self, n: int) -> None:
        self._bytes_received += n
        if self._ack_window > 0 and self._bytes_received - self._last_ack >= self._ack_window:
            self._last_ack = self._bytes_received
            self._send(wire.CSID_CONTROL, wire.MSG_ACK, 0, struct.pack(">I", self._bytes_received & U32_MASK))

    # ------------------------------------------------------------------ messages

    def _on_message(self, msg: Message, events: list[Event]) -> None:
        handler = _MESSAGE_HANDLERS.get(msg.type_id)
        if handler is not None:  # Acknowledgement, Set Peer Bandwidth and unknown types need no action
            handler(self, msg, events)

    def _on_set_chunk_size(self, msg: Message, events: list[Event]) -> None:
        size = _u32(msg.payload) & 0x7FFFFFFF
        if not 1 <= size <= MAX_CHUNK_SIZE:
            raise Fatal(f"invalid chunk size {size}")
        self._reader.chunk_size = size

    def _on_abort(self, msg: Message, events: list[Event]) -> None:
        self._reader.abort(_u32(msg.payload))

    def _on_window_ack_size(self, msg: Message, events: list[Event]) -> None:
        self._ack_window = _u32(msg.payload)

    def _on_user_control(self, msg: Message, events: list[Event]) -> None:
        if len(msg.payload) < 2:
            raise Fatal("short user control message")
        if int.from_bytes(msg.payload[:2], "big") == wire.UC_PING_REQUEST:
            self._send_user_control(wire.UC_PING_RESPONSE, _u32(msg.payload[2:]))

    def _on_media(self, msg: Message, events: list[Event]) -> None:
        if self._publish is _Publish.PUBLISHING and msg.payload:
            kind: Literal["audio", "video"] = "audio" if msg.type_id == wire.MSG_AUDIO else "video"
            events.append(MediaMessage(kind, msg.timestamp, msg.payload))

    def _on_data(self, msg: Message, events: list[Event]) -> None:
        payload = msg.payload
        if msg.type_id == wire.MSG_DATA_AMF3 and payload[:1] == b"\x00":
            payload = payload[1:]
        try:
            name, p = amf0.decode_value(payload, 0)
            if name == "@setDataFrame":
                name, p = amf0.decode_value(payload, p)
            if name != "onMetaData":
                return
            value, end = amf0.decode_value(payload, p)
        except amf0.AMF0Error:
            return  # broken metadata is not worth dropping the stream for
        if isinstance(value, dict) and self._publish is _Publish.PUBLISHING:
            events.append(MetaData(dict(value), msg.timestamp, amf0.encode("onMetaData") + payload[p:end]))

    def _on_aggregate(self, msg: Message, events: list[Event]) -> None:
        # An aggregate is a run of FLV tags; sub-tag timestamps are relative to the first one.
        payload = msg.payload
        p = 0
        base: int | None = None
        while p + 11 <= len(payload):
            tag_type = payload[p]
            size = int.from_bytes(payload[p + 1 : p + 4], "big")
            sub_ts = int.from_bytes(payload[p + 4 : p + 7], "big") | (payload[p + 7] << 24)
            body_end = p + 11 + size
            if body_end > len(payload):
                raise Fatal("truncated aggregate message")
            if base is None:
                base = sub_ts
            if tag_type not in (wire.MSG_AUDIO, wire.MSG_VIDEO, wire.MSG_DATA_AMF0):
                raise Fatal(f"unexpected tag type {tag_type} in aggregate message")
            ts = (msg.timestamp + sub_ts - base) & U32_MASK
            self._on_message(Message(tag_type, 0, ts, payload[p + 11 : body_end]), events)
            p = body_end + 4  # skip PreviousTagSize

    # ------------------------------------------------------------------ commands

    def _on_command(self, msg: Message, events: list[Event]) -> None:
        payload = msg.payload
        if msg.type_id == wire.MSG_COMMAND_AMF3 and payload[:1] == b"\x00":
            payload = payload[1:]
        try:
            values = amf0.decode_all(payload)
        except amf0.AMF0Error as exc:
            raise Fatal(f"malformed AMF0 command: {exc}") from exc
        if len(values) < 2 or not isinstance(values[0], str):
            raise Fatal("malformed command message")
        name: str = values[0]
        # Transaction id 0 means "no answer expected" (GStreamer's rtmp2sink sends releaseStream and
        # FCPublish so and warns about a `_result` without transaction).
        txn = values[1] if isinstance(values[1], float) else 0.0
        if name != "connect" and not self._connected:
            raise Fatal(f"command {name!r} before connect")
        handler = _COMMAND_HANDLERS.get(name)
        if handler is not None:
            handler(self, name, msg.stream_id, txn, values[2:], events)
        elif txn > 0:
            self._send_error(txn, "NetConnection.Call.Failed", "unsupported command")

    def _on_connect(self, name: str, stream_id: int, txn: float, args: list[Any], events: list[Event]) -> None:
        if self._connected:
            raise Fatal("duplicate connect")
        cmd = args[0] if args and isinstance(args[0], dict) else {}
        app = cmd.get("app")
        tc_url = cmd.get("tcUrl")
        self.app = app if isinstance(app, str) else ""
        self.tc_url = tc_url if isinstance(tc_url, str) else ""
        self._connected = True
        self._send(wire.CSID_CONTROL, wire.MSG_WINDOW_ACK_SIZE, 0, struct.pack(">I", WINDOW_ACK_SIZE))
        self._send(wire.CSID_CONTROL, wire.MSG_SET_PEER_BANDWIDTH, 0, struct.pack(">IB", WINDOW_ACK_SIZE, 2))
        self._send(wire.CSID_CONTROL, wire.MSG_SET_CHUNK_SIZE, 0, struct.pack(">I", OUR_CHUNK_SIZE))
        self._out_chunk_size = OUR_CHUNK_SIZE
        # Answered whatever the transaction id: connect's is always 1 (spec), and every client waits for it.
        self._send_command(
            wire.CSID_COMMAND, 0, "_result", txn,
            {"fmsVer": "FMS/3,0,1,123", "capabilities": 31.0},
            {"level": "status", "code": "NetConnection.Connect.Success", "description": "Connection succeeded.",
             "objectEncoding": 0.0},
        )  # fmt: skip

    def _on_prepare(self, name: str, stream_id: int, txn: float, args: list[Any], events: list[Event]) -> None:
        if txn > 0:  # releaseStream, FCPublish: OBS/librtmp/ffmpeg number them and wait for the answer
            self._send_command(wire.CSID_COMMAND, 0, "_result", txn, None, amf0.UNDEFINED)
        if name == "FCPublish":  # FMS/Wowza/SRS answer this way and FMLE-style encoders wait for it
            self._send_fc_status("onFCPublish", "NetStream.Publish.Start", args)

    def _on_create_stream(self, name: str, stream_id: int, txn: float, args: list[Any],
                          events: list[Event]) -> None:
        if txn > 0:
            self._send_command(wire.CSID_COMMAND, 0, "_result", txn, None, float(wire.PUBLISH_STREAM_ID))

    def _on_publish(self, name: str, stream_id: int, txn: float, args: list[Any], events: list[Event]) -> None:
        if self._publish is not _Publish.NONE:
            raise Fatal("publish while already publishing")
        stream_name = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        ptype = args[2] if len(args) > 2 and isinstance(args[2], str) else "live"
        self._publish = _Publish.PENDING
        self._publish_stream_id = stream_id or wire.PUBLISH_STREAM_ID
        self.stream_name = stream_name
        events.append(PublishRequested(app=self.app, name=stream_name, tc_url=self.tc_url, publish_type=ptype))

    def _on_unpublish(self, name: str, stream_id: int, txn: float, args: list[Any], events: list[Event]) -> None:
        if name == "FCUnpublish":  # the FMS sequence: onFCUnpublish, then the numbered answer
            self._send_fc_status("onFCUnpublish", "NetStream.Unpublish.Success", args)
            if txn > 0:
                self._send_command(wire.CSID_COMMAND, 0, "_result", txn, None, amf0.UNDEFINED)
        if self._publish is _Publish.PUBLISHING or self._publish is _Publish.PENDING:
            self._publish = _Publish.ENDED
            events.append(PublishEnded(name))

    def _on_play(self, name: str, stream_id: int, txn: float, args: list[Any], events: list[Event]) -> None:
        # Ingest only: nobody plays from us.
        if txn > 0:
            self._send_error(txn, "NetStream.Play.Failed", "playback is not supported")
        if name != "getStreamLength":
            self._send_status("error", "NetStream.Play.Failed", "playback is not supported", stream_id)

    # ------------------------------------------------------------------ sending

    def _send(self, csid: int, type_id: int, stream_id: int, payload: bytes, timestamp: int = 0) -> None:
        write_message(self._out, self._out_chunk_size, csid, type_id, stream_id, payload, timestamp)

    def _send_user_control(self, event_type: int, value: int) -> None:
        self._send(wire.CSID_CONTROL, wire.MSG_USER_CONTROL, 0, struct.pack(">HI", event_type, value & U32_MASK))

    def _send_command(self, csid: int, stream_id: int, *values: Any) -> None:
        self._send(csid, wire.MSG_COMMAND_AMF0, stream_id, amf0.encode(*values))

    def _send_error(self, txn: float, code: str, description: str) -> None:
        self._send_command(
            wire.CSID_COMMAND, 0, "_error", txn, None, {"level": "error", "code": code, "description": description}
        )

    def _send_fc_status(self, command: str, code: str, args: list[Any]) -> None:
        name = args[1] if len(args) > 1 and isinstance(args[1], str) else ""
        # the stream key carries the token after "?": never echoed back
        info = {"code": code, "description": name.split("?", 1)[0]}
        self._send_command(wire.CSID_COMMAND, 0, command, 0.0, None, info)

    def _send_status(self, level: str, code: str, description: str, stream_id: int | None = None) -> None:
        sid = self._publish_stream_id if stream_id is None else stream_id
        info = {"level": level, "code": code, "description": description}
        self._send_command(wire.CSID_STATUS, sid, "onStatus", 0.0, None, info)


_MessageHandler = Callable[[RTMPServerConnection, Message, list[Event]], None]
_CommandHandler = Callable[[RTMPServerConnection, str, int, float, list[Any], list[Event]], None]

_MESSAGE_HANDLERS: Final[dict[int, _MessageHandler]] = {
    wire.MSG_SET_CHUNK_SIZE: RTMPServerConnection._on_set_chunk_size,
    wire.MSG_ABORT: RTMPServerConnection._on_abort,
    wire.MSG_WINDOW_ACK_SIZE: RTMPServerConnection._on_window_ack_size,
    wire.MSG_USER_CONTROL: RTMPServerConnection._on_user_control,
    wire.MSG_AUDIO: RTMPServerConnection._on_media,
    wire.MSG_VIDEO: RTMPServerConnection._on_media,
    wire.MSG_DATA_AMF0: RTMPServerConnection._on_data,
    wire.MSG_DATA_AMF3: RTMPServerConnection._on_data,
    wire.MSG_COMMAND_AMF0: RTMPServerConnection._on_command,
    wire.MSG_COMMAND_AMF3: RTMPServerConnection._on_command,
    wire.MSG_AGGREGATE: RTMPServerConnection._on_aggregate,
}

_COMMAND_HANDLERS: Final[dict[str, _CommandHandler]] = {
    "connect": RTMPServerConnection._on_connect,
    "releaseStream": RTMPServerConnection._on_prepare,
    "FCPublish": RTMPServerConnection._on_prepare,
    "createStream": RTMPServerConnection._on_create_stream,
    "publish": RTMPServerConnection._on_publish,
    "FCUnpublish": RTMPServerConnection._on_unpublish,
    "deleteStream": RTMPServerConnection._on_unpublish,
    "closeStream": RTMPServerConnection._on_unpublish,
    "play": RTMPServerConnection._on_play,
    "play2": RTMPServerConnection._on_play,
    "getStreamLength": RTMPServerConnection._on_play,
}
