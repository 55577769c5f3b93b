"""WHEP media, sans-IO: transcoder fMP4 track bytes → timed H.264 access units, the last GOP, send pacing.

Times are seconds on one continuous timeline per stream (the transcoder's, kept going across its restarts),
so audio and video paced by the same `Pacer` stay in sync; `now` is always passed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from onair.formats.fmp4 import BoxReader, FMP4Error, TrackInfo, parse_init
from onair.formats.fmp4.samples import AvcConfig, Sample, avcc_to_annexb, fragment_samples, parse_avcc

__all__ = ["AccessUnit", "Continuity", "GopCache", "Pacer", "TimedSample", "TrackDemuxer", "VideoUnits",
           "join_units"]

VIDEO_CLOCK = 90_000
MAX_GOP_UNITS = 600  # 20 s at 30 fps: a source without keyframes must not grow the cache without bound
PACER_DECAY_S = 0.0002  # per unit sent on time: the send delay creeps back down after a late burst


@dataclass(frozen=True, slots=True)
class TimedSample:
    time: float  # decode time in seconds on the continuous timeline
    duration: float
    sample: Sample


class TrackDemuxer:
    """One fMP4 track byte stream (init, then moof+mdat pairs) → its samples on a continuous timeline.

    `restarted` marks bytes that begin a new byte stream (a restarted or replaced transcoder): its timestamps
    start over, so they are shifted to continue where the previous stream ended.
    """

    def __init__(self) -> None:
        self._reader = BoxReader()
        self.track: TrackInfo | None = None
        self._moof: bytes | None = None
        # seconds added to this byte stream's decode times: none for the first (audio and video share the
        # transcoder's clock), what continues the previous one after a restart
        self._shift: float | None = 0.0
        self._end = 0.0  # end of the last sample given out
        self.errors = 0

    def feed(self, data: bytes, *, restarted: bool = False) -> list[TimedSample]:
        if restarted:
            self._reader = BoxReader()
            self._moof, self._shift = None, None
        try:
            boxes = self._reader.feed(data)
        except FMP4Error:
            self.errors += 1
            self._reader, self._moof = BoxReader(), None  # resynchronise at the next byte stream
            return []
        out: list[TimedSample] = []
        for box in boxes:
            out += self._on_box(box.type, box.data)
        return out

    def _on_box(self, btype: str, data: bytes) -> list[TimedSample]:
        try:
            if btype == "moov":
                self.track = parse_init(data)
            elif btype == "moof":
                self._moof = data
            elif btype == "mdat" and self._moof is not None and self.track is not None:
                moof, self._moof = self._moof, None
                return self._timed(fragment_samples(moof, data, self.track))
        except FMP4Error:
            self.errors += 1
        return []

    def _timed(self, samples: list[Sample]) -> list[TimedSample]:
        assert self.track is not None
        scale = self.track.timescale
        if samples and self._shift is None:
            self._shift = self._end - samples[0].decode_time / scale
        shift = self._shift or 0.0
        out = [TimedSample(s.decode_time / scale + shift, s.duration / scale, s) for s in samples]
        if out:
            self._end = max(self._end, out[-1].time + out[-1].duration)
        return out


@dataclass(frozen=True, slots=True)
class AccessUnit:
    time: float  # seconds (pacing)
    pts: int  # 90 kHz (RTP)
    data: bytes  # Annex B, SPS/PPS in front of keyframes
    keyframe: bool


class VideoUnits:
    """H.264 fMP4 samples → Annex B access units a WebRTC sender packetizes as they are."""

    def __init__(self) -> None:
        self._config: AvcConfig | None = None
        self._config_of: bytes = b""

    def convert(self, track: TrackInfo, timed: TimedSample) -> AccessUnit:
        if track.decoder_config != self._config_of or self._config is None:
            self._config = parse_avcc(track.decoder_config)
            self._config_of = track.decoder_config
        s = timed.sample
        data = avcc_to_annexb(s.data, self._config.length_size)
        if s.sync:
            data = self._config.parameter_sets_annexb() + data
        pts_s = timed.time + s.composition_offset / track.timescale
        return AccessUnit(timed.time, round(pts_s * VIDEO_CLOCK), data, s.sync)


class GopCache:
    """The access units sent since the last keyframe: what a joining viewer starts from."""

    def __init__(self, max_units: int = MAX_GOP_UNITS) -> None:
        self.max_units = max_units
        self._units: deque[AccessUnit] = deque()

    def add(self, unit: AccessUnit) -> None:
        if unit.keyframe:
            self._units.clear()
        elif not self._units:
            return  # no keyframe yet: nothing a decoder could start from
        if len(self._units) >= self.max_units:
            self._units.clear()
            return
        self._units.append(unit)

    def units(self) -> list[AccessUnit]:
        return list(self._units)


def join_units(gop: list[AccessUnit]) -> list[AccessUnit]:
    """The cached GOP for a joining viewer, squeezed in time so that it decodes at once and shows the newest picture.

    Sent at its own pace the GOP would put the viewer up to a GOP behind the live edge for good; with
    timestamps one tick apart (the last one kept, so the live units after it continue normally) the
    receiver decodes the references it needs and renders from the live edge.
    """
    if not gop:
        return []
    last = gop[-1].pts
    n = len(gop)
    return [AccessUnit(u.time, last - (n - 1 - i), u.data, u.keyframe) for i, u in enumerate(gop)]


class Pacer:
    """When to send what arrives in bursts (one fMP4 fragment at a time): at its media time plus a send delay.

    The delay is the largest lateness seen (a unit never waits for one that arrived late), then creeps back
    down by `decay` per unit sent while units keep arriving early.
    """

    def __init__(self, decay: float = PACER_DECAY_S) -> None:
        self.decay = decay
        self._offset: float | None = None  # wall clock minus media time

    def due(self, media_time: float, now: float) -> float:
        lateness = now - media_time
        if self._offset is None or lateness > self._offset:
            self._offset = lateness
        else:
            self._offset -= min(self.decay, self._offset - lateness)
        return self._offset + media_time


class Continuity:
    """One RTP timeline per output track across the inputs feeding it (the transcoder, a WebRTC source).

    A new input continues `step` after the last timestamp given out; within an input, time never goes back.
    """

    def __init__(self, step: int) -> None:
        self.step = step
        self._input: object = None
        self._offset = 0
        self._last: int | None = None

    def map(self, source: object, pts: int) -> int:
        if source is not self._input:
            self._input = source
            self._offset = 0 if self._last is None else self._last + self.step - pts
        out = pts + self._offset
        if self._last is not None and out <= self._last:
            out = self._last + 1
        self._last = out
        return out


@dataclass(frozen=True, slots=True)
class OpusPacket:
    time: float  # seconds on the stream's timeline
    pts: int  # 48 kHz (RTP)
    data: bytes
