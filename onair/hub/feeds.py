"""Primary and backup feeds of one live stream, and the rule that picks which one feeds.

A stream may have a primary and a backup publisher at once (each key one connection). Only one of
them feeds the transcoder; the other is followed by a :class:`StandbyTracker` so that it can take
over at a decodable point. :meth:`FeedSwitch.choose` (pure: the time is passed in) names the other
feed when the feeding one has delivered nothing for `failover_timeout` seconds (or is gone) and the
other is delivering, and the primary again once it has delivered continuously for `failback_delay`
seconds. The live stream carries the switch out (a new transcoder on the other input).
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from onair.formats.flv_tracker import FlvTracker
from onair.hub.keys import StreamKey

__all__ = ["Feed", "FeedSwitch", "StandbyTracker"]


class Feed(Protocol):
    key: StreamKey
    input_format: str
    closed: asyncio.Event


class StandbyTracker:
    """Follows the bytes of a publisher that is not feeding, to start feeding at a decodable point."""

    def __init__(self, input_format: str) -> None:
        self._flv = FlvTracker() if input_format == "flv" else None
        self.gop_arrival: float | None = None  # wall clock at which the current GOP's keyframe came in

    def feed(self, data: bytes, now: float) -> None:
        if self._flv is not None and any(tag.keyframe for tag in self._flv.feed(data)):
            self.gop_arrival = now

    def captured(self) -> float | None:
        """When the media start_data() begins with reached the node (None: it is the next live bytes)."""
        return self.gop_arrival if self._flv is not None and self._flv.resume_data() is not None else None

    def start_data(self) -> bytes:
        """What a new decoder needs before the next live bytes (FLV: header, codec config, current GOP)."""
        if self._flv is None:
            return b""  # MPEG-TS: the demuxer resynchronises on packet boundaries by itself
        data = self._flv.resume_data()
        if data is not None:
            return data
        return self._flv.config(0) + self._flv.pending if self._flv.header is not None else b""


class FeedSwitch:
    """Which publisher of a live stream feeds its transcoder, and when each one last delivered."""

    def __init__(self, failover_timeout: float, failback_delay: float) -> None:
        self.failover_timeout = failover_timeout
        self.failback_delay = failback_delay
        self.primary: Feed | None = None
        self.backup: Feed | None = None
        self.feeding: Feed | None = None
        self.switches = 0
        self._standby: dict[int, StandbyTracker] = {}
        self._since: dict[int, float] = {}  # feed id -> start of its current delivering run
        self._last: dict[int, float] = {}

    # -- membership ---------------------------------------------------------------------------------
    def attach(self, feed: Feed, *, feeding: bool) -> None:
        if feed.key.backup:
            self.backup = feed
        else:
            self.primary = feed
        if feeding:
            self.feeding = feed
        else:
            self._standby[id(feed)] = StandbyTracker(feed.input_format)

    def detach(self, feed: Feed) -> Feed | None:
        """Forget `feed`; returns the feed that remains, if any."""
        if self.primary is feed:
            self.primary = None
        if self.backup is feed:
            self.backup = None
        self._standby.pop(id(feed), None)
        self._since.pop(id(feed), None)
        self._last.pop(id(feed), None)
        return self.primary or self.backup

    @property
    def feeds(self) -> list[Feed]:
        return [f for f in (self.primary, self.backup) if f is not None]

    # -- delivery -----------------------------------------------------------------------------------
    def delivered(self, feed: Feed, now: float) -> None:
        key = id(feed)
        last = self._last.get(key)
        if last is None or now - last > self.failover_timeout:
            self._since[key] = now
        self._last[key] = now

    def follow_standby(self, feed: Feed, data: bytes, wall: float) -> None:
        """`data` of a feed that is not feeding came in at `wall` (time.time())."""
        tracker = self._standby.get(id(feed))
        if tracker is not None:
            tracker.feed(data, wall)

    def delivering(self, feed: Feed | None, now: float) -> bool:
        if feed is None or feed.closed.is_set():
            return False
        last = self._last.get(id(feed))
        return last is not None and now - last < self.failover_timeout

    def delivering_for(self, feed: Feed, now: float) -> float:
        since = self._since.get(id(feed))
        return now - since if since is not None and self.delivering(feed, now) else 0.0

    # -- the rule -----------------------------------------------------------------------------------
    def choose(self, now: float) -> Feed | None:
        """The feed that should feed now, or None to keep the current one."""
        cur, primary, backup = self.feeding, self.primary, self.backup
        if cur is None or cur not in (primary, backup) or not self.delivering(cur, now):
            other = backup if cur is primary else primary
            if self.delivering(other, now):
                return other
            if cur not in (primary, backup):  # the feeder left: take whoever is connected
                return primary or backup
            return None
        if cur is backup and primary is not None and self.delivering_for(primary, now) >= self.failback_delay:
            return primary
        return None

    def reason_for(self, target: Feed) -> str:
        return "feed stopped delivering" if target is self.backup or self.feeding is None else "primary is back"

    def make_feeding(self, feed: Feed) -> tuple[bytes, float | None]:
        """`feed` feeds from now on; returns what the new decoder needs first (from its standby tracker)
        and the wall clock at which that media came in (None: now)."""
        tracker = self._standby.pop(id(feed), None)
        if self.feeding is not None and self.feeding in (self.primary, self.backup) and self.feeding is not feed:
            self._standby[id(self.feeding)] = StandbyTracker(self.feeding.input_format)
        self.feeding = feed
        self.switches += 1
        if tracker is None:
            return b"", None
        return tracker.start_data(), tracker.captured()
