"""The samples of a fragment (moof + mdat) and H.264 sample data as Annex B, for senders that packetize frames.

WebRTC (RTP, RFC 6184) carries H.264 NAL units without the MP4 length prefixes, and a receiver joining at a
keyframe needs the SPS/PPS in band: fMP4 keeps them in the avcC of the init segment only.

Every malformed input raises :class:`FMP4Error` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from onair.formats.fmp4.boxes import FMP4Error, iter_boxes, require
from onair.formats.fmp4.init_segment import TrackInfo

__all__ = ["AvcConfig", "Sample", "avcc_to_annexb", "fragment_samples", "parse_avcc"]

_NON_SYNC = 0x00010000
_TFHD_BASE_OFFSET, _TFHD_DESC, _TFHD_DURATION, _TFHD_SIZE, _TFHD_FLAGS = 0x01, 0x02, 0x08, 0x10, 0x20
_TRUN_DATA_OFFSET, _TRUN_FIRST_FLAGS = 0x01, 0x04
_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTO = 0x100, 0x200, 0x400, 0x800
START_CODE = b"\x00\x00\x00\x01"

_u32 = struct.Struct(">I")
_i32 = struct.Struct(">i")
_u64 = struct.Struct(">Q")


@dataclass(frozen=True, slots=True)
class Sample:
    decode_time: int  # track timescale units
    composition_offset: int  # pts - dts
    duration: int
    sync: bool
    data: bytes


@dataclass(frozen=True, slots=True)
class AvcConfig:
    length_size: int  # bytes of each NAL unit's length prefix in the samples
    sps: tuple[bytes, ...]
    pps: tuple[bytes, ...]

    def parameter_sets_annexb(self) -> bytes:
        return b"".join(START_CODE + nal for nal in (*self.sps, *self.pps))


def parse_avcc(avcc: bytes) -> AvcConfig:
    """The AVCDecoderConfigurationRecord (ISO/IEC 14496-15 5.3.3.1): length size, SPS and PPS."""
    n = len(avcc)
    require(n, 0, 6, "avcC")
    if avcc[0] != 1:
        raise FMP4Error(f"avcC version {avcc[0]} unsupported")
    length_size = (avcc[4] & 0x03) + 1
    pos = 6
    sps, pos = _nal_list(avcc, pos, avcc[5] & 0x1F)
    require(n, pos, 1, "avcC")
    pps, _ = _nal_list(avcc, pos + 1, avcc[pos])
    return AvcConfig(length_size, sps, pps)


def _nal_list(data: bytes, pos: int, count: int) -> tuple[tuple[bytes, ...], int]:
    out = []
    for _ in range(count):
        require(len(data), pos, 2, "avcC parameter set")
        size = int.from_bytes(data[pos:pos + 2], "big")
        require(len(data), pos + 2, size, "avcC parameter set")
        out.append(bytes(data[pos + 2:pos + 2 + size]))
        pos += 2 + size
    return tuple(out), pos


def avcc_to_annexb(sample: bytes, length_size: int = 4) -> bytes:
    """Length-prefixed NAL units → the same NAL units after 4-byte start codes."""
    out = bytearray()
    pos, n = 0, len(sample)
    while pos < n:
        require(n, pos, length_size, "NAL unit length")
        size = int.from_bytes(sample[pos:pos + length_size], "big")
        pos += length_size
        if size == 0:
            continue
        require(n, pos, size, "NAL unit")
        out += START_CODE
        out += sample[pos:pos + size]
        pos += size
    return bytes(out)


@dataclass(slots=True)
class _Run:
    """What one traf says about its samples, with the trex defaults filled in."""

    default_duration: int
    default_size: int
    default_flags: int
    decode_time: int = 0
    base_offset: int | None = None


def fragment_samples(moof: bytes, mdat: bytes, track: TrackInfo, *, moof_offset: int = 0) -> list[Sample]:
    """The samples of `track` in a moof and the mdat after it (both whole boxes, header included).

    Data offsets count from the moof's first byte (default-base-is-moof, as ffmpeg writes) unless the tfhd
    names a base offset, which counts from `moof_offset`, the moof's position in the stream.
    """
    try:
        return _samples(memoryview(moof), moof + mdat, track, moof_offset)
    except FMP4Error:
        raise
    except (struct.error, IndexError, ValueError, OverflowError) as exc:
        raise FMP4Error(f"malformed fragment: {exc}") from exc


def _samples(mv: memoryview, data: bytes, track: TrackInfo, moof_offset: int) -> list[Sample]:
    first = next(iter_boxes(mv), None)
    if first is None or first[0] != "moof":
        raise FMP4Error("expected a moof box")
    out: list[Sample] = []
    for btype, p, e in iter_boxes(mv, first[1], first[2]):
        if btype == "traf":
            out += _traf_samples(mv, data, p, e, track, moof_offset)
    return out


def _traf_samples(mv: memoryview, data: bytes, p: int, e: int, track: TrackInfo, moof_offset: int) -> list[Sample]:
    run = _Run(track.default_sample_duration, track.default_sample_size, track.default_sample_flags)
    out: list[Sample] = []
    for btype, bp, be in iter_boxes(mv, p, e):
        if btype == "tfhd":
            if not _read_tfhd(mv, bp, be, run, track.track_id, moof_offset):
                return []  # another track's traf
        elif btype == "tfdt":
            require(be, bp, 8, "tfdt")
            run.decode_time = int(_u64.unpack_from(mv, bp + 4)[0] if mv[bp] == 1 else _u32.unpack_from(mv, bp + 4)[0])
        elif btype == "trun":
            out += _read_trun(mv, data, bp, be, run)
    return out


def _read_tfhd(mv: memoryview, p: int, e: int, run: _Run, track_id: int, moof_offset: int) -> bool:
    require(e, p, 8, "tfhd")
    flags = _u32.unpack_from(mv, p)[0] & 0xFFFFFF
    if _u32.unpack_from(mv, p + 4)[0] != track_id:
        return False
    q = p + 8
    if flags & _TFHD_BASE_OFFSET:
        require(e, q, 8, "tfhd")
        run.base_offset = int(_u64.unpack_from(mv, q)[0]) - moof_offset
        q += 8
    if flags & _TFHD_DESC:
        q += 4
    for bit in (_TFHD_DURATION, _TFHD_SIZE, _TFHD_FLAGS):
        if flags & bit:
            require(e, q, 4, "tfhd")
            value = _u32.unpack_from(mv, q)[0]
            q += 4
            if bit == _TFHD_DURATION:
                run.default_duration = value
            elif bit == _TFHD_SIZE:
                run.default_size = value
            else:
                run.default_flags = value
    return True


def _read_trun(mv: memoryview, data: bytes, p: int, e: int, run: _Run) -> list[Sample]:
    require(e, p, 8, "trun")
    version = mv[p]
    flags = _u32.unpack_from(mv, p)[0] & 0xFFFFFF
    count = _u32.unpack_from(mv, p + 4)[0]
    q = p + 8
    offset = run.base_offset or 0
    if flags & _TRUN_DATA_OFFSET:
        require(e, q, 4, "trun")
        offset += _i32.unpack_from(mv, q)[0]
        q += 4
    first_flags = None
    if flags & _TRUN_FIRST_FLAGS:
        require(e, q, 4, "trun")
        first_flags = _u32.unpack_from(mv, q)[0]
        q += 4
    fields = [b for b in (_TRUN_DURATION, _TRUN_SIZE, _TRUN_FLAGS, _TRUN_CTO) if flags & b]
    require(e, q, 4 * len(fields) * count, "trun samples")  # a bogus count cannot make us spin
    out = []
    for i in range(count):
        values = {}
        for bit in fields:
            values[bit] = (_i32 if bit == _TRUN_CTO and version == 1 else _u32).unpack_from(mv, q)[0]
            q += 4
        size = values.get(_TRUN_SIZE, run.default_size)
        sflags = values.get(_TRUN_FLAGS, first_flags if i == 0 and first_flags is not None else run.default_flags)
        require(len(data), offset, size, "sample data")
        duration = values.get(_TRUN_DURATION, run.default_duration)
        out.append(Sample(run.decode_time, values.get(_TRUN_CTO, 0), duration, not sflags & _NON_SYNC,
                          data[offset:offset + size]))
        run.decode_time += duration
        offset += size
    run.base_offset = offset  # a following trun without a data offset continues here
    return out
