"""Quality sets: the live transcoding ladders and the account default."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.api.deps import DbDep
from onair.api.errors import ApiError
from onair.api.schemas import QualitySetsDefault, QualitySetsOut
from onair.store.catalog import SYSTEM_QUALITY_SETS
from onair.store.models import QualitySet

router = APIRouter(prefix="/streaming/quality_sets", tags=["quality_sets"])

def _set_out(q: QualitySet) -> dict[str, Any]:
    return {"id": q.id, "name": q.name, "default": q.is_default,
            "qualities": [{"id": x["id"], "name": x["name"]} for x in q.qualities]}


async def quality_sets_out(db: AsyncSession) -> dict[str, Any]:
    rows = (await db.execute(select(QualitySet).order_by(QualitySet.id))).scalars().all()
    return {"live": [_set_out(q) for q in rows if q.kind == "live"],
            "vod": [_set_out(q) for q in rows if q.kind == "vod"]}


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
        if target is None:  # null restores the system default
            target = next(q["id"] for q in SYSTEM_QUALITY_SETS if q["kind"] == kind and q["default"])
        if target not in {q.id for q in rows}:
            raise ApiError(400, {"status": 400, "error": f"unknown {kind} quality set id {target}"})
        for q in rows:
            q.is_default = q.id == target
    await db.commit()
    return await quality_sets_out(db)
