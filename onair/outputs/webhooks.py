"""Webhook deliveries: the sender POSTs what the outbox (onair.store.webhooks) holds.

At least once and across restarts: the table is the queue. A delivery is claimed by bumping its
`attempts` (compare-and-set, so two nodes on one database never send the same attempt twice) and
leasing it for `LEASE_S`; a run that dies mid-request leaves a lease that simply runs out. A 2xx
answer delivers it; anything else retries after 1 s, 2 s, 4 s … (at most an hour apart) until the
event is a day old, then it has failed.

One request at a time per webhook (events reach a healthy receiver in the order they happened) and
at most `concurrency` at a time overall, each bounded by a timeout: a slow receiver holds up nothing
but its own deliveries, and never the hub, which only writes rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair import __version__
from onair.outbound import TargetRefused, check_target
from onair.outbound.policy import parse_target, resolve_target
from onair.store.models import Webhook, WebhookDelivery
from onair.timeutil import utcnow

if TYPE_CHECKING:
    import httpx

__all__ = ["WebhookSender", "backoff", "resolved_refusal", "sign", "target_allowed"]

log = logging.getLogger("onair.outputs.webhooks")

MAX_AGE = timedelta(hours=24)  # retried for a day, then failed
MAX_BACKOFF_S = 3600.0
REQUEST_TIMEOUT_S = 10.0  # connect, send, first byte of the answer
TOTAL_TIMEOUT_S = 15.0  # the whole request
LEASE_S = TOTAL_TIMEOUT_S + 15.0  # a claimed delivery is due again after this, should its run have died
POLL_S = 5.0


# --- where webhooks may go (the node's one outbound policy, onair.outbound) --------------------------
WEBHOOK_SCHEMES = ("http", "https")


def target_allowed(url: str, allow_private: bool) -> str | None:
    """None when `url` may receive webhooks, else the reason it may not. A host name is checked by its
    addresses before each delivery (`resolved_refusal`); here literal addresses and localhost names."""
    try:
        target = check_target(url, WEBHOOK_SCHEMES, allow_private=allow_private)
    except TargetRefused as exc:
        return str(exc)
    host = target.host.rstrip(".")
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        return "must not point to a loopback address (ONAIR_ALLOW_PRIVATE_TARGETS is off)"
    return None


async def resolved_refusal(url: str, allow_private: bool) -> str | None:
    """`target_allowed`, and every address the host resolves to now (a name may point anywhere)."""
    reason = target_allowed(url, allow_private)
    if reason is not None or allow_private:
        return reason
    target = parse_target(url, WEBHOOK_SCHEMES)
    try:
        await resolve_target(target.host, target.port, allow_private=False)
    except TargetRefused as exc:
        return str(exc)
    return None


# --- what is sent --------------------------------------------------------------------------------------
def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The `Onair-Signature` header: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: 1, 2, 4 … at most an hour."""
    return float(min(MAX_BACKOFF_S, 2.0 ** max(0, min(attempts - 1, 20))))


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)  # SQLite hands back naive UTC


@dataclass(frozen=True)
class _Claim:
    delivery_id: int
    webhook_id: int
    attempt: int  # the number of this try (1 for the first)
    type: str
    url: str
    secret: str
    payload: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class _Outcome:
    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookSender:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], wake: asyncio.Event, *,
                 allow_private: bool, concurrency: int = 16, poll: float = POLL_S) -> None:
        self.sessionmaker = sessionmaker
        self.wake = wake  # set by the outbox when new rows commit, and here when a delivery finishes
        self.allow_private = allow_private
        self.concurrency = concurrency
        self.poll = poll
        self.inflight: dict[int, int] = {}  # delivery id → webhook id
        self.interrupted: set[int] = set()  # deliveries cancelled by stop(): due again at the next start
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop_task: asyncio.Task[None] | None = None
        self.client: httpx.AsyncClient | None = None

    def start(self) -> None:
        if self.loop_task is not None:
            return
        self.loop_task = asyncio.create_task(self._run(), name="webhook-sender")

    async def stop(self) -> None:
        if self.loop_task is None:
            return
        self.loop_task.cancel()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(self.loop_task, *self.tasks, return_exceptions=True)
        self.loop_task = None
        if self.interrupted:
            with contextlib.suppress(Exception):  # best effort: a lease runs out by itself too
                await self._release(sorted(self.interrupted))
            self.interrupted.clear()
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    # --- the loop ----------------------------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            self.wake.clear()
            try:
                delay = await self._dispatch()
            except Exception:
                log.exception("webhook dispatch failed")
                delay = self.poll
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.wake.wait()

    def _pending(self) -> Any:
        return (WebhookDelivery.state == "pending", Webhook.active.is_(True))

    async def _dispatch(self) -> float:
        """Start the oldest due delivery of every idle webhook; returns the seconds until the next is due."""
        now = utcnow()
        async with self.sessionmaker() as db:
            due = (await db.execute(
                select(WebhookDelivery.webhook_id, func.min(WebhookDelivery.id))
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(*self._pending(), WebhookDelivery.next_attempt_at <= now)
                .group_by(WebhookDelivery.webhook_id))).all()
            for webhook_id, delivery_id in sorted(due, key=lambda row: int(row[1])):
                if len(self.inflight) >= self.concurrency:
                    break
                if webhook_id not in self.inflight.values():
                    self._spawn(int(delivery_id), int(webhook_id))
            upcoming = (await db.execute(
                select(func.min(WebhookDelivery.next_attempt_at))
                .join(Webhook, Webhook.id == WebhookDelivery.webhook_id)
                .where(*self._pending(), WebhookDelivery.next_attempt_at > now))).scalar()
        # deliveries due now but not started (a busy webhook, the concurrency) start when a running one ends
        if upcoming is None:
            return self.poll
        return min(self.poll, max(0.01, (_aware(upcoming) - utcnow()).total_seconds()))

    def _spawn(self, delivery_id: int, webhook_id: int) -> None:
        self.inflight[delivery_id] = webhook_id
        task = asyncio.create_task(self._deliver(delivery_id))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, delivery_id: int) -> None:
        try:
            claim = await self._claim(delivery_id)
            if claim is None:
                return
            outcome = await self._post(claim)
            await self._record(claim, outcome)
        except asyncio.CancelledError:
            self.interrupted.add(delivery_id)
            raise
        except Exception:
            log.exception("webhook delivery failed", extra={"delivery_id": delivery_id})
        finally:
            self.inflight.pop(delivery_id, None)
            self.wake.set()  # the webhook's next delivery may go now

    # --- one delivery ------------------------------------------------------------------------------------
    async def _claim(self, delivery_id: int) -> _Claim | None:
        async with self.sessionmaker() as db:
            row = (await db.execute(select(WebhookDelivery, Webhook).join(Webhook)
                                    .where(WebhookDelivery.id == delivery_id))).first()
            if row is None:
                return None
            delivery, webhook = row
            if delivery.state != "pending" or not webhook.active:
                return None
            claim = _Claim(delivery_id, webhook.id, delivery.attempts + 1, delivery.type, webhook.url,
                           webhook.secret, dict(delivery.payload), _aware(delivery.created_at))
            claimed = await db.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id, WebhookDelivery.state == "pending",
                       WebhookDelivery.attempts == claim.attempt - 1)
                .values(attempts=claim.attempt, next_attempt_at=utcnow() + timedelta(seconds=LEASE_S))
                .execution_options(synchronize_session=False))
            await db.commit()
            return claim if getattr(claimed, "rowcount", 0) == 1 else None  # 0: another node took it

    async def _post(self, claim: _Claim) -> _Outcome:
        reason = await resolved_refusal(claim.url, self.allow_private)
        if reason is not None:
            return _Outcome(None, f"target refused: {reason}"[:200])
        body = json.dumps(claim.payload, separators=(",", ":"), ensure_ascii=False).encode()
        headers = {"Content-Type": "application/json", "Onair-Signature": sign(claim.secret, int(time.time()), body)}
        import httpx  # here, not at the top: a node without webhooks never loads it (about 10 MB resident)

        if self.client is None:
            self.client = httpx.AsyncClient(
                timeout=httpx.Timeout(REQUEST_TIMEOUT_S), follow_redirects=False, trust_env=False,
                limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
                headers={"User-Agent": f"onair/{__version__}"})
        try:
            async with asyncio.timeout(TOTAL_TIMEOUT_S):
                async with self.client.stream("POST", claim.url, content=body, headers=headers) as response:
                    status = response.status_code  # the answer's body is not read: only its status counts
        except TimeoutError:
            return _Outcome(None, "timed out")
        except httpx.HTTPError as exc:
            return _Outcome(None, (f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)[:200])
        return _Outcome(status, None if 200 <= status < 300 else f"HTTP {status}")

    async def _record(self, claim: _Claim, outcome: _Outcome) -> None:
        now = utcnow()
        values: dict[str, Any] = {"last_status": outcome.status, "last_error": outcome.error}
        fields = {"webhook_id": claim.webhook_id, "delivery_id": claim.delivery_id, "event": claim.type,
                  "attempt": claim.attempt, "status": outcome.status}
        if outcome.delivered:
            values.update(state="delivered", delivered_at=now)
            log.info("webhook delivered", extra=fields)
        elif now - claim.created_at >= MAX_AGE:
            values.update(state="failed")
            log.warning("webhook delivery failed for a day: given up", extra={**fields, "error": outcome.error})
        else:
            values.update(next_attempt_at=now + timedelta(seconds=backoff(claim.attempt)))
            log.info("webhook delivery failed: will retry", extra={**fields, "error": outcome.error})
        async with self.sessionmaker() as db:
            await db.execute(update(WebhookDelivery)
                             .where(WebhookDelivery.id == claim.delivery_id,
                                    WebhookDelivery.attempts == claim.attempt).values(**values))
            await db.commit()

    async def _release(self, delivery_ids: list[int]) -> None:
        """Deliveries interrupted by a stop are due at once for the next run, not after their lease."""
        async with self.sessionmaker() as db:
            await db.execute(update(WebhookDelivery)
                             .where(WebhookDelivery.id.in_(delivery_ids), WebhookDelivery.state == "pending")
                             .values(next_attempt_at=utcnow()))
            await db.commit()
