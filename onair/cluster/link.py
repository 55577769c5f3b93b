"""A node's link to the cluster: the registry's loops, and what the node's control and API ask of it.

Every RENEW_PERIOD_S the node renews its heartbeat and its feed leases and reports the live figures of the
streams it receives; every node keeps the others' reports (StatusBoard) for its API. A reaper clears the
live rows of nodes whose heartbeat expired (a survivor's cleanup of a node that died without a goodbye).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from onair.cluster.registry import RENEW_PERIOD_S, ControlBus, Membership, RedisContinuity, RedisLeases, key_prefix
from onair.cluster.status import RemoteLive, StatusBoard
from onair.package.continuity import OutputContinuity

__all__ = ["Cluster", "ClusterHooks"]

log = logging.getLogger("onair.cluster")

REAP_PERIOD_S = 1.0
SUBSCRIBE_TIMEOUT_S = 15.0


class ClusterHooks:
    """What the cluster calls back into the node (set by the composition root)."""

    def __init__(self, *, control: Callable[[str, int], Awaitable[None]],
                 snapshot: Callable[[], dict[int, dict[str, Any]]],
                 owners: Callable[[], Awaitable[set[str]]],
                 clear: Callable[[set[str]], Awaitable[list[int]]],
                 continuity: Callable[[], dict[int, OutputContinuity]],
                 catch_up: Callable[[], Awaitable[None]]) -> None:
        self.control = control  # a control event of another node: (kind, id)
        self.snapshot = snapshot  # this node's live streams: {stream id: status.snapshot_entry}
        self.owners = owners  # the nodes the database names as receiving a live feed
        self.clear = clear  # end the live state of the feeds these (dead) nodes received
        self.continuity = continuity  # where this node's live outputs have got to
        self.catch_up = catch_up  # apply the database's state: the channel was away, events may be lost


class Cluster:
    def __init__(self, redis_url: str, node: str, internal_url: str) -> None:
        self.hooks: ClusterHooks | None = None  # set by the composition root before start()
        self.node = node
        self.client = aioredis.Redis.from_url(redis_url, socket_timeout=2.0, socket_connect_timeout=2.0)
        prefix = key_prefix(redis_url)
        instance = secrets.token_hex(6)
        self.leases = RedisLeases(self.client, prefix, node, instance)
        self.continuity = RedisContinuity(self.client, prefix)
        self.members = Membership(self.client, prefix, node, internal_url)
        self.bus = ControlBus(self.client, prefix, instance)
        self.board = StatusBoard()
        self._tasks: list[asyncio.Task[None]] = []

    # -- what the node asks ---------------------------------------------------------------------------
    async def announce(self, kind: str, item_id: int) -> None:
        """A control event for the other nodes (the node processing the stream acts on it)."""
        try:
            await self.bus.publish({"kind": kind, "id": item_id})
        except (RedisError, OSError) as exc:  # the change is stored; nodes catch up from the database
            log.warning("control event not published", extra={"kind": kind, "error": type(exc).__name__})

    def remote(self, stream_id: int) -> RemoteLive | None:
        return self.board.get(stream_id, time.monotonic())

    async def origin_url(self, stream_id: int) -> str | None:
        """ONAIR_INTERNAL_URL of the other node receiving the stream's feed (primary first), None if none."""
        holder = await self.leases.holder_of(stream_id, False) or await self.leases.holder_of(stream_id, True)
        if holder is None or holder == self.node:
            return None
        return await self.members.url_of(holder)

    # -- life cycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        """Joins: fails with the reason when Redis cannot be reached (a node must not run half-clustered)."""
        if self.hooks is None:
            raise RuntimeError("Cluster.hooks must be set before start()")
        try:
            await self.client.ping()
        except (RedisError, OSError) as exc:  # the URL may hold a password: name the address only
            where = self.client.get_connection_kwargs()
            raise RuntimeError(f"cannot reach Redis at {where.get('host')}:{where.get('port')} (ONAIR_REDIS_URL): "
                               f"{type(exc).__name__}") from exc
        await self.members.beat()
        self._tasks = [asyncio.create_task(self.bus.listen(self._message, self.hooks.catch_up),
                                           name="cluster-channel"),
                       asyncio.create_task(self._beat_loop(), name="cluster-heartbeat"),
                       asyncio.create_task(self._reap_loop(), name="cluster-reaper")]
        # subscribed before the node reads its streams from the database: no change falls between the two
        try:
            await asyncio.wait_for(self.bus.subscribed.wait(), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            await self.stop()
            raise RuntimeError(f"cannot subscribe to the cluster channel on Redis within {SUBSCRIBE_TIMEOUT_S:g} s "
                               "(ONAIR_REDIS_URL)") from None
        log.info("joined the cluster", extra={"node": self.node})

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(RedisError, OSError):
            await self.members.leave()
        await self.client.aclose()

    # -- loops ----------------------------------------------------------------------------------------
    async def _message(self, message: dict[str, Any]) -> None:
        assert self.hooks is not None
        kind, item = message.get("kind"), message.get("id")
        if kind == "status":
            node = message.get("node")
            if isinstance(node, str):
                self.board.report(node, message.get("streams"), time.monotonic())
        elif isinstance(kind, str) and isinstance(item, int) and not isinstance(item, bool):
            await self.hooks.control(kind, item)

    async def _beat_loop(self) -> None:
        assert self.hooks is not None
        while True:
            started = time.monotonic()
            try:
                await self.members.beat()
            except (RedisError, OSError) as exc:
                log.warning("cluster heartbeat failed", extra={"error": type(exc).__name__})
            await self.leases.renew()  # renews what it can; reports what it lost
            await self._report()
            await asyncio.sleep(max(0.0, RENEW_PERIOD_S - (time.monotonic() - started)))

    async def _report(self) -> None:
        """The live figures and output records of this node's streams (a failure here must not stop the beat)."""
        assert self.hooks is not None
        try:
            streams = self.hooks.snapshot()
            await self.bus.publish({"kind": "status", "node": self.node,
                                    "streams": {str(k): v for k, v in streams.items()}})
            await self.continuity.save(self.hooks.continuity())
        except (RedisError, OSError):
            pass  # the figures are a second old elsewhere; the next report replaces them
        except Exception:
            log.exception("cluster report failed")

    async def _reap_loop(self) -> None:
        assert self.hooks is not None
        while True:
            await asyncio.sleep(REAP_PERIOD_S)
            try:
                owners = await self.hooks.owners() - {self.node}
                if not owners:
                    continue
                dead = owners - await self.members.alive(owners)
                if dead:
                    cleared = await self.hooks.clear(dead)
                    log.info("cleared the live state of lost nodes", extra={"nodes": sorted(dead),
                                                                            "streams": cleared})
            except Exception:  # the next round tries again
                log.exception("cluster reaper failed")
