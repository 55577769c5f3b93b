"""API keys are stored as SHA-256 digests only."""

from __future__ import annotations

import hashlib


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()
