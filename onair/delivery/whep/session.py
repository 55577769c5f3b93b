"""One WHEP viewer: an aiortc RTCPeerConnection sending the feed's H.264 and Opus packets as they are.

aiortc packetizes an `av.Packet` a track yields without encoding it (RTCRtpSender: `encoder.pack`), so the
tracks here only hand over what the stream's feed queued for this viewer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import av
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.sdp import SessionDescription

from onair.delivery.whep.feed import Viewer, WhepFeed

__all__ = ["OfferError", "WhepSession", "check_offer"]

log = logging.getLogger("onair.delivery.whep")

CODECS = {"video": "video/h264", "audio": "audio/opus"}
CONNECT_TIMEOUT_S = 15.0
VIEWER_MARK_S = 5.0  # how often a connected peer counts as watching (the window counts the last 15 s)


class OfferError(ValueError):
    """The offer cannot be played; str(exc) is the message for the viewer."""


def check_offer(sdp: str) -> None:
    """A WHEP offer must receive H.264 video (audio, when offered, must accept Opus)."""
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:  # noqa: BLE001 - aiortc's parser raises assorted errors on garbage
        raise OfferError(f"malformed SDP offer: {exc}") from exc
    receiving = [m for m in desc.media if m.direction in (None, "sendrecv", "recvonly")]
    for kind, mime in CODECS.items():
        offered = [m for m in receiving if m.kind == kind]
        if kind == "video" and not offered:
            raise OfferError("the offer receives no video: WHEP plays H.264 video and Opus audio")
        if offered and not any(c.mimeType.lower() == mime for m in offered for c in m.rtp.codecs):
            raise OfferError(f"{kind} must accept {mime.split('/')[1].upper() if kind == 'video' else 'Opus'}")


class PacketTrack(MediaStreamTrack):
    """Yields the encoded packets the feed queued; None from the queue ends the track."""

    def __init__(self, kind: str, queue: asyncio.Queue[av.Packet | None]) -> None:
        super().__init__()
        self.kind = kind
        self._queue = queue

    async def recv(self) -> av.Packet:  # type: ignore[override]
        packet = await self._queue.get()
        if packet is None or self.readyState != "live":
            self.stop()
            raise MediaStreamError
        return packet


class WhepSession:
    def __init__(self, feed: WhepFeed, *, address: str, on_end: Callable[[WhepSession], None]) -> None:
        self.id = secrets.token_urlsafe(12)
        self.feed = feed
        self.client = f"{address} whep {self.id}"  # each peer connection is a viewer of its own
        self._on_end = on_end
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no public STUN by default
        self.viewer = Viewer()
        self.started = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []
        self.ended = False
        self._closed = asyncio.Event()

    @property
    def stream_id(self) -> int:
        return self.feed.stream.stream_id

    async def answer(self, offer_sdp: str) -> str:
        """Negotiate and gather every candidate (no trickle ICE); returns the answer SDP."""
        # Transceivers and codec preferences before setRemoteDescription (the offer's m-lines take them), or
        # aiortc negotiates from its own list and may answer VP8 while H.264 is what the packets are
        queues = {"video": self.viewer.video, "audio": self.viewer.audio}
        for kind, mime in CODECS.items():
            transceiver = self.pc.addTransceiver(PacketTrack(kind, queues[kind]), direction="sendonly")
            caps = RTCRtpSender.getCapabilities(kind)
            transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType.lower() in (mime, f"{kind}/rtx")])
        self.pc.on("connectionstatechange", self._state_changed)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self.feed.add(self.viewer)
        self._tasks.append(asyncio.create_task(self._watch()))
        return str(self.pc.localDescription.sdp)

    async def _state_changed(self) -> None:
        if self.pc.connectionState in ("failed", "closed"):
            await self.close(f"WebRTC connection {self.pc.connectionState}")

    async def _watch(self) -> None:
        """Count as a viewer while connected; end when ICE never connects or the stream's session ends."""
        last_mark = 0.0
        while not self.ended:
            now = time.monotonic()
            if self.feed.ended:
                await self.close("the stream ended")
            elif self.pc.connectionState != "connected" and now - self.started > CONNECT_TIMEOUT_S:
                await self.close("WebRTC connection not established")
            elif now - last_mark >= VIEWER_MARK_S:
                last_mark = now
                self.feed.stream.saw_viewer(self.client)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closed.wait(), 1.0)

    async def close(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        self._closed.set()
        log.info("whep session ended", extra={"stream_id": self.stream_id, "reason": reason,
                                              "video_packets": self.viewer.sent_video,
                                              "restarts": self.viewer.restarts})
        self._on_end(self)
        self.feed.remove(self.viewer)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await self.pc.close()

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.pc.connectionState, "video_packets": self.viewer.sent_video}
