"""The playback counter shared by every playback route (HLS, DASH, screenshots, WHEP)."""

from __future__ import annotations

from prometheus_client import Counter

PLAYBACK_REQUESTS = Counter("onair_playback_requests_total", "Playback requests answered (every kind, every status)",
                            ["kind", "status"])
