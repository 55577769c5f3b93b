"""The stream's AAC audio track as Opus for WebRTC: decoded and encoded once per stream, in process (PyAV).

Packets carry 20 ms each; their times continue the AAC samples' timeline, so the pacer keeps them in sync
with the video. A gap or a jump on that timeline (transcoder restart) re-anchors the output.
"""

from __future__ import annotations

import av
from av.audio.codeccontext import AudioCodecContext
from av.audio.resampler import AudioResampler
from av.codec.context import CodecContext

from onair.delivery.whep.media import OpusPacket, TimedSample

__all__ = ["OpusPacket", "OpusTranscoder"]

RATE = 48_000
FRAME = 960  # 20 ms
BITRATE = 64_000
RESYNC_S = 0.25


class OpusTranscoder:
    def __init__(self) -> None:
        self._config: bytes | None = None
        self._decoder: AudioCodecContext | None = None
        self._encoder: AudioCodecContext | None = None
        self._resampler: AudioResampler | None = None
        self._t0 = 0.0
        self._fed = 0  # samples fed since _t0
        self._out = 0  # packets out since _t0
        self._last_pts = -FRAME
        self.errors = 0

    def _open(self, config: bytes) -> None:
        decoder = CodecContext.create("aac", "r")
        encoder = CodecContext.create("libopus", "w")
        assert isinstance(decoder, AudioCodecContext) and isinstance(encoder, AudioCodecContext)
        decoder.extradata = config
        encoder.sample_rate = RATE
        encoder.layout = "stereo"
        encoder.format = "s16"
        encoder.bit_rate = BITRATE
        encoder.options = {"application": "lowdelay", "frame_duration": "20"}
        encoder.open()
        self._decoder, self._encoder, self._config = decoder, encoder, config
        self._resampler = AudioResampler(format="s16", layout="stereo", rate=RATE, frame_size=FRAME)

    def transcode(self, config: bytes, timed: TimedSample) -> list[OpusPacket]:
        """One AAC access unit (with the track's AudioSpecificConfig) → the Opus packets that are ready."""
        if config != self._config or self._decoder is None:
            self._open(config)
        expected = self._t0 + self._fed / RATE
        if self._fed == 0 or abs(timed.time - expected) > RESYNC_S:
            self._t0, self._fed, self._out = timed.time, 0, 0
        assert self._decoder is not None and self._encoder is not None and self._resampler is not None
        out: list[OpusPacket] = []
        try:
            for frame in self._decoder.decode(av.Packet(timed.sample.data)):
                self._fed += round(frame.samples * RATE / (frame.sample_rate or RATE))
                for resampled in self._resampler.resample(frame):
                    resampled.pts = None
                    for packet in self._encoder.encode(resampled):
                        out.append(self._packet(bytes(packet)))
        except av.FFmpegError:
            self.errors += 1
        return out

    def _packet(self, data: bytes) -> OpusPacket:
        time = self._t0 + self._out * FRAME / RATE
        self._out += 1
        pts = max(round(time * RATE), self._last_pts + FRAME)  # RTP time never goes back
        self._last_pts = pts
        return OpusPacket(time, pts, data)
