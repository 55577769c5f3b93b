"""Restreams: pushing a live stream on to external RTMP/RTMPS/SRT targets.

A restream is a Document row (kind ``restream``). While its source stream is live and the restream is
``active``, one supervised :class:`RestreamPusher` runs an ffmpeg that sends to the target:

* ``source="original"``: the publisher's bytes, untouched (``-c copy``), fed to the pusher's stdin by a
  :class:`~onair.outputs.tap.SourceTap` (the same way the origin recorder gets them);
* ``source="transcoded"``: the top rendition of the ladder as the transcoder writes it to the
  MPEG-TS HLS output (video + audio in one file per segment), read by ffmpeg's HLS demuxer from
  disk. That costs a segment of latency but needs no second muxing path in Python: the packaged fMP4
  tracks are separate video and audio streams that would need two pipes into ffmpeg.

RTMP/RTMPS targets get FLV, SRT targets MPEG-TS. ``no_audio`` drops the audio (``-an``) or, in
``silence`` mode, replaces it with a silent AAC track (YouTube wants one).

Isolation: the pusher never blocks ingest. Source bytes go into the pipe's transport buffer without
waiting; past `MAX_BACKLOG` bytes (a slow or unreachable target) the pusher's ffmpeg is killed and
started afresh at the next decodable point. A pusher that exits, stalls or fails to connect is retried
with exponential backoff while the stream is live. ``live`` is true while ffmpeg reports that it is
writing to the target.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import Counter, Gauge
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.hub.events import HubEvent, PublisherEnded, PublisherLive, SessionStarted
from onair.hub.publisher import Publisher
from onair.hub.registry import StreamHub
from onair.outbound import RESTREAM_SCHEMES, Outbound, Outgoing, TargetRefused
from onair.outputs.tap import SourceTap
from onair.store.models import Document
from onair.transcode.command import ANALYZEDURATION_US, PROBESIZE
from onair.transcode.transcoder import Transcoder

if TYPE_CHECKING:
    from onair.hub.live_stream import LiveStream

__all__ = ["RestreamPusher", "RestreamSpec", "Restreams", "push_command_args"]

log = logging.getLogger("onair.outputs.restream")

RESTREAMS_RUNNING = Gauge("onair_restreams_running", "Restream pushers supervised (source live, restream active)")
RESTREAMS_LIVE = Gauge("onair_restreams_live", "Restreams currently sending to their target")
RESTREAM_RESTARTS = Counter("onair_restream_restarts_total", "Restream pusher restarts", ["reason"])

MAX_BACKLOG = 4 * 1024 * 1024  # source bytes waiting for a pusher's ffmpeg before it is restarted
BACKOFF_MIN_S = 1.0
BACKOFF_MAX_S = 30.0
STABLE_S = 15.0  # a push that lasted this long starts the backoff over
STALL_S = 20.0  # no bytes out for this long: the target hangs; restart
SILENCE = "anullsrc=r=48000:cl=stereo"
FLV_AUDIO_CODECS = {"aac", "mp3"}


@dataclass(frozen=True)
class RestreamSpec:
    """What a running pusher does; a PATCH that changes any of it restarts the pusher."""

    id: int
    stream_id: int
    uri: str
    source: str = "original"
    no_audio: bool = False
    no_audio_mode: str | None = None

    @classmethod
    def from_document(cls, doc: Document) -> RestreamSpec | None:
        """None when the restream must not run (inactive or incomplete)."""
        data: dict[str, Any] = doc.data or {}
        if data.get("active", True) is False or not data.get("uri") or data.get("stream_id") is None:
            return None
        return cls(id=doc.id, stream_id=int(data["stream_id"]), uri=str(data["uri"]),
                   source=str(data.get("source") or "original"), no_audio=bool(data.get("no_audio")),
                   no_audio_mode=data.get("no_audio_mode") or "drop")

    @property
    def target_format(self) -> str:
        return "mpegts" if urlsplit(self.uri).scheme.lower() == "srt" else "flv"

    @property
    def label(self) -> str:
        """The target for logs: scheme, host and port (paths and queries hold stream keys)."""
        parts = urlsplit(self.uri)
        return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def push_command_args(spec: RestreamSpec, audio_codec: str | None, target: Outgoing) -> list[str]:
    """ffmpeg arguments after the first input (input 0 = the source): mapping, codecs, the target (as the
    outbound gateway pinned it)."""
    fmt = spec.target_format
    args: list[str] = []
    if spec.no_audio and spec.no_audio_mode == "silence":
        args += ["-f", "lavfi", "-i", SILENCE, "-map", "0:v:0?", "-map", "1:a:0",
                 "-c:v", "copy", "-c:a", "aac", "-b:a", "128k", "-shortest"]
    elif spec.no_audio:
        args += ["-map", "0:v:0?", "-an", "-c:v", "copy"]
    else:
        # FLV carries AAC/MP3 only: e.g. the Opus of a WHIP source is re-encoded, the video never
        audio = ["copy"] if fmt != "flv" or audio_codec is None or audio_codec in FLV_AUDIO_CODECS else ["aac"]
        args += ["-map", "0:v:0?", "-map", "0:a:0?", "-c:v", "copy", "-c:a", *audio]
    if fmt == "flv":
        args += ["-flvflags", "no_duration_filesize"]
    return [*args, "-f", fmt, *target.options, target.url]


def _progress_args() -> list[str]:
    # progress blocks on stdout tell whether bytes reach the target (`live`) and detect a stall
    return ["-progress", "pipe:1", "-stats_period", "0.5", "-nostats"]


class RestreamPusher:
    """One restream while its stream is live: an ffmpeg pushing to the target, restarted when it fails."""

    def __init__(self, spec: RestreamSpec, output: LiveStream, outbound: Outbound, ffmpeg: str = "ffmpeg") -> None:
        self.spec = spec
        self.output = output
        self.outbound = outbound
        self.ffmpeg = ffmpeg
        self.live = False
        self.restarts = 0
        self._tap: SourceTap | None = None
        self._kick = asyncio.Event()  # ends the current ffmpeg (backlog, source switched)
        self._kick_reason = ""
        self._task: asyncio.Task[None] | None = None
        self._last_out = 0.0  # monotonic time the output size last grew
        self._out_bytes = 0
        self._err_tail = ""

    def start(self) -> None:
        RESTREAMS_RUNNING.inc()
        self._task = asyncio.create_task(self._run(), name=f"restream-{self.spec.id}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        RESTREAMS_RUNNING.dec()

    # --- data path (called from Publisher.feed: must never wait) -------------------------------------
    def feed(self, transcoder: Transcoder, data: bytes) -> None:
        tap = self._tap
        if tap is None or tap.dead:
            return  # between two attempts: this part of the stream is not restreamed
        if tap.transcoder is not transcoder:
            self._restart("source switched")  # failover or a new input: join the new byte stream afresh
        elif not tap.feed_nowait(data):
            self._restart("backlog" if tap.overflowed else "exited")

    def _restart(self, reason: str) -> None:
        if not self._kick.is_set():
            self._kick_reason = reason
            self._kick.set()

    # --- supervision ---------------------------------------------------------------------------------
    async def _run(self) -> None:
        backoff = BACKOFF_MIN_S
        try:
            while True:
                started = time.monotonic()
                reason = await self._push_once()
                if time.monotonic() - started >= STABLE_S:
                    backoff = BACKOFF_MIN_S
                self.restarts += 1
                RESTREAM_RESTARTS.labels(reason.split(" ", 1)[0]).inc()
                delay = 0.0 if reason == "source switched" else backoff
                log.info("restream restarting", extra={"restream_id": self.spec.id, "stream_id": self.spec.stream_id,
                                                       "target": self.spec.label, "reason": reason,
                                                       "retry_in": delay, "error": self._err_tail[-300:]})
                await asyncio.sleep(delay)
                if delay:
                    backoff = min(backoff * 2, BACKOFF_MAX_S)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must stay inside this restream
            log.exception("restream supervisor failed", extra={"restream_id": self.spec.id})

    async def _push_once(self) -> str:
        """Run one ffmpeg until it ends or must be restarted; returns why it ended."""
        self._kick.clear()
        self._err_tail = ""
        proc: asyncio.subprocess.Process | None = None
        readers: list[asyncio.Task[None]] = []
        try:
            try:
                target = await self.outbound.prepare(self.spec.uri, RESTREAM_SCHEMES)
            except TargetRefused as exc:
                self._err_tail = str(exc)
                log.warning("restream target refused", extra={"restream_id": self.spec.id,
                                                              "target": self.spec.label, "reason": str(exc)})
                return "refused"
            if self.spec.source == "transcoded":
                playlist = await self._top_rendition_playlist()
                proc = await asyncio.create_subprocess_exec(
                    self.ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", *_progress_args(),
                    "-live_start_index", "-1", "-i", str(playlist),
                    *push_command_args(self.spec, "aac", target),
                    stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE, env=target.env,
                )  # fmt: skip
            else:
                transcoder = self.output.transcoder
                new_tap = SourceTap(transcoder, push_command_args(self.spec, transcoder.stats.audio_codec, target),
                                ffmpeg=self.ffmpeg, max_backlog=MAX_BACKLOG,
                                input_args=[*_progress_args(), "-probesize", str(PROBESIZE),
                                            "-analyzeduration", str(ANALYZEDURATION_US)],
                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=target.env)
                proc = await new_tap.start()
                self._tap = new_tap
            self._last_out = time.monotonic()
            self._out_bytes = 0
            readers = [asyncio.create_task(self._read_progress(proc)), asyncio.create_task(self._read_stderr(proc))]
            return await self._watch(proc)
        finally:
            self.live = False
            RESTREAMS_LIVE.set(_count_live())
            tap, self._tap = self._tap, None
            if tap is not None:
                await tap.kill()
            elif proc is not None and proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            for r in readers:
                r.cancel()
            await asyncio.gather(*readers, return_exceptions=True)

    async def _watch(self, proc: asyncio.subprocess.Process) -> str:
        waiter = asyncio.create_task(proc.wait())
        kicked = asyncio.create_task(self._kick.wait())
        try:
            while True:
                done, _ = await asyncio.wait({waiter, kicked}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                if kicked in done:
                    return self._kick_reason
                if waiter in done:
                    return f"exited {proc.returncode}"
                if time.monotonic() - self._last_out > STALL_S:
                    return "stalled"
        finally:
            for t in (waiter, kicked):
                t.cancel()
            await asyncio.gather(waiter, kicked, return_exceptions=True)

    async def _top_rendition_playlist(self) -> Path:
        """The MPEG-TS playlist of the top rendition, once the transcoder has written it."""
        while True:
            plan = self.output.transcoder.plan
            if plan:
                path = self.output.ts_dir / plan[0].name / "index.m3u8"
                if path.is_file():
                    return path
            await asyncio.sleep(0.5)

    async def _read_progress(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        while line := await proc.stdout.readline():
            key, _, value = line.decode("ascii", "replace").strip().partition("=")
            if key == "total_size" and value.isdigit() and int(value) > self._out_bytes:
                self._out_bytes = int(value)
                self._last_out = time.monotonic()
                if not self.live:
                    self.live = True
                    RESTREAMS_LIVE.set(_count_live())
                    log.info("restream live", extra={"restream_id": self.spec.id, "stream_id": self.spec.stream_id,
                                                     "target": self.spec.label})

    async def _read_stderr(self, proc: asyncio.subprocess.Process) -> None:
        # drained so that a chatty ffmpeg never blocks on a full pipe; the tail explains a failure
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            self._err_tail = (self._err_tail + line.decode("utf-8", "replace"))[-1000:]


_ALL: set[RestreamPusher] = set()  # every pusher of the process, for the live gauge


def _count_live() -> int:
    return sum(1 for p in _ALL if p.live)


class Restreams:
    """The restream pushers of a node, started and stopped as streams and restream rows change."""

    def __init__(self, hub: StreamHub, sessionmaker: async_sessionmaker[AsyncSession], ffmpeg: str,
                 outbound: Outbound) -> None:
        self.hub = hub
        self.sessionmaker = sessionmaker
        self.ffmpeg = ffmpeg
        self.outbound = outbound
        self._pushers: dict[int, RestreamPusher] = {}  # restream id -> pusher
        self._lock = asyncio.Lock()  # start/stop decisions never interleave

    # --- queries / data path -------------------------------------------------------------------------
    def live(self, restream_id: int) -> bool:
        p = self._pushers.get(restream_id)
        return p is not None and p.live

    def feed(self, stream_id: int, transcoder: Transcoder, data: bytes) -> None:
        for p in list(self._pushers.values()):
            if p.spec.stream_id == stream_id and p.spec.source == "original":
                p.feed(transcoder, data)

    # --- hub events ----------------------------------------------------------------------------------
    async def __call__(self, event: HubEvent) -> None:
        stream = event.stream
        if isinstance(event, SessionStarted):
            stream.source_readers.append(_OriginalSource(self, stream))
        elif isinstance(event, PublisherLive):
            await self.stream_live(stream.stream_id)  # active restreams start with the stream
        elif isinstance(event, PublisherEnded) and event.session_over:
            await self.stream_ended(stream.stream_id)

    async def stream_live(self, stream_id: int) -> None:
        """A publisher of `stream_id` went live: start its active restreams."""
        if self._live_output(stream_id) is None:
            return
        for spec in await self._load_specs():
            if spec.stream_id == stream_id:
                await self._ensure(spec.id, spec)

    async def stream_ended(self, stream_id: int) -> None:
        async with self._lock:
            for rid, p in list(self._pushers.items()):
                if p.spec.stream_id == stream_id:
                    await self._stop(rid)

    async def reconcile(self, restream_id: int) -> None:
        """A restream row was created, changed or deleted."""
        async with self.sessionmaker() as db:
            doc = await db.get(Document, restream_id)
        spec = RestreamSpec.from_document(doc) if doc is not None and doc.kind == "restream" else None
        await self._ensure(restream_id, spec)

    async def shutdown(self) -> None:
        async with self._lock:
            for rid in list(self._pushers):
                await self._stop(rid)

    # --- internals -----------------------------------------------------------------------------------
    def _live_output(self, stream_id: int) -> LiveStream | None:
        return self.hub.live(stream_id)

    async def _load_specs(self) -> list[RestreamSpec]:
        async with self.sessionmaker() as db:
            docs = (await db.execute(select(Document).where(Document.kind == "restream"))).scalars().all()
        return [s for s in (RestreamSpec.from_document(d) for d in docs) if s is not None]

    async def _ensure(self, restream_id: int, spec: RestreamSpec | None) -> None:
        """Make the pusher of `restream_id` match `spec` (None: none) and its stream's liveness."""
        async with self._lock:
            output = self._live_output(spec.stream_id) if spec is not None else None
            current = self._pushers.get(restream_id)
            if current is not None and (spec is None or output is None or current.spec != spec
                                        or current.output is not output):
                await self._stop(restream_id)
                current = None
            if current is None and spec is not None and output is not None:
                pusher = RestreamPusher(spec, output, self.outbound, self.ffmpeg)
                self._pushers[restream_id] = pusher
                _ALL.add(pusher)
                pusher.start()
                log.info("restream started", extra={"restream_id": restream_id, "stream_id": spec.stream_id,
                                                    "target": spec.label, "source": spec.source})

    async def _stop(self, restream_id: int) -> None:
        pusher = self._pushers.pop(restream_id, None)
        if pusher is None:
            return
        await pusher.stop()
        _ALL.discard(pusher)
        RESTREAMS_LIVE.set(_count_live())
        log.info("restream stopped", extra={"restream_id": restream_id, "stream_id": pusher.spec.stream_id})


class _OriginalSource:
    """Source reader of one live session: restreams of source=original push what the output is made of."""

    def __init__(self, restreams: Restreams, stream: LiveStream) -> None:
        self.restreams = restreams
        self.stream = stream

    async def on_source(self, publisher: Publisher, data: bytes, *, feeding: bool) -> None:
        if feeding:
            self.restreams.feed(self.stream.stream_id, self.stream.transcoder, data)
