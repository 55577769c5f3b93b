"""A WHIP publisher for tests: aiortc in its own thread (tests poll with blocking waits), synthetic H.264 + Opus."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import av
import httpx
from aiortc import RTCConfiguration, RTCPeerConnection, RTCRtpSender, RTCSessionDescription
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack

from onair.ingest.whip.ice import configure_host_candidates

# the test server binds to 127.0.0.1 and offers only that address: the client must gather it too
configure_host_candidates("0.0.0.0", loopback=True)


class MovingBars(VideoStreamTrack):
    """640x360 at 30 fps with a moving luma ramp, so every frame differs."""

    def __init__(self, width: int = 640, height: int = 360) -> None:
        super().__init__()
        self.width, self.height, self.n = width, height, 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(self.width, self.height, "yuv420p")
        row = bytes((x + self.n * 4) % 256 for x in range(self.width))
        frame.planes[0].update(row * self.height)
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        self.n += 1
        frame.pts, frame.time_base = pts, time_base
        return frame


class WhipPublisher:
    """publish() → (status, headers, body); the peer connection lives until stop()."""

    def __init__(self, url: str, *, video_codec: str = "video/H264", audio: bool = True,
                 size: tuple[int, int] = (640, 360)) -> None:
        self.url = url
        self.size = size
        self.video_codec = video_codec
        self.audio = audio
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.pc: RTCPeerConnection | None = None
        self.location: str | None = None

    def _run(self, coro: Any, timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def publish(self) -> httpx.Response:
        return self._run(self._publish())  # type: ignore[no-any-return]

    def connection_state(self) -> str:
        return self.pc.connectionState if self.pc else "new"

    async def _publish(self) -> httpx.Response:
        pc = self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        video = pc.addTransceiver(MovingBars(*self.size), direction="sendonly")
        caps = RTCRtpSender.getCapabilities("video")
        video.setCodecPreferences([c for c in caps.codecs if c.mimeType.lower() == self.video_codec.lower()])
        if self.audio:
            pc.addTransceiver(AudioStreamTrack(), direction="sendonly")  # silence, Opus-encoded
        await pc.setLocalDescription(await pc.createOffer())
        async with httpx.AsyncClient(timeout=20) as http:
            r = await http.post(self.url, content=pc.localDescription.sdp,
                                headers={"Content-Type": "application/sdp"})
        if r.status_code == 201:
            self.location = r.headers["location"]
            await pc.setRemoteDescription(RTCSessionDescription(sdp=r.text, type="answer"))
        return r

    def stop(self, delete: bool = True) -> None:
        async def close() -> None:
            if delete and self.location:
                async with httpx.AsyncClient(timeout=10) as http:
                    await http.delete(httpx.URL(self.url).join(self.location))
            if self.pc is not None:
                await self.pc.close()

        try:
            self._run(close(), 20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
