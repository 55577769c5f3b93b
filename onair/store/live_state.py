"""The hub's events written to the database: the live columns of a stream are their persisted record.

`live`, `backup_live`, `started_at_*`, `finished_at_primary` and `stream_source_type` are written here
and nowhere else, from what the hub announces (onair.hub.events).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.hub.events import FeedSwitched, HubEvent, PublisherEnded, PublisherLive
from onair.store.db import disk_full
from onair.store.models import Stream
from onair.timeutil import utcnow

__all__ = ["LiveStateWriter", "reset_stale_live_state"]

log = logging.getLogger("onair.store.live_state")


class LiveStateWriter:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def __call__(self, event: HubEvent) -> None:
        if isinstance(event, PublisherLive):
            await self._write(event.stream.stream_id, self._live_values(event))
        elif isinstance(event, PublisherEnded):
            ended: dict[str, Any] = ({"backup_live": False} if event.publisher.key.backup
                                     else {"live": False, "finished_at_primary": utcnow()})
            await self._write(event.stream.stream_id, ended)
        elif isinstance(event, FeedSwitched):
            await self._write(event.stream.stream_id, {"stream_source_type": event.source_type})

    @staticmethod
    def _live_values(event: PublisherLive) -> dict[str, Any]:
        """R19: a backup sets backup_live/started_at_backup; the feeding one sets the source type."""
        now = utcnow()
        values: dict[str, Any] = ({"backup_live": True, "started_at_backup": now} if event.publisher.key.backup
                                  else {"live": True, "started_at_primary": now})
        if event.stream.feeding is event.publisher:
            values["stream_source_type"] = event.source_type
        return values

    async def _write(self, stream_id: int, values: dict[str, Any]) -> None:
        try:
            async with self.sessionmaker() as db:
                await db.execute(update(Stream).where(Stream.id == stream_id).values(**values))
                await db.commit()
        except Exception as exc:
            if not disk_full(exc):
                raise
            # the stream goes on; its row catches up at the next change (and at start-up, reset_stale_live_state)
            log.warning("disk full: the live state of a stream is not stored", extra={"stream_id": stream_id,
                                                                                     "state": sorted(values)})


async def reset_stale_live_state(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """No ingest survives a restart: streams marked live by a previous run are finished now."""
    async with sessionmaker() as db:
        now = utcnow()
        await db.execute(update(Stream).where(Stream.live.is_(True)).values(live=False, finished_at_primary=now))
        await db.execute(update(Stream).where(Stream.backup_live.is_(True)).values(backup_live=False))
        await db.commit()
