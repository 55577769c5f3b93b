"""The webhook outbox: delivery rows written into the transaction of the change they report.

`Outbox.add` adds one row per active webhook subscribed to the event type to the caller's session; the
caller commits (the live-state update, the Video becoming ready) and the rows exist exactly when the
change does. `wake` is set once such a transaction commits, so the sender (onair.outputs.webhooks) picks
the rows up at once instead of at its next poll.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from onair.store.models import Webhook, WebhookDelivery
from onair.timeutil import iso, utcnow

__all__ = ["EVENT_TYPES", "Outbox"]

# every type a webhook may subscribe to (CONTRACT.md "Webhook deliveries")
EVENT_TYPES = ("stream.live", "stream.idle", "stream.backup_live", "stream.reconnecting", "video.ready")


class Outbox:
    def __init__(self) -> None:
        self.wake = asyncio.Event()

    async def subscribers(self, db: AsyncSession, event_type: str) -> list[int]:
        """Ids of the active webhooks that receive `event_type`."""
        rows = (await db.execute(select(Webhook.id, Webhook.events).where(Webhook.active.is_(True))
                                 .order_by(Webhook.id))).all()
        return [wid for wid, events in rows if event_type in (events or [])]

    async def add(self, db: AsyncSession, event_type: str, data: dict[str, Any],
                  webhook_ids: list[int] | None = None) -> int:
        """One delivery of a new event per subscribed webhook, in `db`'s transaction; returns how many."""
        targets = webhook_ids if webhook_ids is not None else await self.subscribers(db, event_type)
        if not targets:
            return 0
        now = utcnow()
        event_id = str(uuid.uuid4())
        body = {"id": event_id, "type": event_type, "created_at": iso(now), "data": data}
        for webhook_id in targets:
            db.add(WebhookDelivery(webhook_id=webhook_id, event_id=event_id, type=event_type, created_at=now,
                                   payload=body, state="pending", attempts=0, next_attempt_at=now))
        sync_session = db.sync_session
        if not event.contains(sync_session, "after_commit", self._committed):
            event.listen(sync_session, "after_commit", self._committed)
        return len(targets)

    def _committed(self, session: Session) -> None:
        self.wake.set()
