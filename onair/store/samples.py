"""Statistics samples: what each live stream's source and viewers looked like, every `period` seconds.

Source parameters come from the hub's live streams (the feeding publisher and its transcoder), viewers
from each stream's viewer window; viewer addresses are stored hashed, never as they are.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.hub.publisher import Publisher
from onair.hub.registry import StreamHub
from onair.store.db import disk_full
from onair.store.models import StreamSample, ViewerSample
from onair.timeutil import utcnow

__all__ = ["StatsSampler"]

log = logging.getLogger("onair.store.samples")


class StatsSampler:
    def __init__(self, hub: StreamHub, sessionmaker: async_sessionmaker[AsyncSession], period: float) -> None:
        self.hub = hub
        self.sessionmaker = sessionmaker
        self.period = period
        # per stream: the feeding publisher last sampled and its byte count then (a new one starts at 0)
        self._last_bytes: dict[int, tuple[Publisher, int]] = {}
        self._task: asyncio.Task[None] | None = None
        self._disk_full = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="stats-sampler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _loop(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(max(0.0, last + self.period - time.monotonic()))
            now = time.monotonic()
            try:
                await self.sample(now - last, now)
                self._disk_full = False
            except Exception as exc:  # a stats hiccup must never stop the loop
                if not disk_full(exc):
                    log.exception("stats sampling failed")
                elif not self._disk_full:  # once per episode: the samples of a full disk are lost
                    self._disk_full = True
                    log.warning("disk full: statistics samples are not stored until there is room again")
            last = now

    async def sample(self, period: float, now: float) -> None:
        at = utcnow()
        rows: list[StreamSample | ViewerSample] = [*self._source_rows(at, period), *self._viewer_rows(at, period,
                                                                                                       now)]
        if rows:
            async with self.sessionmaker() as db:
                db.add_all(rows)
                await db.commit()

    def _source_rows(self, at: datetime, period: float) -> list[StreamSample]:
        rows = []
        for stream in self.hub.streams():
            pub = stream.feeding
            if pub is None or not stream.is_live:
                continue  # a standby feed is not what viewers get
            st = stream.transcoder.stats
            last_pub, last = self._last_bytes.get(stream.stream_id, (pub, 0))
            delta = pub.bytes_in - (last if last_pub is pub else 0)
            self._last_bytes[stream.stream_id] = (pub, pub.bytes_in)
            if not st.source_height:
                continue
            fps = st.source_fps or 0.0
            rows.append(StreamSample(stream_id=stream.stream_id, at=at, bitrate_kbps=delta * 8 / 1000 / period,
                                     fps=fps, height=st.source_height, keyframe_interval=2,
                                     frames=int(fps * period)))
        return rows

    def _viewer_rows(self, at: datetime, period: float, now: float) -> list[ViewerSample]:
        """One row per watched stream: viewers seen in the last period (hashed), each counted for it."""
        rows = []
        for stream in self.hub.streams():
            seen = stream.viewers.seen_since(now - period)
            stream.viewers.expire(now, older_than=period + stream.viewers.window)  # keep the map bounded
            if seen:
                keys = sorted(hashlib.sha256(c.encode()).hexdigest()[:16] for c in seen)
                rows.append(ViewerSample(stream_id=stream.stream_id, client_user_id=stream.config.client_user_id,
                                         at=at, viewers=keys, watch_seconds=len(seen) * period))
        return rows
