"""Seed corpora, generated in code: valid RTMP sessions, real FLV tags and fMP4 from ffmpeg, AMF0 values.

Media seeds come from a short ffmpeg run (tiny 64x48 H.264 + AAC) so they are real encoder output;
without ffmpeg those targets still run from the hand-built seeds.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import Any

HANDSHAKE = b"\x03" + bytes(1536) + bytes(1536)  # C0 + C1 + C2 (the server checks only the version)

_FRAG = ["-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "200000",
         "pipe:1"]


def _ffmpeg(args: list[str]) -> bytes:
    if shutil.which("ffmpeg") is None:
        return b""
    cmd = ["ffmpeg", "-hide_banner", "-v", "error", "-nostdin", *args]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return b""


_VIDEO_IN = ["-f", "lavfi", "-i", "testsrc2=size=64x48:rate=10", "-t", "0.6"]
_AUDIO_IN = ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000", "-t", "0.3"]
_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-g", "3", "-bf", "0"]


@cache
def fmp4_video() -> bytes:
    return _ffmpeg([*_VIDEO_IN, *_X264, *_FRAG])


@cache
def fmp4_audio() -> bytes:
    return _ffmpeg([*_AUDIO_IN, "-c:a", "aac", "-b:a", "32k", *_FRAG])


@cache
def flv_file() -> bytes:
    return _ffmpeg([*_VIDEO_IN, *_AUDIO_IN, *_X264, "-c:a", "aac", "-b:a", "32k", "-f", "flv", "pipe:1"])


def flv_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(tag type, timestamp, payload) of every complete tag of an FLV file."""
    if data[:3] != b"FLV" or len(data) < 13:
        return []
    pos = struct.unpack_from(">I", data, 5)[0] + 4
    tags = []
    while pos + 11 <= len(data):
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        end = pos + 11 + size
        if end > len(data):
            break
        tags.append((data[pos], ts, data[pos + 11 : end]))
        pos = end + 4
    return tags


def top_boxes(data: bytes) -> list[bytes]:
    out = []
    pos = 0
    while pos + 8 <= len(data):
        size = struct.unpack_from(">I", data, pos)[0]
        if size < 8 or pos + size > len(data):
            break
        out.append(data[pos : pos + size])
        pos += size
    return out


def fmp4_parts(data: bytes) -> tuple[bytes, list[bytes]]:
    """(ftyp+moov, [moof+mdat, ...]) of an ffmpeg fMP4."""
    boxes = top_boxes(data)
    init = b"".join(b for b in boxes if b[4:8] in (b"ftyp", b"moov"))
    frags = []
    for i, b in enumerate(boxes):
        if b[4:8] == b"moof":
            frags.append(b + (boxes[i + 1] if i + 1 < len(boxes) and boxes[i + 1][4:8] == b"mdat" else b""))
    return init, frags


# --------------------------------------------------------------------------- RTMP client side


def chunk(csid: int, type_id: int, stream_id: int, payload: bytes, ts: int = 0, chunk_size: int = 128,
          fmt: int = 0, delta: int | None = None) -> bytes:
    """One message as a client sends it: a type `fmt` header, then type 3 continuations."""

    def basic(f: int) -> bytes:
        if csid < 64:
            return bytes([(f << 6) | csid])
        if csid < 320:
            return bytes([f << 6, csid - 64])
        return bytes([(f << 6) | 1, (csid - 64) & 0xFF, (csid - 64) >> 8])

    field = ts if fmt == 0 else (delta or 0)
    ext = field >= 0xFFFFFF
    head = basic(fmt)
    if fmt <= 2:
        head += min(field, 0xFFFFFF).to_bytes(3, "big")
    if fmt <= 1:
        head += len(payload).to_bytes(3, "big") + bytes([type_id])
    if fmt == 0:
        head += stream_id.to_bytes(4, "little")
    if ext:
        head += field.to_bytes(4, "big")
    out = bytearray(head + payload[:chunk_size])
    for i in range(chunk_size, len(payload), chunk_size):
        out += basic(3) + (field.to_bytes(4, "big") if ext else b"") + payload[i : i + chunk_size]
    return bytes(out)


def command(*values: Any, stream_id: int = 0, csid: int = 3, chunk_size: int = 128) -> bytes:
    from onair.formats import amf0

    return chunk(csid, 20, stream_id, amf0.encode(*values), chunk_size=chunk_size)


def _metadata() -> bytes:
    from onair.formats import amf0

    meta = amf0.ECMAArray(width=64.0, height=48.0, framerate=10.0, videocodecid=7.0, audiocodecid=10.0,
                          encoder="Lavf61", stereo=True)
    return amf0.encode("@setDataFrame", "onMetaData", meta)


def rtmp_sessions() -> list[tuple[str, bytes]]:
    """Chunk streams after the handshake: a full OBS/ffmpeg-like publish and protocol corner cases."""
    from onair.formats import amf0

    connect = command("connect", 1.0, {"app": "in", "type": "nonprivate", "flashVer": "FMLE/3.0",
                                       "tcUrl": "rtmp://127.0.0.1:1935/in"})
    setup = (chunk(2, 1, 0, struct.pack(">I", 4096)) + command("releaseStream", 2.0, None, "1?tok", chunk_size=4096)
             + command("FCPublish", 3.0, None, "1?tok", chunk_size=4096)
             + command("createStream", 4.0, None, chunk_size=4096)
             + command("publish", 5.0, None, "1?tok", "live", stream_id=1, csid=8, chunk_size=4096))
    media = bytearray(chunk(4, 18, 1, _metadata(), chunk_size=4096))
    tags = flv_tags(flv_file())[:12]
    for type_id, ts, payload in tags:
        if type_id in (8, 9):
            media += chunk(6 if type_id == 9 else 4, type_id, 1, payload, ts=ts, chunk_size=4096)
    if not tags:
        media += chunk(6, 9, 1, b"\x17\x00\x00\x00\x00\x01\x64\x00\x1f\xff\xe1\x00\x04abcd", chunk_size=4096)
        media += chunk(4, 8, 1, b"\xaf\x00\x11\x90", chunk_size=4096)
    end = command("FCUnpublish", 6.0, None, "1?tok", chunk_size=4096) + command(
        "deleteStream", 7.0, None, 1.0, chunk_size=4096)
    publish = connect + setup + bytes(media) + end

    # compressed headers: type 1/2/3 with deltas, extended timestamps, big chunk stream ids
    v = b"\x27\x01\x00\x00\x00" + bytes(300)
    deltas = (chunk(6, 9, 1, v, ts=1000) + chunk(6, 9, 1, v, fmt=1, delta=33) + chunk(6, 9, 1, v, fmt=2, delta=33)
              + chunk(6, 9, 1, v, fmt=3) + chunk(6, 9, 1, v, ts=0x1000000) + chunk(6, 9, 1, v, fmt=3)
              + chunk(300, 8, 1, b"\xaf\x01" + bytes(200)) + chunk(70, 8, 1, b"\xaf\x01" + bytes(10)))
    # aggregate of FLV tags, abort of a half-sent message, ping, window ack size, unknown command
    sub = b"".join(bytes([9]) + (len(p)).to_bytes(3, "big") + (t & 0xFFFFFF).to_bytes(3, "big") + bytes([t >> 24])
                   + b"\x00\x00\x00" + p + struct.pack(">I", 11 + len(p))
                   for t, p in ((0, b"\x17\x01\x00\x00\x00abc"), (40, b"\x27\x01\x00\x00\x00def")))
    misc = (chunk(6, 22, 1, sub, ts=500) + chunk(2, 4, 0, struct.pack(">HI", 6, 1234))
            + chunk(2, 5, 0, struct.pack(">I", 5_000_000)) + chunk(2, 3, 0, struct.pack(">I", 10))
            + chunk(2, 6, 0, struct.pack(">IB", 5_000_000, 2))
            + chunk(7, 9, 1, bytes(200))[:150] + chunk(2, 2, 0, struct.pack(">I", 7))
            + command("play", 8.0, None, "x") + command("getStreamLength", 9.0, None, "x")
            + command("whatever", 10.0, None) + chunk(3, 17, 0, b"\x00" + amf0.encode("x", 1.0)))
    return [("publish", publish), ("deltas", connect + setup + deltas), ("misc", connect + setup + misc),
            ("connect", connect)]


# --------------------------------------------------------------------------- per target


def amf0_seeds() -> list[tuple[str, bytes]]:
    from onair.formats import amf0

    seeds = [
        ("connect", amf0.encode("connect", 1.0, {"app": "in", "tcUrl": "rtmp://h/in", "fpad": False,
                                                 "capabilities": 15.0, "videoFunction": 1.0})),
        ("metadata", _metadata()),
        ("values", amf0.encode(None, amf0.UNDEFINED, [1.0, "a", [True, None]], datetime(2024, 1, 2, tzinfo=UTC),
                               "x" * 70000, {"nested": {"deep": amf0.ECMAArray(k=1.0)}})),
        ("typed", b"\x10\x00\x03Foo\x00\x01a\x00?\xf0\x00\x00\x00\x00\x00\x00\x00\x00\x09"),
        ("xml_ref_unsupported", b"\x0f\x00\x00\x00\x03<a>\x0d\x07\x00\x01"),
    ]
    return seeds


def flv_seeds() -> list[tuple[str, bytes]]:
    seeds = [("avc_seq", b"\x00\x17\x00\x00\x00\x00"), ("aac_seq", b"\x01\xaf\x00\x12\x10")]
    for i, (type_id, _ts, payload) in enumerate(flv_tags(flv_file())[:10]):
        seeds.append((f"tag{i}", bytes([type_id]) + payload[:512]))
    return seeds


def rtmp_chunk_seeds() -> list[tuple[str, bytes]]:
    # first byte: how the harness splits the data into receive_data() calls
    # (0x40: answer publish requests after one whole batch, 0x80: accept rather than reject)
    return [(f"{name}-{ctl:02x}", bytes([ctl]) + data) for i, (name, data) in enumerate(rtmp_sessions())
            for ctl in (i * 37 % 64, 0x40 | i, 0xC0 | i)]


def rtmp_handshake_seeds() -> list[tuple[str, bytes]]:
    return [("handshake_only", b"\x05" + HANDSHAKE),
            ("handshake_connect", b"\x01" + HANDSHAKE + rtmp_sessions()[-1][1]),
            ("bad_version", b"\x00\x06" + bytes(100))]


def _fmp4_inits() -> list[tuple[str, bytes]]:
    out = []
    for kind, data in (("video", fmp4_video()), ("audio", fmp4_audio())):
        init, _ = fmp4_parts(data)
        if init:
            out.append((kind, init))
    return out


def fmp4_reader_seeds() -> list[tuple[str, bytes]]:
    seeds = [("size0", b"\x07" + b"\x00\x00\x00\x10ftypisom\x00\x00\x00\x00\x00\x00\x00\x00mdatxyz"),
             ("largesize", b"\x03" + b"\x00\x00\x00\x01free" + struct.pack(">Q", 20) + b"abcd")]
    for kind, data in (("video", fmp4_video()), ("audio", fmp4_audio())):
        init, frags = fmp4_parts(data)
        if init:
            seeds.append((kind, b"\x11" + init + b"".join(frags[:2])))
    return seeds


def fmp4_init_seeds() -> list[tuple[str, bytes]]:
    return _fmp4_inits()


def fmp4_fragment_seeds() -> list[tuple[str, bytes]]:
    # first byte picks the track description the harness passes: none, video, audio
    seeds = []
    for sel, (kind, data) in ((1, ("video", fmp4_video())), (2, ("audio", fmp4_audio()))):
        _, frags = fmp4_parts(data)
        for i, frag in enumerate(frags[:2]):
            seeds.append((f"{kind}{i}", bytes([sel]) + frag[:2048]))
            seeds.append((f"{kind}{i}_notrack", b"\x00" + frag[:2048]))
    return seeds


def stream_key_seeds() -> list[tuple[str, bytes]]:
    return [(f"s{i}", s.encode()) for i, s in enumerate(
        ["1?abcDEF0123", "42b?tok", "7#tok", "7b#tok", "9_tok", " 12?x ", "0?x", "2147483648?x", "1?" + "a" * 129,
         "#!::r=12,s=tok,m=publish", "#!::r=12b#tok", "#!::r=1,m=request"])]


def hls_query_seeds() -> list[tuple[str, bytes]]:
    return [(f"q{i}", s.encode()) for i, s in enumerate(
        ["_HLS_msn=12&_HLS_part=3", "_HLS_msn=5", "_HLS_part=1", "_HLS_msn=12&_HLS_part=3&_HLS_skip=YES",
         "_HLS_skip=v2", "_HLS_msn=-1", "_HLS_msn=%31%32&_HLS_part=0", "_HLS_msn=1e3"])]


def ts_playlist_seeds() -> list[tuple[str, bytes]]:
    text = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:4\n"
            "#EXTINF:2.000000,\n/data/live/1/ts/r720/seg4.ts\n#EXTINF:1.960000,\nseg5.ts\n#EXT-X-ENDLIST\n")
    return [("ffmpeg", b"\x03" + text.encode())]


def probe_seeds() -> list[tuple[str, bytes]]:
    stderr = (
        "Input #0, flv, from 'pipe:0':\n  Metadata:\n    encoder         : Lavf61.1.100\n"
        "  Duration: N/A, start: 0.000000, bitrate: N/A\n"
        "  Stream #0:0: Video: h264 (High), yuv420p(progressive), 1280x720 [SAR 1:1 DAR 16:9], 30 fps, 30 tbr, 1k tbn\n"
        "  Stream #0:1[0x101](und): Audio: aac (LC) ([15][0][0][0] / 0x000F), 48000 Hz, stereo, fltp\n"
        "Stream mapping:\n  Stream #0:0 -> #0:0 (h264 (native) -> h264 (libx264))\nOutput #0, mp4, to 'pipe:3':\n"
    )
    probe = ('{"streams": [{"codec_type": "video", "codec_name": "h264", "width": 1280, "height": 720,'
             ' "avg_frame_rate": "30000/1001", "r_frame_rate": "30/1"}, {"codec_type": "audio", "codec_name": "aac"}]}')
    return [("stderr", b"\x00" + stderr.encode()), ("ffprobe", b"\x01" + probe.encode())]


@cache
def ts_file() -> bytes:
    return _ffmpeg([*_VIDEO_IN, *_AUDIO_IN, *_X264, "-c:a", "aac", "-b:a", "32k", "-f", "mpegts", "pipe:1"])


def source_head_seeds() -> list[tuple[str, bytes]]:
    # first byte: bit 0 picks MPEG-TS over FLV, the rest how the harness cuts the data into pieces
    seeds = [("flv", b"\x00" + flv_file()[:8192]), ("flv_bytes", b"\x80" + flv_file()[:4096]),
             ("ts", b"\x01" + ts_file()[:8192]), ("ts_pieces", b"\x13" + ts_file()[:8192])]
    return [(name, data) for name, data in seeds if len(data) > 1]


def srt_streamid_seeds() -> list[tuple[str, bytes]]:
    return stream_key_seeds()


SEEDS: dict[str, Callable[[], list[tuple[str, bytes]]]] = {
    "amf0": amf0_seeds,
    "flv": flv_seeds,
    "rtmp_handshake": rtmp_handshake_seeds,
    "rtmp_chunks": rtmp_chunk_seeds,
    "fmp4_reader": fmp4_reader_seeds,
    "fmp4_init": fmp4_init_seeds,
    "fmp4_fragment": fmp4_fragment_seeds,
    "stream_key": stream_key_seeds,
    "srt_streamid": srt_streamid_seeds,
    "hls_query": hls_query_seeds,
    "ts_playlist": ts_playlist_seeds,
    "probe": probe_seeds,
    "source_head": source_head_seeds,
}


# libFuzzer dictionaries: tokens the mutator splices in, so it reaches keyword-guarded paths quickly.
DICTS: dict[str, list[bytes]] = {
    "amf0": [b"\x00\x00\x09", b"\x02\x00\x07connect", b"\x08\x00\x00\x00\x01", b"\x0a\x00\x00\x00\x02",
             b"\x0b", b"\x0c\x00\x01\x00\x00", b"\x10\x00\x01X"],
    "rtmp_chunks": [b"\x02\x00\x07connect", b"\x02\x00\x07publish", b"\x02\x00\x0ccreateStream",
                    b"\x02\x00\x0bFCUnpublish", b"\x02\x00\x0d@setDataFrame", b"\x02\x00\x0aonMetaData",
                    b"\xff\xff\xff", b"\x00\x00\x10\x00", b"\x7f\xff\xff\xff"],
    "fmp4_init": [b"moov", b"trak", b"tkhd", b"mdia", b"mdhd", b"hdlr", b"minf", b"stbl", b"stsd", b"avc1",
                  b"avcC", b"mp4a", b"esds", b"mvex", b"trex", b"vide", b"soun", b"\x00\x00\x00\x01"],
    "fmp4_fragment": [b"moof", b"mfhd", b"traf", b"tfhd", b"tfdt", b"trun", b"mdat", b"\x00\x00\x00\x01",
                      b"\xff\xff\xff\xff"],
    "fmp4_reader": [b"\x00\x00\x00\x00", b"\x00\x00\x00\x01", b"uuid", b"\xff\xff\xff\xff"],
    "hls_query": [b"_HLS_msn=", b"_HLS_part=", b"_HLS_skip=", b"YES", b"v2", b"&", b"%B2", b"%C2", b"+"],
    "ts_playlist": [b"#EXTINF:", b"#EXT-X-ENDLIST", b"inf", b"nan", b"1e400", b",\n", b"/"],
    "probe": [b"Input #0", b"Input #1", b"Output #0", b"Stream mapping", b"  Stream #0:0: Video: ",
              b"Stream #0:1: Audio: ", b" fps", b" tbr", b"k tbr", b"1280x720", b'{"streams": [',
              b'"codec_type": "video"', b'"avg_frame_rate": "', b"/0"],
    "stream_key": [b"?", b"#", b"_", b"b?", b"2147483647"],
    "source_head": [b"FLV\x01\x05\x00\x00\x00\x09", b"\x02\x00\x0aonMetaData", b"\x17\x00", b"\xaf\x00",
                    b"\x47\x40\x00", b"\x47\x50\x00", b"\x00\x00\x00\x01\x67", b"\x05\x04Opus", b"\x1b"],
    "srt_streamid": [b"#!::", b"r=", b"s=", b"m=publish", b"m=request", b","],
}


def write_dict(name: str, path: str) -> bool:
    tokens = DICTS.get(name, [])
    if tokens:
        with open(path, "w") as f:
            f.writelines('"' + "".join(f"\\x{b:02x}" for b in tok) + '"\n' for tok in tokens)
    return bool(tokens)
