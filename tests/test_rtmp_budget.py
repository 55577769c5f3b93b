"""The RTMP core's memory budget (small until a publish is accepted) and its independence of clock and RNG."""

from __future__ import annotations

import random
import struct
from typing import Any

import pytest

from onair.protocols.rtmp.protocol import (
    Limits,
    MediaMessage,
    ProtocolError,
    PublishRequested,
    RTMPServerConnection,
)
from tests.test_rtmp_protocol import chunk, command, commands, connected, publishing


def test_long_message_refused_before_publish() -> None:
    """Before publish only command-sized messages: refused at the header, before any payload is held."""
    conn = connected()
    events = conn.receive_data(chunk(3, 0, b"", length=Limits().setup.max_message_size + 1, type_id=20))
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert conn.buffered == 0


def test_partial_messages_bounded_before_publish() -> None:
    setup = Limits().setup
    # each message's first chunk only, on its own chunk stream: more half messages than allowed
    conn = connected()
    conn.receive_data(chunk(2, 0, struct.pack(">I", 1024), type_id=1))
    events: list[Any] = []
    for i in range(setup.max_partial_streams + 1):
        events += conn.receive_data(chunk(10 + i, 0, bytes(2000), type_id=9, stream_id=1, chunk_size=1024)[:1036])
    assert isinstance(events[-1], ProtocolError) and "partially" in events[-1].reason
    # fewer, fuller half messages plus one whole message that no longer fits the byte budget
    conn = connected()
    size = setup.max_message_size
    conn.receive_data(chunk(2, 0, struct.pack(">I", size - 1024), type_id=1))
    held = 0
    events = []
    for i in range(setup.max_partial_streams):
        first = chunk(10 + i, 0, bytes(size), type_id=9, stream_id=1, chunk_size=size - 1024)
        events += conn.receive_data(first[: 12 + size - 1024])
        held += size - 1024
    assert events == [] and held + 16 * 1024 > setup.max_buffered
    events = conn.receive_data(chunk(30, 0, b"", length=16 * 1024, type_id=9, stream_id=1))
    assert isinstance(events[-1], ProtocolError) and "too much" in events[-1].reason
    assert conn.buffered == 0  # released with the failure


def test_publishing_budget_allows_keyframes_and_caps_partials() -> None:
    publishing_budget = Limits().publishing
    conn = publishing()
    conn.receive_data(chunk(2, 0, struct.pack(">I", 65536), type_id=1))
    keyframe = b"\x17\x01" + bytes(3 * 1024 * 1024)
    events = conn.receive_data(chunk(6, 0, keyframe, type_id=9, stream_id=1, chunk_size=65536))
    assert events == [MediaMessage("video", 0, keyframe)]
    events = []
    for i in range(publishing_budget.max_partial_streams + 1):
        first = chunk(10 + i, 0, bytes(100_000), type_id=9, stream_id=1, chunk_size=65536)[: 12 + 65536]
        events += conn.receive_data(first)
    assert isinstance(events[-1], ProtocolError) and "partially" in events[-1].reason


def test_parsing_pauses_until_publish_is_answered() -> None:
    """What follows the publish command waits for the answer and is then read under the publishing budget."""
    conn = connected()
    conn.receive_data(chunk(2, 0, struct.pack(">I", 200_000), type_id=1))
    keyframe = b"\x17\x01" + bytes(150_000)  # over the setup budget's message size, fine when publishing
    data = command("publish", 5.0, None, "key?tok", "live", stream_id=1, csid=8, chunk_size=200_000)
    data += chunk(6, 0, keyframe, type_id=9, stream_id=1, chunk_size=200_000)
    events = conn.receive_data(data)
    assert events == [PublishRequested("in", "key?tok", "rtmp://h/in", "live")]
    conn.accept_publish()
    assert conn.receive_data(b"") == [MediaMessage("video", 0, keyframe)]


def test_unanswered_publish_does_not_buffer_without_bound() -> None:
    conn = connected()
    assert conn.receive_data(command("publish", 5.0, None, "key?tok", "live", stream_id=1))
    events: list[Any] = []
    for _ in range(10):
        events += conn.receive_data(bytes(64 * 1024))
    assert len(events) == 1 and isinstance(events[0], ProtocolError)
    assert conn.buffered == 0


def test_close_releases_buffers() -> None:
    conn = publishing()
    conn.receive_data(chunk(6, 0, bytes(100_000), type_id=9, stream_id=1)[:50_000])
    assert conn.buffered > 40_000
    conn.close()
    assert conn.buffered == 0
    assert conn.receive_data(bytes(100)) == []


def test_core_uses_no_clock_or_rng(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sans-IO: S1's time and random part come from the caller, deadlines are the caller's business."""
    import os
    import time

    def forbidden(*args: Any) -> Any:
        raise AssertionError("the RTMP core must not read the clock or the RNG")

    for name in ("time", "monotonic", "perf_counter"):
        monkeypatch.setattr(time, name, forbidden)
    monkeypatch.setattr(os, "urandom", forbidden)
    rand = random.Random(5).randbytes(1528)
    conn = RTMPServerConnection(epoch_ms=0x1_0000_1234, handshake_random=rand)
    conn.receive_data(b"\x03" + bytes(1536))
    out = conn.data_to_send()
    assert out[1:9] == struct.pack(">II", 0x1234, 0) and out[9:1537] == rand
    conn.receive_data(out[1:1537] + command("connect", 1.0, {"app": "in"}))
    assert commands(conn.data_to_send())[0][0] == "_result"
