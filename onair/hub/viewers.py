"""Who is watching: clients seen within a sliding window (playback requests, player page polls)."""

from __future__ import annotations

WINDOW_S = 30.0
MAX_CLIENTS = 100_000  # a flood of made-up clients cannot grow memory without bound


class ViewerWindow:
    """Clients seen within the last `window` seconds; times are passed in (monotonic seconds)."""

    def __init__(self, window: float = WINDOW_S, max_clients: int = MAX_CLIENTS) -> None:
        self.window = window
        self.max_clients = max_clients
        self._seen: dict[str, float] = {}

    def saw(self, client: str, now: float) -> None:
        if client not in self._seen and len(self._seen) >= self.max_clients:
            self.expire(now)
            if len(self._seen) >= self.max_clients:
                return
        self._seen[client] = now

    def expire(self, now: float, older_than: float | None = None) -> None:
        cutoff = now - (self.window if older_than is None else older_than)
        for client in [c for c, t in self._seen.items() if t < cutoff]:
            del self._seen[client]

    def count(self, now: float, within: float | None = None) -> int:
        """Clients seen in the last `within` seconds (default: the whole window)."""
        limit = self.window if within is None else within
        return sum(1 for t in self._seen.values() if now - t < limit)

    def seen_since(self, since: float) -> list[str]:
        return [c for c, t in self._seen.items() if t >= since]
