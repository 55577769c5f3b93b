"""Tests for the incremental ISO-BMFF reader and init/fragment parsers."""

from __future__ import annotations

import functools
import json
import random
import shutil
import struct
import subprocess

import pytest

from onair.formats.fmp4 import (
    Box,
    BoxReader,
    FMP4Error,
    TrackInfo,
    parse_fragment,
    parse_init,
)

HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None
needs_ffmpeg = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg/ffprobe not installed")

FRAG_ARGS = [
    "-f",
    "mp4",
    "-movflags",
    "frag_keyframe+empty_moov+default_base_moof",
    "-frag_duration",
    "500000",
    "pipe:1",
]


@functools.cache
def ffmpeg_video(
    seconds: int = 8, size: str = "640x360", profile: str = "high", gop: int = 50, rate: int = 25
) -> bytes:
    """Video-only fMP4 exactly as the live transcoder writes it (keyframe every `gop` frames)."""
    cmd = [
        "ffmpeg", "-v", "error", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-profile:v", profile,
        "-pix_fmt", "yuv420p", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        *FRAG_ARGS,
    ]  # fmt: skip
    return subprocess.run(cmd, check=True, capture_output=True, timeout=120).stdout


@functools.cache
def ffmpeg_audio(seconds: int = 8) -> bytes:
    """Audio-only AAC-LC fMP4."""
    cmd = [
        "ffmpeg", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
        "-t", str(seconds), "-c:a", "aac", "-b:a", "96k", *FRAG_ARGS,
    ]  # fmt: skip
    return subprocess.run(cmd, check=True, capture_output=True, timeout=120).stdout


def ffprobe_json(data: bytes, *args: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", *args, "-i", "pipe:0"],
        input=data,
        check=True,
        capture_output=True,
        timeout=60,
    ).stdout
    return json.loads(out)


def feed_random(reader: BoxReader, data: bytes, seed: int = 1, max_chunk: int = 7000) -> list[Box]:
    rng = random.Random(seed)
    boxes: list[Box] = []
    pos = 0
    while pos < len(data):
        n = rng.randint(1, max_chunk)
        boxes += reader.feed(data[pos : pos + n])
        pos += n
    return boxes


def split_boxes(data: bytes) -> list[Box]:
    reader = BoxReader()
    boxes = reader.feed(data)
    assert reader.close() == []
    return boxes


def init_bytes(boxes: list[Box]) -> bytes:
    return b"".join(b.data for b in boxes if b.type in ("ftyp", "moov"))


def box(btype: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), btype) + payload


def full_box(btype: bytes, version: int, flags: int, payload: bytes) -> bytes:
    return box(btype, struct.pack(">I", (version << 24) | flags) + payload)


# ---------------------------------------------------------------------------
# BoxReader


def test_box_reader_arbitrary_chunking() -> None:
    raw = box(b"ftyp", b"isom" * 3) + box(b"free", b"") + box(b"mdat", bytes(range(256)) * 40)
    expected = [("ftyp", 20), ("free", 8), ("mdat", 8 + 10240)]
    for seed in range(20):
        got = feed_random(BoxReader(), raw, seed=seed, max_chunk=17)
        assert [(b.type, len(b)) for b in got] == expected
        assert b"".join(b.data for b in got) == raw
    # one byte at a time
    reader = BoxReader()
    got = [b for i in range(len(raw)) for b in reader.feed(raw[i : i + 1])]
    assert [b.type for b in got] == ["ftyp", "free", "mdat"]
    assert reader.buffered == 0


def test_box_reader_largesize_and_size_zero() -> None:
    payload = b"x" * 100
    large = struct.pack(">I4sQ", 1, b"mdat", 16 + len(payload)) + payload
    reader = BoxReader()
    (b,) = reader.feed(large)
    assert b.type == "mdat" and b.header_size == 16 and bytes(b.payload) == payload

    reader = BoxReader()
    assert reader.feed(box(b"moof", b"a" * 8)) != []
    assert reader.feed(struct.pack(">I4s", 0, b"mdat") + b"abc") == []
    assert reader.feed(b"def") == []
    (tail,) = reader.close()
    assert tail.type == "mdat" and bytes(tail.payload) == b"abcdef"


@pytest.mark.parametrize(
    "raw",
    [
        struct.pack(">I4s", 7, b"moof"),  # size < 8
        struct.pack(">I4s", 4, b"moof") + b"xxxx",
        struct.pack(">I4sQ", 1, b"mdat", 12),  # largesize smaller than its header
        struct.pack(">I4s", 65 * 1024 * 1024, b"mdat"),  # above the cap
        struct.pack(">I4sQ", 1, b"mdat", 1 << 62),
    ],
)
def test_box_reader_rejects_bad_sizes(raw: bytes) -> None:
    with pytest.raises(FMP4Error):
        BoxReader().feed(raw)


def test_box_reader_truncated_at_close() -> None:
    reader = BoxReader()
    assert reader.feed(box(b"mdat", b"x" * 50)[:30]) == []
    with pytest.raises(FMP4Error):
        reader.close()


def test_garbage_only_raises_fmp4error() -> None:
    rng = random.Random(7)
    for _ in range(300):
        junk = rng.randbytes(rng.randint(1, 400))
        for fn in (parse_init, parse_fragment):
            with pytest.raises(FMP4Error):
                fn(junk)
        reader = BoxReader()
        try:
            reader.feed(junk)
            reader.close()
        except FMP4Error:
            pass


# ---------------------------------------------------------------------------
# Synthetic fragments: tfhd / trex defaults


def _moof(tfhd_flags: int, tfhd_fields: bytes, trun_flags: int, trun_body: bytes, tfdt_v1: bool) -> bytes:
    tfhd = full_box(b"tfhd", 0, tfhd_flags, struct.pack(">I", 1) + tfhd_fields)
    tfdt = (
        full_box(b"tfdt", 1, 0, struct.pack(">Q", 1 << 33))
        if tfdt_v1
        else full_box(b"tfdt", 0, 0, struct.pack(">I", 1234))
    )
    trun = full_box(b"trun", 0, trun_flags, trun_body)
    return box(b"moof", full_box(b"mfhd", 0, 0, struct.pack(">I", 9)) + box(b"traf", tfhd + tfdt + trun))


def test_fragment_tfhd_default_duration_and_flags() -> None:
    # tfhd default duration 512 + default flags non-sync; trun overrides first sample flags (sync)
    moof = _moof(
        0x08 | 0x20,
        struct.pack(">II", 512, 0x00010000),
        0x04 | 0x200,
        struct.pack(">II", 3, 0) + struct.pack(">III", 10, 20, 30),
        tfdt_v1=True,
    )
    info = parse_fragment(moof)
    assert info.sequence_number == 9
    assert info.base_media_decode_time == 1 << 33
    assert (info.sample_count, info.duration, info.data_size) == (3, 1536, 60)
    assert info.first_sample_sync is True

    # no first_sample_flags: tfhd default flags (non-sync) apply
    moof = _moof(0x08 | 0x20, struct.pack(">II", 512, 0x00010000), 0, struct.pack(">I", 2), tfdt_v1=False)
    info = parse_fragment(moof)
    assert info.base_media_decode_time == 1234
    assert (info.sample_count, info.duration, info.first_sample_sync) == (2, 1024, False)


def test_fragment_trex_defaults_and_audio() -> None:
    moof = _moof(0, b"", 0x400, struct.pack(">I", 2) + struct.pack(">II", 0x00010000, 0), tfdt_v1=False)
    video = TrackInfo(1, "vide", 90000, "avc1.64001e", "avc1", default_sample_duration=3000)
    info = parse_fragment(moof, video)
    assert (info.duration, info.first_sample_sync) == (6000, False)  # per-sample flags: non-sync
    audio = TrackInfo(1, "soun", 48000, "mp4a.40.2", "mp4a", default_sample_duration=1024)
    assert parse_fragment(moof, audio).first_sample_sync is True  # audio: always independent


def test_fragment_trun_sample_count_bounded() -> None:
    moof = _moof(0x08, struct.pack(">I", 1), 0x100, struct.pack(">I", 0xFFFFFFFF), tfdt_v1=False)
    with pytest.raises(FMP4Error):
        parse_fragment(moof)


# ---------------------------------------------------------------------------
# Real ffmpeg output

_PROFILE_IDC = {"High": 0x64, "Main": 0x4D, "Constrained Baseline": 0x42, "Baseline": 0x42}


@pytest.mark.media
@needs_ffmpeg
@pytest.mark.parametrize("profile", ["high", "main", "baseline"])
def test_parse_init_video_codec_matches_ffprobe(profile: str) -> None:
    data = ffmpeg_video(seconds=2, profile=profile)
    boxes = split_boxes(data)
    assert [b.type for b in boxes[:3]] == ["ftyp", "moov", "moof"]
    info = parse_init(init_bytes(boxes))
    probe = ffprobe_json(data, "-show_entries", "stream=profile,level,width,height")["streams"][0]
    assert info.handler == "vide" and info.is_video
    assert (info.width, info.height) == (probe["width"], probe["height"]) == (640, 360)
    assert info.codec.startswith("avc1.")
    assert int(info.codec[5:7], 16) == _PROFILE_IDC[probe["profile"]]
    assert int(info.codec[9:11], 16) == probe["level"]
    if profile == "high":
        assert info.codec == "avc1.64001e"
    if profile == "baseline":
        assert info.codec == "avc1.42c01e"
    assert info.timescale > 0 and info.track_id == 1


@pytest.mark.media
@needs_ffmpeg
def test_parse_init_audio() -> None:
    boxes = split_boxes(ffmpeg_audio(seconds=2))
    info = parse_init(init_bytes(boxes))
    assert info.handler == "soun" and info.is_audio
    assert info.codec == "mp4a.40.2"
    assert info.sample_rate == 48000 and info.timescale == 48000
    assert info.channels == 1  # mono sine; channelcount in the sample entry says 2


@pytest.mark.media
@needs_ffmpeg
def test_parse_fragments_real_video() -> None:
    boxes = feed_random(BoxReader(), ffmpeg_video(), seed=3)
    info = parse_init(init_bytes(boxes))
    frags = [parse_fragment(b.data, info) for b in boxes if b.type == "moof"]
    assert [f.sequence_number for f in frags] == list(range(1, len(frags) + 1))
    assert sum(f.sample_count for f in frags) == 200
    t = 0
    for f in frags:
        assert f.base_media_decode_time == t
        t += f.duration
        assert 0 < f.duration / info.timescale <= 0.55
    assert t == 8 * info.timescale
    # keyframe every 2 s -> a sync fragment at 0, 2, 4, 6 s and only there
    sync_times = [f.base_media_decode_time / info.timescale for f in frags if f.first_sample_sync]
    assert sync_times == [0.0, 2.0, 4.0, 6.0]


@pytest.mark.media
@needs_ffmpeg
def test_mutated_real_input_raises_only_fmp4error() -> None:
    boxes = split_boxes(ffmpeg_video(seconds=2))
    init = init_bytes(boxes)
    moof = next(b.data for b in boxes if b.type == "moof")
    rng = random.Random(11)
    for _ in range(400):
        for src, fn in ((init, parse_init), (moof, parse_fragment)):
            buf = bytearray(src)
            for _ in range(rng.randint(1, 6)):
                buf[rng.randrange(len(buf))] = rng.randrange(256)
            if rng.random() < 0.3:
                del buf[rng.randrange(len(buf)) :]
            try:
                fn(bytes(buf))
            except FMP4Error:
                pass
