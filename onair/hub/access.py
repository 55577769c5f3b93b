"""In-memory snapshot of who may publish, for decisions that cannot wait for the database.

The SRT listen callback runs inside a libsrt thread and must answer during the handshake, so it
reads this snapshot instead of the database. StreamLifecycle keeps it current (loaded at start,
updated on every stream change or deletion). Reads and writes replace whole immutable entries, so
the callback thread never sees a half-updated stream.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from onair.hub.keys import StreamKey

__all__ = ["IngestDirectory", "StreamAccess"]


class _StreamLike(Protocol):
    id: int
    token: str
    srt_passphrase: str | None
    active: bool
    pull: bool


@dataclass(frozen=True)
class StreamAccess:
    token: str
    srt_passphrase: str | None
    active: bool
    pull: bool


class IngestDirectory:
    def __init__(self) -> None:
        self._entries: dict[int, StreamAccess] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def update(self, stream: _StreamLike) -> None:
        self._entries[stream.id] = StreamAccess(stream.token, stream.srt_passphrase or None, bool(stream.active),
                                                bool(stream.pull))

    def remove(self, stream_id: int) -> None:
        self._entries.pop(stream_id, None)

    def get(self, stream_id: int) -> StreamAccess | None:
        return self._entries.get(stream_id)

    def check(self, key: StreamKey) -> tuple[str | None, StreamAccess | None]:
        """(refusal reason or None, entry) for a push with this key."""
        entry = self._entries.get(key.stream_id)
        if entry is None or not hmac.compare_digest(entry.token.encode(), key.token.encode()):
            return "unknown stream or wrong key", None
        if not entry.active:
            return "stream is switched off (active=false)", entry
        if entry.pull:
            return "stream is a PULL stream: pushes are refused", entry
        return None, entry
