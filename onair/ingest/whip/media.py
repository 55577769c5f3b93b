"""WebRTC media into the pipeline without decoding: H.264 access units and Opus packets, remuxed to MPEG-TS.

aiortc depacketizes RTP into encoded frames (H.264 as Annex B access units, Opus packets) and hands them to a
decoder thread that calls `aiortc.rtcrtpreceiver.get_decoder`. We substitute that factory with a passthrough
"decoder", so `track.recv()` yields `EncodedFrame`s instead of decoded pictures: no decode/re-encode in this
process; the ffmpeg transcoder of the stream reads the MPEG-TS we mux with PyAV (H.264 + Opus in TS).

The substitution is process-wide; onair uses aiortc only to receive WHIP media.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from av.container import OutputContainer

TS_TIME_BASE = Fraction(1, 90_000)
CLOCK_RATES = {"video": 90_000, "audio": 48_000}  # RTP clock of H.264 and Opus


@dataclass(frozen=True)
class EncodedFrame:
    kind: str  # "video" (one H.264 Annex B access unit) or "audio" (one Opus packet)
    data: bytes
    rtp_timestamp: int  # unwrapped, 0 at the track's first frame, in CLOCK_RATES[kind] units
    arrival: float  # time.monotonic() when depacketized

    def is_keyframe(self) -> bool:
        return self.kind == "video" and 5 in h264_nal_types(self.data)


def h264_nal_types(annexb: bytes) -> set[int]:
    types = set()
    pos = annexb.find(b"\x00\x00\x01")
    while pos >= 0 and pos + 3 < len(annexb):
        types.add(annexb[pos + 3] & 0x1F)
        pos = annexb.find(b"\x00\x00\x01", pos + 3)
    return types


class _PassthroughDecoder:
    def __init__(self, kind: str) -> None:
        self.kind = kind

    def decode(self, encoded_frame: Any) -> list[EncodedFrame]:
        return [EncodedFrame(self.kind, bytes(encoded_frame.data), int(encoded_frame.timestamp), time.monotonic())]


def _passthrough_decoder(codec: Any) -> _PassthroughDecoder:
    return _PassthroughDecoder(codec.mimeType.split("/")[0].lower())


def install_passthrough() -> None:
    """Make every aiortc receiver yield EncodedFrames (idempotent)."""
    import aiortc.rtcrtpreceiver

    aiortc.rtcrtpreceiver.get_decoder = _passthrough_decoder  # type: ignore[assignment]


class _Sink:
    """File-like target of the muxer: collects what it writes until taken."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, data: bytes) -> int:
        self.buf += data
        return len(data)

    def take(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


class TsMuxer:
    """H.264 + Opus EncodedFrames → MPEG-TS bytes.

    Each track's RTP clock starts at 0 independently (aiortc maps timestamps per track), so tracks are put on
    one timeline by the arrival time of their first frame; then RTP timestamps carry the pacing. Output starts
    at the first H.264 IDR so the transcoder's probe sees a decodable stream at once.
    """

    def __init__(self) -> None:
        self._sink = _Sink()
        # flush_packets: bytes reach us per packet, not per 32 KiB; pes_payload_size=0: no audio PES
        # aggregation (it would hold ~0.5 s of Opus); max_interleave_delta: a stalled track must not hold the other
        self._out: OutputContainer = av.open(self._sink, "w", format="mpegts", options={
            "flush_packets": "1", "pes_payload_size": "0", "max_interleave_delta": "300000"})
        self._video = self._out.add_mux_stream("h264")
        self._audio = self._out.add_mux_stream("opus", rate=48_000)
        self._origin: float | None = None  # monotonic time of the first IDR = TS time 0
        self._first: dict[str, tuple[float, int]] = {}  # kind -> (arrival, rtp ts) of its first frame
        self._last_dts: dict[str, int] = {}
        self.started = False
        self.frames = {"video": 0, "audio": 0}

    def add(self, frame: EncodedFrame) -> bytes:
        if not self.started:
            if not frame.is_keyframe():
                return b""
            self.started = True
            self._origin = frame.arrival
        assert self._origin is not None
        first = self._first.setdefault(frame.kind, (frame.arrival, frame.rtp_timestamp))
        offset = round((first[0] - self._origin) * 90_000)
        pts = offset + (frame.rtp_timestamp - first[1]) * 90_000 // CLOCK_RATES[frame.kind]
        last = self._last_dts.get(frame.kind)
        if last is not None and pts <= last:
            pts = last + 1  # WebRTC H.264 has no B-frames: dts = pts, which must increase
        self._last_dts[frame.kind] = pts
        packet = av.Packet(frame.data)
        packet.stream = self._video if frame.kind == "video" else self._audio
        packet.time_base = TS_TIME_BASE
        packet.pts = packet.dts = pts
        if frame.is_keyframe():
            packet.is_keyframe = True
        self._out.mux(packet)
        self.frames[frame.kind] += 1
        return self._sink.take()

    def close(self) -> bytes:
        try:
            self._out.close()
        except av.FFmpegError:
            pass  # nothing was muxed: no header to finish
        return self._sink.take()
