"""The composition root: builds a node's parts and attaches the outputs to the hub.

Data flows ingest → hub → transcode → package → delivery; the outputs (DVR, recordings, restreams)
follow the hub's events, in the order subscribed here: the store writes the live state first, so an
output that reads the stream row sees it current.
"""

from __future__ import annotations

import logging
import secrets
import socket
import ssl
from typing import TYPE_CHECKING

from prometheus_client import Gauge
from sqlalchemy import delete, select

from onair.api.webhook_events import WebhookEvents
from onair.config import Settings
from onair.delivery.signing import PlaybackGuard
from onair.hub.registry import StreamHub
from onair.ingest.pull import PullManager
from onair.ingest.tls import ensure_certificate
from onair.node import LiveControl, Node, Ports
from onair.outbound import Outbound
from onair.outputs.clips import Clipper
from onair.outputs.dvr import DvrOutput
from onair.outputs.library import VideoLibrary
from onair.outputs.recorder import RecordingOutput
from onair.outputs.recording import Recordings
from onair.outputs.restream import Restreams
from onair.outputs.webhooks import WebhookSender
from onair.store.api_keys import hash_key
from onair.store.catalog import StoreCatalog, seed_quality_sets
from onair.store.db import make_engine, make_sessionmaker, migrate
from onair.store.live_state import LiveStateWriter
from onair.store.models import ApiKey, Stream
from onair.store.objects import ObjectStore
from onair.store.samples import StatsSampler
from onair.store.webhooks import Outbox
from onair.timeutil import utcnow
from onair.urls import UrlBuilder

if TYPE_CHECKING:
    from onair.cluster.link import Cluster

VIEWERS = Gauge("onair_viewers", "Viewers watching now (LL-HLS, HLS, DASH) on this node")

log = logging.getLogger("onair.app.wiring")

__all__ = ["bind_tcp", "bootstrap_api_key", "create_node", "start_node", "stop_node", "tls_context"]


def bind_tcp(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only on sockets whose proto is TCP, and
    # without it every kept-alive response waits ~40 ms for the delayed ACK (Nagle)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def tls_context(settings: Settings) -> ssl.SSLContext:
    cert, key = (settings.rtmps_cert, settings.rtmps_key)
    if cert is None or key is None:
        cert, key = ensure_certificate(settings.data_dir / "tls", settings.public_host)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def create_node(settings: Settings, http_port: int | None = None) -> Node:
    """`http_port`: the bound HTTP port, the default node name's second half."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    name = settings.resolved_node_name(settings.http_port if http_port is None else http_port)
    engine = make_engine(settings.resolved_database_url)
    await migrate(engine)
    sessionmaker = make_sessionmaker(engine)
    outbox = Outbox()
    urls = UrlBuilder(settings.public_host, 0, 0, 0, 0, settings.client_id)
    storage = ObjectStore(settings.storage_url, settings.s3_endpoint_url) if settings.storage_url else None
    library = VideoLibrary(settings.data_dir / "videos", urls, storage)
    cluster = _cluster(settings, name, http_port)
    hub = StreamHub(settings, StoreCatalog(sessionmaker), leases=cluster.leases if cluster is not None else None,
                    continuity=cluster.continuity if cluster is not None else None)
    recordings = Recordings(settings.data_dir / "recordings", sessionmaker, library, settings.ffmpeg,
                            min_free_mb=settings.min_free_mb)
    recorder = RecordingOutput(hub, recordings, sessionmaker, data_dir=settings.data_dir,
                               min_free_mb=settings.min_free_mb, max_seconds=settings.recording_max_seconds)
    outbound = Outbound(allow_private=settings.allow_private_targets)
    restreams = Restreams(hub, sessionmaker, settings.ffmpeg, outbound)
    dvr = DvrOutput(hub, min_free_mb=settings.min_free_mb / 4)  # recordings close first (at half)
    live_state = LiveStateWriter(sessionmaker, name, shared=cluster is not None)
    hub.events.subscribe(live_state)
    hub.events.subscribe(dvr)
    hub.events.subscribe(recorder)
    hub.events.subscribe(restreams)
    control = LiveControl(hub, PullManager(hub, sessionmaker, settings, outbound), restreams, recordings, recorder,
                          Clipper(sessionmaker, library, recordings, settings.ffmpeg), dvr,
                          PlaybackGuard(sessionmaker))
    node = Node(settings=settings, engine=engine, sessionmaker=sessionmaker, ports=Ports(), urls=urls, hub=hub,
                control=control, library=library, sampler=StatsSampler(hub, sessionmaker, settings.stats_period),
                live_state=live_state,
                webhooks=WebhookSender(sessionmaker, outbox.wake, allow_private=settings.allow_private_targets),
                outbound=outbound, name=name, region=name if cluster is not None else "local")
    if cluster is not None:
        _link(cluster, node)
    # webhook events are written by the writers of the state they report, in the same transaction
    webhook_events = WebhookEvents(node, outbox)
    live_state.add_hook(webhook_events.live_state)
    live_state.add_stale_hook(webhook_events.stale_streams)
    recordings.add_ready_hook(webhook_events.video_ready)
    VIEWERS.set_function(control.total_viewers)
    async with sessionmaker() as db:
        await seed_quality_sets(db)
    return node


def _cluster(settings: Settings, name: str, http_port: int | None) -> Cluster | None:
    if settings.redis_url is None:
        return None  # one node: redis is never imported
    from onair.cluster.link import Cluster

    port = settings.http_port if http_port is None else http_port
    return Cluster(settings.redis_url, name, settings.resolved_internal_url(port))


def _link(cluster: Cluster, node: Node) -> None:
    from onair.cluster.link import ClusterHooks

    async def load(stream_id: int) -> Stream | None:
        async with node.sessionmaker() as db:
            return await db.get(Stream, stream_id)

    async def control(kind: str, item_id: int) -> None:
        await node.control.apply_remote(kind, item_id, load)

    async def clear(nodes: set[str]) -> list[int]:
        return await node.live_state.clear(nodes)

    async def catch_up() -> None:
        async with node.sessionmaker() as db:
            streams = list((await db.execute(select(Stream))).scalars())
        await node.control.catch_up(streams)
        log.info("cluster channel back: streams caught up from the database", extra={"streams": len(streams)})

    cluster.leases.on_lost = node.hub.lease_lost
    cluster.leases.on_pull_lost = node.control.pulls.claim_lost
    cluster.hooks = ClusterHooks(control=control, snapshot=node.control.snapshot, continuity=node.control.continuity,
                                 owners=node.live_state.owners,
                                 clear=clear, catch_up=catch_up)
    node.control.cluster = cluster
    node.cluster = cluster


async def start_node(node: Node) -> None:
    """Live work starts once the listeners are bound: the key directory, failover, PULLs, recovery."""
    if node.cluster is not None:
        await node.cluster.start()  # before the stale reset: this node's heartbeat says it is alive again
    # streams a previous run left live are finished; here, not at creation, so the stream.idle webhooks
    # carry the URLs with the bound ports (a push that came in meanwhile writes its own state)
    await node.live_state.reset_stale(keep={s.stream_id for s in node.hub.streams()})
    async with node.sessionmaker() as db:
        for stream in (await db.execute(select(Stream))).scalars():
            node.hub.directory.update(stream)
    await node.hub.start()
    node.sampler.start()
    node.control.recorder.run()
    await node.control.pulls.start()
    await node.control.recordings.recover()  # recordings a crashed run left behind go into the library
    node.webhooks.start()  # deliveries a previous run left pending go out now


async def stop_node(node: Node) -> None:
    await node.sampler.stop()
    await node.control.recorder.stop()
    await node.control.pulls.stop()
    await node.control.restreams.shutdown()
    await node.outbound.close()
    await node.hub.shutdown()
    await node.control.recordings.shutdown()
    await node.webhooks.stop()  # last: the hub's final events (stream.idle) may still go out
    if node.cluster is not None:
        await node.cluster.stop()  # after the hub: its publishers released their leases


async def bootstrap_api_key(node: Node) -> str | None:
    """Make sure the operator key exists; returns a newly generated key so the caller can print it once."""
    settings = node.settings
    generated: str | None = None
    key = settings.api_key or None  # set but empty: as unset
    key_file = settings.data_dir / "api_key"
    if key is None:
        if key_file.exists():
            key = key_file.read_text().strip()
        else:
            key = secrets.token_urlsafe(32)
            key_file.write_text(key + "\n")
            key_file.chmod(0o600)
            generated = key
    digest = hash_key(key)
    async with node.sessionmaker() as db:
        # one operator key: a key configured before (or generated) stops working when another replaces it
        old = list((await db.execute(select(ApiKey.id).where(ApiKey.key_hash != digest))).scalars())
        if old:
            await db.execute(delete(ApiKey).where(ApiKey.id.in_(old)))
        if (await db.execute(select(ApiKey).where(ApiKey.key_hash == digest))).scalar() is None:
            db.add(ApiKey(key_hash=digest, created_at=utcnow()))
        await db.commit()
    if old:
        log.info("operator API key replaced: the previous key is revoked", extra={"revoked": len(old)})
    node.api_key_hashes.clear()
    node.api_key_hashes.add(digest)
    return generated
