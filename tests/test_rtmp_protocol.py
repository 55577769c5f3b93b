"""Unit tests of the sans-IO RTMP core (no sockets); the memory budget is in test_rtmp_budget.py."""

from __future__ import annotations

import random
import struct
from typing import Any

from onair.formats import amf0
from onair.formats.flv import TAG_AUDIO, TAG_VIDEO, flv_tag
from onair.protocols.rtmp.protocol import (
    MAX_MESSAGE_SIZE,
    MediaMessage,
    MetaData,
    ProtocolError,
    PublishEnded,
    PublishRequested,
    RTMPServerConnection,
)

# --------------------------------------------------------------------------- client-side helpers


def chunk(
    csid: int,
    fmt: int,
    payload: bytes,
    *,
    ts: int = 0,
    length: int | None = None,
    type_id: int = 0,
    stream_id: int = 0,
    chunk_size: int = 128,
    ext_on_continuation: bool = True,
) -> bytes:
    """Encode one message as a chunk with header ``fmt`` plus type 3 continuations.

    ``ts`` is the absolute timestamp for fmt 0 and the delta for fmt 1/2; for fmt 3 it is
    only used to decide whether an extended timestamp is present.
    """
    length = len(payload) if length is None else length
    ext = ts >= 0xFFFFFF

    def basic(f: int) -> bytes:
        if csid < 64:
            return bytes([(f << 6) | csid])
        if csid < 320:
            return bytes([f << 6, csid - 64])
        return bytes([(f << 6) | 1]) + (csid - 64).to_bytes(2, "little")

    ts_field = (0xFFFFFF if ext else ts).to_bytes(3, "big")
    header = basic(fmt)
    if fmt <= 2:
        header += ts_field
    if fmt <= 1:
        header += length.to_bytes(3, "big") + bytes([type_id])
    if fmt == 0:
        header += stream_id.to_bytes(4, "little")
    if ext:
        header += ts.to_bytes(4, "big")
    out = bytearray(header)
    out += payload[:chunk_size]
    for i in range(chunk_size, len(payload), chunk_size):
        out += basic(3)
        if ext and ext_on_continuation:
            out += ts.to_bytes(4, "big")
        out += payload[i : i + chunk_size]
    return bytes(out)


def command(*values: Any, stream_id: int = 0, csid: int = 3, chunk_size: int = 128) -> bytes:
    body = amf0.encode(*values)
    return chunk(csid, 0, body, type_id=20, stream_id=stream_id, chunk_size=chunk_size)


def parse_server_output(data: bytes) -> list[tuple[int, int, bytes]]:
    """Decode server output (type 0 + type 3 chunks only) into (type_id, stream_id, payload)."""
    chunk_size = 128
    pos = 0
    msgs = []
    partial: dict[int, tuple[int, int, int, bytearray]] = {}
    while pos < len(data):
        b0 = data[pos]
        fmt, csid = b0 >> 6, b0 & 0x3F
        pos += 1
        if fmt == 0:
            length = int.from_bytes(data[pos + 3 : pos + 6], "big")
            type_id = data[pos + 6]
            sid = int.from_bytes(data[pos + 7 : pos + 11], "little")
            pos += 11
            partial[csid] = (length, type_id, sid, bytearray())
        else:
            assert fmt == 3
        length, type_id, sid, buf = partial[csid]
        take = min(chunk_size, length - len(buf))
        buf += data[pos : pos + take]
        pos += take
        if len(buf) == length:
            msgs.append((type_id, sid, bytes(buf)))
            del partial[csid]
            if type_id == 1:
                chunk_size = struct.unpack(">I", buf[:4])[0]
    assert not partial
    return msgs


def commands(data: bytes) -> list[list[Any]]:
    return [amf0.decode_all(p) for t, _, p in parse_server_output(data) if t == 20]


def handshaken() -> RTMPServerConnection:
    conn = RTMPServerConnection()
    c1 = bytes(range(256)) * 6
    assert conn.receive_data(b"\x03" + c1) == []
    out = conn.data_to_send()
    assert len(out) == 1 + 1536 * 2
    assert out[0] == 3
    assert out[1 + 1536 :] == c1  # S2 echoes C1
    assert out[5:9] == b"\x00\x00\x00\x00"  # S1 "zero" field: no digest to validate
    assert conn.receive_data(out[1 : 1 + 1536]) == []  # C2 = echo of S1
    return conn


def connected(app: str = "in", tc_url: str = "rtmp://h/in") -> RTMPServerConnection:
    conn = handshaken()
    assert conn.receive_data(command("connect", 1.0, {"app": app, "tcUrl": tc_url, "flashVer": "x"})) == []
    conn.data_to_send()
    return conn


def publishing(name: str = "key?tok") -> RTMPServerConnection:
    conn = connected()
    conn.receive_data(command("createStream", 2.0, None))
    events = conn.receive_data(command("publish", 0.0, None, name, "live", stream_id=1, csid=4))
    assert events == [PublishRequested(app="in", name=name, tc_url="rtmp://h/in", publish_type="live")]
    conn.data_to_send()
    conn.accept_publish()
    conn.data_to_send()
    return conn


# --------------------------------------------------------------------------- handshake / commands


def test_handshake_byte_by_byte() -> None:
    conn = RTMPServerConnection()
    c1 = random.Random(1).randbytes(1536)
    data = b"\x03" + c1
    for i in range(len(data)):
        assert conn.receive_data(data[i : i + 1]) == []
    out = conn.data_to_send()
    assert out[1 + 1536 :] == c1
    # C2 plus the start of the first chunk in one segment.
    msg = command("connect", 1.0, {"app": "in"})
    assert conn.receive_data(out[1:1537] + msg[:5]) == []
    assert conn.receive_data(msg[5:]) == []
    assert commands(conn.data_to_send())[0][0] == "_result"


def test_wrong_version_is_protocol_error() -> None:
    conn = RTMPServerConnection()
    events = conn.receive_data(b"\x06" + bytes(1536))
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert conn.failed
    assert conn.receive_data(b"\x03" + bytes(3000)) == []
    assert conn.data_to_send() == b""


def test_connect_reply_sequence() -> None:
    conn = handshaken()
    conn.receive_data(command("connect", 1.0, {"app": "in", "tcUrl": "rtmp://h:1935/in"}))
    msgs = parse_server_output(conn.data_to_send())
    types = [t for t, _, _ in msgs]
    assert types == [5, 6, 1, 20]
    assert struct.unpack(">I", msgs[0][2])[0] == 2_500_000
    assert struct.unpack(">I", msgs[2][2])[0] == 4096
    name, txn, props, info = amf0.decode_all(msgs[3][2])
    assert (name, txn) == ("_result", 1.0)
    assert info["code"] == "NetConnection.Connect.Success"
    assert conn.app == "in" and conn.tc_url == "rtmp://h:1935/in"


def test_publish_flow_accept() -> None:
    conn = connected()
    conn.receive_data(command("releaseStream", 2.0, None, "key?tok"))
    conn.receive_data(command("FCPublish", 3.0, None, "key?tok"))
    conn.receive_data(command("createStream", 4.0, None))
    replies = commands(conn.data_to_send())
    assert [r[:2] for r in replies] == [["_result", 2.0], ["_result", 3.0], ["onFCPublish", 0.0], ["_result", 4.0]]
    assert replies[2][3] == {"code": "NetStream.Publish.Start", "description": "key"}  # no token echoed
    assert replies[3][3] == 1.0  # stream id
    events = conn.receive_data(command("publish", 5.0, None, "key?tok", "live", stream_id=1, csid=8))
    assert events == [PublishRequested("in", "key?tok", "rtmp://h/in", "live")]
    conn.accept_publish()
    msgs = parse_server_output(conn.data_to_send())
    assert msgs[0][0] == 4 and msgs[0][2][:2] == b"\x00\x00"  # StreamBegin
    name, _, _, info = amf0.decode_all(msgs[1][2])
    assert msgs[1][1] == 1
    assert name == "onStatus" and info["code"] == "NetStream.Publish.Start" and info["level"] == "status"
    assert "tok" not in info["description"]
    assert conn.publishing
    assert conn.receive_data(command("FCUnpublish", 6.0, None, "key?tok")) == [PublishEnded("FCUnpublish")]
    assert [r[:2] + [r[3]] for r in commands(conn.data_to_send())] == [
        ["onFCUnpublish", 0.0, {"code": "NetStream.Unpublish.Success", "description": "key"}],
        ["_result", 6.0, amf0.UNDEFINED],
    ]
    # A second end command does not produce a second event.
    assert conn.receive_data(command("deleteStream", 7.0, None, 1.0)) == []


def test_publish_flow_reject() -> None:
    conn = connected()
    conn.receive_data(command("createStream", 2.0, None))
    conn.data_to_send()
    conn.receive_data(command("publish", 0.0, None, "nope", "live", stream_id=1))
    conn.reject_publish("unknown stream key")
    (reply,) = commands(conn.data_to_send())
    assert reply[0] == "onStatus"
    assert reply[3]["level"] == "error"
    assert reply[3]["code"] == "NetStream.Publish.BadName"
    assert reply[3]["description"] == "unknown stream key"
    # Media after a rejection is dropped.
    assert conn.receive_data(chunk(6, 0, b"\x17\x01", type_id=9, stream_id=1)) == []


def test_play_and_unknown_commands_get_errors() -> None:
    conn = connected()
    conn.data_to_send()
    conn.receive_data(command("getStreamLength", 3.0, None, "x"))
    conn.receive_data(command("play", 0.0, None, "x", stream_id=1))
    conn.receive_data(command("whatever", 4.0, None))
    conn.receive_data(command("notxn", 0.0, None))
    replies = commands(conn.data_to_send())
    assert [r[0] for r in replies] == ["_error", "onStatus", "_error"]
    assert replies[1][3]["code"] == "NetStream.Play.Failed"


def test_command_before_connect_is_protocol_error() -> None:
    conn = handshaken()
    events = conn.receive_data(command("publish", 0.0, None, "x", "live"))
    assert isinstance(events[0], ProtocolError)


def test_ping_gets_pong() -> None:
    conn = connected()
    conn.data_to_send()
    conn.receive_data(chunk(2, 0, struct.pack(">HI", 6, 12345), type_id=4))
    ((type_id, _, payload),) = parse_server_output(conn.data_to_send())
    assert type_id == 4 and payload == struct.pack(">HI", 7, 12345)


def test_acknowledgement_after_window() -> None:
    conn = connected()
    conn.receive_data(chunk(2, 0, struct.pack(">I", 5000), type_id=5))  # peer's window
    conn.data_to_send()
    acks: list[int] = []
    big = bytes(4000)
    for _ in range(5):
        conn.receive_data(chunk(6, 0, big, type_id=9, stream_id=1))
        acks += [struct.unpack(">I", p)[0] for t, _, p in parse_server_output(conn.data_to_send()) if t == 3]
    # ~20 KB received in ~4 KB steps with a 5000-byte window: an ack roughly every other message.
    assert len(acks) >= 3
    assert all(b - a >= 5000 for a, b in zip(acks, acks[1:], strict=False))


# --------------------------------------------------------------------------- chunking / timestamps


def test_media_with_chunk_size_change_and_deltas() -> None:
    conn = publishing()
    data = bytearray()
    data += chunk(2, 0, struct.pack(">I", 4096), type_id=1)  # client raises its chunk size
    video = bytes([0x17, 0x01]) + random.Random(2).randbytes(10_000)
    data += chunk(6, 0, video, ts=1000, type_id=9, stream_id=1, chunk_size=4096)
    data += chunk(6, 1, b"\xaf\x01abc", ts=40, type_id=8)  # delta, new type/length
    data += chunk(6, 2, b"\xaf\x01abd", ts=20)  # delta only
    data += chunk(6, 3, b"\xaf\x01abe")  # repeat the previous delta (20)
    events = []
    for i in range(0, len(data), 777):  # arbitrary segmentation
        events += conn.receive_data(bytes(data[i : i + 777]))
    assert events == [
        MediaMessage("video", 1000, video),
        MediaMessage("audio", 1040, b"\xaf\x01abc"),
        MediaMessage("audio", 1060, b"\xaf\x01abd"),
        MediaMessage("audio", 1080, b"\xaf\x01abe"),
    ]
    assert events[0].tag_type == TAG_VIDEO and events[1].tag_type == TAG_AUDIO


def test_type3_after_type0_uses_timestamp_as_delta() -> None:
    conn = publishing()
    events = conn.receive_data(chunk(6, 0, b"\xaf\x01x", ts=40, type_id=8, stream_id=1))
    events += conn.receive_data(chunk(6, 3, b"\xaf\x01y"))
    assert [e.timestamp_ms for e in events if isinstance(e, MediaMessage)] == [40, 80]


def test_extended_timestamps_with_continuations() -> None:
    conn = publishing()
    payload = bytes([0x27, 0x01]) + bytes(300)  # spans 3 chunks of 128
    ts = 0x01234567
    events = conn.receive_data(chunk(6, 0, payload, ts=ts, type_id=9, stream_id=1))
    assert events == [MediaMessage("video", ts, payload)]
    # Extended delta on a type 1 header, continuation chunks repeat it.
    delta = 0x01000000
    events = conn.receive_data(chunk(6, 1, payload, ts=delta, type_id=9))
    assert events == [MediaMessage("video", ts + delta, payload)]
    # The "extended" state sticks for type 3 chunks starting a new message.
    events = conn.receive_data(chunk(6, 3, payload, ts=delta))
    assert events == [MediaMessage("video", ts + 2 * delta, payload)]


def test_extended_timestamp_missing_on_continuations_tolerated() -> None:
    conn = publishing()
    payload = bytes([0x27, 0x01]) + random.Random(3).randbytes(500)
    ts = 0x02000000
    data = chunk(6, 0, payload, ts=ts, type_id=9, stream_id=1, ext_on_continuation=False)
    data += chunk(6, 1, payload, ts=40, type_id=9)
    events = conn.receive_data(data)
    assert events == [MediaMessage("video", ts, payload), MediaMessage("video", ts + 40, payload)]


def test_timestamp_wraps_at_32_bits() -> None:
    conn = publishing()
    conn.receive_data(chunk(6, 0, b"\xaf\x01", ts=0xFFFFFFF0, type_id=8, stream_id=1))
    events = conn.receive_data(chunk(6, 2, b"\xaf\x01", ts=0x20))
    assert events == [MediaMessage("audio", 0x10, b"\xaf\x01")]


def test_large_chunk_stream_ids() -> None:
    conn = publishing()
    events = conn.receive_data(chunk(100, 0, b"\xaf\x01", ts=5, type_id=8, stream_id=1))
    events += conn.receive_data(chunk(5000, 0, b"\x17\x01", ts=6, type_id=9, stream_id=1))
    assert [e.timestamp_ms for e in events if isinstance(e, MediaMessage)] == [5, 6]


def test_abort_message_discards_partial() -> None:
    conn = publishing()
    first = chunk(6, 0, bytes(300), type_id=9, stream_id=1)
    assert conn.receive_data(first[:140]) == []  # first chunk only
    conn.receive_data(chunk(2, 0, struct.pack(">I", 6), type_id=2))
    events = conn.receive_data(chunk(6, 0, b"\x17\x01", ts=7, type_id=9, stream_id=1))
    assert events == [MediaMessage("video", 7, b"\x17\x01")]


def test_metadata_event() -> None:
    conn = publishing()
    meta = amf0.ECMAArray(width=320.0, height=240.0, encoder="Lavf")
    body = amf0.encode("@setDataFrame", "onMetaData", meta)
    (event,) = conn.receive_data(chunk(4, 0, body, type_id=18, stream_id=1))
    assert isinstance(event, MetaData)
    assert event.data == {"width": 320.0, "height": 240.0, "encoder": "Lavf"}
    assert event.payload == amf0.encode("onMetaData", meta)


def test_aggregate_message() -> None:
    conn = publishing()
    body = flv_tag(9, 100, b"\x17\x01a") + flv_tag(8, 120, b"\xaf\x01b")
    events = conn.receive_data(chunk(6, 0, body, ts=1000, type_id=22, stream_id=1))
    assert events == [MediaMessage("video", 1000, b"\x17\x01a"), MediaMessage("audio", 1020, b"\xaf\x01b")]


# --------------------------------------------------------------------------- hostile input


def test_oversized_message_refused() -> None:
    conn = publishing()
    for length in (MAX_MESSAGE_SIZE + 1, 0xFFFFFF):
        conn = publishing()
        events = conn.receive_data(chunk(6, 0, b"", length=length, type_id=9, stream_id=1))
        assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert conn.receive_data(b"\x00" * 100) == []


def test_bad_chunk_size_refused() -> None:
    for size in (0, 0x7FFFFFFF):
        conn = connected()
        events = conn.receive_data(chunk(2, 0, struct.pack(">I", size), type_id=1))
        assert isinstance(events[-1], ProtocolError)


def test_compressed_header_on_unknown_chunk_stream() -> None:
    conn = connected()
    events = conn.receive_data(bytes([0x46]) + bytes(20))
    assert isinstance(events[0], ProtocolError)


def test_garbage_never_raises() -> None:
    rng = random.Random(1234)
    for _ in range(300):
        conn = handshaken() if rng.random() < 0.8 else RTMPServerConnection()
        if rng.random() < 0.5:
            conn.receive_data(command("connect", 1.0, {"app": "in"}))
        for _ in range(5):
            events = conn.receive_data(rng.randbytes(rng.randint(1, 4000)))
            assert all(
                isinstance(e, ProtocolError | MediaMessage | MetaData | PublishRequested | PublishEnded)
                for e in events
            )
        conn.data_to_send()


def test_too_many_chunk_streams() -> None:
    conn = connected()
    data = b"".join(chunk(10 + i, 0, b"", length=100, type_id=9) for i in range(100))
    events = conn.receive_data(data)
    assert isinstance(events[-1], ProtocolError)


def test_txn0_commands_get_no_reply() -> None:
    """GStreamer's rtmp2sink sends releaseStream/FCPublish with transaction id 0: no `_result` for those
    (it warns `Server sent response "_result" without transaction`); onFCPublish is no response, so it stays."""
    conn = connected()
    conn.receive_data(command("releaseStream", 0.0, None, "key?tok"))
    conn.receive_data(command("FCPublish", 0.0, None, "key?tok"))
    conn.receive_data(command("someCall", 0.0, None))
    conn.receive_data(command("getStreamLength", 0.0, None, "x"))
    conn.receive_data(command("FCUnpublish", 0.0, None, "key?tok"))
    assert [r[0] for r in commands(conn.data_to_send())] == ["onFCPublish", "onFCUnpublish"]
    # numbered ones (OBS, ffmpeg, librtmp) still get their answers
    conn.receive_data(command("releaseStream", 2.0, None, "key?tok"))
    conn.receive_data(command("createStream", 3.0, None))
    conn.receive_data(command("someCall", 4.0, None))
    assert [r[:2] for r in commands(conn.data_to_send())] == [["_result", 2.0], ["_result", 3.0], ["_error", 4.0]]
