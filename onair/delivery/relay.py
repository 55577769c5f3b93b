"""Playback of a stream another node receives: the request goes to that node (the origin).

A pure ASGI middleware in front of the playback routes: a GET for a stream that is not live on this node
but has an origin elsewhere (`locate`: the cluster's lease holder and its ONAIR_INTERNAL_URL) is fetched from
the origin over one kept-alive connection pool; identical concurrent requests (same path and query, so
blocking reloads per `_HLS_msn`/`_HLS_part` too) share one upstream request. The origin checks playback
tokens and applies its Cache-Control; both come back unchanged.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx
from prometheus_client import Counter
from starlette.types import ASGIApp, Receive, Scope, Send

from onair.urls import UrlBuilder

__all__ = ["OriginRelay"]

log = logging.getLogger("onair.delivery.relay")

RELAYED = Counter("onair_relayed_requests_total", "Playback requests fetched from another node", ["status"])
_PLAYBACK = re.compile(r"^/(?:cmaf|mpegts)/([0-9]{1,10}_[0-9]{1,10})/"
                       r"|^/videoplatform/streams/([0-9]{1,10})/([0-9]{1,10})/")
_PASS_HEADERS = ("content-type", "cache-control", "x-err-code")
UPSTREAM_TIMEOUT = 15.0  # above the longest blocking reload (3 target durations)



@dataclass(frozen=True)
class _Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


class OriginRelay:
    def __init__(self, app: ASGIApp, *, urls: UrlBuilder, is_local: Callable[[int], bool],
                 locate: Callable[[int], Awaitable[str | None]]) -> None:
        self.app = app
        self.urls = urls
        self.is_local = is_local  # the stream is live (or was last) on this node
        self.locate = locate  # base URL of the node receiving the stream, None when nobody does
        self.client = httpx.AsyncClient(timeout=UPSTREAM_TIMEOUT, limits=httpx.Limits(max_keepalive_connections=32))
        self._inflight: dict[str, asyncio.Future[_Answer]] = {}

    def _stream_id(self, path: str) -> int | None:
        m = _PLAYBACK.match(path)
        if m is None:
            return None
        return self.urls.parse_public_id(m[1] if m[1] else f"{m[2]}_{m[3]}")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        path: str = scope["path"]
        sid = self._stream_id(path)
        if sid is None or self.is_local(sid):
            return await self.app(scope, receive, send)
        origin = await self._origin(sid)
        if origin is None:
            return await self.app(scope, receive, send)  # nobody receives it: answered here (404)
        query = scope.get("query_string", b"").decode("latin-1")
        answer = await self._fetch(origin + path + (f"?{query}" if query else ""))
        await send({"type": "http.response.start", "status": answer.status, "headers": answer.headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else answer.body})

    async def _origin(self, stream_id: int) -> str | None:
        try:
            return await self.locate(stream_id)
        except Exception as exc:  # the cluster registry is unreachable: answer from here
            log.warning("origin lookup failed", extra={"stream_id": stream_id, "error": type(exc).__name__})
            return None

    async def _fetch(self, url: str) -> _Answer:
        running = self._inflight.get(url)
        if running is not None:
            return await asyncio.shield(running)
        future: asyncio.Future[_Answer] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            answer = await self._get(url)
            future.set_result(answer)
            return answer
        except BaseException:
            future.cancel()  # the requests sharing it end too
            raise
        finally:
            del self._inflight[url]

    async def _get(self, url: str) -> _Answer:
        try:
            r = await self.client.get(url)
        except httpx.HTTPError as exc:
            log.warning("origin unreachable", extra={"error": type(exc).__name__})
            RELAYED.labels("502").inc()
            return _Answer(502, [(b"content-type", b"text/plain"), (b"cache-control", b"no-cache, no-store")],
                           b"origin node unreachable\n")
        RELAYED.labels(str(r.status_code)).inc()
        headers = [(k.encode(), v.encode()) for k, v in r.headers.items() if k.lower() in _PASS_HEADERS]
        headers.append((b"access-control-allow-origin", b"*"))  # players on other origins, as the routes allow
        return _Answer(r.status_code, headers, r.content)

    async def close(self) -> None:
        await self.client.aclose()
