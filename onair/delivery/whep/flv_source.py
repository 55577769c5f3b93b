"""An RTMP source's own frames for WHEP, sans-IO: FLV bytes → H.264 access units and AAC frames.

Only a source WebRTC can carry as it is goes through: H.264 Constrained Baseline or Main (what WebRTC
receivers negotiate) without B-frames (a non-zero composition time marks them; RTP has no decode order).
`passable` says so; once a B-frame shows, it stays false for the publisher.
"""

from __future__ import annotations

from dataclasses import dataclass

from onair.delivery.whep.media import VIDEO_CLOCK, AccessUnit, TimedSample
from onair.formats.flv_tracker import FLV_AUDIO, FLV_VIDEO, FlvTracker
from onair.formats.fmp4 import FMP4Error
from onair.formats.fmp4.samples import AvcConfig, Sample, avcc_to_annexb, parse_avcc

__all__ = ["FlvFrames", "FlvMedia"]

PASSABLE_PROFILES = (66, 77)  # Baseline (Constrained when flagged), Main
AVC, AAC = 7, 10


@dataclass(frozen=True, slots=True)
class FlvMedia:
    video: list[AccessUnit]
    audio: list[TimedSample]  # AAC access units (AudioSpecificConfig in `FlvFrames.aac_config`)


class FlvFrames:
    def __init__(self) -> None:
        self._tracker = FlvTracker()
        self.avc: AvcConfig | None = None
        self.profile: int | None = None
        self.aac_config: bytes = b""
        self.b_frames = False

    @property
    def passable(self) -> bool:
        return self.avc is not None and self.profile in PASSABLE_PROFILES and not self.b_frames

    @property
    def rejected(self) -> bool:
        """Known not to be passable: following it further is wasted work."""
        return self.b_frames or (self.avc is not None and self.profile not in PASSABLE_PROFILES)

    def feed(self, data: bytes) -> FlvMedia:
        video: list[AccessUnit] = []
        audio: list[TimedSample] = []
        for tag in self._tracker.feed(data):
            body = tag.raw[11:-4]
            # not enhanced RTMP (0x80: HEVC, AV1, ... are not passed through)
            if tag.type == FLV_VIDEO and len(body) >= 5 and not body[0] & 0x80 and body[0] & 0x0F == AVC:
                unit = self._video(body, tag.timestamp)
                if unit is not None:
                    video.append(unit)
            elif tag.type == FLV_AUDIO and len(body) >= 2 and body[0] >> 4 == AAC:
                if body[1] == 0:
                    self.aac_config = bytes(body[2:])
                else:
                    audio.append(TimedSample(tag.timestamp / 1000, 0.0, Sample(0, 0, 0, True, bytes(body[2:]))))
        return FlvMedia(video, audio)

    def _video(self, body: bytes, timestamp: int) -> AccessUnit | None:
        try:
            if body[1] == 0:  # AVC sequence header: the avcC
                self.avc = parse_avcc(bytes(body[5:]))
                self.profile = body[6] if len(body) > 6 else None
                return None
            if body[1] != 1 or self.avc is None:
                return None
            cts = int.from_bytes(body[2:5], "big", signed=True)
            if cts:
                self.b_frames = True
            keyframe = body[0] >> 4 == 1
            data = avcc_to_annexb(bytes(body[5:]), self.avc.length_size)
        except FMP4Error:
            return None
        if keyframe:
            data = self.avc.parameter_sets_annexb() + data
        return AccessUnit(timestamp / 1000, timestamp * VIDEO_CLOCK // 1000, data, keyframe)
