"""Streams: the stream resource, its recording and DVR controls, its playback tokens."""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import JSONResponse
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.api.deps import DbDep, NodeDep, SnapshotsDep, StreamSnapshot
from onair.api.errors import field_error, not_found
from onair.api.schemas import (
    PlaybackTokenCreate,
    PlaybackTokenOut,
    StreamCreate,
    StreamFields,
    StreamOut,
    StreamUpdate,
)
from onair.api.serialize import overlay_out, stream_out, video_out
from onair.delivery.signing import mint_token
from onair.outbound import PULL_SCHEMES, TargetRefused
from onair.store.models import Document, Overlay, QualitySet, Stream, Video, new_playback_secret
from onair.timeutil import iso, utcnow

router = APIRouter(prefix="/streaming/streams", tags=["streams"])
PAGE_SIZE = 100
StreamId = Path(..., ge=1, le=2**31 - 1, description="Stream ID")


def new_token() -> str:
    return secrets.token_hex(16)


async def load_stream(db: AsyncSession, stream_id: int) -> Stream:
    stream = await db.get(Stream, stream_id)
    if stream is None:
        raise not_found()
    return stream


async def stream_response(node: NodeDep, db: AsyncSession, stream: Stream,
                          with_broadcasts: bool = False) -> dict[str, Any]:
    overlays = (await db.execute(select(Overlay).where(Overlay.stream_id == stream.id)
                                 .order_by(Overlay.id))).scalars().all()
    out = stream_out(node, stream, [overlay_out(o) for o in overlays])
    if with_broadcasts:
        docs = (await db.execute(select(Document).where(Document.kind == "broadcast"))).scalars().all()
        out["broadcasts"] = broadcasts_of(stream, docs)
    return out


def broadcasts_of(stream: Stream, docs: Sequence[Document]) -> list[dict[str, Any]]:
    return [{"id": d.id, **d.data} for d in docs
            if d.id in (stream.broadcast_ids or []) or stream.id in (d.data.get("stream_ids") or [])]


async def _check_fields(node: NodeDep, db: AsyncSession, fields: StreamFields, stream: Stream | None) -> None:
    if "quality_set_id" in fields.model_fields_set and fields.quality_set_id is not None:
        qs = await db.get(QualitySet, fields.quality_set_id)
        if qs is None or qs.kind != "live":
            raise field_error("quality_set_id", "must be the id of a live quality set")
    pull = fields.pull if fields.pull is not None else (stream.pull if stream else False)
    uri = fields.uri if "uri" in fields.model_fields_set else (stream.uri if stream else None)
    if pull and not uri:
        raise field_error("uri", "can't be blank when pull is true")
    if "uri" in fields.model_fields_set and fields.uri:
        for source in fields.uri.split():
            try:
                node.outbound.check(source, PULL_SCHEMES)  # a literal private address, unless allowed
            except TargetRefused as exc:
                raise field_error("uri", str(exc)) from None


StreamPage = tuple[int, list[StreamSnapshot], list[Document]]  # total, the page's streams, broadcasts


async def _stream_page(db: AsyncSession, page: int, with_broadcasts: bool) -> StreamPage:
    total = (await db.execute(select(func.count(Stream.id)))).scalar_one()
    rows = (await db.execute(select(Stream).order_by(Stream.id.desc())
                             .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))).scalars().all()
    overlays: dict[int, list[dict[str, Any]]] = {s.id: [] for s in rows}
    if rows:  # one query for the page's overlays, not one per stream
        for o in (await db.execute(select(Overlay).where(Overlay.stream_id.in_(overlays))
                                   .order_by(Overlay.id))).scalars():
            overlays[o.stream_id].append(overlay_out(o))
    docs = list((await db.execute(select(Document).where(Document.kind == "broadcast"))).scalars()) \
        if with_broadcasts else []
    return total, [(s, overlays[s.id]) for s in rows], docs


@router.get("", response_model=list[StreamOut], response_model_exclude_none=False)
async def list_streams(node: NodeDep, db: DbDep, response: Response, snapshots: SnapshotsDep,
                       page: int = Query(1, ge=1, le=10**6),
                       with_broadcasts: int = Query(0, ge=0, le=1)) -> list[dict[str, Any]]:
    total, streams, docs = await snapshots.get(("page", page, with_broadcasts),
                                               lambda: _stream_page(db, page, bool(with_broadcasts)))
    response.headers["X-Total-Count"] = str(total)
    out = []
    for stream, overlays in streams:
        item = stream_out(node, stream, overlays)
        if with_broadcasts:
            item["broadcasts"] = broadcasts_of(stream, docs)
        out.append(item)
    return out


@router.post("", response_model=StreamOut)
async def create_stream(body: StreamCreate, node: NodeDep, db: DbDep) -> dict[str, Any]:
    await _check_fields(node, db, body, None)
    now = utcnow()
    values = body.model_dump(exclude_unset=True)
    stream = Stream(
        name=body.name, token=new_token(), created_at=now, updated_at=now,
        active=False, pull=False, auto_record=False, record_type="origin", dvr_enabled=False,
        dvr_duration=3600, hls_mpegts_endlist_tag=True, reconnect_window=0, html_overlay=False, projection="regular",
        broadcast_ids=[], live=False, backup_live=False, playback_signed=False, playback_secret=new_playback_secret(),
    )
    for key, value in values.items():
        if value is not None or key in ("uri", "srt_passphrase", "client_entity_data"):
            setattr(stream, key, value)
    db.add(stream)
    await db.commit()
    await node.control.stream_changed(stream)
    return await stream_response(node, db, stream)


async def _stream_snapshot(db: AsyncSession, stream_id: int) -> StreamSnapshot:
    stream = await load_stream(db, stream_id)
    overlays = (await db.execute(select(Overlay).where(Overlay.stream_id == stream.id)
                                 .order_by(Overlay.id))).scalars().all()
    return stream, [overlay_out(o) for o in overlays]


@router.get("/{stream_id}", response_model=StreamOut)
async def get_stream(node: NodeDep, db: DbDep, snapshots: SnapshotsDep,
                     stream_id: int = StreamId) -> dict[str, Any]:
    # dashboards poll this: the rows come from a snapshot until the next write; live fields are read fresh
    stream, overlays = await snapshots.get(stream_id, lambda: _stream_snapshot(db, stream_id))
    return stream_out(node, stream, overlays)


@router.patch("/{stream_id}", response_model=StreamOut)
async def update_stream(body: StreamUpdate, node: NodeDep, db: DbDep,
                        stream_id: int = StreamId) -> dict[str, Any]:
    stream = await load_stream(db, stream_id)
    fields = body.stream
    await _check_fields(node, db, fields, stream)
    for key in fields.model_fields_set:
        value = getattr(fields, key)
        if key == "name" and (value is None or not str(value).strip()):
            raise field_error("name", "can't be blank")
        nullable = key in ("uri", "srt_passphrase", "client_entity_data", "quality_set_id", "cdn_id",
                           "client_user_id")
        if value is None and not nullable:
            continue
        setattr(stream, key, value)
    stream.updated_at = utcnow()
    await db.commit()
    await node.control.stream_changed(stream)
    return await stream_response(node, db, stream)


@router.delete("/{stream_id}", status_code=204, response_class=Response)
async def delete_stream(node: NodeDep, db: DbDep, stream_id: int = StreamId) -> Response:
    stream = await load_stream(db, stream_id)
    await node.control.stream_deleted(stream_id)
    await db.delete(stream)
    await db.commit()
    return Response(status_code=204)


@router.post("/{stream_id}/reset_push_token", response_model=StreamOut)
async def reset_push_token(node: NodeDep, db: DbDep, stream_id: int = StreamId) -> dict[str, Any]:
    stream = await load_stream(db, stream_id)
    stream.token = new_token()
    stream.updated_at = utcnow()
    await db.commit()
    await node.control.stream_deleted(stream_id)  # ends running ingest: the old token is void at once
    await node.control.stream_changed(stream)
    return await stream_response(node, db, stream)


@router.post("/{stream_id}/playback_tokens", status_code=201, response_model=PlaybackTokenOut)
async def create_playback_token(node: NodeDep, db: DbDep, body: PlaybackTokenCreate | None = None,
                                stream_id: int = StreamId) -> dict[str, Any]:
    """Playback URLs that play until `expires_at` (or until `reset_playback_tokens`), signed stream or not."""
    stream = await load_stream(db, stream_id)
    expires_at = int(time.time()) + (body.expires_in if body is not None else 3600)
    token = mint_token(stream.playback_secret, stream.id, expires_at)
    return {"token": token, "expires_at": iso(datetime.fromtimestamp(expires_at, UTC)),
            **node.urls.playback_urls(stream.id, token)}


@router.post("/{stream_id}/reset_playback_tokens", response_model=StreamOut)
async def reset_playback_tokens(node: NodeDep, db: DbDep, stream_id: int = StreamId) -> dict[str, Any]:
    """A new playback secret: every playback token minted so far stops playing at once."""
    stream = await load_stream(db, stream_id)
    stream.playback_secret = new_playback_secret()
    stream.updated_at = utcnow()
    await db.commit()
    await node.control.stream_changed(stream)
    return await stream_response(node, db, stream)


@router.put("/{stream_id}/dvr_cleanup", status_code=204, response_class=Response)
async def dvr_cleanup(node: NodeDep, db: DbDep, stream_id: int = StreamId) -> Response:
    await load_stream(db, stream_id)
    await node.control.dvr_cleanup(stream_id)
    return Response(status_code=204)


@router.put("/{stream_id}/start_recording", responses={204: {"description": "recording started"}})
async def start_recording(node: NodeDep, db: DbDep, stream_id: int = StreamId) -> Response:
    stream = await load_stream(db, stream_id)
    if not (stream.live or stream.backup_live):
        raise field_error("stream", "is not live: recording needs a live stream")
    usage = shutil.disk_usage(node.settings.data_dir)
    free_mb, used_mb, limit_mb = usage.free / 2**20, usage.used / 2**20, usage.total / 2**20
    if free_mb < node.settings.min_free_mb:
        raise field_error("name", "Error text: No space for recording the stream.")  # the platform's wording
    await node.control.start_recording(stream_id)
    if free_mb >= 2 * node.settings.min_free_mb:
        return Response(status_code=204)
    # started (200, not 204), with a warning that storage is running out
    client = {"id": node.settings.client_id, "storage_limit_mb": int(limit_mb), "storage_usage_mb": round(used_mb, 1)}
    return JSONResponse({
        "data": {"stream": {"id": stream_id, "client": client}},
        "warnings": [{"key": "client_storage_almost_exceeded",
                      "meta": {"storage_limit_mb": int(limit_mb), "storage_usage_mb": round(used_mb, 1)},
                      "source_object": {"id": node.settings.client_id, "type": "client"}}],
        "errors": [],
    })


@router.put("/{stream_id}/stop_recording")
async def stop_recording(node: NodeDep, db: DbDep, stream_id: int = StreamId) -> Any:
    await load_stream(db, stream_id)
    video_id = await node.control.stop_recording(stream_id)
    video = await db.get(Video, video_id) if video_id is not None else None
    return video_out(node, video) if video is not None else {}  # the new Video, or {} if nothing was recorded
