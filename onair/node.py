"""A node as the HTTP API and the player pages see it: its settings, database, live state and outputs.

`LiveControl` is where the API's changes reach live state: the hub (who may publish, kicking
publishers), the PULL clients and the outputs (recordings, restreams, DVR, clips). The composition root
(onair.app.wiring) builds both.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from onair.cluster.status import RemoteLive, snapshot_entry
from onair.config import Settings
from onair.delivery.signing import PlaybackGuard
from onair.hub.live_stream import LiveStatus
from onair.hub.registry import StreamHub
from onair.ingest.pull import PullManager
from onair.outbound import Outbound
from onair.outputs.clips import Clipper
from onair.outputs.dvr import DvrOutput
from onair.outputs.library import VideoLibrary
from onair.outputs.recorder import RecordingOutput
from onair.outputs.recording import Recordings
from onair.outputs.restream import Restreams
from onair.outputs.webhooks import WebhookSender
from onair.package.continuity import OutputContinuity, continuity_of
from onair.store.live_state import LiveStateWriter
from onair.store.models import Stream
from onair.store.samples import StatsSampler
from onair.urls import UrlBuilder

__all__ = ["ClusterLink", "LiveControl", "Node", "Ports"]


@dataclass
class Ports:
    http: int = 0
    rtmp: int = 0
    rtmps: int = 0
    srt: int = 0


class ClusterLink(Protocol):
    """The other nodes of a cluster, as LiveControl sees them (onair.cluster.link.Cluster)."""

    async def announce(self, kind: str, item_id: int) -> None: ...

    def remote(self, stream_id: int) -> RemoteLive | None: ...

    async def origin_url(self, stream_id: int) -> str | None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class LiveControl:
    """API changes → live state. Each method is what one kind of API change means for running streams.

    In a cluster each change is also announced to the other nodes, which apply it to the streams they
    receive (`apply_remote`); the figures of streams another node receives come from its reports.
    """

    def __init__(self, hub: StreamHub, pulls: PullManager, restreams: Restreams, recordings: Recordings,
                 recorder: RecordingOutput, clips: Clipper, dvr: DvrOutput, playback_guard: PlaybackGuard) -> None:
        self.hub = hub
        self.pulls = pulls
        self.restreams = restreams
        self.recordings = recordings
        self.recorder = recorder
        self.clips = clips
        self.dvr = dvr
        self.playback_guard = playback_guard  # who may play: the playback routes and pages ask it
        self.cluster: ClusterLink | None = None  # set by the composition root in a cluster

    # -- what the API reads -------------------------------------------------------------------------
    def live_count(self) -> int:
        return self.hub.live_count()

    def _remote(self, stream_id: int) -> RemoteLive | None:
        return self.cluster.remote(stream_id) if self.cluster is not None else None

    def status(self, stream_id: int) -> LiveStatus | None:
        """Live figures while the stream is live here or on another node (None otherwise)."""
        stream = self.hub.live(stream_id)
        if stream is not None:
            return stream.status()
        remote = self._remote(stream_id)
        return remote.status if remote is not None else None

    def recording_duration(self, stream_id: int) -> float | None:
        if self.hub.live(stream_id) is None and (remote := self._remote(stream_id)) is not None:
            return remote.recording_duration
        return self.recordings.duration(stream_id)

    def is_live(self, stream_id: int) -> bool:
        return self.hub.live(stream_id) is not None or self._remote(stream_id) is not None

    def has_screenshot(self, stream_id: int) -> bool:
        """The live stream's screenshot exists (the first one comes a few seconds after going live)."""
        stream = self.hub.live(stream_id)
        return stream is not None and stream.screenshot_path.is_file()

    def viewers(self, stream_id: int) -> int:
        stream = self.hub.live(stream_id)
        remote = self._remote(stream_id) if stream is None else None
        return stream.viewer_count() if stream is not None else (remote.viewers if remote is not None else 0)

    def snapshot(self) -> dict[int, dict[str, Any]]:
        """The live figures of the streams this node receives, for the other nodes' APIs."""
        return {s.stream_id: snapshot_entry(s.status(), self.recordings.duration(s.stream_id), s.viewer_count())
                for s in self.hub.streams() if s.is_live}

    def continuity(self) -> dict[int, OutputContinuity]:
        """Where the outputs of the streams this node receives have got to (a new origin carries them on)."""
        return {s.stream_id: record for s in self.hub.streams()
                if s.is_live and s.package is not None and (record := continuity_of(s.package)) is not None}

    def total_viewers(self) -> int:
        return sum(s.viewer_count() for s in self.hub.streams() if s.is_live)

    def restream_live(self, restream_id: int) -> bool:
        return self.restreams.live(restream_id)

    # -- what API changes do ------------------------------------------------------------------------
    async def _announce(self, kind: str, item_id: int) -> None:
        if self.cluster is not None:
            await self.cluster.announce(kind, item_id)

    async def apply_remote(self, kind: str, item_id: int, load: Callable[[int], Awaitable[Stream | None]]) -> None:
        """A change another node's API made: what it means for the streams this node receives."""
        if kind == "stream_changed":
            stream = await load(item_id)
            if stream is not None:
                await self._stream_changed(stream)
        elif kind == "stream_deleted":
            await self._stream_deleted(item_id)
        elif kind == "start_recording":
            await self.recorder.start(item_id)  # nothing when the stream is not live here
        elif kind == "stop_recording":
            await self.recordings.stop(item_id)
        elif kind == "dvr_cleanup":
            self.dvr.cleanup(item_id)
        elif kind == "video_deleted":
            await self.recordings.discard(item_id)
        # overlays_changed: the players poll the overlays; nothing runs on the receiving node

    async def catch_up(self, streams: list[Stream]) -> None:
        """Every stream as the database has it, after a gap in the cluster channel (events may be lost)."""
        for stream in streams:
            await self._stream_changed(stream)
        for stream_id in self.hub.directory.ids() - {s.id for s in streams}:
            await self._stream_deleted(stream_id)

    async def stream_changed(self, stream: Stream) -> None:
        await self._stream_changed(stream)
        await self._announce("stream_changed", stream.id)

    async def _stream_changed(self, stream: Stream) -> None:
        self.hub.directory.update(stream)
        self.playback_guard.update(stream)
        if not stream.active:
            self.hub.kick(stream.id, "stream switched off")
        elif stream.pull:
            self.hub.kick(stream.id, "stream switched to PULL", pushes_only=True)
        self.hub.configure(stream.id, endlist=stream.hls_mpegts_endlist_tag,
                           reconnect_window=float(stream.reconnect_window or 0))
        await self.pulls.changed(stream)

    async def stream_deleted(self, stream_id: int) -> None:
        await self._stream_deleted(stream_id)
        await self._announce("stream_deleted", stream_id)

    async def _stream_deleted(self, stream_id: int) -> None:
        self.hub.directory.remove(stream_id)
        self.playback_guard.remove(stream_id)
        await self.pulls.deleted(stream_id)
        self.hub.kick(stream_id, "stream deleted or its key reset")
        await self.restreams.stream_ended(stream_id)
        await self.hub.forget(stream_id)

    async def overlays_changed(self, stream_id: int) -> None:
        # the player polls the overlays of a stream; other nodes hear of it for what may follow it
        await self._announce("overlays_changed", stream_id)

    async def document_changed(self, kind: str, doc_id: int) -> None:
        if kind == "restream":
            await self.restreams.reconcile(doc_id)

    async def dvr_cleanup(self, stream_id: int) -> None:
        self.dvr.cleanup(stream_id)
        await self._announce("dvr_cleanup", stream_id)

    async def start_recording(self, stream_id: int) -> None:
        await self.recorder.start(stream_id)
        await self._announce("start_recording", stream_id)

    async def stop_recording(self, stream_id: int) -> int | None:
        """Returns the id of the Video the recording became, None when nothing was recording here (in a
        cluster the node receiving the stream stops its recording)."""
        video_id = await self.recordings.stop(stream_id)
        await self._announce("stop_recording", stream_id)
        return video_id

    async def video_deleted(self, video_id: int) -> None:
        """A Video was deleted: the recording feeding it stops and is never finished into the library."""
        await self.recordings.discard(video_id)
        await self._announce("video_deleted", video_id)

    async def clip_requested(self, clip_id: str) -> int | None:
        """Schedules the cut; returns the id of the Video made for a vod_required clip."""
        return await self.clips.requested(clip_id, self.hub)


@dataclass
class Node:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    ports: Ports
    urls: UrlBuilder
    hub: StreamHub
    control: LiveControl
    library: VideoLibrary
    sampler: StatsSampler
    live_state: LiveStateWriter
    webhooks: WebhookSender
    outbound: Outbound
    api_key_hashes: set[str] = field(default_factory=set)
    region: str = "local"
    name: str = ""  # ONAIR_NODE_NAME, resolved once the HTTP port is bound
    cluster: ClusterLink | None = None  # the other nodes, when ONAIR_REDIS_URL is set
    listeners_ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def sample_period(self) -> float:
        return self.settings.stats_period

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir
