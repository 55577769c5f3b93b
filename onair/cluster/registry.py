"""The Redis side of the cluster registry: feed leases, node membership and the control channel.

Leases are plain keys claimed with `SET NX PX` and renewed (or released) by a compare-and-set Lua script,
so only the holder ever extends or deletes one; a node that dies stops renewing and its leases expire
within LEASE_TTL_MS. Membership is one key per node with the same kind of TTL. Keys and the channel carry
a prefix derived from the URL's database number (pub/sub channels are not per database in Redis).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from onair.package.continuity import OutputContinuity

__all__ = ["LEASE_TTL_MS", "RENEW_PERIOD_S", "ControlBus", "Membership", "RedisContinuity", "RedisLeases",
           "key_prefix"]

log = logging.getLogger("onair.cluster")

LEASE_TTL_MS = 3000  # a dead node's feeds are free again within this
MEMBER_TTL_MS = 3000
RENEW_PERIOD_S = 1.0  # two renewals may fail before a lease runs out
# An origin's output record outlives it this long: a feed back elsewhere within it carries the playlists on
CONTINUITY_TTL_MS = 60_000

# KEYS[1] the lease, ARGV[1] the holder, ARGV[2] the TTL: only the holder extends it
_RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0"""
_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0"""


def key_prefix(redis_url: str) -> str:
    db = urlsplit(redis_url).path.strip("/") or "0"
    return f"onair:{db}:"


class RedisLeases:
    """The hub's FeedLeases port on Redis: this node's claims on the feeds it receives and the sources it pulls."""

    def __init__(self, client: aioredis.Redis, prefix: str, node: str, instance: str) -> None:
        self.client = client
        self.prefix = prefix
        self.holder = f"{node}|{instance}"  # the instance: a restarted node never renews its old leases
        self._held: dict[tuple[int, str], float] = {}  # (stream id, slot) → monotonic time of its last renewal
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self.on_lost: Callable[[int, bool], None] = lambda stream_id, backup: None
        self.on_pull_lost: Callable[[int], None] = lambda stream_id: None

    def _key(self, stream_id: int, slot: str) -> str:
        return f"{self.prefix}lease:{stream_id}:{slot}"

    async def _claim(self, stream_id: int, slot: str) -> bool:
        taken_at = time.monotonic()
        if not await self.client.set(self._key(stream_id, slot), self.holder, nx=True, px=LEASE_TTL_MS):
            return False
        self._held[(stream_id, slot)] = taken_at
        return True

    async def _release_slot(self, stream_id: int, slot: str) -> None:
        if self._held.pop((stream_id, slot), None) is not None:
            await self._release(keys=[self._key(stream_id, slot)], args=[self.holder])

    async def claim(self, stream_id: int, backup: bool) -> bool:
        return await self._claim(stream_id, _feed_slot(backup))

    async def release(self, stream_id: int, backup: bool) -> None:
        await self._release_slot(stream_id, _feed_slot(backup))

    async def claim_pull(self, stream_id: int) -> bool:
        return await self._claim(stream_id, _PULL_SLOT)

    async def release_pull(self, stream_id: int) -> None:
        await self._release_slot(stream_id, _PULL_SLOT)

    async def holder_of(self, stream_id: int, backup: bool) -> str | None:
        """The node receiving the feed now, None when nobody does."""
        value = await self.client.get(self._key(stream_id, _feed_slot(backup)))
        if not value:
            return None
        return (value.decode() if isinstance(value, bytes) else str(value)).split("|", 1)[0]

    async def renew(self) -> None:
        """Extend every lease this node holds; a lease found gone, or not renewed within its TTL, is lost."""
        for held, renewed_at in list(self._held.items()):
            started = time.monotonic()
            try:
                kept = await self._renew(keys=[self._key(*held)], args=[self.holder, LEASE_TTL_MS])
            except (RedisError, OSError) as exc:
                if time.monotonic() - renewed_at < LEASE_TTL_MS / 1000:
                    log.warning("lease not renewed, retrying", extra={"stream_id": held[0], "slot": held[1],
                                                                      "error": type(exc).__name__})
                    continue
                kept = 0  # it has expired by now: another node may hold it
            if held not in self._held:
                continue  # released meanwhile
            if kept:
                self._held[held] = started
            else:
                del self._held[held]
                self._lost(*held)

    def _lost(self, stream_id: int, slot: str) -> None:
        if slot == _PULL_SLOT:
            self.on_pull_lost(stream_id)
        else:
            self.on_lost(stream_id, slot == _feed_slot(True))


_PULL_SLOT = "pull"  # who connects to a PULL stream's sources


def _feed_slot(backup: bool) -> str:
    return "b" if backup else "p"


class RedisContinuity:
    """The hub's ContinuityRecords port on Redis: each origin writes where its outputs are, every report."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def _key(self, stream_id: int) -> str:
        return f"{self.prefix}output:{stream_id}"

    async def save(self, records: dict[int, OutputContinuity]) -> None:
        if not records:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for stream_id, record in records.items():
                pipe.set(self._key(stream_id), json.dumps(record.to_json()), px=CONTINUITY_TTL_MS)
            await pipe.execute()

    async def load(self, stream_id: int) -> OutputContinuity | None:
        value = await self.client.get(self._key(stream_id))
        if not value:
            return None
        try:
            return OutputContinuity.from_json(json.loads(value))
        except ValueError:
            return None


class Membership:
    """This node's heartbeat key, and who else is alive."""

    def __init__(self, client: aioredis.Redis, prefix: str, node: str, internal_url: str) -> None:
        self.client = client
        self.prefix = prefix
        self.node = node
        self.internal_url = internal_url

    def _key(self, node: str) -> str:
        return f"{self.prefix}node:{node}"

    async def beat(self) -> None:
        await self.client.set(self._key(self.node), json.dumps({"internal_url": self.internal_url}),
                              px=MEMBER_TTL_MS)

    async def alive(self, nodes: set[str]) -> set[str]:
        names = sorted(nodes)
        if not names:
            return set()
        values = await self.client.mget([self._key(n) for n in names])
        return {n for n, v in zip(names, values, strict=True) if v is not None}

    async def url_of(self, node: str) -> str | None:
        """The ONAIR_INTERNAL_URL a live node registered, None when it is not alive."""
        value = await self.client.get(self._key(node))
        if not value:
            return None
        try:
            url = json.loads(value).get("internal_url")
        except (ValueError, AttributeError):
            return None
        return url if isinstance(url, str) else None

    async def leave(self) -> None:
        await self.client.delete(self._key(self.node))


Handler = Callable[[dict[str, Any]], Awaitable[None]]


class ControlBus:
    """One pub/sub channel for the cluster: control events and the nodes' live reports (JSON objects)."""

    def __init__(self, client: aioredis.Redis, prefix: str, instance: str) -> None:
        self.client = client
        self.channel = f"{prefix}control"
        self.instance = instance
        self.subscribed = asyncio.Event()  # set once the first subscription holds

    async def publish(self, message: dict[str, Any]) -> None:
        await self.client.publish(self.channel, json.dumps({**message, "from": self.instance}))

    async def listen(self, handler: Handler, resubscribed: Callable[[], Awaitable[None]]) -> None:
        """Calls `handler` with every message of the other nodes, until cancelled; reconnects after errors
        and then awaits `resubscribed` (messages sent while it was away are lost: pub/sub keeps nothing)."""
        backoff = 0.2
        while True:
            pubsub = self.client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if self.subscribed.is_set():
                    await self._catch_up(resubscribed)
                self.subscribed.set()
                backoff = 0.2
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is not None:
                        await self._deliver(handler, message.get("data"))
            except (RedisError, OSError) as exc:
                log.warning("cluster channel lost, resubscribing", extra={"error": type(exc).__name__})
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            finally:
                await pubsub.aclose()

    @staticmethod
    async def _catch_up(resubscribed: Callable[[], Awaitable[None]]) -> None:
        try:
            await resubscribed()
        except Exception:  # the messages from now on still count
            log.exception("cluster catch-up failed")

    async def _deliver(self, handler: Handler, data: Any) -> None:
        try:
            message = json.loads(data)
        except (TypeError, ValueError):
            log.warning("malformed cluster message dropped")
            return
        if not isinstance(message, dict) or message.get("from") == self.instance:
            return  # ours: already applied where it happened
        try:
            await handler(message)
        except Exception:  # one bad message must not stop the channel
            log.exception("cluster message failed", extra={"kind": str(message.get("kind"))[:32]})
