"""The stream hub: the one owner of live state, and the gateway every ingest enters through.

It keeps a `LiveStream` per stream that is (or was last) live, decides who may publish (the access
rule of onair.hub.access, against the catalog the store provides), joins a second ingest as the
standby feed, runs the failover checks, and announces what happens as events (onair.hub.events)
that the store turns into database writes and that outputs (recordings, restreams, DVR) follow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, NoReturn

from prometheus_client import Counter, Gauge

from onair.config import Settings
from onair.hub.access import IN_USE, UNKNOWN, IngestDirectory, StreamAccess, access_refusal
from onair.hub.events import (
    EventBus,
    FeedSwitched,
    PublisherEnded,
    PublisherLive,
    SessionEnded,
    SessionPlayable,
    SessionStarted,
)
from onair.hub.keys import parse_stream_key
from onair.hub.live_stream import LiveStream
from onair.hub.ports import (
    ContinuityRecords,
    FeedLeases,
    IngestRefused,
    PublishConfig,
    SingleNodeLeases,
    StreamCatalog,
)
from onair.hub.publisher import Publisher
from onair.package.continuity import OutputContinuity
from onair.transcode.transcoder import Transcoder

__all__ = ["SOURCE_TYPES", "StreamHub"]

log = logging.getLogger("onair.hub")

INGEST_SESSIONS = Counter("onair_ingest_sessions_total", "Publish attempts", ["protocol", "result"])
LIVE_STREAMS = Gauge("onair_live_streams", "Streams currently receiving a source")

SOURCE_TYPES = {"rtmp": "rtmp", "rtmps": "rtmp", "srt": "srt", "whip": "webrtc", "https": "https"}
FAILOVER_CHECK_PERIOD = 0.25


def _input_format(protocol: str) -> str:
    return "mpegts" if protocol in ("srt", "https", "whip") else "flv"


class StreamHub:
    def __init__(self, settings: Settings, catalog: StreamCatalog, *,
                 make_transcoder: Callable[..., Transcoder] = Transcoder,
                 leases: FeedLeases | None = None, continuity: ContinuityRecords | None = None) -> None:
        self.settings = settings
        self.leases: FeedLeases = leases or SingleNodeLeases()  # the cluster's registry, when there is one
        self.continuity = continuity  # one node: every session's output starts afresh
        self._holders: dict[tuple[int, bool], Publisher] = {}  # the publisher each lease of this node is for
        self.make_transcoder = make_transcoder
        self.catalog = catalog
        self.events = EventBus()
        self.directory = IngestDirectory()  # who may push, for the SRT handshake (no DB there)
        self._streams: dict[int, LiveStream] = {}
        self._lock = asyncio.Lock()  # accepting and ending publishers never interleave
        self._tasks: set[asyncio.Task[None]] = set()
        self._failover_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped: set[int] = set()  # streams kicked (switched off, deleted): they end without a window

    # -- queries ------------------------------------------------------------------------------------
    def get(self, stream_id: int) -> LiveStream | None:
        """The stream's current or last session (ended ones stay until the next session replaces them)."""
        return self._streams.get(stream_id)

    def live(self, stream_id: int) -> LiveStream | None:
        stream = self._streams.get(stream_id)
        return stream if stream is not None and stream.is_live else None

    def streams(self) -> Iterator[LiveStream]:
        return iter(list(self._streams.values()))

    def publishers(self) -> list[Publisher]:
        return [p for s in self._streams.values() for p in s.publishers]

    def live_count(self) -> int:
        return len(self.publishers())

    # -- the gateway --------------------------------------------------------------------------------
    async def open_session(self, *, protocol: str, app: str, stream_name: str, remote: str,
                           pull: bool = False) -> Publisher:
        """`pull=True`: the node's own PULL client (onair.ingest.pull) feeding a pull stream."""
        if protocol in ("rtmp", "rtmps") and app != "in":
            self._refuse(protocol, "unknown application: publish to /in/{stream key}")
        key = parse_stream_key(stream_name)
        if key is None:
            self._refuse(protocol, "malformed stream key")
        async with self._lock:
            config = await self.catalog.publish_config(key.stream_id)
            running = self._streams.get(key.stream_id)
            in_use = running is not None and any(p.key.backup == key.backup for p in running.publishers)
            refusal = access_refusal(_access(config), key, pull=pull, in_use=in_use)
            if refusal is not None or config is None:  # no config: access_refusal said UNKNOWN
                refusal = refusal or UNKNOWN
                log.info("publish refused", extra={"stream": key.redacted(), "protocol": protocol,
                                                   "remote": remote, "reason": refusal.reason})
                self._refuse(protocol, refusal.reason, refusal.code)
            publisher = Publisher(self, key, protocol, _input_format(protocol), started=time.monotonic(),
                                  pulled=pull)
            await self._claim(publisher, protocol, remote)
            try:
                stream = await self._join(running, config, publisher, protocol, remote)
            except BaseException:
                await self._release(publisher)
                raise
            if stream is None:
                return publisher
        try:
            await stream.start()
        except BaseException:
            await self._release(publisher)
            raise
        self._accepted(protocol, key.redacted(), remote, standby=False)
        return publisher

    async def _join(self, running: LiveStream | None, config: PublishConfig, publisher: Publisher, protocol: str,
                    remote: str) -> LiveStream | None:
        """Attach an accepted publisher; returns the new session to start, None when it joined a running one."""
        redacted = publisher.key.redacted()
        if running is not None and running.reconnecting:
            # back within the reconnect window (any protocol): the same session goes on
            await running.resume(publisher)
            publisher.resumed = True
            self._accepted(protocol, redacted, remote, standby=False)
            return None
        if running is not None and running.is_live:
            # the stream's other ingest (primary or backup) is live: join as the standby feed
            running.feeds.attach(publisher, feeding=False)
            self._accepted(protocol, redacted, remote, standby=True)
            return None
        return await self._new_session(config, publisher)

    async def _new_session(self, config: PublishConfig, publisher: Publisher) -> LiveStream:
        previous = self._streams.pop(config.stream_id, None)
        if previous is not None and not previous.ended:
            await self._end_output(previous)
        work_dir = self.settings.data_dir / "live" / str(config.stream_id)
        await asyncio.to_thread(shutil.rmtree, work_dir, True)
        work_dir.mkdir(parents=True, exist_ok=True)
        self._stopped.discard(config.stream_id)
        stream = LiveStream(config, work_dir, self.settings, publisher.input_format,
                            make_transcoder=self.make_transcoder, on_playable=self._playable,
                            resume_from=await self._continuity(config.stream_id))
        stream.feeds.attach(publisher, feeding=True)
        self._streams[config.stream_id] = stream
        await self.events.emit(SessionStarted(stream))
        return stream

    async def _continuity(self, stream_id: int) -> OutputContinuity | None:
        if self.continuity is None:
            return None
        try:
            return await self.continuity.load(stream_id)
        except Exception as exc:  # the output starts afresh: players see a jump back, not a refused feed
            log.warning("output continuity unknown", extra={"stream_id": stream_id, "error": type(exc).__name__})
            return None

    async def _claim(self, publisher: Publisher, protocol: str, remote: str) -> None:
        """Take the feed's cluster lease for `publisher`: another node receiving the same key refuses it here."""
        key = publisher.key
        try:
            claimed = await self.leases.claim(key.stream_id, key.backup)
        except Exception as exc:  # the registry is unreachable: refusing is safe, a double origin is not
            log.warning("publish refused: cluster registry unavailable",
                        extra={"stream": key.redacted(), "protocol": protocol, "error": type(exc).__name__})
            self._refuse(protocol, "cluster registry unavailable, try again", IN_USE.code)
        if not claimed:
            log.info("publish refused", extra={"stream": key.redacted(), "protocol": protocol, "remote": remote,
                                               "reason": "feed received by another node"})
            self._refuse(protocol, IN_USE.reason, IN_USE.code)
        self._holders[(key.stream_id, key.backup)] = publisher

    async def _release(self, publisher: Publisher) -> None:
        slot = (publisher.stream_id, publisher.key.backup)
        if self._holders.get(slot) is not publisher:
            return
        del self._holders[slot]
        try:
            await self.leases.release(*slot)
        except Exception as exc:  # it expires by itself within its TTL
            log.warning("feed lease not released", extra={"stream_id": slot[0], "error": type(exc).__name__})

    def lease_lost(self, stream_id: int, backup: bool) -> None:
        """The cluster registry could not renew this node's lease: another node may take the feed, end ours."""
        publisher = self._holders.pop((stream_id, backup), None)
        if publisher is not None and not publisher.ended:
            log.warning("feed lease lost: ending the publisher", extra={"stream": publisher.key.redacted()})
            publisher.closed.set()
            self._spawn(publisher.close("feed lease lost"))

    def _refuse(self, protocol: str, reason: str, code: int | None = None) -> NoReturn:
        INGEST_SESSIONS.labels(protocol, "refused").inc()
        raise IngestRefused(reason, code)

    def _accepted(self, protocol: str, stream: str, remote: str, *, standby: bool) -> None:
        INGEST_SESSIONS.labels(protocol, "accepted").inc()
        LIVE_STREAMS.set(self.live_count())
        msg = "publish accepted as standby feed" if standby else "publish accepted"
        log.info(msg, extra={"stream": stream, "protocol": protocol, "remote": remote})

    # -- PublisherSink: what publishers report ------------------------------------------------------
    async def publisher_data(self, publisher: Publisher, data: bytes) -> None:
        stream = self._streams.get(publisher.stream_id)
        if stream is None or publisher.ended:  # an ended publisher is detached from its stream
            return
        if not publisher.announced:
            publisher.announced = True
            await self.events.emit(PublisherLive(stream, publisher, SOURCE_TYPES.get(publisher.protocol,
                                                                                     publisher.protocol),
                                                 resumed=publisher.resumed, playable=stream.playable))
        await stream.write(publisher, data)

    async def publisher_closed(self, publisher: Publisher, reason: str) -> None:
        await self._release(publisher)
        async with self._lock:
            stream = self._streams.get(publisher.stream_id)
            if stream is None or publisher not in stream.publishers:
                return
            remaining = stream.feeds.detach(publisher)
        LIVE_STREAMS.set(self.live_count())
        log.info("publisher ended", extra={"stream": publisher.key.redacted(), "reason": reason,
                                            "bytes": publisher.bytes_in,
                                            "seconds": round(time.monotonic() - publisher.started, 1)})
        carried_on = isinstance(remaining, Publisher) and not stream.ended
        if not carried_on and self._may_reconnect(stream, publisher):
            stream.reconnect_deadline = time.monotonic() + stream.reconnect_window
            log.info("publisher may reconnect", extra={"stream": publisher.key.redacted(),
                                                        "window": stream.reconnect_window})
            await self.events.emit(PublisherEnded(stream, publisher, reason, session_over=False, reconnecting=True))
            self._spawn(self._await_reconnect(stream, publisher))
            return
        await self.events.emit(PublisherEnded(stream, publisher, reason, session_over=not carried_on))
        if isinstance(remaining, Publisher) and carried_on:
            # the other ingest carries the stream on (failover); take it at once if this one was feeding
            if stream.feeds.feeding is publisher and await stream.switch_to(remaining, "feed disconnected"):
                await self._feed_switched(stream, remaining)
        else:
            await self._end_output(stream)

    def _playable(self, stream: LiveStream) -> None:
        """The output of `stream` can be played from now on (called from the packaging path)."""
        if self._streams.get(stream.stream_id) is not stream or stream.ended:
            return
        self._spawn(self.events.emit(SessionPlayable(stream)))

    def _may_reconnect(self, stream: LiveStream, publisher: Publisher) -> bool:
        return (stream.reconnect_window > 0 and not stream.ended and not self._stopping
                and stream.stream_id not in self._stopped and not publisher.key.backup)

    async def _await_reconnect(self, stream: LiveStream, publisher: Publisher) -> None:
        deadline = stream.reconnect_deadline
        while stream.reconnecting and stream.reconnect_deadline == deadline and deadline is not None:
            if time.monotonic() >= deadline or stream.stream_id in self._stopped or self._stopping:
                await self._window_expired(stream, publisher)
                return
            await asyncio.sleep(min(0.25, max(0.0, deadline - time.monotonic())))

    async def _window_expired(self, stream: LiveStream, publisher: Publisher) -> None:
        async with self._lock:
            if not stream.reconnecting or stream.publishers:
                return
            stream.reconnect_deadline = None
        log.info("reconnect window over", extra={"stream": publisher.key.redacted()})
        await self.events.emit(PublisherEnded(stream, publisher, "reconnect window over", session_over=True,
                                              window_expired=True))
        await self._end_output(stream)

    async def _end_output(self, stream: LiveStream) -> None:
        if stream.ended:
            return
        await stream.stop()
        await self.events.emit(SessionEnded(stream))

    async def _feed_switched(self, stream: LiveStream, publisher: Publisher) -> None:
        await self.events.emit(FeedSwitched(stream, publisher, SOURCE_TYPES.get(publisher.protocol,
                                                                                publisher.protocol)))

    async def restart_input(self, publisher: Publisher, protocol: str, input_format: str) -> None:
        """A publisher starts a new byte stream (a PULL moved to its next source)."""
        stream = self._streams.get(publisher.stream_id)
        if stream is None:
            return
        publisher.protocol, publisher.input_format = protocol, input_format
        await stream.restart_input(publisher)
        await self._feed_switched(stream, publisher)

    # -- control ------------------------------------------------------------------------------------
    def kick(self, stream_id: int, reason: str, *, pushes_only: bool = False) -> None:
        """End the stream's publishers (switched off, deleted, key reset); `pushes_only` keeps a PULL."""
        stream = self._streams.get(stream_id)
        if stream is not None and not pushes_only:
            self._stopped.add(stream_id)  # the session ends: no reconnect window
        for pub in stream.publishers if stream is not None else []:
            if not (pushes_only and pub.pulled):
                log.info("ending publisher", extra={"stream": pub.key.redacted(), "reason": reason})
                pub.closed.set()
                self._spawn(pub.close(reason))

    def configure(self, stream_id: int, *, endlist: bool, reconnect_window: float) -> None:
        """Stream settings that apply to a running session too."""
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.endlist = endlist
            stream.reconnect_window = reconnect_window

    async def forget(self, stream_id: int) -> None:
        """The stream was deleted: end what is left of its output."""
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            await self._end_output(stream)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- background work ----------------------------------------------------------------------------
    async def start(self) -> None:
        self._failover_task = asyncio.create_task(self._failover_loop(), name="failover")

    async def shutdown(self) -> None:
        self._stopping = True
        if self._failover_task is not None:
            self._failover_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._failover_task
        for pub in self.publishers():
            pub.closed.set()
            await pub.close("server shutting down")
        for stream in self.streams():
            await self._end_output(stream)

    async def _failover_loop(self) -> None:
        """Checks every stream with more than one feed (or a lost feeder) a few times per second."""
        while True:
            await asyncio.sleep(FAILOVER_CHECK_PERIOD)
            now = time.monotonic()
            for stream in self.streams():
                if stream.ended or not stream.publishers:
                    continue
                try:
                    switched = await stream.check_feeds(now)
                    if switched is not None:
                        await self._feed_switched(stream, switched)
                except Exception:  # one stream's trouble must not stop failover for the others
                    log.exception("failover check failed", extra={"stream_id": stream.stream_id})




def _access(config: PublishConfig | None) -> StreamAccess | None:
    if config is None:
        return None
    return StreamAccess(config.token, None, config.active, config.pull)
