"""Instant clips cut from a stream's DVR window: create and list."""

from __future__ import annotations

import secrets
import string
import time
from typing import Any

from fastapi import APIRouter
from sqlalchemy import select

from onair.api.deps import DbDep, NodeDep
from onair.api.errors import ApiError, field_error
from onair.api.schemas import ClipCreate
from onair.api.streams import StreamId, load_stream
from onair.node import Node
from onair.store.catalog import live_quality_set
from onair.store.models import Clip
from onair.timeutil import iso, utcnow

router = APIRouter(prefix="/streaming/streams/{stream_id}/clip_recording", tags=["clips"])
_ALPHABET = string.ascii_lowercase + string.digits


def clip_out(node: Node, c: Clip, qs: int) -> dict[str, Any]:
    """qs: id of the quality set the stream transcodes with (its own, else the live default)."""
    base = f"{node.urls.http_base}/rec/{node.urls.public_id(c.stream_id)}/rec_{c.id}_qsid{qs}"
    renditions = node.library.clip_renditions(c)
    return {
        "id": c.id, "duration": c.duration, "start": c.start, "expiration": c.expiration,
        "vod_required": c.vod_required, "video_id": c.video_id, "created_at": iso(c.created_at),
        "hls_master": f"{base}_master.m3u8", "mp4_master": f"{base}_master.mp4", "renditions": renditions,
    }


@router.put("")
async def create_clip(body: ClipCreate, node: NodeDep, db: DbDep,
                      stream_id: int = StreamId) -> dict[str, Any]:
    stream = await load_stream(db, stream_id)
    if not stream.dvr_enabled:
        raise ApiError(422, {"status": 422, "error": "DVR is disabled for this stream"})
    if body.duration > stream.dvr_duration:
        raise field_error("duration", "must not exceed the stream's dvr_duration")
    now = int(time.time())
    start = body.start if body.start is not None else now
    if start < now - stream.dvr_duration:
        raise field_error("start", "is outside the DVR window")
    end = start + body.duration
    expiration = body.expiration if body.expiration is not None else end + 3600
    if expiration > 2**31 - 1:
        raise field_error("start" if body.expiration is None else "expiration", "is too far in the future")
    if not 60 <= expiration - end <= 14400:
        raise field_error("expiration", "clip lifetime after its end must be between 1 minute and 4 hours")
    clip = Clip(id="".join(secrets.choice(_ALPHABET) for _ in range(12)), stream_id=stream_id, start=start,
                duration=body.duration, expiration=expiration,
                vod_required=True if body.vod_required is None else body.vod_required, created_at=utcnow())
    db.add(clip)
    await db.commit()
    video_id = await node.control.clip_requested(clip.id)
    if video_id is not None:  # vod_required: the Video exists from now on, its files follow
        clip.video_id = video_id
    return clip_out(node, clip, (await live_quality_set(db, stream.quality_set_id)).id)


@router.get("")
async def list_clips(node: NodeDep, db: DbDep, stream_id: int = StreamId) -> list[dict[str, Any]]:
    stream = await load_stream(db, stream_id)
    now = int(time.time())
    rows = (await db.execute(select(Clip).where(Clip.stream_id == stream_id, Clip.expiration > now)
                             .order_by(Clip.created_at))).scalars()
    qs = (await live_quality_set(db, stream.quality_set_id)).id
    return [clip_out(node, c, qs) for c in rows]
