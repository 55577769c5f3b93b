"""Stream lifecycle: who may publish, what runs while a stream is live, and the state the API reports."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.config import Settings
from onair.media.library import VideoLibrary
from onair.store.models import Stream

log = logging.getLogger("onair.lifecycle")


@dataclass
class RuntimeStats:
    transcoding_speed: float | None = None
    frame_rate: float | None = None
    video_width: float | None = None
    video_height: float | None = None
    transcoded_qualities: list[str] | None = None
    recording_duration: float | None = None
    viewers: set[str] = field(default_factory=set)


class StreamLifecycle:
    def __init__(self, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession],
                 library: VideoLibrary) -> None:
        self.settings = settings
        self.sessionmaker = sessionmaker
        self.library = library
        self._runtime: dict[int, RuntimeStats] = {}

    def runtime(self, stream_id: int) -> RuntimeStats | None:
        return self._runtime.get(stream_id)

    async def start(self) -> None:
        pass

    async def shutdown(self) -> None:
        pass

    def live_count(self) -> int:
        return 0

    def viewers(self, stream_id: int) -> int:
        rt = self._runtime.get(stream_id)
        return len(rt.viewers) if rt else 0

    async def stream_changed(self, stream: Stream) -> None:
        pass

    async def stream_deleted(self, stream_id: int) -> None:
        pass

    async def overlays_changed(self, stream_id: int) -> None:
        pass

    async def document_changed(self, kind: str, doc_id: int) -> None:
        pass

    async def dvr_cleanup(self, stream_id: int) -> None:
        pass

    async def start_recording(self, stream_id: int) -> None:
        pass

    async def stop_recording(self, stream_id: int) -> dict[str, object] | None:
        return None

    async def clip_requested(self, clip_id: str) -> None:
        pass
