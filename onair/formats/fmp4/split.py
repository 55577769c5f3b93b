"""Cutting one fragment (moof+mdat of a single track run) in two at a sample boundary.

The packager cuts audio where the video's segments begin, which rarely falls between two of the
encoder's fragments: the fragment that straddles the boundary is split. Only the simple layout an
encoder writes for one track is handled (one traf with tfhd, tfdt and one trun, samples in one
mdat); anything else is left whole (None), and the cut then falls on the fragment's edge.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from onair.formats.fmp4.boxes import FMP4Error, iter_boxes
from onair.formats.fmp4.fragment import parse_fragment
from onair.formats.fmp4.init_segment import TrackInfo

__all__ = ["SampleRun", "sample_run", "split_fragment"]

_TFHD_BASE_OFFSET, _TFHD_DEFAULT_DURATION, _TFHD_DEFAULT_SIZE = 0x01, 0x08, 0x10
_TRUN_DATA_OFFSET, _TRUN_FIRST_FLAGS = 0x01, 0x04
_TRUN_DURATION, _TRUN_SIZE = 0x100, 0x200
_u32 = struct.Struct(">I")


@dataclass(frozen=True)
class SampleRun:
    """The parts of a fragment a split rewrites."""

    seq: int
    tfhd: bytes  # the whole tfhd box, kept as it is
    decode_time: int
    trun_flags: int
    first_flags: bytes  # b"" unless the trun carries first_sample_flags
    records: list[bytes]  # the trun's per-sample records
    durations: list[int]
    sizes: list[int]
    payload: bytes  # the samples' bytes


def _box(btype: str, payload: bytes) -> bytes:
    return _u32.pack(len(payload) + 8) + btype.encode("ascii") + payload


def sample_run(data: bytes, track: TrackInfo) -> SampleRun | None:
    """The samples of a single-run fragment, or None when its layout is not the simple one."""
    try:
        return _sample_run(memoryview(data), track)
    except (struct.error, IndexError, ValueError) as exc:
        raise FMP4Error(f"malformed fragment: {exc}") from exc


def _sample_run(mv: memoryview, track: TrackInfo) -> SampleRun | None:
    info = parse_fragment(mv, track)
    boxes = list(iter_boxes(mv, 0, len(mv)))
    if len(boxes) != 2 or boxes[0][0] != "moof" or boxes[1][0] != "mdat" or info.base_media_decode_time is None:
        return None
    trafs = [(p, e) for t, p, e in iter_boxes(mv, boxes[0][1], boxes[0][2]) if t == "traf"]
    if len(trafs) != 1:
        return None
    children = {t: (p, e) for t, p, e in iter_boxes(mv, *trafs[0])}
    if sorted(children) != ["tfdt", "tfhd", "trun"]:
        return None
    tp, te = children["tfhd"]
    tf_flags = _u32.unpack_from(mv, tp)[0] & 0xFFFFFF
    if tf_flags & _TFHD_BASE_OFFSET:
        return None
    default_duration, default_size = _tfhd_defaults(mv, tp, tf_flags, track)
    rp, re_ = children["trun"]
    tr_flags = _u32.unpack_from(mv, rp)[0] & 0xFFFFFF
    n = _u32.unpack_from(mv, rp + 4)[0]
    q = rp + 8
    data_offset = None
    if tr_flags & _TRUN_DATA_OFFSET:
        data_offset = _u32.unpack_from(mv, q)[0]
        q += 4
    first_flags = b""
    if tr_flags & _TRUN_FIRST_FLAGS:
        first_flags = bytes(mv[q : q + 4])
        q += 4
    per = (re_ - q) // n if n else 0
    records = [bytes(mv[q + i * per : q + (i + 1) * per]) for i in range(n)]
    durations = [_u32.unpack_from(r, 0)[0] if tr_flags & _TRUN_DURATION else default_duration for r in records]
    size_at = 4 if tr_flags & _TRUN_DURATION else 0
    sizes = [_u32.unpack_from(r, size_at)[0] if tr_flags & _TRUN_SIZE else default_size for r in records]
    start = data_offset if data_offset is not None else boxes[1][1]
    if n < 2 or start + sum(sizes) > len(mv):
        return None
    return SampleRun(info.sequence_number, bytes(mv[tp - 8 : te]), info.base_media_decode_time, tr_flags,
                     first_flags, records, durations, sizes, bytes(mv[start : start + sum(sizes)]))


def _tfhd_defaults(mv: memoryview, p: int, tf_flags: int, track: TrackInfo) -> tuple[int, int]:
    duration, size = track.default_sample_duration, track.default_sample_size
    q = p + 8 + (4 if tf_flags & 0x02 else 0)
    if tf_flags & _TFHD_DEFAULT_DURATION:
        duration = _u32.unpack_from(mv, q)[0]
        q += 4
    if tf_flags & _TFHD_DEFAULT_SIZE:
        size = _u32.unpack_from(mv, q)[0]
    return duration, size


def _fragment(run: SampleRun, lo: int, hi: int) -> bytes:
    decode_time = run.decode_time + sum(run.durations[:lo])
    tfdt = _box("tfdt", b"\x01\x00\x00\x00" + struct.pack(">Q", decode_time))
    head = _u32.pack(run.trun_flags | _TRUN_DATA_OFFSET) + _u32.pack(hi - lo)
    records = b"".join(run.records[lo:hi])
    trun_len = 8 + len(head) + 4 + len(run.first_flags) + len(records)
    moof_len = 8 + 16 + 8 + len(run.tfhd) + len(tfdt) + trun_len
    trun = _box("trun", head + _u32.pack(moof_len + 8) + run.first_flags + records)
    moof = _box("moof", _box("mfhd", b"\x00\x00\x00\x00" + _u32.pack(run.seq)) + _box("traf", run.tfhd + tfdt + trun))
    start = sum(run.sizes[:lo])
    return moof + _box("mdat", run.payload[start : start + sum(run.sizes[lo:hi])])


def split_fragment(run: SampleRun, n: int) -> tuple[bytes, bytes]:
    """The first `n` samples and the rest, each a fragment of its own (0 < n < sample count)."""
    if not 0 < n < len(run.records):
        raise ValueError("a split needs samples on both sides")
    return _fragment(run, 0, n), _fragment(run, n, len(run.records))
