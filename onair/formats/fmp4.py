"""Sans-IO incremental ISO-BMFF (fragmented MP4) reader and parsers.

Only what the CMAF packager needs: top-level box framing, init segment
(ftyp+moov) track description and per-fragment (moof) timing/sync info.
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
    "FragmentInfo",
    "TrackInfo",
    "iter_boxes",
    "parse_fragment",
    "parse_init",
]

MAX_BOX_SIZE = 64 * 1024 * 1024

# Sample flags: bit 16 is sample_is_non_sync_sample (ISO/IEC 14496-12 8.8.3.1).
_NON_SYNC = 0x00010000

_u32 = struct.Struct(">I")
_u64 = struct.Struct(">Q")
_u16 = struct.Struct(">H")


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

    @property
    def is_video(self) -> bool:
        return self.handler == "vide"

    @property
    def is_audio(self) -> bool:
        return self.handler == "soun"


@dataclass(frozen=True, slots=True)
class FragmentInfo:
    sequence_number: int
    track_id: int
    base_media_decode_time: int | None  # None when the fragment has no tfdt
    sample_count: int
    duration: int  # in track timescale units
    first_sample_sync: bool
    data_size: int  # sum of sample sizes (0 if unknown)


# ---------------------------------------------------------------------------
# Incremental top-level framing


def _read_header(buf: bytes | bytearray | memoryview, pos: int, end: int) -> tuple[int, str, int] | None:
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
                hdr = _read_header(mv, pos, n)
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
        hdr = _read_header(data, pos, end)
        if hdr is None:
            raise FMP4Error("truncated box header")
        size, btype, header = hdr
        box_end = end if size == 0 else pos + size
        if box_end > end:
            raise FMP4Error(f"box {btype!r} overruns its container")
        yield btype, pos + header, box_end
        pos = box_end


def _children(data: memoryview, start: int, end: int) -> dict[str, tuple[int, int]]:
    """First occurrence of each child box type: type -> (payload_start, box_end)."""
    found: dict[str, tuple[int, int]] = {}
    for btype, p, e in iter_boxes(data, start, end):
        found.setdefault(btype, (p, e))
    return found


def _need(end: int, pos: int, n: int, what: str) -> None:
    if pos + n > end:
        raise FMP4Error(f"{what}: truncated")


# ---------------------------------------------------------------------------
# Init segment


def parse_init(data: bytes | bytearray | memoryview) -> TrackInfo:
    """Parse ftyp+moov bytes (or a bare moov) and describe the first track."""
    try:
        return _parse_init(memoryview(data))
    except FMP4Error:
        raise
    except (struct.error, IndexError, ValueError, UnicodeDecodeError, OverflowError) as exc:
        raise FMP4Error(f"malformed init segment: {exc}") from exc


def _parse_init(mv: memoryview) -> TrackInfo:
    moov = None
    for btype, p, e in iter_boxes(mv):
        if btype == "moov":
            moov = (p, e)
            break
    if moov is None:
        raise FMP4Error("no moov box")
    top = _children(mv, *moov)
    trak = top.get("trak")
    if trak is None:
        raise FMP4Error("moov has no trak")
    tk = _children(mv, *trak)
    if "tkhd" not in tk or "mdia" not in tk:
        raise FMP4Error("trak lacks tkhd/mdia")

    # tkhd
    p, e = tk["tkhd"]
    _need(e, p, 4, "tkhd")
    version = mv[p]
    if version == 1:
        _need(e, p, 4 + 8 + 8 + 4, "tkhd")
        track_id = _u32.unpack_from(mv, p + 20)[0]
        wh_off = p + 4 + 8 + 8 + 4 + 4 + 8 + 8 + 8 + 36
    else:
        _need(e, p, 4 + 4 + 4 + 4, "tkhd")
        track_id = _u32.unpack_from(mv, p + 12)[0]
        wh_off = p + 4 + 4 + 4 + 4 + 4 + 4 + 8 + 8 + 36
    width = height = 0
    if wh_off + 8 <= e:
        width = _u32.unpack_from(mv, wh_off)[0] >> 16
        height = _u32.unpack_from(mv, wh_off + 4)[0] >> 16

    md = _children(mv, *tk["mdia"])
    if "mdhd" not in md or "hdlr" not in md or "minf" not in md:
        raise FMP4Error("mdia lacks mdhd/hdlr/minf")
    p, e = md["mdhd"]
    _need(e, p, 4, "mdhd")
    ts_off = p + (20 if mv[p] == 1 else 12)
    _need(e, ts_off, 4, "mdhd")
    timescale = _u32.unpack_from(mv, ts_off)[0]
    if timescale == 0:
        raise FMP4Error("mdhd timescale is 0")
    p, e = md["hdlr"]
    _need(e, p, 12, "hdlr")
    handler = bytes(mv[p + 8 : p + 12]).decode("latin-1")

    stbl = _children(mv, *md["minf"]).get("stbl")
    if stbl is None:
        raise FMP4Error("minf has no stbl")
    stsd = _children(mv, *stbl).get("stsd")
    if stsd is None:
        raise FMP4Error("stbl has no stsd")
    p, e = stsd
    _need(e, p, 8, "stsd")
    if _u32.unpack_from(mv, p + 4)[0] < 1:
        raise FMP4Error("stsd has no entries")
    entry = next(iter_boxes(mv, p + 8, e), None)
    if entry is None:
        raise FMP4Error("stsd has no entries")
    fourcc, ep, ee = entry

    codec = fourcc
    sample_rate = channels = 0
    if handler == "vide":
        # VisualSampleEntry: 8 bytes SampleEntry + 70 bytes of fields before child boxes.
        _need(ee, ep, 78, fourcc)
        w, h = _u16.unpack_from(mv, ep + 24)[0], _u16.unpack_from(mv, ep + 26)[0]
        if not width or not height:
            width, height = w, h
        kids = _children(mv, ep + 78, ee)
        if fourcc in ("avc1", "avc3") and "avcC" in kids:
            cp, ce = kids["avcC"]
            _need(ce, cp, 4, "avcC")
            codec = f"{fourcc}.{mv[cp + 1]:02x}{mv[cp + 2]:02x}{mv[cp + 3]:02x}"
    elif handler == "soun":
        # AudioSampleEntry: 8 bytes SampleEntry + 20 bytes (v0); QuickTime v1/v2 add more.
        _need(ee, ep, 28, fourcc)
        qt_version = _u16.unpack_from(mv, ep + 8)[0]
        channels = _u16.unpack_from(mv, ep + 16)[0]
        sample_rate = _u32.unpack_from(mv, ep + 24)[0] >> 16
        child_off = ep + 28 + {1: 16, 2: 36}.get(qt_version, 0)
        kids = _children(mv, child_off, ee) if child_off <= ee else {}
        if fourcc == "mp4a" and "esds" in kids:
            codec, asc_rate, asc_channels = _parse_esds(mv, *kids["esds"])
            sample_rate = sample_rate or asc_rate
            # ISO writers (ffmpeg included) put a fixed 2 in channelcount; the ASC is authoritative.
            channels = asc_channels or channels
        else:
            codec = {"Opus": "opus", "fLaC": "flac", "ac-3": "ac-3", "ec-3": "ec-3"}.get(fourcc, fourcc)
        if not sample_rate:
            sample_rate = timescale

    dur = size = flags = 0
    mvex = top.get("mvex")
    if mvex is not None:
        for btype, p, e in iter_boxes(mv, *mvex):
            if btype != "trex":
                continue
            _need(e, p, 24, "trex")
            if _u32.unpack_from(mv, p + 4)[0] == track_id:
                dur, size, flags = struct.unpack_from(">III", mv, p + 12)
                break
    return TrackInfo(
        track_id=track_id,
        handler=handler,
        timescale=timescale,
        codec=codec,
        sample_entry=fourcc,
        width=width,
        height=height,
        sample_rate=sample_rate,
        channels=channels,
        default_sample_duration=dur,
        default_sample_size=size,
        default_sample_flags=flags,
    )


def _desc_header(mv: memoryview, pos: int, end: int) -> tuple[int, int, int]:
    """MPEG-4 descriptor header: (tag, payload_start, payload_end)."""
    _need(end, pos, 2, "descriptor")
    tag = mv[pos]
    pos += 1
    length = 0
    for _ in range(4):
        _need(end, pos, 1, "descriptor length")
        b = mv[pos]
        pos += 1
        length = (length << 7) | (b & 0x7F)
        if not b & 0x80:
            break
    if pos + length > end:
        raise FMP4Error(f"descriptor 0x{tag:02x} overruns esds")
    return tag, pos, pos + length


_AAC_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _parse_esds(mv: memoryview, p: int, e: int) -> tuple[str, int, int]:
    tag, p, e = _desc_header(mv, p + 4, e)  # skip FullBox version/flags
    if tag != 0x03:
        raise FMP4Error("esds: expected ES_Descriptor")
    _need(e, p, 3, "ES_Descriptor")
    flags = mv[p + 2]
    p += 3
    if flags & 0x80:
        p += 2
    if flags & 0x40:
        _need(e, p, 1, "ES_Descriptor URL")
        p += 1 + mv[p]
    if flags & 0x20:
        p += 2
    tag, p, e = _desc_header(mv, p, e)
    if tag != 0x04:
        raise FMP4Error("esds: expected DecoderConfigDescriptor")
    _need(e, p, 13, "DecoderConfigDescriptor")
    oti = mv[p]
    p += 13
    if p >= e or oti != 0x40:
        return f"mp4a.{oti:02x}", 0, 0
    tag, p, dsi_end = _desc_header(mv, p, e)
    if tag != 0x05 or dsi_end - p < 2:
        return f"mp4a.{oti:02x}", 0, 0
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
    return f"mp4a.{oti:02x}.{aot}", rate, channels


# ---------------------------------------------------------------------------
# Fragments


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
    first = next(iter_boxes(mv, 0, _first_box_end(mv)), None)
    if first is None or first[0] != "moof":
        raise FMP4Error("expected a moof box")
    _, mp, me = first
    kids = list(iter_boxes(mv, mp, me))
    seq = 0
    traf = None
    for btype, p, e in kids:
        if btype == "mfhd":
            _need(e, p, 8, "mfhd")
            seq = _u32.unpack_from(mv, p + 4)[0]
        elif btype == "traf" and traf is None:
            traf = (p, e)
    if traf is None:
        raise FMP4Error("moof has no traf")

    def_dur = track.default_sample_duration if track else 0
    def_size = track.default_sample_size if track else 0
    def_flags = track.default_sample_flags if track else 0
    track_id = track.track_id if track else 0
    tfhd_seen = False
    bmdt: int | None = None
    count = total_dur = total_size = 0
    first_flags: int | None = None
    for btype, p, e in iter_boxes(mv, *traf):
        if btype == "tfhd":
            _need(e, p, 8, "tfhd")
            tfhd_seen = True
            tf_flags = _u32.unpack_from(mv, p)[0] & 0xFFFFFF
            track_id = _u32.unpack_from(mv, p + 4)[0]
            q = p + 8
            if tf_flags & 0x01:
                q += 8  # base_data_offset
            if tf_flags & 0x02:
                q += 4  # sample_description_index
            for bit in (0x08, 0x10, 0x20):
                if tf_flags & bit:
                    _need(e, q, 4, "tfhd")
                    v = _u32.unpack_from(mv, q)[0]
                    q += 4
                    if bit == 0x08:
                        def_dur = v
                    elif bit == 0x10:
                        def_size = v
                    else:
                        def_flags = v
        elif btype == "tfdt":
            _need(e, p, 8, "tfdt")
            if mv[p] == 1:
                _need(e, p, 12, "tfdt")
                bmdt = _u64.unpack_from(mv, p + 4)[0]
            else:
                bmdt = _u32.unpack_from(mv, p + 4)[0]
        elif btype == "trun":
            if not tfhd_seen:
                raise FMP4Error("trun before tfhd")
            _need(e, p, 8, "trun")
            tr_flags = _u32.unpack_from(mv, p)[0] & 0xFFFFFF
            n = _u32.unpack_from(mv, p + 4)[0]
            q = p + 8
            if tr_flags & 0x01:
                q += 4  # data_offset
            run_first: int | None = None
            if tr_flags & 0x04:
                _need(e, q, 4, "trun")
                run_first = _u32.unpack_from(mv, q)[0]
                q += 4
            has_dur, has_size, has_flags = tr_flags & 0x100, tr_flags & 0x200, tr_flags & 0x400
            per = 4 * sum(1 for b in (0x100, 0x200, 0x400, 0x800) if tr_flags & b)
            # Bound the loop by the box size so a bogus sample_count cannot spin forever.
            _need(e, q, per * n, "trun samples")
            if per == 0:
                total_dur += def_dur * n
                total_size += def_size * n
            for i in range(n if per else 0):
                if has_dur:
                    total_dur += _u32.unpack_from(mv, q)[0]
                    q += 4
                else:
                    total_dur += def_dur
                if has_size:
                    total_size += _u32.unpack_from(mv, q)[0]
                    q += 4
                else:
                    total_size += def_size
                if has_flags:
                    if i == 0 and count == 0 and run_first is None:
                        first_flags = _u32.unpack_from(mv, q)[0]
                    q += 4
                if tr_flags & 0x800:
                    q += 4
            if count == 0 and n:
                if run_first is not None:
                    first_flags = run_first
                elif first_flags is None:
                    first_flags = def_flags
            count += n
    if not tfhd_seen:
        raise FMP4Error("traf has no tfhd")
    if track is not None and not track.is_video:
        sync = True
    else:
        sync = count > 0 and not ((first_flags if first_flags is not None else def_flags) & _NON_SYNC)
    return FragmentInfo(
        sequence_number=seq,
        track_id=track_id,
        base_media_decode_time=bmdt,
        sample_count=count,
        duration=total_dur,
        first_sample_sync=sync,
        data_size=total_size,
    )


def _first_box_end(mv: memoryview) -> int:
    """End offset of the first box, so trailing mdat bytes may be passed along with the moof."""
    hdr = _read_header(mv, 0, len(mv))
    if hdr is None:
        raise FMP4Error("truncated box header")
    size = hdr[0]
    if size == 0:
        return len(mv)
    if size > len(mv):
        raise FMP4Error("moof truncated")
    return size
