"""Video library (list, get, delete): recordings and clips of live streams."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path, Query, Response
from sqlalchemy import ColumnElement, func, or_, select

from onair.api.deps import DbDep, NodeDep
from onair.api.errors import field_error, not_found
from onair.api.serialize import video_out
from onair.store.models import Video

router = APIRouter(prefix="/streaming/videos", tags=["videos"])
VideoId = Path(..., ge=1, le=2**31 - 1)
LIST_FIELDS = {"id", "name", "duration", "status", "created_at", "updated_at", "hls_url", "screenshots",
               "converted_videos", "priority", "stream_id"}
STATUSES = {"empty", "pending", "viewable", "ready", "error"}


def _video_ids(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise field_error("id", "must be a comma-separated list of integers") from None
    if any(not 0 < i < 2**31 for i in ids):
        raise field_error("id", "must be a comma-separated list of video ids")
    return ids


def _search_condition(search: str) -> ColumnElement[bool]:
    conds = [Video.slug == search, Video.name.contains(search, autoescape=True)]
    if search.isdigit() and int(search) < 2**31:
        conds.append(Video.id == int(search))
    return or_(*conds)


def _wanted_fields(fields: str) -> set[str]:
    wanted = {f.strip() for f in fields.split(",") if f.strip()}
    unknown = wanted - LIST_FIELDS
    if unknown:
        raise field_error("fields", f"unknown fields: {', '.join(sorted(unknown))}")
    return wanted


@router.get("")
async def list_videos(node: NodeDep, db: DbDep, response: Response,
                      id: str | None = Query(None, max_length=4096),
                      stream_id: int | None = Query(None, ge=1, le=2**31 - 1),
                      status: str | None = Query(None, max_length=16),
                      client_user_id: int | None = Query(None, ge=-(2**31), le=2**31 - 1),
                      search: str | None = Query(None, max_length=255),
                      fields: str | None = Query(None, max_length=1024),
                      page: int = Query(1, ge=1, le=10**6),
                      per_page: int = Query(25, ge=1, le=1000)) -> list[dict[str, Any]]:
    q = select(Video)
    if id:
        q = q.where(Video.id.in_(_video_ids(id)))
    if stream_id is not None:
        q = q.where(Video.stream_id == stream_id)
    if status is not None:
        if status not in STATUSES:
            raise field_error("status", f"must be one of {', '.join(sorted(STATUSES))}")
        q = q.where(Video.status == status)
    if client_user_id is not None:
        q = q.where(Video.client_user_id == client_user_id)
    for name, value in (("id", id), ("status", status), ("search", search), ("fields", fields)):
        if value is not None and "\x00" in value:
            raise field_error(name, "must not contain NUL characters")
    if search:
        q = q.where(_search_condition(search))
    wanted = _wanted_fields(fields) if fields else None
    total = (await db.execute(select(func.count()).select_from(q.subquery()))).scalar_one()
    rows = (await db.execute(q.order_by(Video.id.desc())
                             .offset((page - 1) * per_page).limit(per_page))).scalars()
    response.headers["X-Total-Count"] = str(total)
    items = [video_out(node, v, list_item=True) for v in rows]
    if wanted:
        items = [{k: v for k, v in item.items() if k in wanted} for item in items]
    return items


@router.get("/{video_id}")
async def get_video(node: NodeDep, db: DbDep, video_id: int = VideoId) -> dict[str, Any]:
    v = await db.get(Video, video_id)
    if v is None:
        raise not_found()
    return video_out(node, v)


@router.delete("/{video_id}", status_code=204, response_class=Response)
async def delete_video(node: NodeDep, db: DbDep, video_id: int = VideoId) -> Response:
    v = await db.get(Video, video_id)
    if v is None:
        raise not_found()
    await db.delete(v)
    await db.commit()
    await node.control.video_deleted(video_id)  # a recording still feeding it stops, and stays deleted
    await node.library.delete_files(v)
    return Response(status_code=204)
