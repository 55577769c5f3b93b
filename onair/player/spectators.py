"""Viewers of broadcast pages: client ids seen polling `info.json`, counted while seen within 30 s."""

from __future__ import annotations

import re
import time

WINDOW_S = 30.0
MAX_CLIENTS = 100_000  # per broadcast: a flood of made-up ids cannot grow memory without bound
_CLIENT = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


class SpectatorRegistry:
    def __init__(self, window: float = WINDOW_S) -> None:
        self.window = window
        self._seen: dict[int, dict[str, float]] = {}

    def seen(self, broadcast_id: int, client: str | None) -> None:
        """Record a poll of the broadcast page by `client` (ids not shaped like ours are ignored)."""
        if client is None or not _CLIENT.match(client):
            return
        now = time.monotonic()
        clients = self._seen.setdefault(broadcast_id, {})
        if client not in clients and len(clients) >= MAX_CLIENTS:
            for c in [c for c, t in clients.items() if now - t >= self.window]:
                del clients[c]
            if len(clients) >= MAX_CLIENTS:
                return
        clients[client] = now

    def count(self, broadcast_id: int) -> int:
        """Clients seen within the window; older ones are dropped on the way."""
        clients = self._seen.get(broadcast_id)
        if not clients:
            return 0
        now = time.monotonic()
        for c in [c for c, t in clients.items() if now - t >= self.window]:
            del clients[c]
        return len(clients)

    def forget(self, broadcast_id: int) -> None:
        self._seen.pop(broadcast_id, None)


# one registry per process (a node is one process)
SPECTATORS = SpectatorRegistry()
