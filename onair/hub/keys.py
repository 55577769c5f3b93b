"""Stream keys as publishers send them: `{id}?{token}` (RTMP), `{id}#{token}` (SRT), `{id}_{token}` (WHIP).

A `b` after the id selects the backup ingest (`{id}b?{token}`), as in the push URLs the API returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_KEY = re.compile(r"^(?P<id>[0-9]{1,10})(?P<backup>b?)[?#_](?P<token>[A-Za-z0-9]{1,128})$")


@dataclass(frozen=True)
class StreamKey:
    stream_id: int
    backup: bool
    token: str

    def redacted(self) -> str:
        return f"{self.stream_id}{'b' if self.backup else ''}"


def parse_stream_key(name: str) -> StreamKey | None:
    match = _KEY.match(name.strip())
    if match is None:
        return None
    stream_id = int(match["id"])
    if not 0 < stream_id < 2**31:
        return None
    return StreamKey(stream_id, bool(match["backup"]), match["token"])
