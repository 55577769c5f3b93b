"""Broadcasts, restreams and players: stored settings with wrapped bodies."""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Path, Query, Response
from fastapi.responses import HTMLResponse
from pydantic import BaseModel
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from onair.api.deps import DbDep, NodeDep
from onair.api.errors import field_error, not_found
from onair.api.schemas import BroadcastBody, PlayerBody, RestreamBody
from onair.node import Node
from onair.outbound import RESTREAM_SCHEMES, TargetRefused
from onair.store.models import Document, Stream
from onair.timeutil import utcnow

PAGE_SIZE = 100
DocId = Path(..., ge=1, le=2**31 - 1)

BROADCAST_DEFAULTS: dict[str, Any] = {
    "status": "Pending", "pending_message": None, "stream_ids": [], "player_id": None, "ad_id": None,
    "poster": None, "share_url": None, "custom_iframe_url": None, "show_dvr_after_finish": False,
}
RESTREAM_DEFAULTS: dict[str, Any] = {
    "name": None, "stream_id": None, "uri": None, "active": True, "live": False, "source": "original",
    "no_audio": False, "no_audio_mode": None, "client_user_id": None, "playlist_id": None, "quality_id": None,
}
PLAYER_DEFAULTS: dict[str, Any] = {
    "framework": None, "design": None, "custom_css": None, "js_url": None, "skin_is_url": None,
    "bg_color": None, "fg_color": None, "text_color": None, "hover_color": None, "logo": None,
    "logo_position": None, "autoplay": False, "mute": False, "disable_skin": False,
    "save_options_to_cookies": True, "show_sharing": True, "speed_control": False,
}

Validator = Callable[[Node, AsyncSession, dict[str, Any]], Awaitable[None]]
Decorator = Callable[[Node, Document], dict[str, Any]]


async def _validate_broadcast(node: Node, db: AsyncSession, data: dict[str, Any]) -> None:
    if not str(data.get("name") or "").strip():
        raise field_error("name", "can't be blank")
    if data.get("status"):
        data["status"] = str(data["status"]).capitalize()


async def _validate_restream(node: Node, db: AsyncSession, data: dict[str, Any]) -> None:
    sid = data.get("stream_id")
    if sid is None or await db.get(Stream, sid) is None:
        raise field_error("stream", "must exist")
    if data.get("uri"):
        try:
            node.outbound.check(str(data["uri"]), RESTREAM_SCHEMES)  # a literal private address, unless allowed
        except TargetRefused as exc:
            raise field_error("uri", str(exc)) from None


async def _validate_player(node: Node, db: AsyncSession, data: dict[str, Any]) -> None:
    if not str(data.get("name") or "").strip():
        raise field_error("name", "can't be blank")


def _broadcast_extra(node: Node, d: Document) -> dict[str, Any]:
    url = f"{node.urls.http_base}/broadcasts/{node.settings.client_id}_{d.id}"
    return {"iframe_url": url, "poster_thumb": d.data.get("poster"), "custom_messages": None,
            "client_id": node.settings.client_id, "client_user_id": None,
            "iframe_embed_code": f'<iframe width="560" height="315" src="{html.escape(url)}" frameborder="0" '
                                 'allowfullscreen allow="autoplay; fullscreen"></iframe>'}


def _client_extra(node: Node, d: Document) -> dict[str, Any]:
    return {"client_id": node.settings.client_id}


def _restream_extra(node: Node, d: Document) -> dict[str, Any]:
    # `live` is runtime state: whether the pusher is sending to the target now
    return {"client_id": node.settings.client_id, "live": node.control.restream_live(d.id)}


def document_router(kind: str, path: str, envelope: str, body_model: type[BaseModel],
                    defaults: dict[str, Any], validate: Validator, extra: Decorator) -> APIRouter:
    router = APIRouter(prefix=f"/streaming/{path}", tags=[path])

    def out(node: Node, d: Document) -> dict[str, Any]:
        return {"id": d.id, **defaults, **d.data, **extra(node, d)}

    async def load(db: AsyncSession, doc_id: int) -> Document:
        d = await db.get(Document, doc_id)
        if d is None or d.kind != kind:
            raise not_found()
        return d

    async def create(body: body_model, node: NodeDep, db: DbDep) -> dict[str, Any]:  # type: ignore[valid-type]
        data = getattr(body, envelope).model_dump(exclude_unset=True)
        await validate(node, db, data)
        now = utcnow()
        d = Document(kind=kind, data=data, created_at=now, updated_at=now)
        db.add(d)
        await db.commit()
        await node.control.document_changed(kind, d.id)
        return out(node, d)

    async def update(body: body_model, node: NodeDep, db: DbDep,  # type: ignore[valid-type]
                     doc_id: int = DocId) -> dict[str, Any]:
        d = await load(db, doc_id)
        data = {**d.data, **getattr(body, envelope).model_dump(exclude_unset=True)}
        await validate(node, db, data)
        d.data = data
        d.updated_at = utcnow()
        await db.commit()
        await node.control.document_changed(kind, d.id)
        return out(node, d)

    async def list_(node: NodeDep, db: DbDep, response: Response,
                    page: int = Query(1, ge=1, le=10**6)) -> list[dict[str, Any]]:
        total = (await db.execute(select(func.count(Document.id)).where(Document.kind == kind))).scalar_one()
        rows = (await db.execute(select(Document).where(Document.kind == kind).order_by(Document.id.desc())
                                 .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))).scalars().all()
        response.headers["X-Total-Count"] = str(total)
        return [out(node, d) for d in rows]

    async def get(node: NodeDep, db: DbDep, doc_id: int = DocId) -> dict[str, Any]:
        return out(node, await load(db, doc_id))

    async def delete(node: NodeDep, db: DbDep, doc_id: int = DocId) -> Response:
        d = await load(db, doc_id)
        await db.delete(d)
        await db.commit()
        await node.control.document_changed(kind, doc_id)
        return Response(status_code=204)

    # the annotations are strings (PEP 563) naming a closure variable FastAPI cannot resolve:
    # give it the real model, or the body would be read as a missing query parameter
    create.__annotations__["body"] = body_model
    update.__annotations__["body"] = body_model
    router.add_api_route("", create, methods=["POST"], name=f"create_{kind}")
    router.add_api_route("", list_, methods=["GET"], name=f"list_{kind}s")
    router.add_api_route("/{doc_id}", get, methods=["GET"], name=f"get_{kind}")
    router.add_api_route("/{doc_id}", update, methods=["PATCH"], name=f"update_{kind}")
    router.add_api_route("/{doc_id}", delete, methods=["DELETE"], status_code=204, response_class=Response,
                         name=f"delete_{kind}")
    return router


broadcasts = document_router("broadcast", "broadcasts", "broadcast", BroadcastBody, BROADCAST_DEFAULTS,
                             _validate_broadcast, _broadcast_extra)
restreams = document_router("restream", "restreams", "restream", RestreamBody, RESTREAM_DEFAULTS,
                            _validate_restream, _restream_extra)
players = document_router("player", "players", "player", PlayerBody, PLAYER_DEFAULTS,
                          _validate_player, _client_extra)


@broadcasts.get("/{doc_id}/spectators")
async def spectators(node: NodeDep, db: DbDep, doc_id: int = DocId) -> dict[str, int]:
    d = await db.get(Document, doc_id)
    if d is None or d.kind != "broadcast":
        raise not_found()
    from onair.player.spectators import SPECTATORS

    count = sum(node.control.viewers(sid) for sid in d.data.get("stream_ids", []) or [])
    # viewers of the broadcast page (info.json polls within 30 s); they also watch the streams: no double count
    return {"spectators_count": max(count, SPECTATORS.count(doc_id))}


@players.get("/{doc_id}/preview", response_class=HTMLResponse)
async def preview(node: NodeDep, db: DbDep, doc_id: int = DocId) -> HTMLResponse:
    d = await db.get(Document, doc_id)
    if d is None or d.kind != "player":
        raise not_found()
    from onair.player.pages import render_preview
    from onair.player.settings import display_settings

    # the player page in its demo state with this player's display settings applied
    return render_preview(display_settings(d.data, doc_id), str(d.data.get("name") or "Player preview"))
