"""What happens to live streams, as the hub announces it.

Subscribers (the store's live-state writer, recordings, restreams, DVR) are attached by the composition
root and called in the order they subscribed; one failing subscriber never stops the others. The
cluster registry will carry the same events between nodes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from onair.hub.live_stream import LiveStream
    from onair.hub.publisher import Publisher

__all__ = ["EventBus", "FeedSwitched", "HubEvent", "PublisherEnded", "PublisherLive", "SessionEnded",
           "SessionPlayable", "SessionStarted"]

log = logging.getLogger("onair.hub.events")


@dataclass(frozen=True)
class SessionStarted:
    """A new live session: its output exists, no byte has been transcoded yet (attach readers now)."""

    stream: LiveStream


@dataclass(frozen=True)
class PublisherLive:
    """A publisher (primary or backup) delivered its first bytes."""

    stream: LiveStream
    publisher: Publisher
    source_type: str  # stream_source_type of the API
    resumed: bool = False  # came back within the reconnect window: the same session goes on
    playable: bool = False  # the session's output could already be played (see SessionPlayable)


@dataclass(frozen=True)
class SessionPlayable:
    """The output's first segment can be played: every rendition has a complete one, the master and
    media playlists answer. The stream is `live` from now on if its primary is still connected
    (`stream.primary_connected`, asked when the event is handled: it may have left meanwhile)."""

    stream: LiveStream


@dataclass(frozen=True)
class FeedSwitched:
    """Another publisher feeds the output now (failover, failback, a PULL moved to its next source)."""

    stream: LiveStream
    publisher: Publisher
    source_type: str


@dataclass(frozen=True)
class PublisherEnded:
    """A publisher left; `session_over` when no other ingest carries the stream on.

    `reconnecting`: the last publisher left but the stream's reconnect window keeps the session open (the
    stream stays live); `window_expired`: the window ran out (or the stream was stopped) with nobody back.
    """

    stream: LiveStream
    publisher: Publisher
    reason: str
    session_over: bool
    reconnecting: bool = False
    window_expired: bool = False


@dataclass(frozen=True)
class SessionEnded:
    """The output has stopped (packager ended, playlists carry ENDLIST)."""

    stream: LiveStream


HubEvent = SessionStarted | PublisherLive | SessionPlayable | FeedSwitched | PublisherEnded | SessionEnded
Subscriber = Callable[[HubEvent], Awaitable[None]]


class EventBus:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def emit(self, event: HubEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                await subscriber(event)
            except Exception:  # one subscriber's bug must not break the stream or the others
                log.exception("event subscriber failed", extra={"event": type(event).__name__,
                                                                "stream_id": event.stream.stream_id})
