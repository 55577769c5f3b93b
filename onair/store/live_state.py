"""The hub's events written to the database: the live columns of a stream are their persisted record.

`live`, `backup_live`, `started_at_*`, `finished_at_primary` and `stream_source_type` are written here
and nowhere else, from what the hub announces (onair.hub.events).

Hooks (`add_hook`) add their own rows to the same transaction before it commits: the webhook outbox
records "the stream went live" exactly when the stream row says so. A failing hook costs its rows,
never the live state: the update is then written without the hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.hub.events import FeedSwitched, HubEvent, PublisherEnded, PublisherLive, SessionPlayable
from onair.store.db import disk_full
from onair.store.models import Stream
from onair.timeutil import utcnow

__all__ = ["LiveStateHook", "LiveStateWriter", "StaleLiveHook"]

log = logging.getLogger("onair.store.live_state")

# called with the writer's session after the stream row is updated, before the commit
LiveStateHook = Callable[[AsyncSession, HubEvent], Awaitable[None]]
# called with the session and the ids of the streams a previous run left live, before the commit
StaleLiveHook = Callable[[AsyncSession, list[int]], Awaitable[None]]


class LiveStateWriter:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self.hooks: list[LiveStateHook] = []
        self.stale_hooks: list[StaleLiveHook] = []

    def add_hook(self, hook: LiveStateHook) -> None:
        self.hooks.append(hook)

    def add_stale_hook(self, hook: StaleLiveHook) -> None:
        self.stale_hooks.append(hook)

    async def reset_stale(self, keep: Collection[int] = ()) -> None:
        """No ingest survives a restart: streams marked live by a previous run are finished now (but the
        ones in `keep`, whose new session already writes its own state)."""
        try:
            await self._reset_stale(set(keep), self.stale_hooks)
        except Exception:
            if not self.stale_hooks:
                raise
            log.exception("a stale live-state hook failed: resetting the state without it")
            await self._reset_stale(set(keep), [])

    async def __call__(self, event: HubEvent) -> None:
        if isinstance(event, PublisherLive):
            await self._write(event, self._live_values(event))
        elif isinstance(event, PublisherEnded):
            ended: dict[str, Any] = {}
            if not event.reconnecting:  # a reconnecting stream stays live
                ended = ({"backup_live": False} if event.publisher.key.backup
                         else {"live": False, "finished_at_primary": utcnow()})
            await self._write(event, ended)
        elif isinstance(event, SessionPlayable):
            # `live` means playable: it turns true with the first complete segment, not the first bytes
            await self._write(event, {"live": True} if event.stream.primary_connected else {})
        elif isinstance(event, FeedSwitched):
            await self._write(event, {"stream_source_type": event.source_type})

    @staticmethod
    def _live_values(event: PublisherLive) -> dict[str, Any]:
        """R19: a backup sets backup_live/started_at_backup; the feeding one sets the source type."""
        now = utcnow()
        values: dict[str, Any] = ({"backup_live": True, "started_at_backup": now} if event.publisher.key.backup
                                  else {"started_at_primary": now})
        if not event.publisher.key.backup and event.playable:
            values["live"] = True  # joins an output that already plays (else SessionPlayable sets it)
        if event.resumed:
            values = {}  # the session goes on: it keeps the time it started
        if event.stream.feeding is event.publisher:
            values["stream_source_type"] = event.source_type
        return values

    async def _write(self, event: HubEvent, values: dict[str, Any]) -> None:
        if not values and not self.hooks:
            return
        try:
            try:
                await self._commit(event, values, self.hooks)
            except Exception:
                if not self.hooks:
                    raise
                log.exception("a live-state hook failed: writing the state without it",
                              extra={"stream_id": event.stream.stream_id, "event": type(event).__name__})
                if values:
                    await self._commit(event, values, [])
        except Exception as exc:
            if not disk_full(exc):
                raise
            # the stream goes on; its row catches up at the next change (and at start-up, reset_stale)
            log.warning("disk full: the live state of a stream is not stored",
                        extra={"stream_id": event.stream.stream_id, "state": sorted(values)})

    async def _commit(self, event: HubEvent, values: dict[str, Any], hooks: list[LiveStateHook]) -> None:
        async with self.sessionmaker() as db:
            if values:
                await db.execute(update(Stream).where(Stream.id == event.stream.stream_id).values(**values))
            for hook in hooks:
                await hook(db, event)
            await db.commit()

    async def _reset_stale(self, keep: set[int], hooks: list[StaleLiveHook]) -> None:
        async with self.sessionmaker() as db:
            now = utcnow()
            stale = [sid for sid in (await db.execute(select(Stream.id).where(Stream.live.is_(True)
                                                                               | Stream.backup_live.is_(True))
                                                      .order_by(Stream.id))).scalars() if sid not in keep]
            if not stale:
                return
            await db.execute(update(Stream).where(Stream.id.in_(stale), Stream.live.is_(True))
                             .values(live=False, finished_at_primary=now))
            await db.execute(update(Stream).where(Stream.id.in_(stale), Stream.backup_live.is_(True))
                             .values(backup_live=False))
            for hook in hooks:
                await hook(db, stale)
            await db.commit()

