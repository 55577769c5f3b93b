"""What the live path reads from the database: the quality sets (system ladders seeded at start)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.hub.ports import PublishConfig
from onair.store.models import QualitySet, Stream
from onair.transcode.ladder import SYSTEM_LADDERS, renditions_from_qualities

# The seeded rows, derived from the ladder definitions (transcode/ladder.py is their only source).
SYSTEM_QUALITY_SETS: list[dict[str, Any]] = [ladder.as_row() for ladder in SYSTEM_LADDERS]


async def seed_quality_sets(db: AsyncSession) -> None:
    """Adds the system sets a database lacks. Nodes of a cluster starting together may seed at the same moment:
    the one that loses the race finds the rows another node committed."""
    for _attempt in range(3):
        existing = {q.id for q in (await db.execute(select(QualitySet))).scalars()}
        missing = [qs for qs in SYSTEM_QUALITY_SETS if qs["id"] not in existing]
        if not missing:
            return
        for qs in missing:
            db.add(QualitySet(id=qs["id"], kind=qs["kind"], name=qs["name"], is_default=qs["default"],
                              qualities=qs["qualities"]))
        try:
            await db.commit()
            return
        except IntegrityError:  # another node's seed committed first: read again
            await db.rollback()
    raise RuntimeError("could not seed the system quality sets")


async def live_quality_set(db: AsyncSession, quality_set_id: int | None) -> QualitySet:
    """The ladder a stream transcodes with: its own set, else the account's live default."""
    if quality_set_id is not None:
        qs = await db.get(QualitySet, quality_set_id)
        if qs is not None and qs.kind == "live":
            return qs
    rows = (await db.execute(select(QualitySet).where(QualitySet.kind == "live")
                             .order_by(QualitySet.is_default.desc(), QualitySet.id))).scalars().all()
    return rows[0]


class StoreCatalog:
    """The hub's `StreamCatalog`: a stream's access and output settings, read from the database."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker

    async def publish_config(self, stream_id: int) -> PublishConfig | None:
        async with self.sessionmaker() as db:
            stream = await db.get(Stream, stream_id)
            if stream is None:
                return None
            qs = await live_quality_set(db, stream.quality_set_id)
            return PublishConfig(stream_id=stream.id, token=stream.token, active=bool(stream.active),
                                 pull=bool(stream.pull), renditions=tuple(renditions_from_qualities(qs.qualities)),
                                 dvr_seconds=stream.dvr_duration if stream.dvr_enabled else None,
                                 endlist=bool(stream.hls_mpegts_endlist_tag), client_user_id=stream.client_user_id,
                                 reconnect_window=float(stream.reconnect_window or 0))

