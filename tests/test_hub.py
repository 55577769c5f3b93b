"""The stream hub without ffmpeg: the one-connection rule, failover and failback, end of session, reconnect.

A fake transcoder records what it is given; the catalog is a dict. Times for the feed rule are passed in.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from onair.config import Settings
from onair.hub.events import FeedSwitched, HubEvent, PublisherEnded, PublisherLive, SessionEnded, SessionStarted
from onair.hub.feeds import FeedSwitch
from onair.hub.keys import StreamKey
from onair.hub.ports import IngestRefused, PublishConfig
from onair.hub.publisher import Publisher
from onair.hub.registry import StreamHub
from onair.transcode.ladder import DEFAULT_LADDER
from onair.transcode.transcoder import Transcoder

TOKEN = "secret123"


class FakeTranscoder(Transcoder):
    """Records the bytes written; runs no ffmpeg."""

    made: list[FakeTranscoder] = []

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.written = bytearray()
        self.started = self.stopped = False
        FakeTranscoder.made.append(self)

    async def start(self) -> None:
        self.started = True

    async def write(self, data: bytes) -> None:
        self.written += data

    async def stop(self) -> None:
        self.stopped = True


class Catalog:
    def __init__(self) -> None:
        self.configs: dict[int, PublishConfig] = {}

    def add(self, stream_id: int, *, active: bool = True, pull: bool = False, reconnect: float = 0.0) -> None:
        self.configs[stream_id] = PublishConfig(stream_id=stream_id, token=TOKEN, active=active, pull=pull,
                                                renditions=DEFAULT_LADDER, dvr_seconds=None, endlist=True,
                                                client_user_id=None, reconnect_window=reconnect)

    async def publish_config(self, stream_id: int) -> PublishConfig | None:
        return self.configs.get(stream_id)


@pytest.fixture
def hub(tmp_path: Path) -> tuple[StreamHub, Catalog, list[HubEvent]]:
    FakeTranscoder.made = []
    catalog = Catalog()
    settings = Settings(data_dir=tmp_path, failover_timeout=3.0, failback_delay=10.0)
    h = StreamHub(settings, catalog, make_transcoder=FakeTranscoder)
    events: list[HubEvent] = []

    async def record(event: HubEvent) -> None:
        events.append(event)

    h.events.subscribe(record)
    return h, catalog, events


async def _open(h: StreamHub, name: str, protocol: str = "rtmp") -> Publisher:
    return await h.open_session(protocol=protocol, app="in", stream_name=name, remote="127.0.0.1:1")


async def test_refusals_carry_the_whip_reason_codes(hub: Any) -> None:
    h, catalog, _ = hub
    catalog.add(1)
    catalog.add(2, active=False)
    catalog.add(3, pull=True)
    cases = {f"9?{TOKEN}": 2001, "1?wrongtoken": 2002, f"2?{TOKEN}": 2004, f"3?{TOKEN}": 2004}
    for name, code in cases.items():
        with pytest.raises(IngestRefused) as refused:
            await _open(h, name)
        assert refused.value.code == code, name
    with pytest.raises(IngestRefused, match="malformed"):
        await _open(h, "not a key")
    with pytest.raises(IngestRefused, match="unknown application"):
        await h.open_session(protocol="rtmp", app="live", stream_name=f"1?{TOKEN}", remote="x")
    assert h.live_count() == 0


async def test_one_connection_per_key_backup_joins_as_standby(hub: Any) -> None:
    h, catalog, events = hub
    catalog.add(1)
    primary = await _open(h, f"1?{TOKEN}")
    with pytest.raises(IngestRefused) as refused:
        await _open(h, f"1?{TOKEN}", protocol="srt")
    assert refused.value.code == 2003
    backup = await _open(h, f"1b?{TOKEN}", protocol="srt")
    stream = h.get(1)
    assert stream is not None and stream.feeding is primary and set(stream.publishers) == {primary, backup}
    assert [type(e) for e in events] == [SessionStarted]
    with pytest.raises(IngestRefused):
        await _open(h, f"1b?{TOKEN}")
    assert h.live_count() == 2


async def test_first_bytes_announce_and_only_the_feeding_publisher_reaches_the_transcoder(hub: Any) -> None:
    h, catalog, events = hub
    catalog.add(1)
    primary = await _open(h, f"1?{TOKEN}")
    backup = await _open(h, f"1b?{TOKEN}")
    await primary.feed(b"P1")
    await backup.feed(b"B1")
    await primary.feed(b"P2")
    assert bytes(FakeTranscoder.made[0].written) == b"P1P2"
    live = [e for e in events if isinstance(e, PublisherLive)]
    assert [e.publisher for e in live] == [primary, backup]
    assert live[0].source_type == "rtmp"


async def test_failover_to_a_delivering_backup_and_failback_after_the_delay(hub: Any) -> None:
    h, catalog, events = hub
    catalog.add(1)
    primary = await _open(h, f"1?{TOKEN}")
    backup = await _open(h, f"1b?{TOKEN}", protocol="srt")
    stream = h.get(1)
    await primary.feed(b"p")
    await backup.feed(b"b")
    now = time.monotonic()
    assert await stream.check_feeds(now + 1.0) is None  # both deliver: the primary keeps feeding
    # the primary went silent, the backup keeps delivering
    stream.feeds.delivered(backup, now + 3.5)
    assert await stream.check_feeds(now + 3.5) is backup
    assert stream.feeding is backup and len(FakeTranscoder.made) == 2
    assert FakeTranscoder.made[1].input_format == "mpegts"  # the new transcoder reads the backup's format
    # the primary delivers again, but not yet for failback_delay seconds
    for t in (5.0, 7.0, 9.0):
        stream.feeds.delivered(primary, now + t)
        stream.feeds.delivered(backup, now + t)
    assert await stream.check_feeds(now + 9.0) is None
    for t in (11.0, 13.0, 15.0):
        stream.feeds.delivered(primary, now + t)
        stream.feeds.delivered(backup, now + t)
    assert await stream.check_feeds(now + 15.5) is primary
    assert stream.feeds.switches == 2


def test_feed_rule_is_pure() -> None:
    switch = FeedSwitch(failover_timeout=3.0, failback_delay=10.0)

    class F:
        def __init__(self, backup: bool) -> None:
            import asyncio

            self.key = StreamKey(1, backup, TOKEN)
            self.input_format = "flv"
            self.closed = asyncio.Event()

    p, b = F(False), F(True)
    switch.attach(p, feeding=True)
    switch.attach(b, feeding=False)
    assert switch.choose(0.0) is None  # nobody delivered: keep the feeder
    switch.delivered(b, 0.0)
    assert switch.choose(1.0) is b  # the feeder never delivered, the other does
    switch.delivered(p, 1.0)
    assert switch.choose(2.0) is None
    assert switch.choose(4.5) is None  # both silent: nothing to switch to
    p.closed.set()
    switch.delivered(b, 4.5)
    assert switch.choose(4.6) is b  # a closed feeder does not deliver


async def test_feeding_publisher_leaves_backup_takes_over_without_ending_the_session(hub: Any) -> None:
    h, catalog, events = hub
    catalog.add(1)
    primary = await _open(h, f"1?{TOKEN}")
    backup = await _open(h, f"1b?{TOKEN}")
    await primary.feed(b"p")
    await backup.feed(b"b")
    await primary.close("gone")
    ended = [e for e in events if isinstance(e, PublisherEnded)]
    assert len(ended) == 1 and ended[0].session_over is False
    assert isinstance(events[-1], FeedSwitched) and events[-1].publisher is backup
    stream = h.get(1)
    assert stream.is_live and stream.feeding is backup
    assert not any(isinstance(e, SessionEnded) for e in events)


async def test_last_publisher_leaving_ends_the_session_and_a_reconnect_starts_a_new_one(hub: Any) -> None:
    h, catalog, events = hub
    catalog.add(1)
    first = await _open(h, f"1?{TOKEN}")
    await first.feed(b"x")
    await first.close("encoder stopped")
    assert [type(e) for e in events] == [SessionStarted, PublisherLive, PublisherEnded, SessionEnded]
    old = h.get(1)
    assert old is not None and old.ended and not old.is_live  # kept so players see the end
    assert FakeTranscoder.made[0].stopped
    second = await _open(h, f"1?{TOKEN}")
    assert h.get(1) is not old and h.live(1) is not None
    await first.close("again")  # a second close of an ended publisher changes nothing
    assert second.ended is False and sum(isinstance(e, SessionStarted) for e in events) == 2


async def test_kick_ends_pushes_and_keeps_pulls_when_asked(hub: Any) -> None:
    h, catalog, events = hub
    catalog.add(1, pull=True)
    pulled = await h.open_session(protocol="https", app="in", stream_name=f"1#{TOKEN}", remote="x", pull=True)
    h.kick(1, "switched to PULL", pushes_only=True)
    assert not pulled.closed.is_set()
    h.kick(1, "switched off")
    assert pulled.closed.is_set()
    await h.shutdown()
    assert h.live_count() == 0


async def _until(pred: Any, seconds: float = 5.0) -> None:
    import asyncio

    deadline = time.monotonic() + seconds
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_reconnect_window_keeps_the_session_and_ends_it_when_nobody_comes_back(hub: Any) -> None:
    h, catalog, events = hub
    catalog.add(1, reconnect=0.5)
    first = await _open(h, f"1?{TOKEN}")
    await first.feed(b"a")
    stream = h.get(1)
    await first.close("network blink")
    ended = [e for e in events if isinstance(e, PublisherEnded)]
    assert len(ended) == 1 and ended[0].reconnecting and not ended[0].session_over
    assert stream.is_live and not stream.ended and h.live(1) is stream  # still live, no ENDLIST
    back = await _open(h, f"1?{TOKEN}", protocol="srt")  # any protocol may come back
    assert h.get(1) is stream and stream.feeding is back
    assert FakeTranscoder.made[-1].input_format == "mpegts" and len(FakeTranscoder.made) == 2
    await back.feed(b"b")
    resumed = [e for e in events if isinstance(e, PublisherLive)]
    assert [e.resumed for e in resumed] == [False, True]
    assert sum(isinstance(e, SessionStarted) for e in events) == 1
    await back.close("gone for good")
    await _until(lambda: stream.ended)
    last = [e for e in events if isinstance(e, PublisherEnded)][-1]
    assert last.window_expired and last.session_over
    assert isinstance(events[-1], SessionEnded)


async def test_switching_a_reconnecting_stream_off_ends_it_at_once(hub: Any) -> None:
    h, catalog, events = hub
    catalog.add(1, reconnect=60.0)
    pub = await _open(h, f"1?{TOKEN}")
    await pub.close("blink")
    stream = h.get(1)
    assert stream.reconnecting
    h.kick(1, "stream switched off")
    await _until(lambda: stream.ended, seconds=3.0)
    assert not h.live(1)


def test_a_frame_reader_attached_late_starts_from_the_newest_keyframe() -> None:
    from onair.hub.keys import parse_stream_key
    from onair.hub.publisher import Publisher

    class Frames:
        def __init__(self) -> None:
            self.got: list[tuple[str, int, bool]] = []

        def on_frame(self, kind: str, data: bytes, timestamp: int, *, keyframe: bool) -> None:
            self.got.append((kind, timestamp, keyframe))

    key = parse_stream_key("1?" + "a" * 32)
    assert key is not None
    publisher = Publisher(None, key, "whip", "mpegts", started=0.0)  # type: ignore[arg-type]
    publisher.frame("video", b"p", 0, keyframe=False)  # before any keyframe: nothing to start from
    publisher.frame("video", b"i", 1, keyframe=True)
    publisher.frame("audio", b"a", 2, keyframe=False)
    publisher.frame("video", b"i", 3, keyframe=True)  # a new GOP replaces the old one
    publisher.frame("video", b"p", 4, keyframe=False)
    late = Frames()
    publisher.add_frame_reader(late)
    assert late.got == [("video", 3, True), ("video", 4, False)]
    publisher.frame("audio", b"a", 5, keyframe=False)
    assert late.got[-1] == ("audio", 5, False)
