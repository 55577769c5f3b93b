"""WHEP playback (WebRTC egress) at the stream's `whep_url`: `/whep/{pid}[/t/{token}]/whep`.

POST an SDP offer (`application/sdp`) → `201` + answer + `Location` of the session; DELETE on it ends the
session. All candidates are gathered before answering (no trickle ICE: PATCH is 405). Refusals are JSON
`{"error": ...}`: 404 unknown stream, 409 not live (or no video yet), 403 a signed stream without a valid
token, 400 an offer that cannot be played, 415/413 a body that is not an SDP offer.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import Gauge

from onair.config import Settings
from onair.delivery.metrics import PLAYBACK_REQUESTS
from onair.delivery.playback import Playback, playback_of
from onair.hub.events import FeedSwitched, HubEvent, PublisherEnded, PublisherLive, SessionEnded, SessionStarted
from onair.hub.live_stream import LiveStream

if TYPE_CHECKING:
    from onair.delivery.whep.feed import WhepFeed
    from onair.delivery.whep.session import WhepSession

__all__ = ["WhepService", "router"]

log = logging.getLogger("onair.delivery.whep")

router = APIRouter(tags=["whep"])
NO_STORE = {"Cache-Control": "no-store"}
MAX_OFFER = 64 * 1024
WHEP_SESSIONS = Gauge("onair_whep_sessions", "WHEP (WebRTC playback) sessions on this node")
VIDEO_WAIT_S = 4.0  # a stream that just went live has no video track yet: wait a little instead of failing


class WhepService:
    """The node's WHEP feeds (one per live session, attached by hub events) and sessions (by id)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.feeds: dict[int, WhepFeed] = {}
        self.sessions: dict[str, WhepSession] = {}
        self._webrtc_ready = False
        WHEP_SESSIONS.set_function(lambda: len(self.sessions))

    def load_webrtc(self) -> None:
        """aiortc is loaded at the first offer (about 20 MB resident): a node nobody watches over WebRTC
        does not carry it. PyAV comes with the first live stream's feed."""
        if self._webrtc_ready:
            return
        from onair.ingest.whip.ice import configure_host_candidates, loopback_wanted

        bind = self.settings.bind
        configure_host_candidates(bind, loopback_wanted(bind, self.settings.whip_loopback_candidates))
        self._webrtc_ready = True

    async def on_event(self, event: HubEvent) -> None:
        if isinstance(event, SessionStarted):
            from onair.delivery.whep.feed import WhepFeed

            await self._end_feed(event.stream.stream_id)
            feed = WhepFeed(event.stream)
            event.stream.track_readers.append(feed)
            event.stream.source_readers.append(feed)
            feed.start()
            self.feeds[event.stream.stream_id] = feed
        elif isinstance(event, PublisherLive | FeedSwitched | PublisherEnded):
            if isinstance(event, PublisherEnded) and (ended := self.feeds.get(event.stream.stream_id)) is not None:
                ended.forget(event.publisher)
            self._follow_source(event.stream)
        elif isinstance(event, SessionEnded):
            current = self.feeds.get(event.stream.stream_id)
            if current is not None and current.stream is event.stream:
                await self._end_feed(event.stream.stream_id)

    def _follow_source(self, stream: LiveStream) -> None:
        """A WebRTC publisher feeding the output is passed through as it is; an RTMP one once its first bytes show
        that it can be (WhepFeed.on_source); anything else goes via the transcoder."""
        feed = self.feeds.get(stream.stream_id)
        if feed is None or feed.stream is not stream:
            return
        feeding = stream.feeding
        if feeding is not None and feeding is feed.source and not feeding.ended:
            return
        feed.use_source(feeding if feeding is not None and feeding.protocol == "whip" and not feeding.ended else None)

    async def _end_feed(self, stream_id: int) -> None:
        feed = self.feeds.pop(stream_id, None)
        if feed is None:
            return
        if feed in feed.stream.track_readers:
            feed.stream.track_readers.remove(feed)
        if feed in feed.stream.source_readers:
            feed.stream.source_readers.remove(feed)
        for session in [s for s in self.sessions.values() if s.feed is feed]:
            await session.close("the stream ended")
        await feed.stop()

    def forget(self, session: WhepSession) -> None:
        self.sessions.pop(session.id, None)

    async def shutdown(self) -> None:
        for stream_id in list(self.feeds):
            await self._end_feed(stream_id)


class WhepRefused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message


def _service(request: Request) -> WhepService:
    service: WhepService = request.app.state.whep_playback
    return service


def _refusal(exc: WhepRefused) -> Response:
    PLAYBACK_REQUESTS.labels("whep", str(exc.status)).inc()
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=NO_STORE)


async def _stream(request: Request, node: Playback, pid: str) -> LiveStream:
    sid = node.urls.parse_public_id(pid)
    if sid is None or await node.guard.access(sid) is None:
        raise WhepRefused(404, "no such stream")
    token = request.path_params.get("token")
    if not await node.guard.allows(sid, token):
        raise WhepRefused(403, "a valid playback token is required" if token is None else "invalid playback token")
    stream = node.hub.live(sid)
    if stream is None:
        raise WhepRefused(409, "stream is not live")
    return stream


async def _feed(service: WhepService, stream: LiveStream) -> WhepFeed:
    feed = service.feeds.get(stream.stream_id)
    if feed is None or feed.stream is not stream:
        raise WhepRefused(409, "stream is not live")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + VIDEO_WAIT_S
    while not feed.has_video:  # the transcoder's first video fragment is on its way: a short poll
        if feed.ended or loop.time() > deadline:
            raise WhepRefused(409, "stream has no video yet")
        await asyncio.sleep(0.1)
    return feed


async def _offer(request: Request) -> str:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/sdp":
        raise WhepRefused(415, "WHEP offers must be sent as Content-Type: application/sdp")
    body = await request.body()
    if len(body) > MAX_OFFER:
        raise WhepRefused(413, "SDP offer too large")
    offer = body.decode("utf-8", errors="replace")
    from onair.delivery.whep.session import OfferError, check_offer

    try:
        check_offer(offer)
    except OfferError as exc:
        raise WhepRefused(400, str(exc)) from None
    return offer


@router.post("/whep/{pid}/whep")
@router.post("/whep/{pid}/t/{token}/whep", include_in_schema=False)
async def whep_play(request: Request, pid: str) -> Response:
    service = _service(request)
    service.load_webrtc()
    from onair.delivery.whep.session import WhepSession

    try:
        offer = await _offer(request)
        feed = await _feed(service, await _stream(request, playback_of(request), pid))
    except WhepRefused as exc:
        return _refusal(exc)
    address = request.client.host if request.client else "?"
    session = WhepSession(feed, address=address, on_end=service.forget)
    service.sessions[session.id] = session
    try:
        answer = await session.answer(offer)
    except Exception as exc:  # noqa: BLE001 - aiortc raises assorted errors on offers it cannot use
        await session.close(f"negotiation failed: {exc}")
        return _refusal(WhepRefused(400, f"cannot negotiate the offer: {exc}"))
    PLAYBACK_REQUESTS.labels("whep", "201").inc()
    feed.stream.saw_viewer(session.client)
    return Response(answer, status_code=201, media_type="application/sdp",
                    headers={"Location": f"{request.url.path}/{session.id}", "ETag": f'"{session.id}"', **NO_STORE})


@router.options("/whep/{pid}/whep")
@router.options("/whep/{pid}/t/{token}/whep", include_in_schema=False)
async def whep_options(pid: str) -> Response:
    return Response(status_code=204, headers={"Accept-Post": "application/sdp"})


@router.delete("/whep/{pid}/whep/{session_id}")
@router.delete("/whep/{pid}/t/{token}/whep/{session_id}", include_in_schema=False)
async def whep_delete(request: Request, pid: str, session_id: str) -> Response:
    service = _service(request)
    session = service.sessions.get(session_id)
    node = playback_of(request)
    if session is None or node.urls.parse_public_id(pid) != session.stream_id:
        return JSONResponse({"error": "no such WHEP session"}, status_code=404, headers=NO_STORE)
    await session.close("WHEP session deleted by the viewer")
    return Response(status_code=200, headers=NO_STORE)


@router.patch("/whep/{pid}/whep/{session_id}")
@router.patch("/whep/{pid}/t/{token}/whep/{session_id}", include_in_schema=False)
async def whep_patch(pid: str, session_id: str) -> Response:
    return Response("trickle ICE is not supported: all candidates are in the offer and the answer\n",
                    status_code=405, media_type="text/plain", headers={"Allow": "DELETE"})
