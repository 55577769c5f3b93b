"""Primary and backup feeds of one live output, and the switch between them (spec R17–R19).

A stream may have a primary and a backup publisher at once (each key one connection). Only one of
them feeds the transcoder; the other is followed by a :class:`StandbyTracker` so that it can take
over at a decodable point. :func:`failover_loop` switches to the other feed when the feeding one has
delivered nothing for `failover_timeout` seconds (or is gone) and the other is delivering, and back to
the primary once it has delivered continuously for `failback_delay` seconds. A switch starts a new
transcoder on the other input (its format may differ: FLV from RTMP, MPEG-TS from SRT); the
packager continues the same playlists across it (see TrackPackager.restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from onair.formats.flv_tracker import FlvTracker

if TYPE_CHECKING:
    from onair.hub.registry import LiveOutput, Publisher, StreamLifecycle

__all__ = ["FeedSwitch", "StandbyTracker", "failover_loop", "live_values"]

log = logging.getLogger("onair.failover")

_CHECK_PERIOD = 0.25


class _Transcoding(Protocol):
    async def write(self, data: bytes) -> None: ...


class StandbyTracker:
    """Follows the bytes of a publisher that is not feeding, to start feeding at a decodable point."""

    def __init__(self, input_format: str) -> None:
        self._flv = FlvTracker() if input_format == "flv" else None

    def feed(self, data: bytes) -> None:
        if self._flv is not None:
            self._flv.feed(data)

    def start_data(self) -> bytes:
        """What a new decoder needs before the next live bytes (FLV: header, codec config, current GOP)."""
        if self._flv is None:
            return b""  # MPEG-TS: the demuxer resynchronises on packet boundaries by itself
        data = self._flv.resume_data()
        if data is not None:
            return data
        return self._flv.config(0) + self._flv.pending if self._flv.header is not None else b""


class FeedSwitch:
    """Which publisher of an output feeds its transcoder."""

    def __init__(self, output: LiveOutput) -> None:
        self.output = output
        self.primary: Publisher | None = None
        self.backup: Publisher | None = None
        self.feeding: Publisher | None = None
        self.lock = asyncio.Lock()  # a switch and the feeding writes never interleave
        self.switches = 0
        self._standby: dict[int, StandbyTracker] = {}
        self._since: dict[int, float] = {}  # publisher id -> start of its current delivering run
        self._last: dict[int, float] = {}

    # -- membership ---------------------------------------------------------------------------------
    def attach(self, pub: Publisher, *, feeding: bool) -> None:
        if pub.key.backup:
            self.backup = pub
        else:
            self.primary = pub
        if feeding:
            self.feeding = pub
        else:
            self._standby[id(pub)] = StandbyTracker(pub.input_format)

    def detach(self, pub: Publisher) -> Publisher | None:
        """Forget `pub`; returns the publisher that remains, if any."""
        if self.primary is pub:
            self.primary = None
        if self.backup is pub:
            self.backup = None
        self._standby.pop(id(pub), None)
        self._since.pop(id(pub), None)
        self._last.pop(id(pub), None)
        return self.primary or self.backup

    @property
    def publishers(self) -> list[Publisher]:
        return [p for p in (self.primary, self.backup) if p is not None]

    # -- data path ----------------------------------------------------------------------------------
    async def write(self, pub: Publisher, data: bytes) -> None:
        now = time.monotonic()
        key = id(pub)
        last = self._last.get(key)
        if last is None or now - last > self.output.settings.failover_timeout:
            self._since[key] = now
        self._last[key] = now
        async with self.lock:
            if self.feeding is pub:
                await self.output.transcoder.write(data)
            else:
                tracker = self._standby.get(key)
                if tracker is not None:
                    tracker.feed(data)

    def delivering(self, pub: Publisher | None, now: float) -> bool:
        if pub is None or pub.closed.is_set():
            return False
        last = self._last.get(id(pub))
        return last is not None and now - last < self.output.settings.failover_timeout

    def delivering_for(self, pub: Publisher, now: float) -> float:
        since = self._since.get(id(pub))
        return now - since if since is not None and self.delivering(pub, now) else 0.0

    # -- switching ----------------------------------------------------------------------------------
    def choose(self, now: float) -> Publisher | None:
        """The publisher that should feed now, or None to keep the current one."""
        cur, primary, backup = self.feeding, self.primary, self.backup
        if cur is None or cur not in (primary, backup) or not self.delivering(cur, now):
            other = backup if cur is primary else primary
            if self.delivering(other, now):
                return other
            if cur not in (primary, backup):  # the feeder left: take whoever is connected
                return primary or backup
            return None
        if cur is backup and primary is not None:
            if self.delivering_for(primary, now) >= self.output.settings.failback_delay:
                return primary
        return None

    async def switch_to(self, pub: Publisher, reason: str) -> None:
        async with self.lock:
            if self.feeding is pub or self.output.ended:
                return
            old = self.output.transcoder
            tracker = self._standby.pop(id(pub), None)
            new = self.output.replace_transcoder(pub.input_format)
            await new.start()
            head = tracker.start_data() if tracker is not None else b""
            if head:
                await new.write(head)
            if self.feeding is not None and self.feeding in (self.primary, self.backup):
                self._standby[id(self.feeding)] = StandbyTracker(self.feeding.input_format)
            self.feeding = pub
            self.switches += 1
        log.info("feed switched", extra={"stream_id": self.output.stream_id, "to": pub.key.redacted(),
                                         "protocol": pub.protocol, "reason": reason})
        self.output.retire_transcoder(old)

    async def restart_input(self, pub: Publisher) -> None:
        """`pub` starts a new byte stream (a PULL moved to its next source): new transcoder, same output."""
        async with self.lock:
            if self.feeding is not pub or self.output.ended:
                return
            old = self.output.transcoder
            new = self.output.replace_transcoder(pub.input_format)
            await new.start()
        self.output.retire_transcoder(old)

    async def check(self, now: float) -> Publisher | None:
        target = self.choose(now)
        if target is None:
            return None
        reason = "feed stopped delivering" if target is self.backup or self.feeding is None else "primary is back"
        await self.switch_to(target, reason)
        return target


async def failover_loop(lifecycle: StreamLifecycle) -> None:
    """Checks every output with more than one feed (or a lost feeder) a few times per second."""
    while True:
        await asyncio.sleep(_CHECK_PERIOD)
        now = time.monotonic()
        for output in list(lifecycle._outputs.values()):
            feeds = output.feeds
            if output.ended or not feeds.publishers:
                continue
            try:
                switched = await feeds.check(now)
            except Exception:  # one output's trouble must not stop failover for the others
                log.exception("failover check failed", extra={"stream_id": output.stream_id})
                continue
            if switched is not None:
                with contextlib.suppress(Exception):
                    await lifecycle._feed_switched(output, switched)


def live_values(pub: Publisher, now: datetime, source_type: str) -> dict[str, object]:
    """Stream columns to set when `pub` starts delivering (R19: backup_live, started_at_backup)."""
    values: dict[str, object] = (
        {"backup_live": True, "started_at_backup": now} if pub.key.backup else {"live": True, "started_at_primary": now}
    )
    if pub.output.feeds.feeding is pub:
        values["stream_source_type"] = source_type
    return values
