"""One WHIP publisher: an aiortc RTCPeerConnection receiving H.264 + Opus, fed into the stream's Publisher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpReceiver, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from aiortc.sdp import SessionDescription

from onair.hub.ports import IngestSession
from onair.ingest.whip.media import EncodedFrame, TsMuxer

log = logging.getLogger("onair.ingest.whip")

REQUIRED_CODECS = {"video": "video/h264", "audio": "audio/opus"}
CONNECT_TIMEOUT_S = 15.0
FIRST_KEYFRAME_REQUEST_S = 0.5
# Browsers send an IDR only when asked (PLI): ask at the transcoder's keyframe interval so its probe and
# any restart find a decodable start (ffmpeg drops the packets it probed with -fflags nobuffer)
KEYFRAME_REQUEST_INTERVAL_S = 2.0
KEYFRAME_REQUEST_GAP_S = 0.25  # between two requests a reader asked for (one per GOP start is plenty)


class OfferError(ValueError):
    """The offer cannot be accepted; str(exc) is the message for the publisher."""


def check_offer(sdp: str) -> None:
    """WHIP publishers must send H.264 video and Opus audio."""
    try:
        desc = SessionDescription.parse(sdp)
    except Exception as exc:  # noqa: BLE001 - aiortc's parser raises assorted errors on garbage
        raise OfferError(f"malformed SDP offer: {exc}") from exc
    for kind, mime in REQUIRED_CODECS.items():
        offered = [m for m in desc.media if m.kind == kind and m.direction in (None, "sendrecv", "sendonly")]
        if not offered:
            raise OfferError(f"the offer has no {kind} track to send: WHIP needs H.264 video and Opus audio")
        if not any(c.mimeType.lower() == mime for m in offered for c in m.rtp.codecs):
            names = sorted({c.mimeType.split("/")[1] for m in offered for c in m.rtp.codecs})
            raise OfferError(f"{kind} must be {mime.split('/')[1].upper() if kind == 'video' else 'Opus'}; "
                             f"the offer has {', '.join(names) or 'no codec'}")


class WhipSession:
    def __init__(self, publisher: IngestSession, *, stream: str, idle_timeout: float,
                 on_end: Callable[[WhipSession], None]) -> None:
        self.id = secrets.token_urlsafe(12)
        self.publisher = publisher
        self.stream = stream
        self.idle_timeout = idle_timeout
        self._on_end = on_end
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))  # no public STUN by default
        self._frames: asyncio.Queue[EncodedFrame | None] = asyncio.Queue(maxsize=2000)
        self._tasks: list[asyncio.Task[None]] = []
        self._muxer = TsMuxer()
        self._last_frame = time.monotonic()
        self._ended = False
        self._keyframe_wanted = asyncio.Event()
        publisher.keyframe_request = self._keyframe_wanted.set

    async def answer(self, offer_sdp: str) -> str:
        """Negotiate and gather every candidate (no trickle ICE); returns the answer SDP."""
        # Transceivers and codec preferences before setRemoteDescription, or the offer's order wins (VP8).
        for kind, mime in REQUIRED_CODECS.items():
            transceiver = self.pc.addTransceiver(kind, direction="recvonly")
            caps = RTCRtpReceiver.getCapabilities(kind)
            assert caps is not None
            transceiver.setCodecPreferences([c for c in caps.codecs if c.mimeType.lower() in (mime, f"{kind}/rtx")])
        self.pc.on("connectionstatechange", self._state_changed)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        for transceiver in self.pc.getTransceivers():
            if transceiver.kind in REQUIRED_CODECS:
                self._spawn(self._read_track(transceiver.kind, transceiver.receiver))
                if transceiver.kind == "video":
                    self._spawn(self._request_keyframes(transceiver.receiver))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        self._spawn(self._pump())
        self._spawn(self._watch())
        return str(self.pc.localDescription.sdp)

    def _spawn(self, coro: Any) -> None:
        self._tasks.append(asyncio.create_task(coro))

    async def _state_changed(self) -> None:
        log.info("whip connection state", extra={"stream": self.stream, "state": self.pc.connectionState})
        if self.pc.connectionState in ("failed", "closed"):
            await self.close(f"WebRTC connection {self.pc.connectionState}")

    async def _read_track(self, kind: str, receiver: RTCRtpReceiver) -> None:
        track = receiver.track
        with contextlib.suppress(MediaStreamError):
            while True:
                frame = await track.recv()
                if not isinstance(frame, EncodedFrame):
                    continue
                self._last_frame = time.monotonic()
                try:
                    self._frames.put_nowait(frame)
                except asyncio.QueueFull:
                    pass  # the transcoder is stalled; dropping here beats unbounded memory
        await self.close("media track ended")

    async def _request_keyframes(self, receiver: RTCRtpReceiver) -> None:
        send_pli = getattr(receiver, "_send_rtcp_pli", None)  # aiortc has no public PLI API
        if send_pli is None:
            return
        while True:
            interval = KEYFRAME_REQUEST_INTERVAL_S if self._muxer.started else FIRST_KEYFRAME_REQUEST_S
            with contextlib.suppress(TimeoutError):  # a reader that joined may ask earlier
                await asyncio.wait_for(self._keyframe_wanted.wait(), interval)
            self._keyframe_wanted.clear()
            # every SSRC heard: the list holds the RTX one too (first, while the browser probes its bandwidth
            # with RTX padding), and a PLI naming it is ignored
            for source in receiver.getSynchronizationSources():
                with contextlib.suppress(Exception):
                    await send_pli(source.source)
            await asyncio.sleep(KEYFRAME_REQUEST_GAP_S)

    async def _pump(self) -> None:
        """The single writer into the publisher, so TS bytes keep their order."""
        while (frame := await self._frames.get()) is not None:
            data = self._muxer.add(frame)
            if data:
                await self.publisher.feed(data)
            if self._muxer.started:  # the frames as they came, from the first IDR on (WHEP passes them through)
                self.publisher.frame(frame.kind, frame.data, frame.rtp_timestamp, keyframe=frame.is_keyframe())

    async def _watch(self) -> None:
        """End the session when the platform kicks it, ICE never connects, or media stops."""
        started = time.monotonic()
        while not self._ended:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.publisher.closed.wait(), 1.0)
            if self.publisher.closed.is_set():
                await self.close("ended by the platform")
            elif self.pc.connectionState != "connected" and time.monotonic() - started > CONNECT_TIMEOUT_S:
                await self.close("WebRTC connection not established")
            elif self._muxer.started and time.monotonic() - self._last_frame > self.idle_timeout:
                await self.close("no media")

    async def close(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        log.info("whip session ended", extra={"stream": self.stream, "reason": reason,
                                              "frames": self._muxer.frames})
        self._on_end(self)
        current = asyncio.current_task()
        for task in self._tasks:
            if task is not current:
                task.cancel()
        await self.pc.close()
        tail = self._muxer.close()
        if tail and not self.publisher.closed.is_set():
            await self.publisher.feed(tail)
        await self.publisher.close(reason)
