"""Public pages beyond the live player (routes.py):

    GET /videos/{cid}_{slug}/player            the VOD player, a Video's `iframe_url` (`?t=<sec>` starts there)
    GET /videos/{cid}_{slug}/player/info.json  what it plays (polled while the Video is processing)
    GET /broadcasts/{cid}_{id}                 the broadcast page: status message or the live stream
    GET /broadcasts/{cid}_{id}/info.json       its state, polled every 2 s; counts spectators
    GET /player/config/{id}.json               the public display settings of a stored player

Every page takes `?player_id=N` (a broadcast uses its own `player_id` unless the URL names one) and
applies that player's display settings in the browser (static/skin.js). `render_preview` draws the
player page for `GET /streaming/players/{id}/preview` (served by the authenticated API).
These routes must be registered before vod.py's `/videos/{vid}/{file:path}` catch-all.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from sqlalchemy import select

from onair.player.settings import load_display_settings, parse_player_id, safe_url
from onair.player.spectators import SPECTATORS
from onair.store.models import Document, Stream, Video
from onair.templates import fill

if TYPE_CHECKING:
    from onair.node import Node

router = APIRouter(tags=["player"])

TEMPLATES = Path(__file__).resolve().parent / "templates"
NO_CACHE = {"Cache-Control": "no-cache, no-store"}
VENDOR = {"hls": "/player/vendor/hls.min.js"}
PLAYABLE = ("ready", "viewable")
BROADCAST_POLL_MS = 2000
DEFAULT_MESSAGES = {
    "Pending": "The broadcast has not started yet. It will begin shortly.",
    "Paused": "The broadcast is paused. It will be back shortly.",
    "Finished": "The broadcast has finished. Thank you for watching!",
}
_VID = re.compile(r"^([0-9]{1,10})_([A-Za-z0-9]{1,32})$")


def _node(request: Request) -> Node:
    node: Node = request.app.state.node
    return node


def render(template: str, title: str, config: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """A page from templates/: the config JSON goes into a <script> block, `<` escaped so it cannot end it."""
    config_json = json.dumps(config).replace("<", "\\u003c")
    page = fill((TEMPLATES / template).read_text(encoding="utf-8"),
                {"title": html.escape(title), "config": config_json})
    return HTMLResponse(page, status_code=status_code, headers=NO_CACHE)


def not_found_page(what: str) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><meta charset='utf-8'><title>Not found</title>"
                        f"<p>No such {html.escape(what)}.</p>", status_code=404, headers=NO_CACHE)


def _with_player(url: str, player_id: int | None) -> str:
    return f"{url}?player_id={player_id}" if player_id is not None else url


# --- VOD player --------------------------------------------------------------------------------------

async def _video(node: Node, vid: str) -> Video | None:
    m = _VID.match(vid)
    if m is None or int(m[1]) != node.settings.client_id:
        return None
    async with node.sessionmaker() as db:
        return (await db.execute(select(Video).where(Video.slug == m[2]))).scalar_one_or_none()


def video_info(node: Node, v: Video) -> dict[str, Any]:
    """What a viewer may know about a Video: title, status, playback URLs and poster."""
    urls = node.urls.video_urls(v.slug)
    files = node.library.video_files(v)
    return {
        "id": v.id, "name": v.name, "status": v.status, "playable": v.status in PLAYABLE,
        "duration": (v.duration_ms or 0) / 1000 or None, "projection": v.projection,
        "hls_url": urls["hls_url"], "hls_cmaf_url": urls["hls_cmaf_url"],
        "poster": files.get("screenshot"),
    }


@router.get("/videos/{vid}/player/info.json")
async def video_player_info(request: Request, vid: str) -> Response:
    node = _node(request)
    v = await _video(node, vid)
    if v is None:
        return JSONResponse({"error": "no such video"}, status_code=404, headers=NO_CACHE)
    return JSONResponse(video_info(node, v), headers=NO_CACHE)


@router.get("/videos/{vid}/player", response_class=HTMLResponse)
async def video_player(request: Request, vid: str,
                       player_id: str | None = Query(None, max_length=16)) -> Response:
    node = _node(request)
    v = await _video(node, vid)
    if v is None:
        return not_found_page("video")
    config = {"info_url": f"/videos/{vid}/player/info.json", "vendor": VENDOR, "info": video_info(node, v),
              "player": await load_display_settings(node, parse_player_id(player_id)), "preview": False}
    return render("vod.html", v.name or f"Video {v.id}", config)


def render_preview(settings: dict[str, Any], title: str) -> HTMLResponse:
    """The VOD player page in its demo state (no media) with a stored player's settings applied."""
    info = {"id": None, "name": title, "status": "preview", "playable": False, "duration": None,
            "projection": "regular", "hls_url": None, "hls_cmaf_url": None, "poster": None}
    config = {"info_url": None, "vendor": VENDOR, "info": info, "player": settings, "preview": True}
    return render("vod.html", title, config)


# --- broadcast page ----------------------------------------------------------------------------------

async def _broadcast(node: Node, bid: str) -> Document | None:
    doc_id = node.urls.parse_public_id(bid)
    if doc_id is None:
        return None
    async with node.sessionmaker() as db:
        doc = await db.get(Document, doc_id)
    return doc if doc is not None and doc.kind == "broadcast" else None


def _stream_ids(data: dict[str, Any]) -> list[int]:
    ids = data.get("stream_ids") or []
    return [i for i in ids if isinstance(i, int) and 0 < i < 2**31][:1000]


async def broadcast_info(node: Node, doc: Document, player_id: int | None) -> dict[str, Any]:
    """The public state of a broadcast: status, message, poster and (when Live) the stream to play.

    Live plays the first stream of `stream_ids` that is live, else the first that exists (its player
    waits for it). Finished with `show_dvr_after_finish` offers the newest playable recording of those
    streams. Stream tokens and push URLs never appear here.
    """
    data = doc.data
    status = str(data.get("status") or "Pending").capitalize()
    if status not in ("Pending", "Live", "Paused", "Finished"):
        status = "Pending"
    message: str | None = DEFAULT_MESSAGES.get(status)
    if status == "Pending" and str(data.get("pending_message") or "").strip():
        message = str(data["pending_message"])
    out: dict[str, Any] = {"id": doc.id, "name": data.get("name"), "status": status, "message": message,
                           "poster": safe_url(data.get("poster")), "stream": None, "video": None,
                           "share_url": safe_url(data.get("share_url")), "poll_ms": BROADCAST_POLL_MS}
    ids = _stream_ids(data)
    if status == "Live" and ids:
        async with node.sessionmaker() as db:
            rows = {s.id: s for s in (await db.execute(select(Stream).where(Stream.id.in_(ids)))).scalars()}
        streams = [rows[i] for i in ids if i in rows]
        live = [s for s in streams if node.control.is_live(s.id)]
        candidates = live or streams
        if candidates:
            chosen = candidates[0]
            urls = node.urls.stream_urls(chosen.id, chosen.token)
            out["stream"] = {"id": chosen.id, "live": bool(live),
                             "iframe_url": _with_player(urls["iframe_url"], player_id),
                             "hls_cmaf_url": urls["hls_cmaf_url"], "hls_mpegts_url": urls["hls_mpegts_url"],
                             "dash_url": urls["dash_url"], "screenshot": urls["screenshot"]}
    elif status == "Finished" and data.get("show_dvr_after_finish") and ids:
        async with node.sessionmaker() as db:
            v = (await db.execute(select(Video).where(Video.stream_id.in_(ids), Video.status.in_(PLAYABLE))
                                  .order_by(Video.id.desc()).limit(1))).scalar_one_or_none()
        if v is not None:
            out["video"] = {"id": v.id,
                            "iframe_url": _with_player(node.urls.video_urls(v.slug)["iframe_url"], player_id)}
    return out


def _broadcast_player_id(doc: Document, raw: str | None) -> int | None:
    """`?player_id=` of the URL, else the broadcast's own player."""
    pid = parse_player_id(raw)
    if pid is None:
        stored = doc.data.get("player_id")
        pid = stored if isinstance(stored, int) and 0 < stored < 2**31 else None
    return pid


@router.get("/broadcasts/{bid}/info.json")
async def broadcast_info_json(request: Request, bid: str,
                              client: str | None = Query(None, max_length=64),
                              player_id: str | None = Query(None, max_length=16)) -> Response:
    node = _node(request)
    doc = await _broadcast(node, bid)
    if doc is None:
        return JSONResponse({"error": "no such broadcast"}, status_code=404, headers=NO_CACHE)
    SPECTATORS.seen(doc.id, client)
    return JSONResponse(await broadcast_info(node, doc, _broadcast_player_id(doc, player_id)), headers=NO_CACHE)


@router.get("/broadcasts/{bid}", response_class=HTMLResponse)
async def broadcast_page(request: Request, bid: str,
                         player_id: str | None = Query(None, max_length=16)) -> Response:
    node = _node(request)
    doc = await _broadcast(node, bid)
    if doc is None:
        return not_found_page("broadcast")
    pid = _broadcast_player_id(doc, player_id)
    info_url = f"/broadcasts/{bid}/info.json" + (f"?player_id={pid}" if pid is not None else "")
    config = {"info_url": info_url, "info": await broadcast_info(node, doc, pid),
              "player": await load_display_settings(node, pid)}
    return render("broadcast.html", str(doc.data.get("name") or f"Broadcast {doc.id}"), config)


# --- public player settings --------------------------------------------------------------------------

@router.get("/player/config/{player_id}.json")
async def player_config(request: Request, player_id: str) -> Response:
    """The display settings of a stored player: what the pages apply, nothing else (no name, no JS URLs)."""
    node = _node(request)
    pid = parse_player_id(player_id)
    settings = await load_display_settings(node, pid)
    if pid is None or settings["player_id"] != pid:
        return JSONResponse({"error": "no such player"}, status_code=404, headers=NO_CACHE)
    return JSONResponse(settings, headers=NO_CACHE)
