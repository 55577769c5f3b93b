"""What the playback routes need of a node: the hub's live streams, public ids, the video library, who may play."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.delivery.signing import PlaybackGuard
from onair.hub.registry import StreamHub
from onair.outputs.library import VideoLibrary
from onair.urls import UrlBuilder

__all__ = ["Playback", "playback_of"]


@dataclass
class Playback:
    hub: StreamHub
    urls: UrlBuilder
    library: VideoLibrary
    sessionmaker: async_sessionmaker[AsyncSession]
    guard: PlaybackGuard


def playback_of(request: Request) -> Playback:
    playback: Playback = request.app.state.playback
    return playback
