"""The HTTP application: API, health, metrics; playback and player routers are added by the node."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from onair import __version__
from onair.api import clips, documents, errors, overlays, quality_sets, statistics, streams, videos, webhooks
from onair.api.deps import require_api_key
from onair.api.ratelimit import FailureLimiter
from onair.delivery.fast_path import CORS_EXPOSE_HEADERS
from onair.node import Node
from onair.store.snapshots import Snapshots, WriteGeneration

MAX_BODY = 1 << 20  # API bodies are small JSON; anything larger is refused before parsing
ASYNCIO_TASKS = Gauge("onair_asyncio_tasks", "asyncio tasks of the server process (a leak shows as growth)")


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413: by Content-Length up front, and while reading
    for bodies without one (chunked transfer), so no route ever buffers more than the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            too_large = Response('{"status":413,"error":"request body too large"}', status_code=413,
                                 media_type="application/json")
            await too_large(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise HTTPException(413, "request body too large")
            return message

        await self.app(scope, limited, send)


def create_app(node: Node, extra_routers: list[APIRouter] | None = None) -> FastAPI:
    app = FastAPI(title="onair", version=__version__,
                  description="Self-hosted live streaming: the /streaming API (gcore SDK compatible).")
    app.state.node = node
    app.state.auth_limiter = FailureLimiter()
    # in a cluster other nodes write the same rows, unseen by this engine: every read goes to the database
    app.state.snapshots = Snapshots[Any](WriteGeneration(node.engine), enabled=node.settings.redis_url is None)
    errors.install(app)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"],
                       expose_headers=list(CORS_EXPOSE_HEADERS))

    app.add_middleware(BodyLimit, limit=MAX_BODY)

    auth = [Depends(require_api_key)]
    for module_router in (streams.router, overlays.router, clips.router, quality_sets.router,
                          documents.broadcasts, documents.restreams, documents.players, videos.router,
                          statistics.router, webhooks.router):
        app.include_router(module_router, dependencies=auth)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> Response:
        ready = node.listeners_ready.is_set()
        body = {"status": "ok" if ready else "starting", "version": __version__, "node": node.name,
                "ports": {"http": node.ports.http, "rtmp": node.ports.rtmp, "rtmps": node.ports.rtmps,
                          "srt": node.ports.srt},
                "live_streams": node.control.live_count(), "asyncio_tasks": len(asyncio.all_tasks())}
        return Response(json.dumps(body), status_code=200 if ready else 503, media_type="application/json")

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        ASYNCIO_TASKS.set(len(asyncio.all_tasks()))
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for r in extra_routers or []:
        app.include_router(r)
    return app
