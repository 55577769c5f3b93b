"""A node: one process holding every listener, the database and the live streams."""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from onair.api.ratelimit import FailureLimiter
from onair.config import Settings
from onair.hub.registry import StreamLifecycle
from onair.outputs.library import VideoLibrary
from onair.store.api_keys import hash_key
from onair.store.catalog import seed_quality_sets
from onair.store.db import make_engine, make_sessionmaker, migrate
from onair.store.models import ApiKey, Stream
from onair.timeutil import utcnow
from onair.urls import UrlBuilder

log = logging.getLogger("onair.node")


def bind_tcp(host: str, port: int) -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only on sockets whose proto is TCP, and
    # without it every kept-alive response waits ~40 ms for the delayed ACK (Nagle)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


@dataclass
class Ports:
    http: int = 0
    rtmp: int = 0
    rtmps: int = 0
    srt: int = 0


@dataclass
class Node:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    ports: Ports
    urls: UrlBuilder
    lifecycle: StreamLifecycle
    library: VideoLibrary
    api_key_hashes: set[str] = field(default_factory=set)
    auth_limiter: FailureLimiter = field(default_factory=FailureLimiter)
    region: str = "local"
    listeners_ready: asyncio.Event = field(default_factory=asyncio.Event)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def sample_period(self) -> float:
        return self.settings.stats_period

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir


async def bootstrap_api_key(node: Node) -> str | None:
    """Make sure the operator key exists; returns a newly generated key so the caller can print it once."""
    settings = node.settings
    generated: str | None = None
    key = settings.api_key
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
        if (await db.execute(select(ApiKey).where(ApiKey.key_hash == digest))).scalar() is None:
            db.add(ApiKey(key_hash=digest, created_at=utcnow()))
            await db.commit()
        node.api_key_hashes.update((await db.execute(select(ApiKey.key_hash))).scalars())
    return generated


async def reset_stale_live_state(node: Node) -> None:
    """No ingest survives a restart: streams marked live by a previous run are finished now."""
    async with node.sessionmaker() as db:
        now = utcnow()
        await db.execute(update(Stream).where(Stream.live.is_(True)).values(live=False, finished_at_primary=now))
        await db.execute(update(Stream).where(Stream.backup_live.is_(True)).values(backup_live=False))
        await db.commit()


def tls_context(settings: Settings) -> ssl.SSLContext:
    from onair.ingest.tls import ensure_certificate

    cert, key = (settings.rtmps_cert, settings.rtmps_key)
    if cert is None or key is None:
        cert, key = ensure_certificate(settings.data_dir / "tls", settings.public_host)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


async def create_node(settings: Settings) -> Node:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    await migrate(engine)
    sessionmaker = make_sessionmaker(engine)
    ports = Ports()
    urls = UrlBuilder(settings.public_host, 0, 0, 0, 0, settings.client_id)
    library = VideoLibrary(settings.data_dir / "videos", urls)
    lifecycle = StreamLifecycle(settings, sessionmaker, library)
    node = Node(settings=settings, engine=engine, sessionmaker=sessionmaker, ports=ports, urls=urls,
                lifecycle=lifecycle, library=library)
    async with sessionmaker() as db:
        await seed_quality_sets(db)
    await reset_stale_live_state(node)
    return node
