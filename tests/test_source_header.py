"""The ladder is planned from what the source says (SPS, FLV sequence headers, MPEG-TS PMT): pure parsers."""

from __future__ import annotations

import random

import pytest

from onair.formats import amf0
from onair.formats.flv import TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO, flv_file_header, flv_tag
from onair.formats.h264 import H264Error, annexb_nal_units, parse_avc_config, parse_sps, sps_from_annexb
from onair.formats.probe import SourceInfo
from onair.formats.source_header import FlvHeadReader, TsHeadReader, head_reader

# SPS NAL units written by libx264 (the 00 00 03 in them are emulation prevention bytes)
SPS = {
    "1080p30-baseline": ("6742c028da01e0089f9610000003001000000303c8f1832a", 66, 1920, 1080, 30.0),
    "480p25-baseline": ("6742c01eda0360f79b84000003000400000300ca3c58ba80", 66, 854, 480, 25.0),
    "vertical720p60": ("6742c020da02d0286840000003004000001e23c60ca8", 66, 720, 1280, 60.0),
    "360p30-baseline": ("6742c01eda0280bfe584000003000400000300f23c58ba80", 66, 640, 360, 30.0),
    "1080p30-high": ("67640028acd940780227e584000003000400000300f03c60c658", 100, 1920, 1080, 30.0),
    "480p25-main": ("674d401eeca06c1ef370800000030080000019078b16cb", 77, 854, 480, 25.0),
    "720p29.97-high": ("6764001facd9405005ba1000003e90000ea600f1831960", 100, 1280, 720, 30000 / 1001),
}
SPS_720P = bytes.fromhex(SPS["720p29.97-high"][0])
PPS = bytes.fromhex("68ebe3cb22c0")
AAC_ASC = bytes.fromhex("1190")  # AAC LC, 48 kHz, stereo


@pytest.mark.parametrize("name", sorted(SPS))
def test_sps_of_real_encoders(name: str) -> None:
    hexa, profile, width, height, fps = SPS[name]
    sps = parse_sps(bytes.fromhex(hexa))
    assert (sps.profile_idc, sps.width, sps.height) == (profile, width, height)
    assert sps.fps == pytest.approx(fps)


class Bits:
    """The writer the reader is tested against: u(n), ue(v), se(v) of H.264 9.1."""

    def __init__(self) -> None:
        self.bits: list[int] = []

    def u(self, n: int, v: int) -> Bits:
        self.bits += [(v >> (n - 1 - i)) & 1 for i in range(n)]
        return self

    def ue(self, v: int) -> Bits:
        code = v + 1
        return self.u(code.bit_length() - 1, 0).u(code.bit_length(), code)

    def se(self, v: int) -> Bits:
        return self.ue(2 * v - 1 if v > 0 else -2 * v)

    def nal(self) -> bytes:
        bits = [*self.bits, 1]  # rbsp_stop_one_bit
        bits += [0] * (-len(bits) % 8)
        raw = bytes(int("".join(map(str, bits[i:i + 8])), 2) for i in range(0, len(bits), 8))
        out, zeros = bytearray(b"\x67"), 0
        for b in raw:  # emulation prevention
            if zeros >= 2 and b <= 3:
                out.append(3)
                zeros = 0
            out.append(b)
            zeros = zeros + 1 if b == 0 else 0
        return bytes(out)


def test_sps_interlaced_high_with_scaling_matrix_poc_type_1_and_extended_sar() -> None:
    w = Bits().u(8, 100).u(8, 0).u(8, 40).ue(0)
    w.ue(1).ue(0).ue(0).u(1, 0)  # 4:2:0, 8 bit, no bypass
    w.u(1, 1)  # scaling matrices: list 0 present (deltas), the rest not
    w.u(1, 1)
    for _ in range(16):
        w.se(1)
    for _ in range(7):
        w.u(1, 0)
    w.ue(4).ue(1).u(1, 0).se(-2).se(3).ue(2).se(1).se(-1)  # frame num, POC type 1 with a 2-frame cycle
    w.ue(4).u(1, 0)
    w.ue(1919 // 16).ue(1087 // 32)  # 120 MBs wide, 34 map units (field pairs) high
    w.u(1, 0).u(1, 0).u(1, 1)  # field coding, mb_adaptive off, direct_8x8
    w.u(1, 1).ue(0).ue(0).ue(0).ue(2)  # crop: bottom 2 units of 4 lines (4:2:0 fields)
    w.u(1, 1)  # VUI
    w.u(1, 1).u(8, 255).u(16, 4).u(16, 3)  # Extended_SAR 4:3
    w.u(1, 0).u(1, 1).u(3, 5).u(1, 0).u(1, 1).u(24, 0x010101).u(1, 0)
    w.u(1, 1).u(32, 1001).u(32, 60000).u(1, 0)
    sps = parse_sps(w.nal())
    assert (sps.profile_idc, sps.level_idc) == (100, 40)
    assert (sps.width, sps.height) == (1920, 1080)  # 34 * 32 = 1088 lines - 2 * 4
    assert sps.fps == pytest.approx(29.97, abs=0.01)


def test_sps_time_base_is_not_a_frame_rate_and_bad_input_is_an_error() -> None:
    w = Bits().u(8, 66).u(8, 0xC0).u(8, 30).ue(0).ue(0).ue(2).ue(1).u(1, 0).ue(39).ue(22)
    w.u(1, 1).u(1, 1).u(1, 0)  # 640x368, no crop
    w.u(1, 1).u(1, 0).u(1, 0).u(1, 0).u(1, 0).u(1, 1).u(32, 1).u(32, 180_000).u(1, 0)  # 90 kHz time base
    sps = parse_sps(w.nal())
    assert (sps.width, sps.height, sps.fps) == (640, 368, None)
    with pytest.raises(H264Error):
        parse_sps(PPS)
    with pytest.raises(H264Error):
        parse_sps(SPS_720P[:6])  # truncated
    with pytest.raises(H264Error):
        parse_sps(b"\x67" + b"\x00" * 12)  # an endless exp-Golomb prefix
    with pytest.raises(H264Error):
        parse_avc_config(b"\x01\x64\x00\x1f\xff\xe1\x00\x40" + SPS_720P)  # length past the end


def avc_record(sps: bytes = SPS_720P, pps: bytes = PPS) -> bytes:
    return (bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + len(sps).to_bytes(2, "big") + sps
            + b"\x01" + len(pps).to_bytes(2, "big") + pps)


def test_avc_record_and_annexb() -> None:
    assert parse_avc_config(avc_record()).width == 1280
    stream = (b"\x00\x00\x00\x01\x09\xf0" + b"\x00\x00\x00\x01" + SPS_720P + b"\x00\x00\x01" + PPS
              + b"\x00\x00\x01\x65\x88")
    assert annexb_nal_units(stream) == [b"\x09\xf0", SPS_720P, PPS, b"\x65\x88"]
    sps = sps_from_annexb(stream)
    assert sps is not None and sps.height == 720
    assert sps_from_annexb(b"\x00\x00\x01" + SPS_720P[:5], complete_only=True) is None  # may still grow


def flv_source(*, fps: float | None = 30, audio: bool = True, video_codec: int = 7) -> list[bytes]:
    """The head of an FLV source as an RTMP ingest passes it on: header, metadata, sequence headers, frames."""
    meta: dict[str, object] = {"width": 1280.0, "height": 720.0, "videocodecid": 7.0}
    if fps is not None:
        meta["framerate"] = float(fps)
    tags = [flv_file_header(has_audio=audio, has_video=True),
            flv_tag(TAG_SCRIPT, 0, amf0.encode("@setDataFrame", "onMetaData", amf0.ECMAArray(meta))),
            flv_tag(TAG_VIDEO, 0, bytes([0x10 | video_codec, 0, 0, 0, 0]) + avc_record())]
    if audio:
        tags.append(flv_tag(TAG_AUDIO, 0, b"\xaf\x00" + AAC_ASC))
    for n in range(60):
        tags.append(flv_tag(TAG_VIDEO, n * 33, bytes([0x17 if n == 0 else 0x27, 1, 0, 0, 0]) + b"\x00" * 50))
        if audio:
            tags.append(flv_tag(TAG_AUDIO, n * 33, b"\xaf\x01" + b"\x21" * 20))
    return tags


def feed_bytewise(reader: FlvHeadReader | TsHeadReader, chunks: list[bytes]) -> int:
    """Feed one byte at a time; returns how many bytes it took to decide."""
    data = b"".join(chunks)
    for i in range(len(data)):
        reader.feed(data[i:i + 1])
        if reader.done:
            return i + 1
    return len(data)


def test_flv_head_describes_the_source_at_its_sequence_headers() -> None:
    chunks = flv_source()
    reader = FlvHeadReader()
    used = feed_bytewise(reader, chunks)
    assert reader.info == SourceInfo(1280, 720, 30.0, "h264", "aac") and reader.failed is None
    assert used == sum(map(len, chunks[:4])), "decided at the audio sequence header, before any frame"
    reader = head_reader("flv")
    feed_bytewise(reader, flv_source(fps=None, audio=False))
    assert reader.info == SourceInfo(1280, 720, pytest.approx(30000 / 1001), "h264", None)  # the SPS rate


def test_flv_head_that_does_not_say_enough_falls_back() -> None:
    hevc = FlvHeadReader()
    feed_bytewise(hevc, flv_source(video_codec=12))
    assert hevc.info is None and hevc.failed and "codec 12" in hevc.failed
    silent = FlvHeadReader()  # the header announces audio that never comes
    chunks = flv_source(audio=False)
    chunks[0] = flv_file_header(has_audio=True, has_video=True)
    feed_bytewise(silent, chunks)
    assert silent.info is None and silent.failed and "in time" in silent.failed
    for garbage in (b"GET / HTTP/1.1\r\n\r\n", b"FLV\x01\x05\xff\xff\xff\xff\x00\x00\x00\x00"):
        reader = FlvHeadReader()
        reader.feed(garbage)
        assert reader.failed and reader.info is None


def ts_packets(pid: int, payload: bytes, *, counter: int = 0) -> list[bytes]:
    out = []
    for i in range(0, len(payload), 184):
        chunk = payload[i:i + 184]
        header = bytes([0x47, (0x40 if i == 0 else 0) | (pid >> 8), pid & 0xFF])
        if len(chunk) < 184:  # stuffing in an adaptation field
            stuff = 184 - len(chunk) - 1
            adapt = bytes([stuff]) + (b"\x00" + b"\xff" * (stuff - 1) if stuff else b"")
            out.append(header + bytes([0x30 | (counter & 15)]) + adapt + chunk)
        else:
            out.append(header + bytes([0x10 | (counter & 15)]) + chunk)
        counter += 1
    return out


def psi(table_id: int, body: bytes) -> bytes:
    length = 5 + len(body) + 4
    return b"\x00" + bytes([table_id, 0xB0 | (length >> 8), length & 0xFF, 0, 1, 0xC1, 0, 0]) + body + b"\x00" * 4


def ts_source(streams: list[tuple[int, int, bytes]], video: bytes | None = None) -> list[bytes]:
    pat = psi(0x00, b"\x00\x01\xf0\x00")  # program 1 → PMT PID 0x1000
    pmt_body = b"\xe1\x00\xf0\x00" + b"".join(bytes([t, 0xE0 | (pid >> 8), pid & 0xFF, 0xF0, len(d)]) + d
                                             for t, pid, d in streams)
    packets = ts_packets(0, pat) + ts_packets(0x1000, psi(0x02, pmt_body))
    if video is not None:
        pes = b"\x00\x00\x01\xe0\x00\x00\x80\x80\x05\x21\x00\x01\x00\x01" + video
        packets += ts_packets(0x100, pes)
    return packets


def test_ts_head_describes_the_source_from_pmt_and_sps() -> None:
    au = (b"\x00\x00\x00\x01\x09\xf0" + b"\x00" * 170  # pushes the SPS across a packet boundary
          + b"\x00\x00\x00\x01" + SPS_720P + b"\x00\x00\x00\x01" + PPS + b"\x00\x00\x01\x65" + b"\x88" * 400)
    reader = TsHeadReader()
    feed_bytewise(reader, [b"\x12\x34", *ts_source([(0x1B, 0x100, b""), (0x0F, 0x101, b"")], au)])
    assert reader.info == SourceInfo(1280, 720, pytest.approx(30000 / 1001), "h264", "aac")
    opus = head_reader("mpegts")  # WHIP: H.264 + Opus (a registration descriptor on a private stream)
    feed_bytewise(opus, ts_source([(0x1B, 0x100, b""), (0x06, 0x101, b"\x05\x04Opus")], au))
    assert opus.info is not None and opus.info.audio_codec == "opus"
    audio_only = TsHeadReader()
    feed_bytewise(audio_only, ts_source([(0x0F, 0x101, b"")]))
    assert audio_only.info == SourceInfo(None, None, None, None, "aac")
    hevc = TsHeadReader()
    feed_bytewise(hevc, ts_source([(0x24, 0x100, b""), (0x0F, 0x101, b"")]))
    assert hevc.info is None and hevc.failed and "0x24" in hevc.failed
    dvb_ac3 = TsHeadReader()  # audio on a private stream that is not Opus: ffprobe says what it is
    feed_bytewise(dvb_ac3, ts_source([(0x1B, 0x100, b""), (0x06, 0x101, b"\x6a\x01\x00")], au))
    assert dvb_ac3.info is None and dvb_ac3.failed and "0x6" in dvb_ac3.failed
    extras = TsHeadReader()  # SCTE-35, ID3 and DVB subtitles beside the media change nothing
    feed_bytewise(extras, ts_source([(0x1B, 0x100, b""), (0x0F, 0x101, b""), (0x86, 0x102, b""), (0x15, 0x103, b""),
                                     (0x06, 0x104, b"\x59\x08" + b"eng\x10\x00\x01\x00\x01")], au))
    assert extras.info == SourceInfo(1280, 720, pytest.approx(30000 / 1001), "h264", "aac")


def test_random_bytes_never_raise() -> None:
    rng = random.Random(16)
    for _ in range(300):
        for reader in (FlvHeadReader(), TsHeadReader()):
            blob = (b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00" if isinstance(reader, FlvHeadReader) else b"\x47")
            reader.feed(blob + rng.randbytes(rng.randrange(1, 3000)))
        try:
            parse_sps(b"\x67" + rng.randbytes(rng.randrange(0, 40)))
        except H264Error:
            pass
