"""Minimal FLV helpers: write a file header and tags, peek at audio/video tag headers."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

__all__ = [
    "TAG_AUDIO",
    "TAG_SCRIPT",
    "TAG_VIDEO",
    "AudioTagHeader",
    "VideoTagHeader",
    "flv_file_header",
    "flv_tag",
    "parse_audio_tag_header",
    "parse_video_tag_header",
]

TAG_AUDIO: Final = 8
TAG_VIDEO: Final = 9
TAG_SCRIPT: Final = 18

VIDEO_CODEC_AVC: Final = 7
SOUND_FORMAT_AAC: Final = 10
FRAME_TYPE_KEY: Final = 1

_MAX_TAG_DATA: Final = 0xFFFFFF  # DataSize is a 24-bit field


def flv_file_header(has_audio: bool = True, has_video: bool = True) -> bytes:
    """The 9-byte FLV header followed by PreviousTagSize0 (always 0)."""
    flags = (0x04 if has_audio else 0) | (0x01 if has_video else 0)
    return b"FLV\x01" + bytes([flags]) + struct.pack(">I", 9) + b"\x00\x00\x00\x00"


def flv_tag(tag_type: int, timestamp_ms: int, payload: bytes) -> bytes:
    """One FLV tag plus its trailing PreviousTagSize.

    FLV splits the 32-bit timestamp into 24 low bits and an 8-bit "extended"
    byte holding the high bits.
    """
    if not 0 <= tag_type <= 0x1F:
        raise ValueError(f"invalid FLV tag type {tag_type}")
    if len(payload) > _MAX_TAG_DATA:
        raise ValueError("FLV tag payload too large")
    ts = timestamp_ms & 0xFFFFFFFF
    header = (
        bytes([tag_type])
        + len(payload).to_bytes(3, "big")
        + (ts & 0xFFFFFF).to_bytes(3, "big")
        + bytes([ts >> 24])
        + b"\x00\x00\x00"  # StreamID, always 0
    )
    return header + payload + struct.pack(">I", 11 + len(payload))


@dataclass(frozen=True, slots=True)
class VideoTagHeader:
    frame_type: int  # 1 = keyframe, 2 = inter frame, 5 = video info/command frame
    codec_id: int  # 7 = AVC/H.264
    avc_packet_type: int | None  # only for AVC: 0 = sequence header, 1 = NALU, 2 = end of sequence

    @property
    def is_keyframe(self) -> bool:
        return self.frame_type == FRAME_TYPE_KEY

    @property
    def is_sequence_header(self) -> bool:
        return self.codec_id == VIDEO_CODEC_AVC and self.avc_packet_type == 0


@dataclass(frozen=True, slots=True)
class AudioTagHeader:
    sound_format: int  # 10 = AAC, 2 = MP3
    sound_rate: int
    sound_size: int
    sound_type: int
    aac_packet_type: int | None  # only for AAC: 0 = sequence header, 1 = raw

    @property
    def is_sequence_header(self) -> bool:
        return self.sound_format == SOUND_FORMAT_AAC and self.aac_packet_type == 0


def parse_video_tag_header(payload: bytes) -> VideoTagHeader:
    """Parse the first byte(s) of a video tag body. Raises ``ValueError`` if empty/truncated."""
    if not payload:
        raise ValueError("empty video payload")
    b0 = payload[0]
    codec_id = b0 & 0x0F
    packet_type: int | None = None
    if codec_id == VIDEO_CODEC_AVC:
        if len(payload) < 2:
            raise ValueError("truncated AVC video payload")
        packet_type = payload[1]
    return VideoTagHeader(frame_type=b0 >> 4, codec_id=codec_id, avc_packet_type=packet_type)


def parse_audio_tag_header(payload: bytes) -> AudioTagHeader:
    """Parse the first byte(s) of an audio tag body. Raises ``ValueError`` if empty/truncated."""
    if not payload:
        raise ValueError("empty audio payload")
    b0 = payload[0]
    sound_format = b0 >> 4
    packet_type: int | None = None
    if sound_format == SOUND_FORMAT_AAC:
        if len(payload) < 2:
            raise ValueError("truncated AAC audio payload")
        packet_type = payload[1]
    return AudioTagHeader(
        sound_format=sound_format,
        sound_rate=(b0 >> 2) & 0x03,
        sound_size=(b0 >> 1) & 0x01,
        sound_type=b0 & 0x01,
        aac_packet_type=packet_type,
    )
