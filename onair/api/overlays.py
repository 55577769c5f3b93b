"""HTML overlays of a stream. Bodies are JSON arrays for the bulk calls (create, update_multiple)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.api.deps import DbDep, NodeDep
from onair.api.errors import field_error, not_found
from onair.api.schemas import OverlayFields, OverlayOut
from onair.api.serialize import overlay_out
from onair.api.streams import StreamId, load_stream
from onair.store.models import Overlay
from onair.timeutil import utcnow

router = APIRouter(prefix="/streaming/streams/{stream_id}/overlays", tags=["overlays"])
OverlayId = Path(..., ge=1, le=2**31 - 1)
MAX_OVERLAYS = 50


def _apply(o: Overlay, fields: OverlayFields) -> None:
    for key in fields.model_fields_set - {"id"}:
        value = getattr(fields, key)
        if key == "url" and value is None:
            raise field_error("url", "can't be blank")
        setattr(o, key, bool(value) if key == "stretch" else value)
    if o.stretch and any(v is not None for v in (o.x, o.y, o.width, o.height)):
        raise field_error("stretch", "cannot be combined with x, y, width or height")


async def _load(db: AsyncSession, stream_id: int, overlay_id: int) -> Overlay:
    o = await db.get(Overlay, overlay_id)
    if o is None or o.stream_id != stream_id:
        raise not_found()
    return o


async def _notify(node: NodeDep, stream_id: int) -> None:
    await node.control.overlays_changed(stream_id)


@router.post("", response_model=list[OverlayOut])
async def create_overlays(body: list[OverlayFields], node: NodeDep, db: DbDep,
                          stream_id: int = StreamId) -> list[dict[str, Any]]:
    await load_stream(db, stream_id)
    if len(body) > MAX_OVERLAYS:
        raise field_error("overlays", f"at most {MAX_OVERLAYS} per request")
    now = utcnow()
    created = []
    for fields in body:
        if not fields.url:
            raise field_error("url", "can't be blank")
        o = Overlay(stream_id=stream_id, url=fields.url, stretch=False, created_at=now, updated_at=now)
        _apply(o, fields)
        db.add(o)
        created.append(o)
    await db.commit()
    await _notify(node, stream_id)
    return [overlay_out(o) for o in created]


@router.patch("", response_model=list[OverlayOut])
async def update_overlays(body: list[OverlayFields], node: NodeDep, db: DbDep,
                          stream_id: int = StreamId) -> list[dict[str, Any]]:
    await load_stream(db, stream_id)
    out = []
    for fields in body:
        if fields.id is None:
            raise field_error("id", "can't be blank")
        o = await _load(db, stream_id, fields.id)
        _apply(o, fields)
        o.updated_at = utcnow()
        out.append(o)
    await db.commit()
    await _notify(node, stream_id)
    return [overlay_out(o) for o in out]


@router.get("", response_model=list[OverlayOut])
async def list_overlays(db: DbDep, stream_id: int = StreamId) -> list[dict[str, Any]]:
    await load_stream(db, stream_id)
    rows = (await db.execute(select(Overlay).where(Overlay.stream_id == stream_id)
                             .order_by(Overlay.id))).scalars()
    return [overlay_out(o) for o in rows]


@router.get("/{overlay_id}", response_model=OverlayOut)
async def get_overlay(db: DbDep, stream_id: int = StreamId, overlay_id: int = OverlayId) -> dict[str, Any]:
    return overlay_out(await _load(db, stream_id, overlay_id))


@router.patch("/{overlay_id}", response_model=OverlayOut)
async def update_overlay(body: OverlayFields, node: NodeDep, db: DbDep, stream_id: int = StreamId,
                         overlay_id: int = OverlayId) -> dict[str, Any]:
    o = await _load(db, stream_id, overlay_id)
    _apply(o, body)
    o.updated_at = utcnow()
    await db.commit()
    await _notify(node, stream_id)
    return overlay_out(o)


@router.delete("/{overlay_id}", status_code=204, response_class=Response)
async def delete_overlay(node: NodeDep, db: DbDep, stream_id: int = StreamId,
                         overlay_id: int = OverlayId) -> Response:
    o = await _load(db, stream_id, overlay_id)
    await db.delete(o)
    await db.commit()
    await _notify(node, stream_id)
    return Response(status_code=204)
