"""Recording follows the hub: start with the stream (auto_record), tee the primary source, keep going
across a short drop, split long recordings and close them before the disk fills."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.hub.events import HubEvent, PublisherEnded, PublisherLive, SessionStarted
from onair.hub.publisher import Publisher
from onair.hub.registry import StreamHub
from onair.outputs.recording import GRACE_S, Recordings
from onair.store.models import Stream

__all__ = ["RecordingOutput"]

log = logging.getLogger("onair.outputs.recorder")

CHECK_PERIOD_S = 1.0


class RecordingOutput:
    def __init__(self, hub: StreamHub, recordings: Recordings, sessionmaker: async_sessionmaker[AsyncSession], *,
                 data_dir: Path, min_free_mb: int, max_seconds: float) -> None:
        self.hub = hub
        self.recordings = recordings
        self.sessionmaker = sessionmaker
        self.data_dir = data_dir
        self.min_free_mb = min_free_mb
        self.max_seconds = max_seconds
        self._task: asyncio.Task[None] | None = None

    # -- hub events ---------------------------------------------------------------------------------
    async def __call__(self, event: HubEvent) -> None:
        stream = event.stream
        if isinstance(event, SessionStarted):
            stream.source_readers.append(_PrimarySource(self.recordings, stream.stream_id))
        elif isinstance(event, PublisherLive) and not event.publisher.key.backup:
            async with self.sessionmaker() as db:
                row = await db.get(Stream, stream.stream_id)
            if row is not None:
                # auto_record, or a source back within the grace period continues its recording
                await self.recordings.source_resumed(row, stream)
        elif isinstance(event, PublisherEnded) and not event.publisher.key.backup:
            if event.reconnecting:  # the same recording continues if the source is back within the window
                await self.recordings.source_ended(stream.stream_id, grace=stream.reconnect_window + GRACE_S)
            elif event.window_expired:
                await self.recordings.stop(stream.stream_id)
            else:
                await self.recordings.source_ended(stream.stream_id)

    # -- API ----------------------------------------------------------------------------------------
    async def start(self, stream_id: int) -> None:
        live = self.hub.get(stream_id)
        if live is None or live.ended:
            return
        async with self.sessionmaker() as db:
            row = await db.get(Stream, stream_id)
        if row is not None:
            await self.recordings.start(row, live)

    # -- upkeep -------------------------------------------------------------------------------------
    def run(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="recording-upkeep")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(CHECK_PERIOD_S)
            try:
                await self._guard_disk()
                await self._split_long_recordings()
            except Exception:  # upkeep trouble must never stop the loop
                log.exception("recording upkeep failed")

    def disk_free_mb(self) -> float:
        return shutil.disk_usage(self.data_dir).free / 2**20

    async def _guard_disk(self) -> None:
        """Disk nearly full: close running recordings while there is room left to finish them."""
        if not self.recordings.active or self.disk_free_mb() >= self.min_free_mb / 2:
            return
        for sid in list(self.recordings.active):
            log.warning("disk nearly full: stopping the recording", extra={"stream_id": sid,
                                                                           "free_mb": round(self.disk_free_mb())})
            await self.recordings.stop(sid)

    async def _split_long_recordings(self) -> None:
        """A recording reaching the maximum length is closed and the next Video continues it."""
        for sid, rec in list(self.recordings.active.items()):
            if rec.duration < self.max_seconds or rec.writer is None:
                continue
            log.info("splitting a long recording", extra={"stream_id": sid, "seconds": round(rec.duration)})
            await self.recordings.stop(sid)
            await self.start(sid)


class _PrimarySource:
    """Source reader of one live session: the origin recorder tees the primary source."""

    def __init__(self, recordings: Recordings, stream_id: int) -> None:
        self.recordings = recordings
        self.stream_id = stream_id

    async def on_source(self, publisher: Publisher, data: bytes, *, feeding: bool) -> None:
        if not publisher.key.backup:
            await self.recordings.feed(self.stream_id, data)
