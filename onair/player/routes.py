"""The embeddable web player: `GET /streams/{cid}_{sid}` (the stream's `iframe_url`).

The page plays LL-HLS (CMAF) with hls.js, `?dash` plays the MPD with dash.js and `?no_low_latency`
plays the MPEG-TS HLS. It reads what it needs from the public `GET /streams/{pid}/info.json`
(never the push token or push URLs), which also carries the HTML overlays (polled for live changes),
the DVR window and the projection. hls.js, dash.js and three.js (360°/180° projections) come from npm
(`package.json`, installed by `make deps` into `node_modules/`) and are served under `/player/vendor/`.
`?player_id=N` applies a stored player's display settings (settings.py, static/skin.js).
`/streams/{pid}/t/{token}` (a playback token's `iframe_url`) is the same page with the token in every URL
it uses; with `playback_signed` on, the page and its info.json answer 403 without a valid token.
"""

from __future__ import annotations

import html
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse
from sqlalchemy import select

from onair.player.settings import load_display_settings, parse_player_id
from onair.store.models import Overlay, Stream
from onair.store.snapshots import Snapshots
from onair.templates import fill

if TYPE_CHECKING:
    from onair.node import Node

router = APIRouter(tags=["player"])

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
TEMPLATE = HERE / "templates" / "player.html"
NODE_MODULES_ENV = "ONAIR_PLAYER_NODE_MODULES"
NO_CACHE = {"Cache-Control": "no-cache, no-store"}
STATIC_CACHE = {"Cache-Control": "public, max-age=300"}
_STATIC = re.compile(r"^[A-Za-z0-9_-]{1,64}\.(js|css|svg)$")
_MEDIA_TYPES = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
# the only npm files served, by public name → path under node_modules
VENDOR: dict[str, str] = {
    "hls.min.js": "hls.js/dist/hls.min.js",
    "dash.all.min.js": "dashjs/dist/dash.all.min.js",
    # three ships no single-file browser build any more: the ES module imports ./three.core.js
    "three.module.js": "three/build/three.module.js",
    "three.core.js": "three/build/three.core.js",
}


def node_modules_dir() -> Path:
    """`$ONAIR_PLAYER_NODE_MODULES`, else `node_modules/` at the repository root (beside package.json)."""
    override = os.environ.get(NODE_MODULES_ENV)
    if override:
        return Path(override)
    return HERE.parent.parent / "node_modules"


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def _snapshots(request: Request) -> Snapshots[Any]:
    snapshots: Snapshots[Any] = request.app.state.snapshots
    return snapshots


async def _load(request: Request, pid: str) -> Stream | None:
    """Viewers poll info.json: the row comes from a snapshot that the next database write ends."""
    node = _node(request)
    sid = node.urls.parse_public_id(pid)
    if sid is None:
        return None

    async def load() -> Stream | None:
        async with node.sessionmaker() as db:
            return await db.get(Stream, sid)

    stream: Stream | None = await _snapshots(request).get(("player-stream", sid), load)
    return stream


async def _refused(node: Node, stream: Stream, token: str | None) -> bool:
    """True when the request may not play the stream (a signed stream without a valid playback token)."""
    return not await node.control.playback_guard.allows(stream.id, token)


async def _overlays(node: Node, stream_id: int) -> list[dict[str, Any]]:
    async with node.sessionmaker() as db:
        rows = (await db.execute(select(Overlay).where(Overlay.stream_id == stream_id)
                                 .order_by(Overlay.id))).scalars()
        return [{"id": o.id, "url": o.url, "x": o.x, "y": o.y, "width": o.width, "height": o.height,
                 "stretch": bool(o.stretch)} for o in rows]


async def _overlays_of(request: Request, stream_id: int) -> list[dict[str, Any]]:
    overlays: list[dict[str, Any]] = await _snapshots(request).get(
        ("player-overlays", stream_id), lambda: _overlays(_node(request), stream_id))
    return overlays


async def stream_info(request: Request, stream: Stream, playback_token: str | None = None) -> dict[str, Any]:
    """What a viewer may know about a stream: playback URLs and state, no push token, no push URLs.

    Overlays are public display data (the widgets end up in the picture anyway); `source_width`/`_height`
    is the pushed frame size the overlay coordinates refer to, null when unknown. With a playback token
    the playback URLs carry it.
    """
    node = _node(request)
    urls = node.urls.stream_urls(stream.id, stream.token)
    if playback_token is not None:
        urls.update(node.urls.playback_urls(stream.id, playback_token))
    rt = node.control.status(stream.id)
    return {
        "id": stream.id,
        "name": stream.name,
        "active": stream.active,
        "live": node.control.is_live(stream.id),
        "projection": stream.projection,
        "html_overlay": stream.html_overlay,
        "overlays": await _overlays_of(request, stream.id) if stream.html_overlay else [],
        "dvr_enabled": stream.dvr_enabled,
        "dvr_duration": stream.dvr_duration,
        "source_width": int(rt.video_width) if rt is not None and rt.video_width else None,
        "source_height": int(rt.video_height) if rt is not None and rt.video_height else None,
        "screenshot": urls["screenshot"],
        "screenshot_ready": node.control.has_screenshot(stream.id),  # so the page never asks for a 404
        "hls_cmaf_url": urls["hls_cmaf_url"],
        "dash_url": urls["dash_url"],
        "hls_mpegts_url": urls["hls_mpegts_url"],
        "whep_url": urls["whep_url"],
    }


@router.get("/streams/{pid}/info.json")
@router.get("/streams/{pid}/t/{token}/info.json", include_in_schema=False)
async def player_info(request: Request, pid: str) -> Response:
    node = _node(request)
    stream = await _load(request, pid)
    if stream is None:
        return JSONResponse({"error": "no such stream"}, status_code=404, headers=NO_CACHE)
    token = request.path_params.get("token")
    if await _refused(node, stream, token):
        return JSONResponse({"error": "a valid playback token is required"}, status_code=403, headers=NO_CACHE)
    return JSONResponse(await stream_info(request, stream, token), headers=NO_CACHE)


@router.get("/streams/{pid}", response_class=HTMLResponse)
@router.get("/streams/{pid}/t/{token}", response_class=HTMLResponse, include_in_schema=False)
async def player_page(request: Request, pid: str,
                      player_id: str | None = Query(None, max_length=16)) -> Response:
    node = _node(request)
    stream = await _load(request, pid)
    if stream is None:
        return HTMLResponse("<!doctype html><title>Not found</title><p>No such stream.</p>", status_code=404,
                            headers=NO_CACHE)
    token = request.path_params.get("token")
    if await _refused(node, stream, token):
        return HTMLResponse("<!doctype html><title>Forbidden</title><p>This stream needs a valid playback link.</p>",
                            status_code=403, headers=NO_CACHE)
    info = await stream_info(request, stream, token)
    config = {
        "info_url": f"/streams/{pid}/t/{token}/info.json" if token else f"/streams/{pid}/info.json",
        "vendor": {"hls": "/player/vendor/hls.min.js", "dash": "/player/vendor/dash.all.min.js",
                   "three": "/player/vendor/three.module.js"},
        "projection_module": "/player/static/projection.js",
        "info": info,
        # `?player_id=N`: a stored player's display settings (settings.py), else the built-in ones
        "player": await load_display_settings(node, parse_player_id(player_id)),
    }
    # `<` escaped: nothing in the JSON can end the <script> block holding it
    config_json = json.dumps(config).replace("<", "\\u003c")
    page = fill(TEMPLATE.read_text(encoding="utf-8"),
                {"title": html.escape(stream.name or f"Stream {stream.id}"), "config": config_json})
    return HTMLResponse(page, headers=NO_CACHE)


@router.get("/player/static/{name}")
async def player_static(name: str) -> Response:
    m = _STATIC.match(name)
    path = STATIC_DIR / name
    if m is None or not path.is_file():
        return PlainTextResponse("no such file\n", status_code=404)
    return FileResponse(path, media_type=_MEDIA_TYPES[m[1]], headers=STATIC_CACHE)


@router.get("/player/vendor/{name}")
async def player_vendor(name: str) -> Response:
    rel = VENDOR.get(name)
    if rel is None:
        return PlainTextResponse("no such file\n", status_code=404)
    path = node_modules_dir() / rel
    if not path.is_file():
        return PlainTextResponse(
            f"player library {rel} is not installed: run `make deps` (npm install) at the repository root, "
            f"or point {NODE_MODULES_ENV} at a node_modules directory\n",
            status_code=503, headers=NO_CACHE)
    return FileResponse(path, media_type="text/javascript", headers=STATIC_CACHE)
