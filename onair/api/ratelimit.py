"""Sliding-window counter of failed authentications per client address (never consulted for a valid key)."""

from __future__ import annotations

import time
from collections import defaultdict, deque


class FailureLimiter:
    def __init__(self, max_failures: int = 20, window: float = 10.0) -> None:
        self.max_failures = max_failures
        self.window = window
        # the newest `max_failures` times are all the check needs: memory stays bounded under a flood
        self._failures: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=max_failures))

    def _trim(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and now - q[0] > self.window:
            q.popleft()
        return q

    def failed(self, key: str) -> None:
        now = time.monotonic()
        self._trim(key, now).append(now)
        if len(self._failures) > 10000:  # bound memory under address spraying
            self._failures.clear()

    def blocked(self, key: str) -> bool:
        if key not in self._failures:
            return False
        return len(self._trim(key, time.monotonic())) >= self.max_failures
