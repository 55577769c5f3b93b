"""WHIP endpoints (RFC 9725) on `push_url_whip` and the "go live from the browser" page.

POST `/whip/{id}_{token}/whip` with an SDP offer → 201 + answer + `Location` of the session resource;
DELETE on that resource ends it. All ICE candidates are gathered before answering, so trickle ICE (PATCH)
is answered 405. CORS (preflight included) is handled by the app's middleware.
"""

from __future__ import annotations

import html
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, PlainTextResponse
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.config import Settings
from onair.hub.keys import parse_stream_key
from onair.hub.ports import IngestGateway, IngestRefused
from onair.store.models import Stream
from onair.templates import fill
from onair.urls import UrlBuilder

if TYPE_CHECKING:
    from onair.ingest.whip.session import WhipSession

log = logging.getLogger("onair.ingest.whip")

router = APIRouter(tags=["whip"])
PAGE = Path(__file__).with_name("golive.html")
NO_STORE = {"Cache-Control": "no-store"}
MAX_OFFER = 64 * 1024
# refusal code → HTTP status: a stream that does not exist is 401, any other refusal 403
STATUS_OF_CODE = {2001: 401}


class WhipService:
    """The node's WHIP sessions, by session id."""

    def __init__(self, gateway: IngestGateway, settings: Settings, urls: UrlBuilder,
                 sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.gateway = gateway
        self.settings = settings
        self.urls = urls
        self.sessionmaker = sessionmaker
        self.sessions: dict[str, WhipSession] = {}
        self._webrtc_ready = False

    def load_webrtc(self) -> None:
        """Load and configure aiortc at the first offer: it is about 35 MB resident, which a node that never sees
        a WHIP publisher should not carry."""
        if self._webrtc_ready:
            return
        from onair.ingest.whip.ice import configure_host_candidates, loopback_wanted
        from onair.ingest.whip.media import install_passthrough

        install_passthrough()
        bind = self.settings.bind
        configure_host_candidates(bind, loopback_wanted(bind, self.settings.whip_loopback_candidates))
        self._webrtc_ready = True

    def forget(self, session: WhipSession) -> None:
        self.sessions.pop(session.id, None)


def _service(request: Request) -> WhipService:
    service: WhipService = request.app.state.whip
    return service


def _error(status: int, message: str, code: int | None = None) -> Response:
    headers = dict(NO_STORE)
    if code is not None:
        headers["X-Reason-Code"] = str(code)
    return PlainTextResponse(message + "\n", status_code=status, headers=headers)


@router.post("/whip/{key}/whip")
async def whip_publish(request: Request, key: str) -> Response:
    service = _service(request)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        return _error(415, "WHIP offers must be sent as Content-Type: application/sdp")
    body = await request.body()
    if len(body) > MAX_OFFER:
        return _error(413, "SDP offer too large")
    stream_key = parse_stream_key(key)
    if stream_key is None or stream_key.backup:  # WHIP has no backup endpoint
        return _error(401, "stream does not exist", 2001)
    offer = body.decode("utf-8", errors="replace")
    service.load_webrtc()
    from onair.ingest.whip.session import OfferError, WhipSession, check_offer

    try:
        check_offer(offer)
    except OfferError as exc:
        return _error(406, str(exc))
    remote = f"{request.client.host}:{request.client.port}" if request.client else "?"
    try:
        publisher = await service.gateway.open_session(protocol="whip", app="whip", stream_name=key, remote=remote)
    except IngestRefused as exc:
        return _error(STATUS_OF_CODE.get(exc.code or 0, 403), str(exc), exc.code)
    session = WhipSession(publisher, stream=stream_key.redacted(),
                          idle_timeout=service.settings.ingest_idle_timeout, on_end=service.forget)
    service.sessions[session.id] = session
    try:
        answer = await session.answer(offer)
    except Exception as exc:  # noqa: BLE001 - aiortc raises assorted errors on offers it cannot use
        log.info("whip negotiation failed", extra={"stream": stream_key.redacted(), "error": str(exc)})
        await session.close(f"negotiation failed: {exc}")
        return _error(400, f"cannot negotiate the offer: {exc}")
    location = f"/whip/{key}/whip/{session.id}"
    return Response(answer, status_code=201, media_type="application/sdp",
                    headers={"Location": location, "ETag": f'"{session.id}"', **NO_STORE})


@router.options("/whip/{key}/whip")
async def whip_options(key: str) -> Response:
    return Response(status_code=204, headers={"Accept-Post": "application/sdp"})


@router.delete("/whip/{key}/whip/{session_id}")
async def whip_delete(request: Request, key: str, session_id: str) -> Response:
    service = _service(request)
    session = service.sessions.get(session_id)
    stream_key = parse_stream_key(key)
    # the key in the resource URL is the secret: a session id alone does not end someone's stream
    if session is None or stream_key is None or getattr(session.publisher, "key", stream_key) != stream_key:
        return _error(404, "no such WHIP session")
    await session.close("WHIP session deleted by the publisher")
    return Response(status_code=200, headers=NO_STORE)


@router.patch("/whip/{key}/whip/{session_id}")
async def whip_patch(key: str, session_id: str) -> Response:
    return Response("trickle ICE is not supported: all candidates are in the offer and the answer\n",
                    status_code=405, media_type="text/plain", headers={"Allow": "DELETE"})




@router.get("/streams/{pid}/golive", response_class=HTMLResponse)
async def golive_page(request: Request, pid: str) -> Response:
    """Camera/microphone → WHIP. The page never holds the token: the WHIP URL is typed or passed in `?whip=`."""
    service = _service(request)
    sid = service.urls.parse_public_id(pid)
    stream = None
    if sid is not None:
        async with service.sessionmaker() as db:
            stream = await db.get(Stream, sid)
    if stream is None:
        return HTMLResponse("<!doctype html><title>Not found</title><p>No such stream.</p>", status_code=404,
                            headers=NO_STORE)
    config = json.dumps({"player_url": f"/streams/{pid}", "hls_url": f"/cmaf/{pid}/master.m3u8"})
    page = fill(PAGE.read_text(encoding="utf-8"),
                {"title": html.escape(stream.name or f"Stream {stream.id}"), "config": config.replace("</", "<\\/")})
    # no-referrer: the WHIP URL (with its token) may sit in this page's query string
    return HTMLResponse(page, headers={**NO_STORE, "Referrer-Policy": "no-referrer"})
