"""AMF0 and FLV helpers used by the RTMP ingest."""

from __future__ import annotations

import math
import random
import struct
from datetime import UTC, datetime
from typing import Any

import pytest

from onair.formats import amf0
from onair.formats.flv import (
    TAG_VIDEO,
    flv_file_header,
    flv_tag,
    parse_audio_tag_header,
    parse_video_tag_header,
)

# --------------------------------------------------------------------------- AMF0


@pytest.mark.parametrize(
    "value",
    [
        0.0,
        -1.5,
        1e300,
        True,
        False,
        "",
        "héllo",
        "x" * 70_000,  # long string
        None,
        amf0.UNDEFINED,
        {"a": 1.0, "b": {"c": [1.0, "two", None]}, "": "empty key"},
        amf0.ECMAArray(duration=0.0, width=320.0),
        [],
        [1.0, [2.0, [3.0]]],
        datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC),
    ],
)
def test_amf0_round_trip(value: Any) -> None:
    encoded = amf0.encode_value(value)
    decoded = amf0.decode(encoded)
    assert decoded == value
    assert type(decoded) is type(value) or isinstance(value, bool | float)


def test_amf0_known_bytes() -> None:
    assert amf0.encode("a", 1, None) == b"\x02\x00\x01a\x00" + struct.pack(">d", 1.0) + b"\x05"
    assert amf0.encode({"k": True}) == b"\x03\x00\x01k\x01\x01\x00\x00\x09"
    assert amf0.encode(amf0.ECMAArray(k=True)) == b"\x08\x00\x00\x00\x01\x00\x01k\x01\x01\x00\x00\x09"
    assert amf0.encode("x" * 70_000)[:5] == b"\x0c\x00\x01\x11\x70"
    assert math.isnan(amf0.decode(b"\x00" + struct.pack(">d", math.nan)))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\x00",  # truncated number
        b"\x02\x00\x05ab",  # truncated string
        b"\x02\x00\x02\xff\xfe",  # invalid UTF-8
        b"\x03\x00\x01a",  # object without value/end
        b"\x09",  # stray object end
        b"\x07\x00\x01",  # reference
        b"\x0a\xff\xff\xff\xff\x05",  # impossible strict array count
        b"\x0b" + struct.pack(">d", 1e300) + b"\x00\x00",  # date out of range
        b"\x0b" + struct.pack(">d", math.inf) + b"\x00\x00",
        b"\x42",  # unknown marker
        b"\x0a\x00\x00\x00\x01" * 200 + b"\x05",  # too deep
        b"\x05\x05",  # trailing bytes for decode()
    ],
)
def test_amf0_bad_bytes(data: bytes) -> None:
    with pytest.raises(amf0.AMF0Error):
        amf0.decode(data)


def test_amf0_fuzz_only_amf0error() -> None:
    rng = random.Random(99)
    seeds = [amf0.encode("connect", 1.0, {"app": "in", "x": [1.0, None]}, amf0.ECMAArray(a="b"))]
    for _ in range(3000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data))]
        try:
            amf0.decode_all(bytes(data))
        except amf0.AMF0Error:
            pass
    for _ in range(1000):
        try:
            amf0.decode_all(rng.randbytes(rng.randint(0, 64)))
        except amf0.AMF0Error:
            pass


def test_amf0_encode_rejects_unknown_types() -> None:
    with pytest.raises(amf0.AMF0Error):
        amf0.encode(object())
    with pytest.raises(amf0.AMF0Error):
        amf0.encode({1: "x"})


# --------------------------------------------------------------------------- FLV


def test_flv_header() -> None:
    assert flv_file_header() == b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00"
    assert flv_file_header(has_audio=False)[4] == 0x01
    assert flv_file_header(has_video=False)[4] == 0x04


def test_flv_tag_layout_and_extended_timestamp() -> None:
    tag = flv_tag(TAG_VIDEO, 0x12345678, b"abc")
    assert tag[0] == 9
    assert tag[1:4] == b"\x00\x00\x03"
    assert tag[4:7] == b"\x34\x56\x78" and tag[7] == 0x12
    assert tag[8:11] == b"\x00\x00\x00"
    assert tag[11:14] == b"abc"
    assert tag[14:] == struct.pack(">I", 14)
    with pytest.raises(ValueError):
        flv_tag(TAG_VIDEO, 0, bytes(0x1000000))


def test_flv_tag_header_parsers() -> None:
    v = parse_video_tag_header(b"\x17\x00\x00\x00\x00")
    assert v.is_keyframe and v.codec_id == 7 and v.is_sequence_header
    v = parse_video_tag_header(b"\x27\x01")
    assert not v.is_keyframe and not v.is_sequence_header and v.frame_type == 2
    a = parse_audio_tag_header(b"\xaf\x00\x12\x10")
    assert a.sound_format == 10 and a.is_sequence_header
    a = parse_audio_tag_header(b"\x2f")
    assert a.sound_format == 2 and not a.is_sequence_header
    for bad in (b"", b"\x17"):
        with pytest.raises(ValueError):
            parse_video_tag_header(bad)
    with pytest.raises(ValueError):
        parse_audio_tag_header(b"\xaf")
