"""Keeping a track's timeline continuous when its fMP4 byte stream starts over.

A restarted (or switched-over) ffmpeg begins a new fMP4 stream: new ftyp/moov, decode times from
~0. The packager keeps counting media sequence numbers and shifts the new fragments' decode times
by a constant offset so that they continue after the last one (HLS gets EXT-X-DISCONTINUITY, DASH a
monotonic SegmentTimeline). The shift is done by rewriting each `tfdt` box in place.
"""

from __future__ import annotations

import struct

from onair.formats.fmp4 import FMP4Error

__all__ = ["rebase_offset", "shift_tfdt"]


def _children(data: bytes, start: int, end: int) -> list[tuple[str, int, int]]:
    """(type, box start, box end) of the boxes in data[start:end]."""
    out = []
    pos = start
    while pos + 8 <= end:
        size, btype = struct.unpack_from(">I4s", data, pos)
        if size == 1:
            if pos + 16 > end:
                break
            size = struct.unpack_from(">Q", data, pos + 8)[0]
        if size < 8 or pos + size > end:
            raise FMP4Error("bad box size in moof")
        out.append((btype.decode("latin-1"), pos, pos + size))
        pos += size
    return out


def shift_tfdt(moof: bytes, offset: int) -> bytes:
    """`moof` (optionally followed by its mdat) with every traf/tfdt baseMediaDecodeTime shifted by `offset`.

    Box sizes never change, so trun data offsets stay valid."""
    if offset == 0:
        return moof
    buf = bytearray(moof)
    moof_end = min(struct.unpack_from(">I", moof)[0], len(moof))  # `moof` may be followed by its mdat
    for btype, start, end in _children(moof, 8, moof_end):
        if btype != "traf":
            continue
        for ctype, cstart, cend in _children(moof, start + 8, end):
            if ctype != "tfdt":
                continue
            version = buf[cstart + 8]
            if version == 1 and cend - cstart >= 20:
                value = struct.unpack_from(">Q", buf, cstart + 12)[0] + offset
                if value < 0:
                    raise FMP4Error("shifted decode time is negative")
                struct.pack_into(">Q", buf, cstart + 12, value)
            elif cend - cstart >= 16:
                value = struct.unpack_from(">I", buf, cstart + 12)[0] + offset
                if not 0 <= value < 2**32:
                    raise FMP4Error("shifted decode time does not fit a version 0 tfdt")
                struct.pack_into(">I", buf, cstart + 12, value)
    return bytes(buf)


def rebase_offset(first_start: int, next_decode: int | None, wallclock_ticks: int | None) -> int:
    """Offset for the fragments of a new byte stream whose first decode time is `first_start`.

    They continue at the end of the previous stream (`next_decode`), or later when the wall clock
    moved on further during the gap, so that DASH availability times stay close to real time.
    """
    target = next_decode or 0
    if wallclock_ticks is not None:
        target = max(target, wallclock_ticks)
    return target - first_start
