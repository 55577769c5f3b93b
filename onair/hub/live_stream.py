"""One live stream while it is (or was last) live: its publishers, feed switch, transcoder and package.

It stays after the publishers leave so that players see the end of the stream (`#EXT-X-ENDLIST`),
until the next session replaces it. Readers attach to it: segment listeners (DVR, transcoded
recordings), source readers (origin recordings, restreams), a segment archive (DVR on disk) and the
viewers window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from prometheus_client import Counter

from onair.config import Settings
from onair.hub.feeds import FeedSwitch
from onair.hub.ports import PublishConfig, SegmentArchive, SegmentListener
from onair.hub.publisher import Publisher
from onair.hub.viewers import ViewerWindow
from onair.package.continuity import OutputContinuity, resume
from onair.package.live import LiveStreamPackage
from onair.package.packager import Segment, TrackPackager
from onair.package.window import dvr_window_segments
from onair.transcode.command import FIRST_KEYFRAME_INTERVAL_S
from onair.transcode.ladder import AUDIO_TRACK, Rendition, transcoded_quality_names
from onair.transcode.transcoder import Transcoder

__all__ = ["LiveStatus", "LiveStream", "SourceReader", "TrackReader"]

log = logging.getLogger("onair.hub.live_stream")

WATCHING_S = 15.0  # a client that fetched nothing for this long has stopped watching
TRANSCODER_RESTARTS = Counter("onair_transcoder_restarts_total", "ffmpeg transcoder restarts")


class TrackReader(Protocol):
    """Gets every transcoder output chunk of the current transcoder (`restarted`: it begins a new fMP4 stream)."""

    def on_track(self, track: str, data: bytes, *, restarted: bool) -> None: ...


class SourceReader(Protocol):
    """Gets every source chunk after the transcoder did (`feeding`: it is what the output is made of)."""

    async def on_source(self, publisher: Publisher, data: bytes, *, feeding: bool) -> None: ...


@dataclass(frozen=True)
class LiveStatus:
    """The live figures the API reports (from the transcoder's view of the source)."""

    transcoding_speed: float | None
    frame_rate: float | None
    video_width: float | None
    video_height: float | None
    transcoded_qualities: list[str] | None


class LiveStream:
    def __init__(self, config: PublishConfig, work_dir: Path, settings: Settings, input_format: str, *,
                 make_transcoder: Callable[..., Transcoder] = Transcoder,
                 on_playable: Callable[[LiveStream], None] | None = None,
                 resume_from: OutputContinuity | None = None) -> None:
        """`resume_from`: the output another node made of this stream, which this one continues."""
        self.stream_id = config.stream_id
        self._resume_from = resume_from
        self.make_transcoder = make_transcoder  # unit tests pass a fake that runs no ffmpeg
        self.config = config
        self.work_dir = work_dir
        self.settings = settings
        self.renditions: list[Rendition] = list(config.renditions)
        self.package: LiveStreamPackage | None = None
        self.ended = False
        self.endlist = config.endlist
        self.package_ready = asyncio.Event()
        # the first segment of every rendition is complete: players can start (once per session)
        self.playable = False
        self._on_playable = on_playable
        self.window_segments = (dvr_window_segments(config.dvr_seconds) if config.dvr_seconds
                                else settings.live_window_segments)
        self.segment_listeners: list[SegmentListener] = []
        self.source_readers: list[SourceReader] = []
        self.track_readers: list[TrackReader] = []  # attached at SessionStarted, so they see every byte
        self.archive: SegmentArchive | None = None  # older segments on disk (DVR), attached by its reader
        self.viewers = ViewerWindow()
        # the last publisher left within the reconnect window: the session stays open until this deadline
        self.reconnect_deadline: float | None = None
        self.reconnect_window = config.reconnect_window
        self.feeds = FeedSwitch(settings.failover_timeout, settings.failback_delay)
        self.lock = asyncio.Lock()  # a feed switch and the feeding writes never interleave
        self._generation = 0  # of the current transcoder; older ones' output is dropped
        self._restart_pending: set[str] = set()  # tracks whose next bytes start a new fMP4 stream
        self._retiring: set[asyncio.Task[None]] = set()
        self.transcoder = self._make_transcoder(input_format, clean_ts_dir=True)

    # -- queries ------------------------------------------------------------------------------------
    @property
    def publishers(self) -> list[Publisher]:
        return [p for p in (self.feeds.primary, self.feeds.backup) if isinstance(p, Publisher)]

    @property
    def feeding(self) -> Publisher | None:
        f = self.feeds.feeding
        return f if isinstance(f, Publisher) else None

    @property
    def reconnecting(self) -> bool:
        return self.reconnect_deadline is not None and not self.ended

    @property
    def is_live(self) -> bool:
        """The output runs with a publisher connected or awaited back (the hub's one answer to "is it live?")."""
        return not self.ended and (bool(self.publishers) or self.reconnecting)

    @property
    def primary_connected(self) -> bool:
        """A primary publisher has delivered and not left (what `live` needs besides a playable output)."""
        return not self.ended and any(not p.key.backup and p.announced and not p.ended for p in self.publishers)

    @property
    def ts_dir(self) -> Path:
        return self.transcoder.ts_dir

    @property
    def screenshot_path(self) -> Path:
        return self.transcoder.screenshot_path

    def status(self) -> LiveStatus:
        st = self.transcoder.stats
        plan = self.transcoder.plan
        qualities = None
        if plan:
            names = transcoded_quality_names(plan)
            # a source without audio has no audio rendition to report
            qualities = names if st.audio_codec else [n for n in names if n != "audioa"]
        return LiveStatus(transcoding_speed=st.speed, frame_rate=st.source_fps,
                          video_width=float(st.source_width) if st.source_width else None,
                          video_height=float(st.source_height) if st.source_height else None,
                          transcoded_qualities=qualities)

    def saw_viewer(self, client: str) -> None:
        self.viewers.saw(client, time.monotonic())

    def viewer_count(self) -> int:
        """Viewers watching now: every player polls its playlist (or MPD) every few seconds while it plays."""
        return self.viewers.count(time.monotonic(), within=WATCHING_S)

    # -- data path ----------------------------------------------------------------------------------
    async def write(self, pub: Publisher, data: bytes) -> None:
        self.feeds.delivered(pub, time.monotonic())
        async with self.lock:
            feeding = self.feeds.feeding is pub
            if feeding:
                await self.transcoder.write(data)
            else:
                self.feeds.follow_standby(pub, data, time.time())
        for reader in list(self.source_readers):
            await reader.on_source(pub, data, feeding=feeding)

    # -- feed switching -----------------------------------------------------------------------------
    async def switch_to(self, pub: Publisher, reason: str) -> bool:
        """`pub` feeds from now on, through a new transcoder; the package continues across it."""
        async with self.lock:
            if self.feeds.feeding is pub or self.ended:
                return False
            old = self.transcoder
            new = self._replace_transcoder(pub.input_format)
            await new.start()
            head, captured = self.feeds.make_feeding(pub)
            if head:
                await new.write(head, captured=captured)
        log.info("feed switched", extra={"stream_id": self.stream_id, "to": pub.key.redacted(),
                                         "protocol": pub.protocol, "reason": reason})
        self._retire(old)
        return True

    async def resume(self, pub: Publisher) -> None:
        """A publisher is back within the reconnect window: it feeds a new transcoder, the package goes on."""
        async with self.lock:
            self.reconnect_deadline = None
            self.feeds.attach(pub, feeding=True)
            old = self.transcoder
            new = self._replace_transcoder(pub.input_format)
            await new.start()
        self._retire(old)

    async def restart_input(self, pub: Publisher) -> None:
        """`pub` starts a new byte stream (a PULL moved to its next source): new transcoder, same output."""
        async with self.lock:
            if self.feeds.feeding is not pub or self.ended:
                return
            old = self.transcoder
            new = self._replace_transcoder(pub.input_format)
            await new.start()
        self._retire(old)

    async def check_feeds(self, now: float) -> Publisher | None:
        """Switch when the feed rule says so; returns the publisher now feeding, None when unchanged."""
        target = self.feeds.choose(now)
        if not isinstance(target, Publisher):
            return None
        return target if await self.switch_to(target, self.feeds.reason_for(target)) else None

    # -- transcoder and package ---------------------------------------------------------------------
    def _make_transcoder(self, input_format: str, *, clean_ts_dir: bool) -> Transcoder:
        self._generation += 1
        gen = self._generation
        return self.make_transcoder(stream_id=self.stream_id, input_format=input_format, renditions=self.renditions,
                                    work_dir=self.work_dir,
                                    on_track_data=lambda t, d: self._on_track_data(t, d, gen),
                                    on_restart=lambda: self._on_restart(gen), ffmpeg=self.settings.ffmpeg,
                                    hls_list_size=self.window_segments, clean_ts_dir=clean_ts_dir)

    def _replace_transcoder(self, input_format: str) -> Transcoder:
        self.transcoder = self._make_transcoder(input_format, clean_ts_dir=False)
        self._restart_pending = {r.name for r in self.package.renditions()} if self.package else set()
        return self.transcoder

    def _retire(self, old: Transcoder) -> None:
        task = asyncio.create_task(old.stop())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _new_package(self) -> LiveStreamPackage:
        plan = self.transcoder.plan
        has_audio = bool(self.transcoder.stats.audio_codec)
        return LiveStreamPackage([r.name for r in plan], AUDIO_TRACK if has_audio else None,
                                 first_segment=FIRST_KEYFRAME_INTERVAL_S, window_segments=self.window_segments,
                                 memory_segments=self.settings.live_window_segments,
                                 on_segment_complete=self._segment_complete)

    def _segment_complete(self, tp: TrackPackager, seg: Segment) -> None:
        for listener in list(self.segment_listeners):
            try:
                listener(tp, seg)
            except Exception:  # a listener bug must not break packaging
                log.exception("segment listener failed", extra={"stream_id": self.stream_id})

    def _on_track_data(self, track: str, data: bytes, generation: int) -> None:
        if generation != self._generation:
            return  # a retired transcoder flushing its last bytes
        if self.package is None:
            self.package = self._new_package()
            if self._resume_from is not None:
                resume(self.package, self._resume_from)
            self.package.set_origin(self.transcoder.clock_origin)
            self.package_ready.set()
        restarted = track in self._restart_pending
        for reader in list(self.track_readers):
            try:
                reader.on_track(track, data, restarted=restarted)
            except Exception:  # a reader bug must not break packaging
                log.exception("track reader failed", extra={"stream_id": self.stream_id, "track": track})
        try:
            if restarted:
                self._restart_pending.discard(track)
                self.package.rendition(track).packager.restart(origin=self.transcoder.clock_origin)
            self.package.feed(track, data)
        except (KeyError, ValueError) as exc:
            log.warning("dropping transcoder output", extra={"stream_id": self.stream_id, "track": track,
                                                               "error": str(exc)})
        if not self.playable and self.package.ready:
            self.playable = True
            if self._on_playable is not None:
                self._on_playable(self)

    def _on_restart(self, generation: int) -> None:
        # a restarted ffmpeg begins new fMP4 streams (new init, timestamps from 0): the packager keeps
        # the playlists going across them (msn continues, EXT-X-DISCONTINUITY)
        TRANSCODER_RESTARTS.inc()
        if generation == self._generation and self.package is not None:
            self._restart_pending = {r.name for r in self.package.renditions()}

    # -- start and end ------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.transcoder.start()

    async def stop(self) -> None:
        await self.transcoder.stop()
        if self._retiring:
            await asyncio.wait(list(self._retiring), timeout=15)
        self.ended = True
        if self.package is not None:
            self.package.end()
