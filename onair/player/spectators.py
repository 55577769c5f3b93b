"""Viewers of broadcast pages: client ids seen polling `info.json`, counted while seen within 30 s."""

from __future__ import annotations

import re
import time

from onair.hub.viewers import ViewerWindow

_CLIENT = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class SpectatorRegistry:
    def __init__(self) -> None:
        self._windows: dict[int, ViewerWindow] = {}

    def seen(self, broadcast_id: int, client: str | None) -> None:
        """Record a poll of the broadcast page by `client` (ids not shaped like ours are ignored)."""
        if client is None or not _CLIENT.match(client):
            return
        self._windows.setdefault(broadcast_id, ViewerWindow()).saw(client, time.monotonic())

    def count(self, broadcast_id: int) -> int:
        """Clients seen within the window; older ones are dropped on the way."""
        window = self._windows.get(broadcast_id)
        if window is None:
            return 0
        now = time.monotonic()
        window.expire(now)
        return window.count(now)

    def forget(self, broadcast_id: int) -> None:
        self._windows.pop(broadcast_id, None)


# one registry per process (a node is one process)
SPECTATORS = SpectatorRegistry()
