"""The cluster registry's parts on a real Redis (no media): leases, membership, the channel, settings."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from onair.cluster.link import Cluster
from onair.cluster.registry import LEASE_TTL_MS, ControlBus, Membership, key_prefix
from onair.cluster.status import StatusBoard
from onair.config import Settings
from onair.hub.ports import IngestRefused
from onair.hub.registry import StreamHub


def test_one_node_never_imports_redis() -> None:
    """Nor boto3: a node without object storage never loads it."""
    code = ("import sys, onair.app.server, onair.app.wiring, onair.app.cli, onair.node; "
            "print(sorted(m for m in sys.modules if m in ('redis', 'boto3', 'botocore') or m.startswith(('redis.', "
            "'boto3.', 'botocore.', 'onair.cluster.link', 'onair.cluster.registry'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("field,value", [("redis_url", "http://127.0.0.1:6379"), ("redis_url", "redis://h/x"),
                                         ("internal_url", "ftp://a"), ("storage_url", "/srv/videos"),
                                         ("node_name", "two words")])
def test_bad_cluster_settings_are_refused(field: str, value: str) -> None:
    with pytest.raises(ValueError, match=field):
        Settings(**{field: value})


def test_bad_setting_is_a_clear_cli_error() -> None:
    out = subprocess.run([sys.executable, "-m", "onair.app.cli", "serve", "--redis-url", "http://nope"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "ONAIR_REDIS_URL" in out.stderr and "Traceback" not in out.stderr


def test_prefix_follows_the_database_number() -> None:
    assert key_prefix("redis://127.0.0.1:6379/7") == "onair:7:"
    assert key_prefix("redis://127.0.0.1:6379") == "onair:0:"


async def test_one_lease_per_feed_and_it_expires(redis_url: str) -> None:
    a, b = Cluster(redis_url, "a", "http://a"), Cluster(redis_url, "b", "http://b")
    try:
        assert await a.leases.claim(5, False)
        assert not await b.leases.claim(5, False)  # held by A
        assert await b.leases.claim(5, True)  # the backup feed is another lease
        assert await b.leases.holder_of(5, False) == "a"
        await b.leases.release(5, False)  # not B's: a no-op
        assert await a.leases.holder_of(5, False) == "a"
        await a.leases.renew()
        ttl = await a.client.pttl(key_prefix(redis_url) + "lease:5:p")
        assert 0 < ttl <= LEASE_TTL_MS
        await a.leases.release(5, False)
        assert await b.leases.claim(5, False)
    finally:
        await a.client.aclose()
        await b.client.aclose()


async def test_a_lease_taken_over_is_reported_lost(redis_url: str) -> None:
    a = Cluster(redis_url, "a", "http://a")
    lost: list[tuple[int, bool]] = []
    a.leases.on_lost = lambda sid, backup: lost.append((sid, backup))
    try:
        assert await a.leases.claim(9, False)
        # as if A stalled past the TTL and another node claimed the feed meanwhile
        await a.client.set(key_prefix(redis_url) + "lease:9:p", "b|other", px=LEASE_TTL_MS)
        await a.leases.renew()
        assert lost == [(9, False)]
        assert await a.leases.holder_of(9, False) == "b"  # compare-and-renew never touched B's lease
    finally:
        await a.client.aclose()


async def test_one_puller_per_stream_and_a_lost_claim_is_reported(redis_url: str) -> None:
    a, b = Cluster(redis_url, "a", "http://a"), Cluster(redis_url, "b", "http://b")
    lost: list[int] = []
    a.leases.on_pull_lost = lost.append
    try:
        assert await a.leases.claim_pull(11)
        assert not await b.leases.claim_pull(11)  # held by A
        assert await b.leases.claim(11, False)  # the feed is another lease
        await a.leases.renew()
        assert lost == []
        await a.client.set(key_prefix(redis_url) + "lease:11:pull", "b|other", px=LEASE_TTL_MS)
        await a.leases.renew()
        assert lost == [11]  # compare-and-renew never touched B's claim
        await b.client.delete(key_prefix(redis_url) + "lease:11:pull")
        assert await b.leases.claim_pull(11)
        await b.leases.release_pull(11)
        assert await a.leases.claim_pull(11)
        await a.leases.release_pull(11)
    finally:
        await a.client.aclose()
        await b.client.aclose()


async def test_membership_and_channel(redis_url: str) -> None:
    a, b = Cluster(redis_url, "a", "http://a"), Cluster(redis_url, "b", "http://b")
    got: asyncio.Queue[dict[str, object]] = asyncio.Queue()

    async def handler(message: dict[str, object]) -> None:
        await got.put(message)

    caught_up = asyncio.Event()

    async def catch_up() -> None:
        caught_up.set()

    assert isinstance(b.bus, ControlBus) and isinstance(a.members, Membership)
    listener = asyncio.create_task(b.bus.listen(handler, catch_up))
    try:
        await a.members.beat()
        assert await b.members.alive({"a", "gone"}) == {"a"}
        await asyncio.wait_for(b.bus.subscribed.wait(), 5)
        await a.bus.publish({"kind": "stream_changed", "id": 3})
        await b.bus.publish({"kind": "own", "id": 4})  # a node's own messages are not handed back to it
        await a.client.publish(b.bus.channel, b"not json")  # dropped, the channel goes on
        await a.bus.publish({"kind": "stream_deleted", "id": 3})
        first = await asyncio.wait_for(got.get(), 2)
        second = await asyncio.wait_for(got.get(), 2)
        assert (first["kind"], first["id"], second["kind"]) == ("stream_changed", 3, "stream_deleted")
        assert got.empty()
        assert not caught_up.is_set()  # the first subscription: the node reads the database after it anyway

        # Redis drops the subscriber (as when its output buffer overflows): B subscribes again, catches up
        # from the database, and hears the messages from then on
        assert await a.client.client_kill_filter(_type="pubsub") >= 1
        await asyncio.wait_for(caught_up.wait(), 10)
        await a.bus.publish({"kind": "stream_changed", "id": 5})
        assert (await asyncio.wait_for(got.get(), 2))["id"] == 5
    finally:
        listener.cancel()
        await asyncio.gather(listener, return_exceptions=True)
        await a.client.aclose()
        await b.client.aclose()


def test_status_board_keeps_what_is_fresh_and_well_formed() -> None:
    board = StatusBoard(stale_s=3.0)
    board.report("a", {"1": {"transcoding_speed": 1.0, "video_width": 640, "video_height": 360, "viewers": 2,
                             "transcoded_qualities": ["360"], "recording_duration": 5.5},
                       "x": {}, "2": "garbage", "3": {"video_width": float("nan"), "viewers": True}}, now=10.0)
    one = board.get(1, now=11.0)
    assert one is not None and one.node == "a" and one.viewers == 2 and one.status.video_width == 640.0
    assert board.get(2, now=11.0) is None
    three = board.get(3, now=11.0)
    assert three is not None and three.status.video_width is None and three.viewers == 0
    assert board.get(1, now=13.5) is None  # stale
    board.report("a", {}, now=12.0)  # A no longer receives stream 1
    assert board.get(1, now=12.0) is None


async def test_two_hubs_share_the_one_connection_rule(redis_url: str, tmp_path: Path) -> None:
    """Two nodes' hubs on one Redis: the second node refuses a key the first receives, takes it once the
    first ends it, and a node that loses its lease ends its publisher."""
    from tests.test_hub import TOKEN, Catalog, FakeTranscoder

    catalog = Catalog()
    catalog.add(1)
    clusters = [Cluster(redis_url, name, f"http://{name}") for name in ("a", "b")]
    hubs = [StreamHub(Settings(data_dir=tmp_path / c.node), catalog, make_transcoder=FakeTranscoder,
                      leases=c.leases) for c in clusters]
    for c, h in zip(clusters, hubs, strict=True):
        c.leases.on_lost = h.lease_lost
    a, b = hubs
    try:
        pub = await a.open_session(protocol="rtmp", app="in", stream_name=f"1?{TOKEN}", remote="x")
        with pytest.raises(IngestRefused) as refused:
            await b.open_session(protocol="srt", app="in", stream_name=f"1?{TOKEN}", remote="y")
        assert refused.value.code == 2003
        backup = await b.open_session(protocol="srt", app="in", stream_name=f"1b?{TOKEN}", remote="y")
        await pub.close("encoder left")
        taken = await b.open_session(protocol="rtmp", app="in", stream_name=f"1?{TOKEN}", remote="z")
        assert await clusters[0].leases.holder_of(1, False) == "b"
        # B stalls past the TTL and A claims the feed meanwhile: B's renewal finds it gone and ends its publisher
        await clusters[1].client.delete(key_prefix(redis_url) + "lease:1:p")
        assert await clusters[0].leases.claim(1, False)
        await clusters[1].leases.renew()
        await asyncio.wait_for(taken.closed.wait(), 2)
        assert not backup.ended  # the backup feed's lease is its own
    finally:
        for h in hubs:
            await h.shutdown()
        for c in clusters:
            await c.client.aclose()
