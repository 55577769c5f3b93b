"""Fragment (moof) parsing for timing/sync info, and the tfdt rewrite that shifts a fragment in time.

Every malformed input raises :class:`FMP4Error` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from onair.formats.fmp4.boxes import FMP4Error, iter_boxes, read_box_header, require
from onair.formats.fmp4.init_segment import TrackInfo

__all__ = ["FragmentInfo", "parse_fragment", "shift_tfdt"]

# Sample flags: bit 16 is sample_is_non_sync_sample (ISO/IEC 14496-12 8.8.3.1).
_NON_SYNC = 0x00010000
# trun flags (ISO/IEC 14496-12 8.8.8.1)
_TRUN_DATA_OFFSET = 0x01
_TRUN_FIRST_FLAGS = 0x04
_TRUN_DURATION = 0x100
_TRUN_SIZE = 0x200
_TRUN_FLAGS = 0x400
_TRUN_CTO = 0x800

_u32 = struct.Struct(">I")
_u64 = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class FragmentInfo:
    sequence_number: int
    track_id: int
    base_media_decode_time: int | None  # None when the fragment has no tfdt
    sample_count: int
    duration: int  # in track timescale units
    first_sample_sync: bool
    data_size: int  # sum of sample sizes (0 if unknown)


@dataclass(slots=True)
class _Traf:
    """What the boxes of one traf say, read in order: tfhd overrides the trex defaults, truns add up."""

    track_id: int
    default_duration: int
    default_size: int
    default_flags: int
    tfhd_seen: bool = False
    decode_time: int | None = None
    count: int = 0
    duration: int = 0
    size: int = 0
    first_flags: int | None = None

    @classmethod
    def for_track(cls, track: TrackInfo | None) -> _Traf:
        if track is None:
            return cls(track_id=0, default_duration=0, default_size=0, default_flags=0)
        return cls(
            track_id=track.track_id,
            default_duration=track.default_sample_duration,
            default_size=track.default_sample_size,
            default_flags=track.default_sample_flags,
        )

    def first_sample_sync(self, track: TrackInfo | None) -> bool:
        if track is not None and not track.is_video:
            return True  # audio samples are all sync
        flags = self.first_flags if self.first_flags is not None else self.default_flags
        return self.count > 0 and not flags & _NON_SYNC


def parse_fragment(data: bytes | bytearray | memoryview, track: TrackInfo | None = None) -> FragmentInfo:
    """Parse a moof box (bytes may continue with the mdat) for its first traf.

    `track` supplies trex defaults and tells audio apart (audio samples are all sync).
    """
    try:
        return _parse_fragment(memoryview(data), track)
    except FMP4Error:
        raise
    except (struct.error, IndexError, ValueError, OverflowError) as exc:
        raise FMP4Error(f"malformed fragment: {exc}") from exc


def _parse_fragment(mv: memoryview, track: TrackInfo | None) -> FragmentInfo:
    seq, (tp, te) = _moof_sequence_and_traf(mv)
    traf = _Traf.for_track(track)
    for btype, p, e in iter_boxes(mv, tp, te):
        if btype == "tfhd":
            _read_tfhd(mv, p, e, traf)
        elif btype == "tfdt":
            traf.decode_time = _read_tfdt(mv, p, e)
        elif btype == "trun":
            _read_trun(mv, p, e, traf)
    if not traf.tfhd_seen:
        raise FMP4Error("traf has no tfhd")
    return FragmentInfo(
        sequence_number=seq,
        track_id=traf.track_id,
        base_media_decode_time=traf.decode_time,
        sample_count=traf.count,
        duration=traf.duration,
        first_sample_sync=traf.first_sample_sync(track),
        data_size=traf.size,
    )


def _moof_sequence_and_traf(mv: memoryview) -> tuple[int, tuple[int, int]]:
    """(mfhd sequence number, span of the first traf) of the leading moof."""
    first = next(iter_boxes(mv, 0, _first_box_end(mv)), None)
    if first is None or first[0] != "moof":
        raise FMP4Error("expected a moof box")
    _, mp, me = first
    seq = 0
    traf = None
    for btype, p, e in list(iter_boxes(mv, mp, me)):  # list: the whole moof is checked before its fields
        if btype == "mfhd":
            require(e, p, 8, "mfhd")
            seq = _u32.unpack_from(mv, p + 4)[0]
        elif btype == "traf" and traf is None:
            traf = (p, e)
    if traf is None:
        raise FMP4Error("moof has no traf")
    return seq, traf


def _read_tfhd(mv: memoryview, p: int, e: int, traf: _Traf) -> None:
    require(e, p, 8, "tfhd")
    traf.tfhd_seen = True
    tf_flags = _u32.unpack_from(mv, p)[0] & 0xFFFFFF
    traf.track_id = _u32.unpack_from(mv, p + 4)[0]
    q = p + 8
    if tf_flags & 0x01:
        q += 8  # base_data_offset
    if tf_flags & 0x02:
        q += 4  # sample_description_index
    for bit in (0x08, 0x10, 0x20):
        if tf_flags & bit:
            require(e, q, 4, "tfhd")
            v = _u32.unpack_from(mv, q)[0]
            q += 4
            if bit == 0x08:
                traf.default_duration = v
            elif bit == 0x10:
                traf.default_size = v
            else:
                traf.default_flags = v


def _read_tfdt(mv: memoryview, p: int, e: int) -> int:
    require(e, p, 8, "tfdt")
    if mv[p] == 1:
        require(e, p, 12, "tfdt")
        return int(_u64.unpack_from(mv, p + 4)[0])
    return int(_u32.unpack_from(mv, p + 4)[0])


def _read_trun(mv: memoryview, p: int, e: int, traf: _Traf) -> None:
    if not traf.tfhd_seen:
        raise FMP4Error("trun before tfhd")
    require(e, p, 8, "trun")
    tr_flags = _u32.unpack_from(mv, p)[0] & 0xFFFFFF
    n = _u32.unpack_from(mv, p + 4)[0]
    q = p + 8
    if tr_flags & _TRUN_DATA_OFFSET:
        q += 4
    run_first: int | None = None
    if tr_flags & _TRUN_FIRST_FLAGS:
        require(e, q, 4, "trun")
        run_first = _u32.unpack_from(mv, q)[0]
        q += 4
    per = 4 * sum(1 for b in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTO) if tr_flags & b)
    # Bound the loop by the box size so a bogus sample_count cannot spin forever.
    require(e, q, per * n, "trun samples")
    sample0_flags = None
    if per == 0:
        traf.duration += traf.default_duration * n
        traf.size += traf.default_size * n
    else:
        sample0_flags = _add_samples(mv, q, n, tr_flags, traf)
    if traf.count == 0 and n:
        # the fragment's first sample: its own flags, else the run's first-sample flags, else the default
        if run_first is not None:
            traf.first_flags = run_first
        elif sample0_flags is not None:
            traf.first_flags = sample0_flags
        else:
            traf.first_flags = traf.default_flags
    traf.count += n


def _add_samples(mv: memoryview, q: int, n: int, tr_flags: int, traf: _Traf) -> int | None:
    """Add the durations and sizes of `n` trun sample records at `q`; returns the first one's flags if present."""
    has_dur, has_size = tr_flags & _TRUN_DURATION, tr_flags & _TRUN_SIZE
    has_flags, has_cto = tr_flags & _TRUN_FLAGS, tr_flags & _TRUN_CTO
    first_flags = None
    for i in range(n):
        if has_dur:
            traf.duration += _u32.unpack_from(mv, q)[0]
            q += 4
        else:
            traf.duration += traf.default_duration
        if has_size:
            traf.size += _u32.unpack_from(mv, q)[0]
            q += 4
        else:
            traf.size += traf.default_size
        if has_flags:
            if i == 0:
                first_flags = _u32.unpack_from(mv, q)[0]
            q += 4
        if has_cto:
            q += 4
    return first_flags


def _first_box_end(mv: memoryview) -> int:
    """End offset of the first box, so trailing mdat bytes may be passed along with the moof."""
    hdr = read_box_header(mv, 0, len(mv))
    if hdr is None:
        raise FMP4Error("truncated box header")
    size = hdr[0]
    if size == 0:
        return len(mv)
    if size > len(mv):
        raise FMP4Error("moof truncated")
    return size


# ---------------------------------------------------------------------------
# Rewriting


def shift_tfdt(moof: bytes, offset: int) -> bytes:
    """`moof` (optionally followed by its mdat) with every traf/tfdt baseMediaDecodeTime shifted by `offset`.

    Used to continue a track's timeline when its encoder starts a new byte stream. Box sizes never
    change, so trun data offsets stay valid.
    """
    if offset == 0:
        return moof
    buf = bytearray(moof)
    mv = memoryview(moof)
    try:
        first = next(iter_boxes(mv, 0, _first_box_end(mv)), None)
        if first is None or first[0] != "moof":
            raise FMP4Error("expected a moof box")
        for btype, p, e in iter_boxes(mv, first[1], first[2]):
            if btype != "traf":
                continue
            for ctype, cp, ce in iter_boxes(mv, p, e):
                if ctype == "tfdt":
                    _shift_tfdt_box(buf, cp, ce, offset)
    except struct.error as exc:
        raise FMP4Error(f"malformed fragment: {exc}") from exc
    return bytes(buf)


def _shift_tfdt_box(buf: bytearray, p: int, e: int, offset: int) -> None:
    """Shift the decode time in the tfdt payload buf[p:e] in place."""
    if e - p < 8:
        return  # too short to hold a decode time: left as it is
    if buf[p] == 1 and e - p >= 12:
        value = _u64.unpack_from(buf, p + 4)[0] + offset
        if value < 0:
            raise FMP4Error("shifted decode time is negative")
        _u64.pack_into(buf, p + 4, value)
    else:
        value = _u32.unpack_from(buf, p + 4)[0] + offset
        if not 0 <= value < 2**32:
            raise FMP4Error("shifted decode time does not fit a version 0 tfdt")
        _u32.pack_into(buf, p + 4, value)
