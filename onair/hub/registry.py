"""Stream lifecycle: who may publish, what runs while a stream is live, and the state the API reports.

One `LiveOutput` per stream that is (or was last) live: its transcoder and packaged renditions. It stays
after the publisher leaves so players see the end of the stream (`#EXT-X-ENDLIST`), until the next
session replaces it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prometheus_client import Counter, Gauge
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.config import Settings
from onair.hub.access import IngestDirectory
from onair.hub.feeds import FeedSwitch, failover_loop, live_values
from onair.hub.keys import StreamKey, parse_stream_key
from onair.hub.ports import IngestRefused
from onair.ingest.pull import PullManager
from onair.outputs.clips import Clipper
from onair.outputs.dvr import DvrStore, dvr_cleanup
from onair.outputs.library import VideoLibrary
from onair.outputs.recording import Recordings
from onair.outputs.restream import Restreams
from onair.package.live import LiveStreamPackage
from onair.package.packager import Segment, SegmentCallback, TrackPackager
from onair.store.catalog import live_quality_set
from onair.store.models import QualitySet, Stream, StreamSample, ViewerSample
from onair.timeutil import utcnow
from onair.transcode.ladder import AUDIO_TRACK, Rendition, renditions_from_qualities, transcoded_quality_names
from onair.transcode.transcoder import Transcoder

log = logging.getLogger("onair.lifecycle")

INGEST_SESSIONS = Counter("onair_ingest_sessions_total", "Publish attempts", ["protocol", "result"])
INGEST_BYTES = Counter("onair_ingest_bytes_total", "Source bytes received", ["protocol"])
LIVE_STREAMS = Gauge("onair_live_streams", "Streams currently receiving a source")
TRANSCODER_RESTARTS = Counter("onair_transcoder_restarts_total", "ffmpeg transcoder restarts")

SOURCE_TYPES = {"rtmp": "rtmp", "rtmps": "rtmp", "srt": "srt", "whip": "webrtc", "https": "https"}
# WHIP X-Reason-Code of a refusal (spec R21), keyed by the reason _refusal returns
REFUSAL_CODES = {"unknown stream": 2001, "wrong stream key": 2002,
                 "stream key already in use by another connection": 2003,
                 "stream is switched off (active=false)": 2004}


@dataclass
class RuntimeStats:
    transcoding_speed: float | None = None
    frame_rate: float | None = None
    video_width: float | None = None
    video_height: float | None = None
    transcoded_qualities: list[str] | None = None
    recording_duration: float | None = None
    viewers: dict[str, float] = field(default_factory=dict)


class LiveOutput:
    """The transcoder and packaged output of one live session."""

    def __init__(self, stream_id: int, work_dir: Path, settings: Settings, input_format: str,
                 renditions: list[Rendition], on_stats: object = None, dvr_seconds: int | None = None) -> None:
        self.stream_id = stream_id
        self.work_dir = work_dir
        self.settings = settings
        self.package: LiveStreamPackage | None = None
        self.ended = False
        self.endlist = True
        self.package_ready = asyncio.Event()
        # DVR on: playlists list dvr_seconds from disk; memory keeps the short live window either way
        self.dvr = DvrStore(work_dir / "dvr", dvr_seconds) if dvr_seconds else None
        self.window_segments = self.dvr.window if self.dvr else settings.live_window_segments
        # completed-segment listeners (DVR store, transcoded recordings)
        self.segment_listeners: list[SegmentCallback] = [self.dvr.on_segment] if self.dvr else []
        self.renditions = renditions
        self.feeds = FeedSwitch(self)  # primary/backup publishers and which one feeds the transcoder
        self._generation = 0  # of the current transcoder; older ones' output is dropped
        self._restart_pending: set[str] = set()  # tracks whose next bytes start a new fMP4 stream
        self._retiring: set[asyncio.Task[None]] = set()
        self.transcoder = self._make_transcoder(input_format, clean_ts_dir=True)

    def _make_transcoder(self, input_format: str, *, clean_ts_dir: bool) -> Transcoder:
        self._generation += 1
        gen = self._generation
        return Transcoder(stream_id=self.stream_id, input_format=input_format, renditions=self.renditions,
                          work_dir=self.work_dir, on_track_data=lambda t, d: self._on_track_data(t, d, gen),
                          on_restart=lambda: self._on_restart(gen), ffmpeg=self.settings.ffmpeg,
                          hls_list_size=self.window_segments, clean_ts_dir=clean_ts_dir)

    def replace_transcoder(self, input_format: str) -> Transcoder:
        """A new transcoder takes over (failover); the package continues across it."""
        self.transcoder = self._make_transcoder(input_format, clean_ts_dir=False)
        self._restart_pending = {r.name for r in self.package.renditions()} if self.package else set()
        return self.transcoder

    def retire_transcoder(self, old: Transcoder) -> None:
        task = asyncio.create_task(old.stop())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    def _new_package(self) -> LiveStreamPackage:
        plan = self.transcoder.plan
        has_audio = bool(self.transcoder.stats.audio_codec)
        return LiveStreamPackage([r.name for r in plan], AUDIO_TRACK if has_audio else None,
                                 window_segments=self.window_segments,
                                 memory_segments=self.settings.live_window_segments,
                                 on_segment_complete=self._segment_complete)

    def _segment_complete(self, tp: TrackPackager, seg: Segment) -> None:
        for listener in list(self.segment_listeners):
            try:
                listener(tp, seg)
            except Exception:  # a listener bug must not break packaging
                log.exception("segment listener failed", extra={"stream_id": self.stream_id})

    def _on_track_data(self, track: str, data: bytes, generation: int = 0) -> None:
        if generation != self._generation:
            return  # a retired transcoder flushing its last bytes
        if self.package is None:
            self.package = self._new_package()
            self.package_ready.set()
        try:
            if track in self._restart_pending:
                self._restart_pending.discard(track)
                self.package.rendition(track).packager.restart()
            self.package.feed(track, data)
        except (KeyError, ValueError) as exc:
            log.warning("dropping transcoder output", extra={"stream_id": self.stream_id, "track": track,
                                                               "error": str(exc)})

    def _on_restart(self, generation: int = 0) -> None:
        # a restarted ffmpeg begins new fMP4 streams (new init, timestamps from 0): the packager keeps
        # the playlists going across them (msn continues, EXT-X-DISCONTINUITY)
        TRANSCODER_RESTARTS.inc()
        if generation == self._generation and self.package is not None:
            self._restart_pending = {r.name for r in self.package.renditions()}

    @property
    def ts_dir(self) -> Path:
        return self.transcoder.ts_dir

    @property
    def screenshot_path(self) -> Path:
        return self.transcoder.screenshot_path

    async def start(self) -> None:
        await self.transcoder.start()

    async def stop(self) -> None:
        await self.transcoder.stop()
        if self._retiring:
            await asyncio.wait(list(self._retiring), timeout=15)
        self.ended = True
        if self.package is not None:
            self.package.end()
        if self.dvr is not None:
            self.dvr.close()  # queued writes still complete; the files stay until the next session


class Publisher:
    """One accepted ingest connection (the IngestSession the protocol servers feed)."""

    def __init__(self, lifecycle: StreamLifecycle, key: StreamKey, protocol: str, input_format: str,
                 output: LiveOutput) -> None:
        self.lifecycle = lifecycle
        self.key = key
        self.protocol = protocol
        self.input_format = input_format
        self.output = output
        self.closed = asyncio.Event()
        self.started = time.monotonic()
        self.bytes_in = 0
        self.pulled = False  # fed by the node's own PULL client
        self._announced = False
        self._ended = False

    async def feed(self, data: bytes) -> None:
        if self._ended:
            return
        self.bytes_in += len(data)
        INGEST_BYTES.labels(self.protocol).inc(len(data))
        if not self._announced:
            self._announced = True
            await self.lifecycle._mark_live(self)
        await self.output.feeds.write(self, data)
        if self.output.feeds.feeding is self:  # restreams of source=original push what the output is made of
            self.lifecycle.restreams.feed(self.key.stream_id, self.output.transcoder, data)
        if not self.key.backup:  # the recorder tees the primary source (origin recordings)
            await self.lifecycle.recordings.feed(self.key.stream_id, data)

    async def close(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.closed.set()
        await self.lifecycle._publisher_ended(self, reason)


class StreamLifecycle:
    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession],
                 library: VideoLibrary) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.library = library
        self.recordings = Recordings(settings.data_dir / "recordings", sessionmaker, library, settings.ffmpeg,
                                     min_free_mb=settings.min_free_mb)
        self.clips = Clipper(sessionmaker, library, self.recordings, settings.ffmpeg)
        self._runtime: dict[int, RuntimeStats] = {}
        self._client_user_ids: dict[int, int | None] = {}  # for viewer statistics filtered by client_user_id
        self._publishers: dict[tuple[int, bool], Publisher] = {}
        self._outputs: dict[int, LiveOutput] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stats_task: asyncio.Task[None] | None = None
        self._failover_task: asyncio.Task[None] | None = None
        self.directory = IngestDirectory()  # who may push, for the SRT handshake (no DB there)
        self.pulls = PullManager(self)
        self.restreams = Restreams(self)
        self.sample_period = settings.stats_period

    # --- queries used by the API and playback -------------------------------------------------------
    def runtime(self, stream_id: int) -> RuntimeStats | None:
        return self._runtime.get(stream_id)

    def live_count(self) -> int:
        return len(self._publishers)

    def output(self, stream_id: int) -> LiveOutput | None:
        return self._outputs.get(stream_id)

    def restream_live(self, restream_id: int) -> bool:
        return self.restreams.live(restream_id)

    def viewers(self, stream_id: int) -> int:
        rt = self._runtime.get(stream_id)
        if rt is None:
            return 0
        now = time.monotonic()
        return sum(1 for seen in rt.viewers.values() if now - seen < 30)

    def saw_viewer(self, stream_id: int, client: str) -> None:
        rt = self._runtime.get(stream_id)
        if rt is not None and (client in rt.viewers or len(rt.viewers) < 100_000):
            rt.viewers[client] = time.monotonic()

    def _viewer_rows(self, now: datetime, period: float) -> list[ViewerSample]:
        """One row per watched stream: viewers seen in the last period (hashed), each counted for it."""
        rows = []
        cutoff = time.monotonic() - period
        for sid, rt in list(self._runtime.items()):
            seen = [c for c, t in rt.viewers.items() if t >= cutoff]
            for c in [c for c, t in rt.viewers.items() if t < cutoff - 30]:
                del rt.viewers[c]  # keep the map bounded to recent viewers
            if seen:
                keys = sorted(hashlib.sha256(c.encode()).hexdigest()[:16] for c in seen)
                rows.append(ViewerSample(stream_id=sid, client_user_id=self._client_user_ids.get(sid), at=now,
                                         viewers=keys, watch_seconds=len(seen) * period))
        return rows

    # --- ingest gateway -----------------------------------------------------------------------------
    async def open_session(self, *, protocol: str, app: str, stream_name: str, remote: str,
                           pull: bool = False) -> Publisher:
        """`pull=True`: the node's own PULL client (onair.ingest.pull) feeding a pull stream."""
        if protocol in ("rtmp", "rtmps") and app != "in":
            INGEST_SESSIONS.labels(protocol, "refused").inc()
            raise IngestRefused("unknown application: publish to /in/{stream key}")
        key = parse_stream_key(stream_name)
        if key is None:
            INGEST_SESSIONS.labels(protocol, "refused").inc()
            raise IngestRefused("malformed stream key")
        async with self._lock:
            async with self.sessionmaker() as db:
                stream = await db.get(Stream, key.stream_id)
                reason = self._refusal(stream, key, pull)
                if reason is None and stream is not None:
                    qs = await self._quality_set(db, stream.quality_set_id)
            if reason is not None or stream is None:
                INGEST_SESSIONS.labels(protocol, "refused").inc()
                log.info("publish refused", extra={"stream": key.redacted(), "protocol": protocol,
                                                   "remote": remote, "reason": reason})
                raise IngestRefused(reason or "unknown stream", REFUSAL_CODES.get(reason or "unknown stream"))
            input_format = "mpegts" if protocol in ("srt", "https", "whip") else "flv"
            running = self._outputs.get(key.stream_id)
            if running is not None and not running.ended and running.feeds.publishers:
                # the stream's other ingest (primary or backup) is live: join as the standby feed (R17)
                publisher = Publisher(self, key, protocol, input_format, running)
                running.feeds.attach(publisher, feeding=False)
                self._publishers[(key.stream_id, key.backup)] = publisher
                INGEST_SESSIONS.labels(protocol, "accepted").inc()
                LIVE_STREAMS.set(len(self._publishers))
                log.info("publish accepted as standby feed", extra={"stream": key.redacted(), "protocol": protocol,
                                                                    "remote": remote})
                return publisher
            previous = self._outputs.pop(key.stream_id, None)
            if previous is not None:
                await previous.stop()
            work_dir = self.settings.data_dir / "live" / str(key.stream_id)
            shutil.rmtree(work_dir, ignore_errors=True)
            work_dir.mkdir(parents=True, exist_ok=True)
            output = LiveOutput(key.stream_id, work_dir, self.settings, input_format,
                                renditions_from_qualities(qs.qualities),
                                dvr_seconds=stream.dvr_duration if stream.dvr_enabled else None)
            output.endlist = stream.hls_mpegts_endlist_tag
            publisher = Publisher(self, key, protocol, input_format, output)
            output.feeds.attach(publisher, feeding=True)
            self._publishers[(key.stream_id, key.backup)] = publisher
            self._outputs[key.stream_id] = output
            self._runtime[key.stream_id] = RuntimeStats()
            self._client_user_ids[key.stream_id] = stream.client_user_id
        await output.start()
        INGEST_SESSIONS.labels(protocol, "accepted").inc()
        LIVE_STREAMS.set(len(self._publishers))
        log.info("publish accepted", extra={"stream": key.redacted(), "protocol": protocol, "remote": remote})
        return publisher

    def _refusal(self, stream: Stream | None, key: StreamKey, pull: bool = False) -> str | None:
        if stream is None:
            return "unknown stream"
        if not hmac.compare_digest(stream.token.encode(), key.token.encode()):
            return "wrong stream key"
        if not stream.active:
            return "stream is switched off (active=false)"
        if stream.pull != pull:
            return "stream is a PULL stream: pushes are refused" if stream.pull else "stream is not a PULL stream"
        if (key.stream_id, key.backup) in self._publishers:
            return "stream key already in use by another connection"
        return None

    async def _quality_set(self, db: AsyncSession, quality_set_id: int | None) -> QualitySet:
        return await live_quality_set(db, quality_set_id)

    async def _mark_live(self, pub: Publisher) -> None:
        now = utcnow()
        async with self.sessionmaker() as db:
            await db.execute(update(Stream).where(Stream.id == pub.key.stream_id).values(
                **live_values(pub, now, SOURCE_TYPES.get(pub.protocol, pub.protocol))))
            await db.commit()
            stream = await db.get(Stream, pub.key.stream_id)
        if stream is not None and not pub.key.backup:
            # R48 auto_record, R50 a source back within the grace period continues its recording
            await self.recordings.source_resumed(stream, pub.output)
        await self.restreams.stream_live(pub.key.stream_id)  # R66: active restreams start with the stream

    async def _publisher_ended(self, pub: Publisher, reason: str) -> None:
        sid = pub.key.stream_id
        async with self._lock:
            if self._publishers.get((sid, pub.key.backup)) is not pub:
                return
            del self._publishers[(sid, pub.key.backup)]
        LIVE_STREAMS.set(len(self._publishers))
        log.info("publisher ended", extra={"stream": pub.key.redacted(), "reason": reason,
                                            "bytes": pub.bytes_in, "seconds": round(time.monotonic() - pub.started, 1)})
        remaining = pub.output.feeds.detach(pub)
        ended = {"backup_live": False} if pub.key.backup else {"live": False, "finished_at_primary": utcnow()}
        async with self.sessionmaker() as db:
            await db.execute(update(Stream).where(Stream.id == sid).values(**ended))
            await db.commit()
        if remaining is not None and not pub.output.ended:
            # the other ingest carries the stream on (R17); take it at once if this one was feeding
            if pub.output.feeds.feeding is pub:
                await pub.output.feeds.switch_to(remaining, "feed disconnected")
                await self._feed_switched(pub.output, remaining)
        else:
            self._runtime.pop(sid, None)
            await self.restreams.stream_ended(sid)
            await pub.output.stop()
        if not pub.key.backup:
            await self.recordings.source_ended(sid)

    async def _feed_switched(self, output: LiveOutput, pub: Publisher) -> None:
        async with self.sessionmaker() as db:
            await db.execute(update(Stream).where(Stream.id == output.stream_id).values(
                stream_source_type=SOURCE_TYPES.get(pub.protocol, pub.protocol)))
            await db.commit()

    # --- background work ----------------------------------------------------------------------------
    async def start(self) -> None:
        async with self.sessionmaker() as db:
            for stream in (await db.execute(select(Stream))).scalars():
                self.directory.update(stream)
        self._stats_task = asyncio.create_task(self._stats_loop())
        self._failover_task = asyncio.create_task(failover_loop(self))
        await self.pulls.start()
        await self.recordings.recover()  # recordings a crashed run left behind go into the library

    async def shutdown(self) -> None:
        if self._stats_task is not None:
            self._stats_task.cancel()
        if self._failover_task is not None:
            self._failover_task.cancel()
        await self.pulls.stop()
        await self.restreams.shutdown()
        for pub in list(self._publishers.values()):
            pub.closed.set()
            await pub.close("server shutting down")
        for output in list(self._outputs.values()):
            if not output.ended:
                await output.stop()
        await self.recordings.shutdown()

    async def _stats_loop(self) -> None:
        last_sample = time.monotonic()
        last_bytes: dict[int, int] = {}
        while True:
            await asyncio.sleep(1.0)
            try:
                for (sid, _backup), pub in list(self._publishers.items()):
                    rt = self._runtime.get(sid)
                    if rt is not None:
                        self._apply_stats(rt, pub.output.transcoder)
                        rt.recording_duration = self.recordings.duration(sid)
                await self._guard_disk()
                await self._split_long_recordings()
                if time.monotonic() - last_sample >= self.sample_period:
                    period = time.monotonic() - last_sample
                    last_sample = time.monotonic()
                    await self._record_samples(period, last_bytes)
            except Exception:  # a stats hiccup must never stop the loop
                log.exception("stats loop error")

    async def _split_long_recordings(self) -> None:
        """R51: a recording reaching the maximum length is closed and the next Video continues it."""
        for sid, rec in list(self.recordings.active.items()):
            if rec.duration < self.settings.recording_max_seconds or rec.writer is None:
                continue
            log.info("splitting a long recording", extra={"stream_id": sid, "seconds": round(rec.duration)})
            await self.recordings.stop(sid)
            await self.start_recording(sid)

    def disk_free_mb(self) -> float:
        return shutil.disk_usage(self.settings.data_dir).free / 2**20

    async def _guard_disk(self) -> None:
        """Disk nearly full: close running recordings while there is room left to finish them."""
        if not self.recordings.active or self.disk_free_mb() >= self.settings.min_free_mb / 2:
            return
        for sid in list(self.recordings.active):
            log.warning("disk nearly full: stopping the recording", extra={"stream_id": sid,
                                                                           "free_mb": round(self.disk_free_mb())})
            await self.recordings.stop(sid)

    @staticmethod
    def _apply_stats(rt: RuntimeStats, transcoder: Transcoder) -> None:
        st = transcoder.stats
        rt.transcoding_speed = st.speed
        rt.frame_rate = st.source_fps
        rt.video_width = float(st.source_width) if st.source_width else None
        rt.video_height = float(st.source_height) if st.source_height else None
        plan = transcoder.plan
        if plan:
            names = transcoded_quality_names(plan)
            # a source without audio has no audio rendition to report
            rt.transcoded_qualities = names if st.audio_codec else [n for n in names if n != "audioa"]

    async def _record_samples(self, period: float, last_bytes: dict[int, int]) -> None:
        rows: list[StreamSample | ViewerSample] = []
        now: datetime = utcnow()
        for (sid, _backup), pub in list(self._publishers.items()):
            if pub.output.feeds.feeding is not pub:
                continue  # a standby feed is not what viewers get
            st = pub.output.transcoder.stats
            delta = pub.bytes_in - last_bytes.get(sid, 0)
            last_bytes[sid] = pub.bytes_in
            if not st.source_height:
                continue
            fps = st.source_fps or 0.0
            rows.append(StreamSample(stream_id=sid, at=now, bitrate_kbps=delta * 8 / 1000 / period, fps=fps,
                                     height=st.source_height, keyframe_interval=2, frames=int(fps * period)))
        rows.extend(self._viewer_rows(now, period))
        if rows:
            async with self.sessionmaker() as db:
                db.add_all(rows)
                await db.commit()

    # --- hooks called by the API --------------------------------------------------------------------
    def _kick(self, stream_id: int, reason: str, pushes_only: bool = False) -> None:
        for (sid, _backup), pub in list(self._publishers.items()):
            if sid == stream_id and not (pushes_only and pub.pulled):
                log.info("ending publisher", extra={"stream": pub.key.redacted(), "reason": reason})
                pub.closed.set()
                task = asyncio.create_task(pub.close(reason))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def stream_changed(self, stream: Stream) -> None:
        if stream.id in self._client_user_ids:
            self._client_user_ids[stream.id] = stream.client_user_id
        self.directory.update(stream)
        if not stream.active:
            self._kick(stream.id, "stream switched off")
        elif stream.pull:
            self._kick(stream.id, "stream switched to PULL", pushes_only=True)
        output = self._outputs.get(stream.id)
        if output is not None:
            output.endlist = stream.hls_mpegts_endlist_tag
        await self.pulls.changed(stream)

    async def stream_deleted(self, stream_id: int) -> None:
        self.directory.remove(stream_id)
        await self.pulls.deleted(stream_id)
        self._kick(stream_id, "stream deleted or its key reset")
        await self.restreams.stream_ended(stream_id)
        output = self._outputs.pop(stream_id, None)
        if output is not None and not output.ended:
            await output.stop()

    async def overlays_changed(self, stream_id: int) -> None:
        pass  # the player polls the overlays of a stream; nothing to push from here

    async def document_changed(self, kind: str, doc_id: int) -> None:
        if kind == "restream":
            await self.restreams.reconcile(doc_id)

    async def dvr_cleanup(self, stream_id: int) -> None:
        output = self._outputs.get(stream_id)
        if output is not None:
            dvr_cleanup(output)

    async def start_recording(self, stream_id: int) -> None:
        output = self._outputs.get(stream_id)
        if output is None or output.ended:
            return
        async with self.sessionmaker() as db:
            stream = await db.get(Stream, stream_id)
        if stream is not None:
            await self.recordings.start(stream, output)

    async def stop_recording(self, stream_id: int) -> int | None:
        """Returns the id of the Video the recording became, None when nothing was recording."""
        return await self.recordings.stop(stream_id)

    async def clip_requested(self, clip_id: str) -> int | None:
        """Schedules the cut; returns the id of the Video made for a vod_required clip."""
        return await self.clips.requested(clip_id, self)
