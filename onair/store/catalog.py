"""What the live path reads from the database: the quality sets (system ladders seeded at start)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.hub.ports import PublishConfig
from onair.store.models import QualitySet, Stream
from onair.transcode.ladder import Rendition

# System ladders (spec §7.3). Names follow the product's rendition naming; ids are stable.
SYSTEM_QUALITY_SETS: list[dict[str, Any]] = [
    {"id": 1, "kind": "live", "name": "Live ABR 1080p (H.264/AAC)", "default": True, "qualities": [
        {"id": 1, "name": "1080p", "width": 1920, "height": 1080, "video_kbps": 4050},
        {"id": 2, "name": "720p", "width": 1280, "height": 720, "video_kbps": 1800},
        {"id": 3, "name": "480p", "width": 854, "height": 480, "video_kbps": 800},
        {"id": 4, "name": "360p", "width": 640, "height": 360, "video_kbps": 450}]},
    {"id": 2, "kind": "live", "name": "Live ABR 720p (H.264/AAC)", "default": False, "qualities": [
        {"id": 2, "name": "720p", "width": 1280, "height": 720, "video_kbps": 1800},
        {"id": 3, "name": "480p", "width": 854, "height": 480, "video_kbps": 800},
        {"id": 4, "name": "360p", "width": 640, "height": 360, "video_kbps": 450}]},
    {"id": 3, "kind": "live", "name": "Live low bitrate 480p/360p/240p", "default": False, "qualities": [
        {"id": 3, "name": "480p", "width": 854, "height": 480, "video_kbps": 800},
        {"id": 4, "name": "360p", "width": 640, "height": 360, "video_kbps": 450},
        {"id": 5, "name": "240p", "width": 426, "height": 240, "video_kbps": 200}]},
    {"id": 4, "kind": "vod", "name": "VOD ABR 1080p (H.264/AAC)", "default": True, "qualities": [
        {"id": 11, "name": "vod1080", "width": 1920, "height": 1080, "video_kbps": 4050},
        {"id": 12, "name": "vod720", "width": 1280, "height": 720, "video_kbps": 1800},
        {"id": 13, "name": "vod360", "width": 640, "height": 360, "video_kbps": 450}]},
]


async def seed_quality_sets(db: AsyncSession) -> None:
    existing = {q.id for q in (await db.execute(select(QualitySet))).scalars()}
    for qs in SYSTEM_QUALITY_SETS:
        if qs["id"] not in existing:
            db.add(QualitySet(id=qs["id"], kind=qs["kind"], name=qs["name"], is_default=qs["default"],
                              qualities=qs["qualities"]))
    await db.commit()


async def live_quality_set(db: AsyncSession, quality_set_id: int | None) -> QualitySet:
    """The ladder a stream transcodes with: its own set, else the account's live default (R71)."""
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
                                 pull=bool(stream.pull), renditions=tuple(renditions_of(qs)),
                                 dvr_seconds=stream.dvr_duration if stream.dvr_enabled else None,
                                 endlist=bool(stream.hls_mpegts_endlist_tag), client_user_id=stream.client_user_id)


def renditions_of(quality_set: QualitySet) -> list[Rendition]:
    return [Rendition(name=q["name"], width=int(q["width"]), height=int(q["height"]),
                      video_kbps=int(q["video_kbps"]), fps_max=60.0 if int(q["height"]) >= 720 else 30.0)
            for q in quality_set.qualities]
