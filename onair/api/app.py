"""The HTTP application: API, health, metrics; playback and player routers are added by the node."""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from onair import __version__
from onair.api import clips, documents, errors, overlays, quality_sets, statistics, streams, videos
from onair.api.deps import require_api_key
from onair.node import Node

MAX_BODY = 1 << 20  # API bodies are small JSON; anything larger is refused before parsing


def create_app(node: Node, extra_routers: list[APIRouter] | None = None) -> FastAPI:
    app = FastAPI(title="onair", version=__version__,
                  description="Self-hosted live streaming: the /streaming API (gcore SDK compatible).")
    app.state.node = node
    errors.install(app)
    app.add_middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["*"], allow_headers=["*"],
                       expose_headers=["Location", "Link", "X-Total-Count", "ETag"])

    @app.middleware("http")
    async def _limit_body(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            return Response('{"status":413,"error":"request body too large"}', status_code=413,
                            media_type="application/json")
        return await call_next(request)

    auth = [Depends(require_api_key)]
    for module_router in (streams.router, overlays.router, clips.router, quality_sets.router,
                          documents.broadcasts, documents.restreams, documents.players, videos.router,
                          statistics.router):
        app.include_router(module_router, dependencies=auth)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> Response:
        ready = node.listeners_ready.is_set()
        body = {"status": "ok" if ready else "starting", "version": __version__,
                "ports": {"http": node.ports.http, "rtmp": node.ports.rtmp, "rtmps": node.ports.rtmps,
                          "srt": node.ports.srt},
                "live_streams": node.lifecycle.live_count()}
        import json

        return Response(json.dumps(body), status_code=200 if ready else 503, media_type="application/json")

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    for r in extra_routers or []:
        app.include_router(r)
    return app
