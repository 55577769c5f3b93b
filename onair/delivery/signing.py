"""Signed playback: stateless, expiring playback tokens and the per-stream check the playback routes make.

A token is `{stream_id}.{expires_at}.{mac}`: `expires_at` in Unix seconds, `mac` the first 128 bits (hex) of
HMAC-SHA256 over `onair-playback:v1:{stream_id}:{expires_at}`, keyed with the stream's `playback_secret`.
Nothing is stored per token: any node that has the stream row verifies it, and rotating the secret
(`reset_playback_tokens`) revokes every token minted before. Tokens travel in a path segment, `/t/{token}/`
after the part of the URL naming the stream (onair.urls.UrlBuilder.playback_urls), so that every URI a
playlist names relative to it carries the token too.

`PlaybackGuard` keeps the flag and the secret of each stream in memory, so a part request never waits
for the database: entries are replaced whenever this node changes a stream (LiveControl.stream_changed)
and otherwise live `ttl` seconds, so that changes made through another node arrive within that time.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.store.models import Stream

__all__ = ["MAX_EXPIRES_IN", "PlaybackAccess", "PlaybackGuard", "mint_token", "parse_token",
           "verify_token"]

MAX_EXPIRES_IN = 7 * 86400
_TOKEN = re.compile(r"^([0-9]{1,10})\.([0-9]{1,12})\.([0-9a-f]{32})$")
_MAC_HEX = 32


def _mac(secret: str, stream_id: int, expires_at: int) -> str:
    message = f"onair-playback:v1:{stream_id}:{expires_at}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()[:_MAC_HEX]


def mint_token(secret: str, stream_id: int, expires_at: int) -> str:
    """A token that plays `stream_id` until `expires_at` (Unix seconds) or until the secret changes."""
    if not secret:
        raise ValueError("a playback secret is required")
    return f"{stream_id}.{expires_at}.{_mac(secret, stream_id, expires_at)}"


def parse_token(token: str) -> tuple[int, int] | None:
    """(stream id, expires_at) of a well-formed token, None otherwise; says nothing about its validity."""
    m = _TOKEN.fullmatch(token)
    return (int(m[1]), int(m[2])) if m else None


def verify_token(secret: str, stream_id: int, token: str, now: float) -> bool:
    """True when `token` was minted with `secret` for `stream_id` and `now` is before its expiry."""
    parsed = parse_token(token)
    if parsed is None or not secret:
        return False
    sid, expires_at = parsed
    if sid != stream_id or now >= expires_at:
        return False
    return hmac.compare_digest(_mac(secret, sid, expires_at), token.rsplit(".", 1)[1])


class _StreamLike(Protocol):
    id: int
    playback_signed: bool
    playback_secret: str


@dataclass(frozen=True)
class PlaybackAccess:
    signed: bool
    secret: str


def _access(stream: _StreamLike) -> PlaybackAccess:
    return PlaybackAccess(bool(stream.playback_signed), stream.playback_secret or "")


class PlaybackGuard:
    """Whether a playback request for a stream may be answered: the stream's flag and secret, cached."""

    MAX_ENTRIES = 100_000

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], *, ttl: float = 10.0,
                 clock: Callable[[], float] = time.monotonic, wallclock: Callable[[], float] = time.time) -> None:
        self.sessionmaker = sessionmaker
        self.ttl = ttl
        self.clock = clock
        self.wallclock = wallclock
        self._entries: dict[int, tuple[float, PlaybackAccess | None]] = {}
        self._loading: dict[int, asyncio.Task[PlaybackAccess | None]] = {}
        self._changes = 0  # bumped on every update/remove: a load that started before one is not cached

    def update(self, stream: _StreamLike) -> None:
        self._changes += 1
        self._store(stream.id, _access(stream))

    def remove(self, stream_id: int) -> None:
        self._changes += 1
        self._store(stream_id, None)

    def _store(self, stream_id: int, access: PlaybackAccess | None) -> None:
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()  # ids probed at random must not grow the cache without bound
        self._entries[stream_id] = (self.clock() + self.ttl, access)

    async def access(self, stream_id: int) -> PlaybackAccess | None:
        """The stream's playback settings (None: no such stream), from memory when fresh."""
        cached = self._entries.get(stream_id)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        task = self._loading.get(stream_id)
        if task is None:  # one database read per stream however many requests wait for it
            task = asyncio.ensure_future(self._load(stream_id))
            self._loading[stream_id] = task
            task.add_done_callback(lambda t: self._loaded(stream_id, t))
        return await asyncio.shield(task)

    def _loaded(self, stream_id: int, task: asyncio.Task[PlaybackAccess | None]) -> None:
        if self._loading.get(stream_id) is task:
            del self._loading[stream_id]

    async def _load(self, stream_id: int) -> PlaybackAccess | None:
        changes = self._changes
        async with self.sessionmaker() as db:
            row = (await db.execute(select(Stream.id, Stream.playback_signed, Stream.playback_secret)
                                    .where(Stream.id == stream_id))).one_or_none()
        access = PlaybackAccess(bool(row.playback_signed), row.playback_secret or "") if row is not None else None
        if changes == self._changes:
            self._store(stream_id, access)
        return access

    async def allows(self, stream_id: int, token: str | None) -> bool:
        """A request with `token` (None: an untokenised URL) may play `stream_id`.

        A token, when present, must be valid whether or not the stream is signed (a tokenised URL plays
        until its expiry, never longer); without one only unsigned streams play. Unknown streams pass:
        the route answers 404 for them as before.
        """
        access = await self.access(stream_id)
        if access is None:
            return True
        if token is not None:
            return verify_token(access.secret, stream_id, token, self.wallclock())
        return not access.signed
