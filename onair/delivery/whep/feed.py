"""One stream's WebRTC media: read once, fanned out to every WHEP viewer.

From the transcoder: the feed is the stream's track reader from the session's first byte (attached at
SessionStarted), so it always frames the fMP4 boxes from their start; the top rendition's H.264 and the AAC
transcoded to Opus (only while someone watches) are paced out at media time. From a WebRTC (WHIP) source
that feeds the output: its own H.264 and Opus frames as they arrive, with no transcoder in between; from an
RTMP source WebRTC can carry as it is (flv_source.py): its H.264 as it arrives, its AAC as Opus. Either
way it keeps the last GOP for viewers who join. Viewers hold bounded queues: one that
falls behind is emptied and restarts at the next keyframe instead of slowing the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from prometheus_client import Counter

from onair.delivery.whep.flv_source import FlvFrames
from onair.delivery.whep.media import (
    AccessUnit,
    Continuity,
    GopCache,
    OpusPacket,
    Pacer,
    TimedSample,
    TrackDemuxer,
    VideoUnits,
    join_units,
)
from onair.formats.fmp4 import FMP4Error
from onair.hub.live_stream import LiveStream
from onair.hub.publisher import Publisher
from onair.transcode.ladder import AUDIO_TRACK

if TYPE_CHECKING:
    import av

    from onair.delivery.whep.opus import OpusTranscoder

__all__ = ["Viewer", "WhepFeed"]

log = logging.getLogger("onair.delivery.whep")

VIDEO_TIME_BASE = Fraction(1, 90_000)
AUDIO_TIME_BASE = Fraction(1, 48_000)
VIDEO_FRAMES = Counter("onair_whep_video_frames_total", "Video frames fanned out to WHEP viewers (once per frame)",
                       ["path"])  # source: the publisher's own frames; transcoder: the top rendition
VIEWER_QUEUE = 400  # packets (over 10 s of video): a viewer this far behind starts again at a keyframe
# A joining viewer gets the cached GOP as one burst only up to this many frames (1 s at 30 fps) when the
# source can send a new keyframe instead: hundreds of frames at once overran Chromium's decoder (it
# dropped them and froze), while a WebRTC encoder answers a keyframe request within a frame or two.
JOIN_BURST_UNITS = 30


@dataclass(eq=False)
class Viewer:
    """What one WHEP peer is sent: two packet queues its tracks read."""

    video: asyncio.Queue[av.Packet | None] = field(default_factory=lambda: asyncio.Queue(VIEWER_QUEUE))
    audio: asyncio.Queue[av.Packet | None] = field(default_factory=lambda: asyncio.Queue(VIEWER_QUEUE))
    started: bool = False  # has had a keyframe: audio and inter frames may follow
    sent_video: int = 0
    restarts: int = 0

    def end(self) -> None:
        for q in (self.video, self.audio):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)


def _packet(data: bytes, pts: int, time_base: Fraction) -> av.Packet:
    import av  # PyAV (about 16 MB resident) only once someone watches over WebRTC

    packet = av.Packet(data)
    packet.pts = packet.dts = pts
    packet.time_base = time_base
    return packet


class WhepFeed:
    """The TrackReader of one live stream's session, and the pacing task sending to its viewers."""

    def __init__(self, stream: LiveStream) -> None:
        self.stream = stream
        self.viewers: set[Viewer] = set()
        self._video = TrackDemuxer()
        self._audio = TrackDemuxer()
        self._units = VideoUnits()
        self._opus_transcoder: OpusTranscoder | None = None
        self._gop = GopCache()
        self._pacer = Pacer()
        self._pending: list[tuple[float, int, AccessUnit | OpusPacket]] = []  # a heap by due time
        self._seq = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._video_time = Continuity(3000)
        self._audio_time = Continuity(960)
        self.source: Publisher | None = None  # a publisher whose frames go out as they are
        # every RTMP publisher's framing, followed from its first byte (None: it cannot be passed through)
        self._flv: dict[Publisher, FlvFrames | None] = {}
        self.ended = False

    @property
    def _opus(self) -> OpusTranscoder:
        if self._opus_transcoder is None:  # made at the first viewer's first audio: it loads PyAV
            from onair.delivery.whep.opus import OpusTranscoder

            self._opus_transcoder = OpusTranscoder()
        return self._opus_transcoder

    # -- reading (TrackReader) ----------------------------------------------------------------------
    @property
    def video_track(self) -> str | None:
        plan = self.stream.transcoder.plan
        return plan[0].name if plan else None

    @property
    def has_video(self) -> bool:
        return self._video.track is not None

    def on_track(self, track: str, data: bytes, *, restarted: bool) -> None:
        # demuxed even while a source is passed through: the box framing stays in step for when it leaves
        if track == AUDIO_TRACK:
            audio = self._audio.feed(data, restarted=restarted)
            if self.viewers and self._audio.track is not None and self.source is None:
                self._transcode_audio(audio)
        elif track == self.video_track:
            video = self._video.feed(data, restarted=restarted)
            if self.source is None:
                self._add_video(video)

    # -- a WebRTC source passed through (FrameReader) --------------------------------------------------
    def use_source(self, publisher: Publisher | None) -> None:
        """Pass `publisher`'s frames through (None: the transcoder's output again); viewers restart at a keyframe."""
        if publisher is self.source:
            return
        if self.source is not None and self in self.source.frame_readers:
            self.source.frame_readers.remove(self)
        self.source = publisher
        self._pending.clear()
        self._gop = GopCache()
        for viewer in self.viewers:
            viewer.started = False
        if publisher is not None:
            publisher.add_frame_reader(self)  # after the reset: it replays the source's current GOP at once

    async def on_source(self, publisher: Publisher, data: bytes, *, feeding: bool) -> None:
        """SourceReader: an RTMP source's bytes; passed through while it feeds and WebRTC can carry it."""
        if publisher.input_format != "flv" or publisher.ended:
            return
        if publisher not in self._flv:
            self._flv[publisher] = FlvFrames()
        frames = self._flv[publisher]
        if frames is None:
            return
        media = frames.feed(data)
        if frames.rejected:
            self._flv[publisher] = None
        if not (feeding and frames.passable):
            if self.source is publisher:
                self.use_source(None)  # B-frames showed up: the transcoder's output again
            return
        if self.source is not publisher:
            self.use_source(publisher)
        for unit in media.video:
            self._send_video(dataclasses.replace(unit, pts=self._video_time.map(publisher, unit.pts)))
        if self.viewers and frames.aac_config:
            for timed in media.audio:
                for packet in self._opus.transcode(frames.aac_config, timed):
                    self._send_audio(dataclasses.replace(packet, pts=self._audio_time.map(publisher, packet.pts)))

    def forget(self, publisher: Publisher) -> None:
        self._flv.pop(publisher, None)
        if self.source is publisher:
            self.use_source(None)

    def on_frame(self, kind: str, data: bytes, timestamp: int, *, keyframe: bool) -> None:
        if kind == "video":
            self._send_video(AccessUnit(0.0, self._video_time.map(self.source, timestamp), data, keyframe))
        elif kind == "audio":
            self._send_audio(OpusPacket(0.0, self._audio_time.map(self.source, timestamp), data))

    def _add_video(self, samples: list[TimedSample]) -> None:
        track = self._video.track
        if track is None or not track.codec.startswith("avc"):
            return
        now = time.monotonic()
        for timed in samples:
            try:
                unit = self._units.convert(track, timed)
            except FMP4Error:
                continue
            self._schedule(dataclasses.replace(unit, pts=self._video_time.map(self._video, unit.pts)), now)

    def _transcode_audio(self, samples: list[TimedSample]) -> None:
        assert self._audio.track is not None
        config = self._audio.track.decoder_config
        if not self._audio.track.codec.startswith("mp4a") or not config:
            return
        now = time.monotonic()
        for timed in samples:
            for packet in self._opus.transcode(config, timed):
                self._schedule(dataclasses.replace(packet, pts=self._audio_time.map(self._opus, packet.pts)), now)

    def _schedule(self, item: AccessUnit | OpusPacket, now: float) -> None:
        self._seq += 1
        heapq.heappush(self._pending, (self._pacer.due(item.time, now), self._seq, item))
        self._wake.set()

    # -- sending -------------------------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while not self.ended:
            delay = self._pending[0][0] - time.monotonic() if self._pending else None
            if delay is None or delay > 0.002:
                # until the head is due, or something earlier is scheduled (audio and video come in turns)
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            _, _, item = heapq.heappop(self._pending)
            if isinstance(item, AccessUnit):
                self._send_video(item)
            else:
                self._send_audio(item)

    def _send_video(self, unit: AccessUnit) -> None:
        VIDEO_FRAMES.labels("transcoder" if self.source is None else "source").inc()
        self._gop.add(unit)
        packet = _packet(unit.data, unit.pts, VIDEO_TIME_BASE)
        for viewer in list(self.viewers):
            if not viewer.started:
                if not unit.keyframe:
                    continue
                viewer.started = True
            try:
                viewer.video.put_nowait(packet)
                viewer.sent_video += 1
            except asyncio.QueueFull:
                self._restart_viewer(viewer)

    def _send_audio(self, packet: OpusPacket) -> None:
        out = _packet(packet.data, packet.pts, AUDIO_TIME_BASE)
        for viewer in list(self.viewers):
            if viewer.started:
                with contextlib.suppress(asyncio.QueueFull):
                    viewer.audio.put_nowait(out)

    def _restart_viewer(self, viewer: Viewer) -> None:
        for q in (viewer.video, viewer.audio):
            while not q.empty():
                q.get_nowait()
        viewer.started = False
        viewer.restarts += 1

    # -- viewers -------------------------------------------------------------------------------------
    def add(self, viewer: Viewer) -> None:
        """A viewer starts from the cached GOP at once when there is one, else at the next keyframe."""
        units = self._gop.units()
        if len(units) > JOIN_BURST_UNITS and self.source is not None and self.source.request_keyframe():
            units = []  # it starts at the keyframe asked for
        gop = join_units(units)
        for unit in gop:
            viewer.video.put_nowait(_packet(unit.data, unit.pts, VIDEO_TIME_BASE))
        viewer.started = bool(gop)
        viewer.sent_video = len(gop)
        self.viewers.add(viewer)

    def remove(self, viewer: Viewer) -> None:
        self.viewers.discard(viewer)
        viewer.end()

    async def stop(self) -> None:
        self.ended = True
        self.use_source(None)
        for viewer in list(self.viewers):
            self.remove(viewer)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
