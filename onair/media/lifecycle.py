"""Stream lifecycle: who may publish, what runs while a stream is live, and the state the API reports.

One `LiveOutput` per stream that is (or was last) live: its transcoder and packaged renditions. It stays
after the publisher leaves so players see the end of the stream (`#EXT-X-ENDLIST`), until the next
session replaces it.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from prometheus_client import Counter, Gauge
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.config import Settings
from onair.delivery.live import LiveStreamPackage
from onair.ingest.gateway import IngestRefused
from onair.ingest.keys import StreamKey, parse_stream_key
from onair.media.ladder import AUDIO_TRACK, Rendition, transcoded_quality_names
from onair.media.library import VideoLibrary
from onair.media.transcoder import Transcoder
from onair.store.models import QualitySet, Stream, StreamSample
from onair.timeutil import utcnow

log = logging.getLogger("onair.lifecycle")

INGEST_SESSIONS = Counter("onair_ingest_sessions_total", "Publish attempts", ["protocol", "result"])
INGEST_BYTES = Counter("onair_ingest_bytes_total", "Source bytes received", ["protocol"])
LIVE_STREAMS = Gauge("onair_live_streams", "Streams currently receiving a source")
TRANSCODER_RESTARTS = Counter("onair_transcoder_restarts_total", "ffmpeg transcoder restarts")

SOURCE_TYPES = {"rtmp": "rtmp", "rtmps": "rtmp", "srt": "srt", "whip": "webrtc", "https": "https"}


@dataclass
class RuntimeStats:
    transcoding_speed: float | None = None
    frame_rate: float | None = None
    video_width: float | None = None
    video_height: float | None = None
    transcoded_qualities: list[str] | None = None
    recording_duration: float | None = None
    viewers: dict[str, float] = field(default_factory=dict)


def renditions_of(quality_set: QualitySet) -> list[Rendition]:
    return [Rendition(name=q["name"], width=int(q["width"]), height=int(q["height"]),
                      video_kbps=int(q["video_kbps"]), fps_max=60.0 if int(q["height"]) >= 720 else 30.0)
            for q in quality_set.qualities]


class LiveOutput:
    """The transcoder and packaged output of one live session."""

    def __init__(self, stream_id: int, work_dir: Path, settings: Settings, input_format: str,
                 renditions: list[Rendition], on_stats: object = None) -> None:
        self.stream_id = stream_id
        self.work_dir = work_dir
        self.settings = settings
        self.package: LiveStreamPackage | None = None
        self.ended = False
        self.endlist = True
        self.package_ready = asyncio.Event()
        self.transcoder = Transcoder(stream_id=stream_id, input_format=input_format, renditions=renditions,
                                     work_dir=work_dir, on_track_data=self._on_track_data,
                                     on_restart=self._on_restart, ffmpeg=settings.ffmpeg)

    def _new_package(self) -> LiveStreamPackage:
        plan = self.transcoder.plan
        has_audio = bool(self.transcoder.stats.audio_codec)
        return LiveStreamPackage([r.name for r in plan], AUDIO_TRACK if has_audio else None,
                                 window_segments=self.settings.live_window_segments)

    def _on_track_data(self, track: str, data: bytes) -> None:
        if self.package is None:
            self.package = self._new_package()
            self.package_ready.set()
        try:
            self.package.feed(track, data)
        except (KeyError, ValueError) as exc:
            log.warning("dropping transcoder output", extra={"stream_id": self.stream_id, "track": track,
                                                               "error": str(exc)})

    def _on_restart(self) -> None:
        # a restarted ffmpeg begins new fMP4 streams (new init, timestamps from 0): start a fresh package
        TRANSCODER_RESTARTS.inc()
        self.package = None

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
        self.ended = True
        if self.package is not None:
            self.package.end()


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
        await self.output.transcoder.write(data)

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
        self._runtime: dict[int, RuntimeStats] = {}
        self._publishers: dict[tuple[int, bool], Publisher] = {}
        self._outputs: dict[int, LiveOutput] = {}
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stats_task: asyncio.Task[None] | None = None
        self.sample_period = 10.0

    # --- queries used by the API and playback -------------------------------------------------------
    def runtime(self, stream_id: int) -> RuntimeStats | None:
        return self._runtime.get(stream_id)

    def live_count(self) -> int:
        return len(self._publishers)

    def output(self, stream_id: int) -> LiveOutput | None:
        return self._outputs.get(stream_id)

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

    # --- ingest gateway -----------------------------------------------------------------------------
    async def open_session(self, *, protocol: str, app: str, stream_name: str, remote: str) -> Publisher:
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
                reason = self._refusal(stream, key)
                if reason is None and stream is not None:
                    qs = await self._quality_set(db, stream.quality_set_id)
            if reason is not None or stream is None:
                INGEST_SESSIONS.labels(protocol, "refused").inc()
                log.info("publish refused", extra={"stream": key.redacted(), "protocol": protocol,
                                                   "remote": remote, "reason": reason})
                raise IngestRefused(reason or "unknown stream")
            input_format = "mpegts" if protocol in ("srt", "https") else "flv"
            previous = self._outputs.pop(key.stream_id, None)
            if previous is not None:
                await previous.stop()
            work_dir = self.settings.data_dir / "live" / str(key.stream_id)
            shutil.rmtree(work_dir, ignore_errors=True)
            work_dir.mkdir(parents=True, exist_ok=True)
            output = LiveOutput(key.stream_id, work_dir, self.settings, input_format, renditions_of(qs))
            output.endlist = stream.hls_mpegts_endlist_tag
            publisher = Publisher(self, key, protocol, input_format, output)
            self._publishers[(key.stream_id, key.backup)] = publisher
            self._outputs[key.stream_id] = output
            self._runtime[key.stream_id] = RuntimeStats()
        await output.start()
        INGEST_SESSIONS.labels(protocol, "accepted").inc()
        LIVE_STREAMS.set(len(self._publishers))
        log.info("publish accepted", extra={"stream": key.redacted(), "protocol": protocol, "remote": remote})
        return publisher

    def _refusal(self, stream: Stream | None, key: StreamKey) -> str | None:
        if stream is None or not hmac.compare_digest(stream.token.encode(), key.token.encode()):
            return "unknown stream or wrong key"
        if not stream.active:
            return "stream is switched off (active=false)"
        if stream.pull:
            return "stream is a PULL stream: pushes are refused"
        if key.backup:
            return "backup ingest is not enabled on this node"
        if any(sid == key.stream_id for sid, _ in self._publishers):
            return "stream key already in use by another connection"
        return None

    async def _quality_set(self, db: AsyncSession, quality_set_id: int | None) -> QualitySet:
        from onair.api.quality_sets import live_quality_set

        return await live_quality_set(db, quality_set_id)

    async def _mark_live(self, pub: Publisher) -> None:
        now = utcnow()
        async with self.sessionmaker() as db:
            await db.execute(update(Stream).where(Stream.id == pub.key.stream_id).values(
                live=True, started_at_primary=now, stream_source_type=SOURCE_TYPES.get(pub.protocol, pub.protocol)))
            await db.commit()

    async def _publisher_ended(self, pub: Publisher, reason: str) -> None:
        sid = pub.key.stream_id
        async with self._lock:
            if self._publishers.get((sid, pub.key.backup)) is not pub:
                return
            del self._publishers[(sid, pub.key.backup)]
        LIVE_STREAMS.set(len(self._publishers))
        log.info("publisher ended", extra={"stream": pub.key.redacted(), "reason": reason,
                                            "bytes": pub.bytes_in, "seconds": round(time.monotonic() - pub.started, 1)})
        async with self.sessionmaker() as db:
            await db.execute(update(Stream).where(Stream.id == sid).values(live=False, finished_at_primary=utcnow()))
            await db.commit()
        self._runtime.pop(sid, None)
        await pub.output.stop()

    # --- background work ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._stats_task = asyncio.create_task(self._stats_loop())

    async def shutdown(self) -> None:
        if self._stats_task is not None:
            self._stats_task.cancel()
        for pub in list(self._publishers.values()):
            pub.closed.set()
            await pub.close("server shutting down")
        for output in list(self._outputs.values()):
            if not output.ended:
                await output.stop()

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
                if time.monotonic() - last_sample >= self.sample_period:
                    period = time.monotonic() - last_sample
                    last_sample = time.monotonic()
                    await self._record_samples(period, last_bytes)
            except Exception:  # a stats hiccup must never stop the loop
                log.exception("stats loop error")

    @staticmethod
    def _apply_stats(rt: RuntimeStats, transcoder: Transcoder) -> None:
        st = transcoder.stats
        rt.transcoding_speed = st.speed
        rt.frame_rate = st.source_fps
        rt.video_width = float(st.source_width) if st.source_width else None
        rt.video_height = float(st.source_height) if st.source_height else None
        plan = transcoder.plan
        if plan:
            rt.transcoded_qualities = transcoded_quality_names(plan)

    async def _record_samples(self, period: float, last_bytes: dict[int, int]) -> None:
        rows = []
        now: datetime = utcnow()
        for (sid, _backup), pub in list(self._publishers.items()):
            st = pub.output.transcoder.stats
            delta = pub.bytes_in - last_bytes.get(sid, 0)
            last_bytes[sid] = pub.bytes_in
            if not st.source_height:
                continue
            fps = st.source_fps or 0.0
            rows.append(StreamSample(stream_id=sid, at=now, bitrate_kbps=delta * 8 / 1000 / period, fps=fps,
                                     height=st.source_height, keyframe_interval=2, frames=int(fps * period)))
        if rows:
            async with self.sessionmaker() as db:
                db.add_all(rows)
                await db.commit()

    # --- hooks called by the API --------------------------------------------------------------------
    def _kick(self, stream_id: int, reason: str) -> None:
        for (sid, _backup), pub in list(self._publishers.items()):
            if sid == stream_id:
                log.info("ending publisher", extra={"stream": pub.key.redacted(), "reason": reason})
                pub.closed.set()
                task = asyncio.create_task(pub.close(reason))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def stream_changed(self, stream: Stream) -> None:
        if not stream.active:
            self._kick(stream.id, "stream switched off")
        elif stream.pull:
            self._kick(stream.id, "stream switched to PULL")
        output = self._outputs.get(stream.id)
        if output is not None:
            output.endlist = stream.hls_mpegts_endlist_tag

    async def stream_deleted(self, stream_id: int) -> None:
        self._kick(stream_id, "stream deleted or its key reset")
        output = self._outputs.pop(stream_id, None)
        if output is not None and not output.ended:
            await output.stop()

    async def overlays_changed(self, stream_id: int) -> None:
        pass  # the player polls the overlays of a stream; nothing to push from here

    async def document_changed(self, kind: str, doc_id: int) -> None:
        pass

    async def dvr_cleanup(self, stream_id: int) -> None:
        pass  # DVR lands with the recording issue; the live window is already short

    async def start_recording(self, stream_id: int) -> None:
        pass

    async def stop_recording(self, stream_id: int) -> dict[str, object] | None:
        return None

    async def clip_requested(self, clip_id: str) -> None:
        pass
