"""ISO-BMFF box framing: the incremental top-level reader and the one box walker the parsers share.

Every malformed input raises :class:`FMP4Error` and nothing else.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "MAX_BOX_SIZE",
    "Box",
    "BoxReader",
    "FMP4Error",
    "child_boxes",
    "iter_boxes",
    "read_box_header",
    "require",
]

MAX_BOX_SIZE = 64 * 1024 * 1024

_u32 = struct.Struct(">I")
_u64 = struct.Struct(">Q")


class FMP4Error(ValueError):
    """Malformed or unsupported ISO-BMFF data."""


@dataclass(frozen=True, slots=True)
class Box:
    """A complete top-level box: its four-character type and raw bytes (header included)."""

    type: str
    data: bytes
    header_size: int = 8

    @property
    def payload(self) -> memoryview:
        return memoryview(self.data)[self.header_size :]

    def __len__(self) -> int:
        return len(self.data)


# ---------------------------------------------------------------------------
# Incremental top-level framing


def read_box_header(buf: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, str, int] | None:
    """Return (size, type, header_size) of the box at pos, or None if the header is incomplete.

    size == 0 means "extends to the end of the enclosing container / stream".
    """
    if end - pos < 8:
        return None
    size = _u32.unpack_from(buf, pos)[0]
    btype = bytes(buf[pos + 4 : pos + 8]).decode("latin-1")
    header = 8
    if size == 1:
        if end - pos < 16:
            return None
        size = _u64.unpack_from(buf, pos + 8)[0]
        header = 16
        if size < 16:
            raise FMP4Error(f"box {btype!r}: largesize {size} smaller than its header")
    elif size != 0 and size < 8:
        raise FMP4Error(f"box {btype!r}: size {size} < 8")
    if btype == "uuid" and size != 0:
        header += 16
        if size < header:
            raise FMP4Error("uuid box shorter than its header")
    return size, btype, header


class BoxReader:
    """Accumulates arbitrary chunks and returns top-level boxes as they complete.

    A box with size 0 ("to end of stream") is returned by :meth:`close`.
    """

    def __init__(self, max_box_size: int = MAX_BOX_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_box_size
        self._open_ended: tuple[str, int] | None = None  # size-0 box in progress
        self._closed = False

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes | bytearray | memoryview) -> list[Box]:
        if self._closed:
            raise FMP4Error("reader closed")
        self._buf += data
        if self._open_ended is not None:
            if len(self._buf) > self._max:
                raise FMP4Error("open-ended box exceeds size cap")
            return []
        out: list[Box] = []
        buf = self._buf
        pos = 0
        n = len(buf)
        # memoryview slicing copies each box once; the view must be released before `del buf[...]`.
        with memoryview(buf) as mv:
            while True:
                hdr = read_box_header(mv, pos, n)
                if hdr is None:
                    break
                size, btype, header = hdr
                if size == 0:
                    self._open_ended = (btype, header)
                    break
                if size > self._max:
                    raise FMP4Error(f"box {btype!r}: size {size} exceeds cap {self._max}")
                if n - pos < size:
                    break
                out.append(Box(btype, bytes(mv[pos : pos + size]), header))
                pos += size
        # Deleting from the front of a bytearray is cheap in CPython (no full copy per box).
        if pos:
            del buf[:pos]
        if self._open_ended is not None and len(buf) > self._max:
            raise FMP4Error("open-ended box exceeds size cap")
        return out

    def close(self) -> list[Box]:
        """Signal end of stream: returns a pending size-0 box; raises on truncated data."""
        self._closed = True
        if self._open_ended is not None:
            btype, header = self._open_ended
            data = bytes(self._buf)
            self._buf.clear()
            self._open_ended = None
            return [Box(btype, data, header)]
        if self._buf:
            left = len(self._buf)
            self._buf.clear()
            raise FMP4Error(f"stream ended inside a box ({left} bytes left)")
        return []


def iter_boxes(
    data: bytes | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[str, int, int]]:
    """Yield (type, payload_start, box_end) for the boxes in data[start:end]; strict bounds."""
    if end is None:
        end = len(data)
    pos = start
    while pos < end:
        hdr = read_box_header(data, pos, end)
        if hdr is None:
            raise FMP4Error("truncated box header")
        size, btype, header = hdr
        box_end = end if size == 0 else pos + size
        if box_end > end:
            raise FMP4Error(f"box {btype!r} overruns its container")
        yield btype, pos + header, box_end
        pos = box_end


def child_boxes(data: bytes | memoryview, start: int, end: int) -> dict[str, tuple[int, int]]:
    """First occurrence of each child box type: type -> (payload_start, box_end)."""
    found: dict[str, tuple[int, int]] = {}
    for btype, p, e in iter_boxes(data, start, end):
        found.setdefault(btype, (p, e))
    return found


def require(end: int, pos: int, n: int, what: str) -> None:
    """Raise unless `n` bytes from `pos` fit before `end` (`what` names the field for the message)."""
    if pos + n > end:
        raise FMP4Error(f"{what}: truncated")
