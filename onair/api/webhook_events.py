"""What webhooks are told, and when: hub events and ready Videos → outbox rows.

These are hooks of the writers of the state they report: the live-state writer (onair.store.live_state)
and the recordings (Recordings.set_video) call them with their session before committing, so an event
row exists exactly when the state change does. `data` is the Stream or the Video object as the API
returns it, which is why this lives in the API layer.

| type | when |
| --- | --- |
| `stream.live` | the primary ingest delivered its first bytes (not when it resumes within the reconnect window) |
| `stream.backup_live` | the backup ingest delivered its first bytes |
| `stream.reconnecting` | the last publisher left and the reconnect window keeps the session open |
| `stream.idle` | the session ended: nobody publishes and no reconnect window is open (or it ran out), also for
  streams a crashed run left live |
| `video.ready` | a Video (a recording, a clip with vod_required) became ready |
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from onair.api.schemas import StreamOut
from onair.api.serialize import video_out
from onair.api.streams import stream_response
from onair.hub.events import HubEvent, PublisherEnded, PublisherLive, SessionPlayable
from onair.store.models import Stream, Video
from onair.store.webhooks import Outbox

if TYPE_CHECKING:
    from onair.node import Node

__all__ = ["WebhookEvents", "stream_event_type"]


def stream_event_type(event: HubEvent) -> str | None:
    # "stream.live" when `live` turns true: the output plays (a primary's first bytes come seconds before)
    if isinstance(event, PublisherLive) and not event.resumed:
        if event.publisher.key.backup:
            return "stream.backup_live"
        return "stream.live" if event.playable else None
    if isinstance(event, SessionPlayable) and event.stream.primary_connected:
        return "stream.live"
    if isinstance(event, PublisherEnded):
        if event.reconnecting:
            return "stream.reconnecting"
        if event.session_over:
            return "stream.idle"
    return None


class WebhookEvents:
    def __init__(self, node: Node, outbox: Outbox) -> None:
        self.node = node
        self.outbox = outbox

    async def live_state(self, db: AsyncSession, event: HubEvent) -> None:
        """A LiveStateWriter hook: the stream row in `db` is already updated."""
        event_type = stream_event_type(event)
        if event_type is not None:
            await self._stream_event(db, event_type, event.stream.stream_id)

    async def stale_streams(self, db: AsyncSession, stream_ids: list[int]) -> None:
        """A reset_stale_live_state hook: sessions a previous run could not end are over now."""
        for stream_id in stream_ids:
            await self._stream_event(db, "stream.idle", stream_id)

    async def video_ready(self, db: AsyncSession, video: Video) -> None:
        """A Recordings ready hook: `video` is the row becoming ready in `db`."""
        webhook_ids = await self.outbox.subscribers(db, "video.ready")
        if webhook_ids:
            await self.outbox.add(db, "video.ready", video_out(self.node, video), webhook_ids)

    async def _stream_event(self, db: AsyncSession, event_type: str, stream_id: int) -> None:
        webhook_ids = await self.outbox.subscribers(db, event_type)
        if not webhook_ids:
            return  # nobody listens: no Stream object to build
        stream = await db.get(Stream, stream_id)
        if stream is None:
            return  # deleted while it was live
        # through the response model, as GET /streaming/streams/{id} answers it
        data = StreamOut.model_validate(await stream_response(self.node, db, stream)).model_dump(mode="json")
        await self.outbox.add(db, event_type, data, webhook_ids)
