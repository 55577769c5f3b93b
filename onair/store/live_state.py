"""The hub's events written to the database: the live columns of a stream are their persisted record.

`live`, `backup_live`, `started_at_*`, `finished_at_primary`, `stream_source_type` and `ingest_node_*` are
written here and nowhere else, from what the hub announces (onair.hub.events). `ingest_node_*` name the node
receiving each feed: a node ends only the feeds it owns (in a cluster another node may have taken the feed
over meanwhile), clears only its own rows at start-up, and a survivor clears the rows of nodes that died.

Hooks (`add_hook`) add their own rows to the same transaction before it commits: the webhook outbox
records "the stream went live" exactly when the stream row says so. A failing hook costs its rows,
never the live state: the update is then written without the hooks.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from sqlalchemy import ColumnElement, false, select, true, update
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
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], node: str = "local", *,
                 shared: bool = False) -> None:
        self.sessionmaker = sessionmaker
        self.node = node  # written into ingest_node_* of the feeds this node receives
        self.shared = shared  # other nodes write the same rows (a cluster): touch only this node's
        self.hooks: list[LiveStateHook] = []
        self.stale_hooks: list[StaleLiveHook] = []

    def add_hook(self, hook: LiveStateHook) -> None:
        self.hooks.append(hook)

    def add_stale_hook(self, hook: StaleLiveHook) -> None:
        self.stale_hooks.append(hook)

    async def reset_stale(self, keep: Collection[int] = ()) -> None:
        """No ingest survives a restart: streams marked live by a previous run are finished now (but the
        ones in `keep`, whose new session already writes its own state). In a cluster only the feeds this
        node received (and rows no node owns); one node alone owns every row."""
        owners = {self.node} if self.shared else None
        await self.clear(owners, keep=set(keep), unowned=True)

    async def owners(self) -> set[str]:
        """The nodes named as receiving a live feed."""
        async with self.sessionmaker() as db:
            rows = await db.execute(select(Stream.ingest_node_primary, Stream.ingest_node_backup)
                                    .where(Stream.live.is_(True) | Stream.backup_live.is_(True)))
            return {name for row in rows for name in row if name}

    async def clear(self, owners: set[str] | None, *, keep: set[int] | None = None, unowned: bool = False) -> list[int]:
        """End the live state of the feeds `owners` received (None: every feed; `unowned`: also those no
        node owns); the stale hooks see the streams that stopped being live. Returns their ids."""
        try:
            return await self._clear(owners, keep or set(), unowned, self.stale_hooks)
        except Exception:
            if not self.stale_hooks:
                raise
            log.exception("a stale live-state hook failed: resetting the state without it")
            return await self._clear(owners, keep or set(), unowned, [])

    async def __call__(self, event: HubEvent) -> None:
        if isinstance(event, PublisherLive):
            await self._write(event, self._live_values(event))
        elif isinstance(event, PublisherEnded):
            ended: dict[str, Any] = {}
            owned: ColumnElement[bool] | None = None
            if not event.reconnecting:  # a reconnecting stream stays live
                backup = event.publisher.key.backup
                ended = ({"backup_live": False, "ingest_node_backup": None} if backup
                         else {"live": False, "finished_at_primary": utcnow(), "ingest_node_primary": None})
                # another node may receive this feed by now: its state is not ours to end
                owned = (Stream.ingest_node_backup if backup else Stream.ingest_node_primary) == self.node
            await self._write(event, ended, owned)
        elif isinstance(event, SessionPlayable):
            # `live` means playable: it turns true with the first complete segment, not the first bytes
            await self._write(event, {"live": True} if event.stream.primary_connected else {})
        elif isinstance(event, FeedSwitched):
            await self._write(event, {"stream_source_type": event.source_type})

    def _live_values(self, event: PublisherLive) -> dict[str, Any]:
        """A backup sets backup_live/started_at_backup; the feeding one sets the source type."""
        now = utcnow()
        values: dict[str, Any] = ({"backup_live": True, "started_at_backup": now} if event.publisher.key.backup
                                  else {"started_at_primary": now})
        if not event.publisher.key.backup and event.playable:
            values["live"] = True  # joins an output that already plays (else SessionPlayable sets it)
        if event.resumed:
            values = {}  # the session goes on: it keeps the time it started
        values["ingest_node_backup" if event.publisher.key.backup else "ingest_node_primary"] = self.node
        if event.stream.feeding is event.publisher:
            values["stream_source_type"] = event.source_type
        return values

    async def _write(self, event: HubEvent, values: dict[str, Any], only: ColumnElement[bool] | None = None) -> None:
        if not values and not self.hooks:
            return
        try:
            try:
                await self._commit(event, values, self.hooks, only)
            except Exception:
                if not self.hooks:
                    raise
                log.exception("a live-state hook failed: writing the state without it",
                              extra={"stream_id": event.stream.stream_id, "event": type(event).__name__})
                if values:
                    await self._commit(event, values, [], only)
        except Exception as exc:
            if not disk_full(exc):
                raise
            # the stream goes on; its row catches up at the next change (and at start-up, reset_stale)
            log.warning("disk full: the live state of a stream is not stored",
                        extra={"stream_id": event.stream.stream_id, "state": sorted(values)})

    async def _commit(self, event: HubEvent, values: dict[str, Any], hooks: list[LiveStateHook],
                      only: ColumnElement[bool] | None) -> None:
        async with self.sessionmaker() as db:
            if values:
                stmt = update(Stream).where(Stream.id == event.stream.stream_id)
                if only is not None:
                    stmt = stmt.where(only)
                changed = await db.execute(stmt.values(**values).returning(Stream.id))
                if only is not None and changed.first() is None:
                    return  # another node owns the feed now: what it reports is the stream's state
            for hook in hooks:
                await hook(db, event)
            await db.commit()

    async def _clear(self, owners: set[str] | None, keep: set[int], unowned: bool,
                     hooks: list[StaleLiveHook]) -> list[int]:
        def owned(column: Any) -> ColumnElement[bool]:
            if owners is None:
                return true()
            return column.in_(owners) | (column.is_(None) if unowned else false())

        async with self.sessionmaker() as db:
            # UPDATE … RETURNING: two survivors clearing the same dead node end each stream once
            primary = await db.execute(
                update(Stream).where(Stream.live.is_(True), owned(Stream.ingest_node_primary), Stream.id.not_in(keep))
                .values(live=False, finished_at_primary=utcnow(), ingest_node_primary=None).returning(Stream.id))
            backup = await db.execute(
                update(Stream).where(Stream.backup_live.is_(True), owned(Stream.ingest_node_backup),
                                     Stream.id.not_in(keep))
                .values(backup_live=False, ingest_node_backup=None).returning(Stream.id))
            stale = sorted(set(primary.scalars()) | set(backup.scalars()))
            if not stale:
                await db.rollback()
                return []
            for hook in hooks:
                await hook(db, stale)
            await db.commit()
            return stale
