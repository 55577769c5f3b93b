"""Webhooks (CONTRACT.md "Endpoints beyond the spec"): receivers of signed event notifications.

What is sent and when: onair.api.webhook_events; how: onair.outputs.webhooks.
"""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Path, Query, Response
from pydantic import Field, field_validator
from sqlalchemy import func, select

from onair.api.deps import DbDep, NodeDep
from onair.api.errors import field_error, not_found
from onair.api.schemas import ApiInput
from onair.outputs.webhooks import target_allowed
from onair.store.models import Webhook, WebhookDelivery
from onair.store.webhooks import EVENT_TYPES
from onair.timeutil import iso, utcnow

router = APIRouter(prefix="/streaming/webhooks", tags=["webhooks"])
PAGE_SIZE = 100
WebhookId = Path(..., ge=1, le=2**31 - 1, description="Webhook ID")


def _check_url(url: str) -> str:
    url = url.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host")
    return url


def _check_events(events: list[str]) -> list[str]:
    unknown = [e for e in events if e not in EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type {unknown[0][:64]!r}; known: {', '.join(EVENT_TYPES)}")
    if not events:
        raise ValueError("must name at least one event type")
    return [e for e in EVENT_TYPES if e in events]  # each once, in a fixed order


class WebhookUpdate(ApiInput):
    url: str | None = Field(None, max_length=2048)
    events: list[str] | None = Field(None, max_length=len(EVENT_TYPES) * 4)
    active: bool | None = None

    @field_validator("url")
    @classmethod
    def _valid_url(cls, v: str | None) -> str | None:
        return None if v is None else _check_url(v)

    @field_validator("events")
    @classmethod
    def _known_events(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _check_events(v)


class WebhookCreate(WebhookUpdate):
    url: str = Field(..., max_length=2048)  # type: ignore[assignment]
    active: bool = True  # type: ignore[assignment]


def webhook_out(w: Webhook) -> dict[str, Any]:
    return {"id": w.id, "url": w.url, "events": list(w.events or []), "secret": w.secret, "active": w.active,
            "created_at": iso(w.created_at), "updated_at": iso(w.updated_at)}


def delivery_out(d: WebhookDelivery) -> dict[str, Any]:
    return {"id": d.id, "event_id": d.event_id, "type": d.type, "status": d.state, "attempts": d.attempts,
            "last_status_code": d.last_status, "last_error": d.last_error,
            "next_retry_at": iso(d.next_attempt_at) if d.state == "pending" else None,
            "created_at": iso(d.created_at), "delivered_at": iso(d.delivered_at)}


def _check_target(node: NodeDep, url: str) -> None:
    reason = target_allowed(url, node.settings.allow_private_targets)
    if reason is not None:
        raise field_error("url", reason)


async def _load(db: DbDep, webhook_id: int) -> Webhook:
    webhook = await db.get(Webhook, webhook_id)
    if webhook is None:
        raise not_found()
    return webhook


@router.post("", status_code=201)
async def create_webhook(body: WebhookCreate, node: NodeDep, db: DbDep) -> dict[str, Any]:
    _check_target(node, body.url)
    now = utcnow()
    webhook = Webhook(url=body.url, events=list(body.events or EVENT_TYPES), secret=secrets.token_hex(32),
                      active=body.active, created_at=now, updated_at=now)
    db.add(webhook)
    await db.commit()
    return webhook_out(webhook)


@router.get("")
async def list_webhooks(db: DbDep, response: Response,
                        page: int = Query(1, ge=1, le=10**6)) -> list[dict[str, Any]]:
    total = (await db.execute(select(func.count(Webhook.id)))).scalar_one()
    rows = (await db.execute(select(Webhook).order_by(Webhook.id.desc())
                             .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))).scalars().all()
    response.headers["X-Total-Count"] = str(total)
    return [webhook_out(w) for w in rows]


@router.get("/{webhook_id}")
async def get_webhook(db: DbDep, webhook_id: int = WebhookId) -> dict[str, Any]:
    return webhook_out(await _load(db, webhook_id))


@router.patch("/{webhook_id}")
async def update_webhook(body: WebhookUpdate, node: NodeDep, db: DbDep,
                         webhook_id: int = WebhookId) -> dict[str, Any]:
    webhook = await _load(db, webhook_id)
    if body.url is not None:
        _check_target(node, body.url)
        webhook.url = body.url
    if body.events is not None:
        webhook.events = body.events
    if body.active is not None:
        webhook.active = body.active
    webhook.updated_at = utcnow()
    await db.commit()
    return webhook_out(webhook)


@router.delete("/{webhook_id}", status_code=204, response_class=Response)
async def delete_webhook(db: DbDep, webhook_id: int = WebhookId) -> Response:
    webhook = await _load(db, webhook_id)
    await db.delete(webhook)  # its deliveries go with it (ON DELETE CASCADE)
    await db.commit()
    return Response(status_code=204)


@router.get("/{webhook_id}/deliveries")
async def list_deliveries(db: DbDep, response: Response, webhook_id: int = WebhookId,
                          page: int = Query(1, ge=1, le=10**6)) -> list[dict[str, Any]]:
    await _load(db, webhook_id)
    where = WebhookDelivery.webhook_id == webhook_id
    total = (await db.execute(select(func.count(WebhookDelivery.id)).where(where))).scalar_one()
    rows = (await db.execute(select(WebhookDelivery).where(where).order_by(WebhookDelivery.id.desc())
                             .offset((page - 1) * PAGE_SIZE).limit(PAGE_SIZE))).scalars().all()
    response.headers["X-Total-Count"] = str(total)
    return [delivery_out(d) for d in rows]
