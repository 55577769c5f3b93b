"""RTMP chunk streams: reassembling messages from chunks within a memory budget, and writing them.

The reader never holds more than its :class:`Budget` allows: the message length is checked as soon as a
header arrives (before its payload), and so is the total of partially received payload plus the chunk
being waited for. Before a publish is accepted nothing about the peer is authenticated, so
:class:`Limits` keeps that budget small; after it, real keyframes have to fit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, NamedTuple

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_CHUNK_STREAMS",
    "Budget",
    "ChunkReader",
    "Fatal",
    "Limits",
    "Message",
    "write_message",
]

DEFAULT_CHUNK_SIZE: Final = 128
# The length field is 24 bits, so a larger chunk size means "never split"; it bounds nothing by itself:
# a chunk holds at most what is left of its message, and the message length is what the budget caps.
MAX_CHUNK_SIZE: Final = 16 * 1024 * 1024
MAX_CHUNK_STREAMS: Final = 64  # header state kept per chunk stream id ever used (a few dozen bytes each)

_EXTENDED_TS: Final = 0xFFFFFF
_U32_MASK: Final = 0xFFFFFFFF
_MSG_HEADER_SIZE: Final = (11, 7, 3, 0)


class Fatal(Exception):
    """The peer broke the protocol or a limit: the connection cannot go on."""


@dataclass(frozen=True, slots=True)
class Budget:
    max_message_size: int  # longest message accepted (payload bytes)
    max_buffered: int  # partially received payload plus the chunk being waited for, all chunk streams
    max_partial_streams: int  # chunk streams with a message half received at the same time


@dataclass(frozen=True, slots=True)
class Limits:
    # Before publish: commands and control messages only (a connect is well under 4 KiB).
    setup: Budget = field(default_factory=lambda: Budget(64 * 1024, 256 * 1024, 4))
    # Publishing: a keyframe of a high-bitrate 4K stream is 1-3 MiB; audio/video/data interleave.
    publishing: Budget = field(default_factory=lambda: Budget(4 * 1024 * 1024, 8 * 1024 * 1024, 8))


class Message(NamedTuple):
    type_id: int
    stream_id: int
    timestamp: int
    payload: bytes


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


class _Header(NamedTuple):
    fmt: int
    csid: int
    ts_field: int
    length: int
    type_id: int
    stream_id: int
    extended: bool
    ext_value: int
    continuing: bool  # a type 3 chunk continuing a half received message
    end: int  # offset of the chunk payload


def _basic_header(buf: bytearray, pos: int) -> tuple[int, int, int] | None:
    """(fmt, chunk stream id, offset after the basic header), None if incomplete."""
    end = len(buf)
    if pos >= end:
        return None
    b0 = buf[pos]
    csid = b0 & 0x3F
    p = pos + 1
    if csid == 0:
        if p + 1 > end:
            return None
        return b0 >> 6, 64 + buf[p], p + 1
    if csid == 1:
        if p + 2 > end:
            return None
        return b0 >> 6, 64 + buf[p] + (buf[p + 1] << 8), p + 2
    return b0 >> 6, csid, p


class ChunkReader:
    """Turns a chunk stream into messages, one chunk per :meth:`read` call."""

    def __init__(self, budget: Budget) -> None:
        self.budget = budget
        self.chunk_size = DEFAULT_CHUNK_SIZE
        self._streams: dict[int, _ChunkStream] = {}
        self._buffered = 0  # payload bytes held in partial messages

    @property
    def buffered(self) -> int:
        return self._buffered

    def clear(self) -> None:
        self._streams.clear()
        self._buffered = 0

    def abort(self, csid: int) -> None:
        """Abort message: drop what was received of the message on this chunk stream."""
        cs = self._streams.get(csid)
        if cs is not None and cs.partial is not None:
            self._buffered -= len(cs.partial)
            cs.partial = None

    def read(self, buf: bytearray, pos: int) -> tuple[int, Message | None] | None:
        """Consume one chunk at ``pos``: (next offset, the message it completed or None); None if incomplete."""
        head = self._header(buf, pos)
        if head is None:
            return None
        cs = self._streams.get(head.csid)
        remaining = cs.remaining if head.continuing and cs is not None else head.length
        take = min(self.chunk_size, remaining)
        self._check_budget(head, cs, take)
        if head.end + take > len(buf):
            return None
        # The whole chunk is available: commit header state.
        if cs is None:
            cs = self._streams[head.csid] = _ChunkStream()
        if not head.continuing:
            self._start_message(cs, head)
        return self._append(cs, buf, head.end, take)

    # ------------------------------------------------------------------ steps of read()

    def _header(self, buf: bytearray, pos: int) -> _Header | None:
        basic = _basic_header(buf, pos)
        if basic is None:
            return None
        fmt, csid, p = basic
        cs = self._streams.get(csid)
        if cs is None:
            if fmt != 0:
                raise Fatal(f"chunk type {fmt} on new chunk stream {csid}")
            if len(self._streams) >= MAX_CHUNK_STREAMS:
                raise Fatal("too many chunk streams")
            cs = _ChunkStream()  # header defaults; stored only once the chunk is complete
        if p + _MSG_HEADER_SIZE[fmt] > len(buf):
            return None
        ts_field = int.from_bytes(buf[p : p + 3], "big") if fmt <= 2 else 0
        length, type_id = (int.from_bytes(buf[p + 3 : p + 6], "big"), buf[p + 6]) if fmt <= 1 else (
            cs.length, cs.type_id)
        stream_id = int.from_bytes(buf[p + 7 : p + 11], "little") if fmt == 0 else cs.stream_id
        p += _MSG_HEADER_SIZE[fmt]
        extended = ts_field == _EXTENDED_TS if fmt <= 2 else cs.extended
        continuing = fmt == 3 and cs.partial is not None
        ext_value = 0
        if extended:
            # Type 3 chunks repeat the extended timestamp when their message's header used one (the
            # spec and ffmpeg/librtmp do); some encoders omit it on continuation chunks, so there it
            # is only skipped if it matches the value from the message header.
            if p + 4 > len(buf):
                return None
            ext_value = int.from_bytes(buf[p : p + 4], "big")
            if not continuing or ext_value == cs.ext_value:
                p += 4
        return _Header(fmt, csid, ts_field, length, type_id, stream_id, extended, ext_value, continuing, p)

    def _check_budget(self, head: _Header, cs: _ChunkStream | None, take: int) -> None:
        budget = self.budget
        stale = 0  # an interrupted message that this header replaces is dropped
        if not head.continuing:
            if head.length > budget.max_message_size:
                raise Fatal(f"message length {head.length} exceeds limit")
            stale = len(cs.partial) if cs is not None and cs.partial is not None else 0
            if take < head.length:
                partial = sum(1 for s in self._streams.values() if s is not cs and s.partial is not None)
                if partial >= budget.max_partial_streams:
                    raise Fatal("too many partially received messages")
        if self._buffered - stale + take > budget.max_buffered:
            raise Fatal("too much partially received message data")

    def _start_message(self, cs: _ChunkStream, head: _Header) -> None:
        if cs.partial is not None:
            # A new header while a message is half read: drop the stale part (ffmpeg does too).
            self._buffered -= len(cs.partial)
        fmt, extended = head.fmt, head.extended
        if fmt == 0:
            cs.timestamp = head.ext_value if extended else head.ts_field
            # Per spec, a type 3 chunk after a type 0 uses the type 0 timestamp as its delta.
            cs.delta = cs.timestamp
        else:
            if fmt in (1, 2):
                cs.delta = head.ext_value if extended else head.ts_field
            elif extended:  # type 3 starting a new message repeats the previous delta
                cs.delta = head.ext_value
            cs.timestamp = (cs.timestamp + cs.delta) & _U32_MASK
        if fmt <= 2:
            cs.extended = extended
        cs.ext_value = head.ext_value
        cs.length = head.length
        cs.type_id = head.type_id
        cs.stream_id = head.stream_id
        cs.partial = bytearray()
        cs.remaining = head.length

    def _append(self, cs: _ChunkStream, buf: bytearray, p: int, take: int) -> tuple[int, Message | None]:
        assert cs.partial is not None
        end = p + take
        if not cs.partial and take == cs.remaining:
            payload = bytes(buf[p:end])  # the usual single-chunk message: no reassembly copy
        else:
            cs.partial += buf[p:end]
            self._buffered += take
            if take < cs.remaining:
                cs.remaining -= take
                return end, None
            payload = bytes(cs.partial)
            self._buffered -= len(cs.partial)
        cs.partial = None
        cs.remaining = 0
        return end, Message(cs.type_id, cs.stream_id, cs.timestamp, payload)


def write_message(out: bytearray, chunk_size: int, csid: int, type_id: int, stream_id: int, payload: bytes,
                  timestamp: int = 0) -> None:
    """Append one message as a type 0 chunk (csid < 64) plus type 3 continuations."""
    out.append(csid)
    out += min(timestamp, _EXTENDED_TS).to_bytes(3, "big")
    out += len(payload).to_bytes(3, "big")
    out.append(type_id)
    out += stream_id.to_bytes(4, "little")
    ext = timestamp >= _EXTENDED_TS
    if ext:
        out += timestamp.to_bytes(4, "big")
    for i in range(0, max(len(payload), 1), chunk_size):
        if i:
            out.append(0xC0 | csid)
            if ext:
                out += timestamp.to_bytes(4, "big")
        out += payload[i : i + chunk_size]
