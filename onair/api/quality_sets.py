"""Quality sets (Q1, Q2): the live transcoding ladders and the account default."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.api.deps import DbDep
from onair.api.errors import ApiError
from onair.api.schemas import QualitySetsDefault, QualitySetsOut
from onair.store.models import QualitySet

router = APIRouter(prefix="/streaming/quality_sets", tags=["quality_sets"])

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


def _set_out(q: QualitySet) -> dict[str, Any]:
    return {"id": q.id, "name": q.name, "default": q.is_default,
            "qualities": [{"id": x["id"], "name": x["name"]} for x in q.qualities]}


async def quality_sets_out(db: AsyncSession) -> dict[str, Any]:
    rows = (await db.execute(select(QualitySet).order_by(QualitySet.id))).scalars().all()
    return {"live": [_set_out(q) for q in rows if q.kind == "live"],
            "vod": [_set_out(q) for q in rows if q.kind == "vod"]}


async def live_quality_set(db: AsyncSession, quality_set_id: int | None) -> QualitySet:
    """The ladder a stream transcodes with: its own set, else the account's live default (R71)."""
    if quality_set_id is not None:
        qs = await db.get(QualitySet, quality_set_id)
        if qs is not None and qs.kind == "live":
            return qs
    rows = (await db.execute(select(QualitySet).where(QualitySet.kind == "live")
                             .order_by(QualitySet.is_default.desc(), QualitySet.id))).scalars().all()
    return rows[0]


@router.get("", response_model=QualitySetsOut)
async def list_quality_sets(db: DbDep) -> dict[str, Any]:
    return await quality_sets_out(db)


@router.put("/default", response_model=QualitySetsOut)
async def set_default(body: QualitySetsDefault, db: DbDep) -> dict[str, Any]:
    for kind in ("live", "vod"):
        ref = getattr(body, kind)
        if ref is None:
            continue
        rows = (await db.execute(select(QualitySet).where(QualitySet.kind == kind))).scalars().all()
        target = ref.id
        if target is None:  # null restores the system default (R70)
            target = next(q["id"] for q in SYSTEM_QUALITY_SETS if q["kind"] == kind and q["default"])
        if target not in {q.id for q in rows}:
            raise ApiError(400, {"status": 400, "error": f"unknown {kind} quality set id {target}"})
        for q in rows:
            q.is_default = q.id == target
    await db.commit()
    return await quality_sets_out(db)
