"""Who may publish: the one access rule, and an in-memory snapshot for decisions that cannot wait.

The SRT listen callback runs inside a libsrt thread and must answer during the handshake, so it
reads the `IngestDirectory` snapshot instead of the database; the hub keeps it current (loaded at
start, updated on every stream change or deletion). Entries are replaced whole, so the callback
thread never sees a half-updated stream. The same `access_refusal` rule decides there and when the
hub accepts a publisher.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from onair.hub.keys import StreamKey

__all__ = ["IngestDirectory", "Refusal", "StreamAccess", "access_refusal"]


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


@dataclass(frozen=True)
class Refusal:
    reason: str
    code: int  # WHIP X-Reason-Code (2001 unknown stream, 2002 bad token, 2003 already publishing, ...)
    unknown: bool = False  # the stream does not exist (or the key is not its key)


UNKNOWN = Refusal("unknown stream", 2001, unknown=True)
WRONG_KEY = Refusal("wrong stream key", 2002, unknown=True)
IN_USE = Refusal("stream key already in use by another connection", 2003)
SWITCHED_OFF = Refusal("stream is switched off (active=false)", 2004)
PULL_ONLY = Refusal("stream is a PULL stream: pushes are refused", 2004)
NOT_PULL = Refusal("stream is not a PULL stream", 2004)


def access_refusal(access: StreamAccess | None, key: StreamKey, *, pull: bool = False,
                   in_use: bool = False) -> Refusal | None:
    """None when `key` may publish now; `pull` is the node's own PULL client, `in_use` whether the key is live."""
    if access is None:
        return UNKNOWN
    if not hmac.compare_digest(access.token.encode(), key.token.encode()):
        return WRONG_KEY
    if not access.active:
        return SWITCHED_OFF
    if access.pull != pull:
        return PULL_ONLY if access.pull else NOT_PULL
    if in_use:
        return IN_USE
    return None


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

    def ids(self) -> set[int]:
        return set(self._entries)

    def check(self, key: StreamKey) -> tuple[Refusal | None, StreamAccess | None]:
        """(refusal or None, entry) for a push with this key."""
        entry = self._entries.get(key.stream_id)
        return access_refusal(entry, key), entry
