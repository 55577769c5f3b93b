"""Init segment (ftyp+moov) parsing: the description of the first track.

Every malformed input raises :class:`FMP4Error` and nothing else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from onair.formats.fmp4.boxes import FMP4Error, child_boxes, iter_boxes, require

__all__ = ["TrackInfo", "parse_init"]

_u32 = struct.Struct(">I")
_u16 = struct.Struct(">H")

_Span = tuple[int, int]  # (payload_start, box_end) of a box


@dataclass(frozen=True, slots=True)
class TrackInfo:
    track_id: int
    handler: str  # 'vide' / 'soun' / other hdlr type
    timescale: int
    codec: str  # RFC 6381 codec string, e.g. avc1.64001e / mp4a.40.2
    sample_entry: str  # 'avc1', 'mp4a', ...
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    # trex defaults, used when tfhd/trun do not carry per-fragment values
    default_sample_duration: int = 0
    default_sample_size: int = 0
    default_sample_flags: int = 0
    # the sample entry's decoder configuration: avcC payload (H.264) or AudioSpecificConfig (AAC)
    decoder_config: bytes = b""

    @property
    def is_video(self) -> bool:
        return self.handler == "vide"

    @property
    def is_audio(self) -> bool:
        return self.handler == "soun"


@dataclass(slots=True)
class _SampleEntry:
    """What the stsd sample entry says (width/height only for video, rate/channels only for audio)."""

    codec: str
    width: int = 0
    height: int = 0
    sample_rate: int = 0
    channels: int = 0
    config: bytes = b""


def parse_init(data: bytes | bytearray | memoryview) -> TrackInfo:
    """Parse ftyp+moov bytes (or a bare moov) and describe the first track."""
    try:
        return _parse_init(memoryview(data))
    except FMP4Error:
        raise
    except (struct.error, IndexError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise FMP4Error(f"malformed init segment: {exc}") from exc


def _parse_init(mv: memoryview) -> TrackInfo:
    moov = next(((p, e) for btype, p, e in iter_boxes(mv) if btype == "moov"), None)
    if moov is None:
        raise FMP4Error("no moov box")
    top = child_boxes(mv, *moov)
    trak = top.get("trak")
    if trak is None:
        raise FMP4Error("moov has no trak")
    tk = child_boxes(mv, *trak)
    if "tkhd" not in tk or "mdia" not in tk:
        raise FMP4Error("trak lacks tkhd/mdia")
    track_id, width, height = _parse_tkhd(mv, *tk["tkhd"])
    timescale, handler, stsd = _parse_mdia(mv, *tk["mdia"])
    fourcc, entry = _parse_stsd(mv, handler, timescale, *stsd)
    # tkhd carries the display size; the sample entry's coded size is the fallback
    if handler == "vide" and (not width or not height):
        width, height = entry.width, entry.height
    dur, size, flags = _trex_defaults(mv, top.get("mvex"), track_id)
    return TrackInfo(
        track_id=track_id,
        handler=handler,
        timescale=timescale,
        codec=entry.codec,
        sample_entry=fourcc,
        width=width,
        height=height,
        sample_rate=entry.sample_rate,
        channels=entry.channels,
        default_sample_duration=dur,
        default_sample_size=size,
        default_sample_flags=flags,
        decoder_config=entry.config,
    )


def _parse_tkhd(mv: memoryview, p: int, e: int) -> tuple[int, int, int]:
    """(track_id, width, height) of a tkhd payload; the 16.16 size is 0x0 when absent."""
    require(e, p, 4, "tkhd")
    if mv[p] == 1:
        require(e, p, 4 + 8 + 8 + 4, "tkhd")
        track_id = _u32.unpack_from(mv, p + 20)[0]
        wh_off = p + 4 + 8 + 8 + 4 + 4 + 8 + 8 + 8 + 36
    else:
        require(e, p, 4 + 4 + 4 + 4, "tkhd")
        track_id = _u32.unpack_from(mv, p + 12)[0]
        wh_off = p + 4 + 4 + 4 + 4 + 4 + 4 + 8 + 8 + 36
    width = height = 0
    if wh_off + 8 <= e:
        width = _u32.unpack_from(mv, wh_off)[0] >> 16
        height = _u32.unpack_from(mv, wh_off + 4)[0] >> 16
    return track_id, width, height


def _parse_mdia(mv: memoryview, p: int, e: int) -> tuple[int, str, _Span]:
    """(timescale, handler type, stsd span) of an mdia box."""
    md = child_boxes(mv, p, e)
    if "mdhd" not in md or "hdlr" not in md or "minf" not in md:
        raise FMP4Error("mdia lacks mdhd/hdlr/minf")
    p, e = md["mdhd"]
    require(e, p, 4, "mdhd")
    ts_off = p + (20 if mv[p] == 1 else 12)
    require(e, ts_off, 4, "mdhd")
    timescale = _u32.unpack_from(mv, ts_off)[0]
    if timescale == 0:
        raise FMP4Error("mdhd timescale is 0")
    p, e = md["hdlr"]
    require(e, p, 12, "hdlr")
    handler = bytes(mv[p + 8 : p + 12]).decode("latin-1")
    stbl = child_boxes(mv, *md["minf"]).get("stbl")
    if stbl is None:
        raise FMP4Error("minf has no stbl")
    stsd = child_boxes(mv, *stbl).get("stsd")
    if stsd is None:
        raise FMP4Error("stbl has no stsd")
    return timescale, handler, stsd


def _parse_stsd(mv: memoryview, handler: str, timescale: int, p: int, e: int) -> tuple[str, _SampleEntry]:
    """(sample entry fourcc, its description) of the first stsd entry."""
    require(e, p, 8, "stsd")
    if _u32.unpack_from(mv, p + 4)[0] < 1:
        raise FMP4Error("stsd has no entries")
    first = next(iter_boxes(mv, p + 8, e), None)
    if first is None:
        raise FMP4Error("stsd has no entries")
    fourcc, ep, ee = first
    if handler == "vide":
        return fourcc, _visual_entry(mv, fourcc, ep, ee)
    if handler == "soun":
        return fourcc, _audio_entry(mv, fourcc, timescale, ep, ee)
    return fourcc, _SampleEntry(codec=fourcc)


def _visual_entry(mv: memoryview, fourcc: str, ep: int, ee: int) -> _SampleEntry:
    # VisualSampleEntry: 8 bytes SampleEntry + 70 bytes of fields before child boxes.
    require(ee, ep, 78, fourcc)
    w, h = _u16.unpack_from(mv, ep + 24)[0], _u16.unpack_from(mv, ep + 26)[0]
    codec = fourcc
    config = b""
    kids = child_boxes(mv, ep + 78, ee)
    if fourcc in ("avc1", "avc3") and "avcC" in kids:
        cp, ce = kids["avcC"]
        require(ce, cp, 4, "avcC")
        codec = f"{fourcc}.{mv[cp + 1]:02x}{mv[cp + 2]:02x}{mv[cp + 3]:02x}"
        config = bytes(mv[cp:ce])
    return _SampleEntry(codec=codec, width=w, height=h, config=config)


def _audio_entry(mv: memoryview, fourcc: str, timescale: int, ep: int, ee: int) -> _SampleEntry:
    # AudioSampleEntry: 8 bytes SampleEntry + 20 bytes (v0); QuickTime v1/v2 add more.
    require(ee, ep, 28, fourcc)
    qt_version = _u16.unpack_from(mv, ep + 8)[0]
    channels = _u16.unpack_from(mv, ep + 16)[0]
    sample_rate = _u32.unpack_from(mv, ep + 24)[0] >> 16
    child_off = ep + 28 + {1: 16, 2: 36}.get(qt_version, 0)
    kids = child_boxes(mv, child_off, ee) if child_off <= ee else {}
    config = b""
    if fourcc == "mp4a" and "esds" in kids:
        codec, asc_rate, asc_channels, config = _parse_esds(mv, *kids["esds"])
        sample_rate = sample_rate or asc_rate
        # ISO writers (ffmpeg included) put a fixed 2 in channelcount; the ASC is authoritative.
        channels = asc_channels or channels
    else:
        codec = {"Opus": "opus", "fLaC": "flac", "ac-3": "ac-3", "ec-3": "ec-3"}.get(fourcc, fourcc)
    return _SampleEntry(codec=codec, sample_rate=sample_rate or timescale, channels=channels, config=config)


def _trex_defaults(mv: memoryview, mvex: _Span | None, track_id: int) -> tuple[int, int, int]:
    """(duration, size, flags) sample defaults of the track's trex, zeros without one."""
    if mvex is None:
        return 0, 0, 0
    for btype, p, e in iter_boxes(mv, *mvex):
        if btype != "trex":
            continue
        require(e, p, 24, "trex")
        if _u32.unpack_from(mv, p + 4)[0] == track_id:
            dur, size, flags = struct.unpack_from(">III", mv, p + 12)
            return int(dur), int(size), int(flags)
    return 0, 0, 0


# ---------------------------------------------------------------------------
# esds (MPEG-4 audio decoder configuration)


def _desc_header(mv: memoryview, pos: int, end: int) -> tuple[int, int, int]:
    """MPEG-4 descriptor header: (tag, payload_start, payload_end)."""
    require(end, pos, 2, "descriptor")
    tag = mv[pos]
    pos += 1
    length = 0
    for _ in range(4):
        require(end, pos, 1, "descriptor length")
        b = mv[pos]
        pos += 1
        length = (length << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    if pos + length > end:
        raise FMP4Error(f"descriptor 0x{tag:02x} overruns esds")
    return tag, pos, pos + length


_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _parse_esds(mv: memoryview, p: int, e: int) -> tuple[str, int, int, bytes]:
    """(codec string, sample rate, channels, AudioSpecificConfig bytes) of an esds box."""
    tag, p, e = _desc_header(mv, p + 4, e)  # skip FullBox version/flags
    if tag != 0x03:
        raise FMP4Error("esds: expected ES_Descriptor")
    require(e, p, 3, "ES_Descriptor")
    flags = mv[p + 2]
    p += 3
    if flags & 0x80:
        p += 2
    if flags & 0x40:
        require(e, p, 1, "ES_Descriptor URL")
        p += 1 + mv[p]
    if flags & 0x20:
        p += 2
    tag, p, e = _desc_header(mv, p, e)
    if tag != 0x04:
        raise FMP4Error("esds: expected DecoderConfigDescriptor")
    require(e, p, 13, "DecoderConfigDescriptor")
    oti = mv[p]
    p += 13
    if p >= e or oti != 0x40:
        return f"mp4a.{oti:02x}", 0, 0, b""
    tag, p, dsi_end = _desc_header(mv, p, e)
    if tag != 0x05 or dsi_end - p < 2:
        return f"mp4a.{oti:02x}", 0, 0, b""
    # AudioSpecificConfig is a bit stream: 5-bit object type (31 = escape), 4-bit rate index, ...
    bits = int.from_bytes(mv[p:dsi_end], "big")
    nbits = (dsi_end - p) * 8
    pos = 0

    def take(n: int) -> int:
        nonlocal pos
        if pos + n > nbits:
            raise FMP4Error("AudioSpecificConfig truncated")
        v = (bits >> (nbits - pos - n)) & ((1 << n) - 1)
        pos += n
        return v

    aot = take(5)
    if aot == 31:
        aot = 32 + take(6)
    idx = take(4)
    rate = take(24) if idx == 0xF else (_AAC_RATES[idx] if idx < len(_AAC_RATES) else 0)
    channels = take(4)
    return f"mp4a.{oti:02x}.{aot}", rate, channels, bytes(mv[p:dsi_end])
