"""Helpers for the SRT, backup and PULL tests: ffmpeg senders and stream API shortcuts."""

from __future__ import annotations

import subprocess
from typing import Any

from tests.conftest import OnairServer


def source_args(size: str = "640x360", rate: int = 25, seconds: float | None = None) -> list[str]:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-re",
           "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}", "-f", "lavfi", "-i", "sine=frequency=440"]
    if seconds is not None:
        cmd += ["-t", str(seconds)]
    return cmd + ["-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(2 * rate),
                  "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k"]


def push_srt(url: str, *, passphrase: str | None = None, seconds: float | None = None,
             size: str = "640x360") -> subprocess.Popen[bytes]:
    """An SRT publisher. The `#` of `{id}#{token}` goes into the URL as is: ffmpeg 5.1 passes the
    query value unchanged to SRTO_STREAMID (`%23` is not decoded by ffmpeg; onair decodes it)."""
    if passphrase:
        url += f"&passphrase={passphrase}&pbkeylen=16"
    cmd = [*source_args(size=size, seconds=seconds), "-f", "mpegts", url]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def create_stream(srv: OnairServer, **fields: Any) -> dict[str, Any]:
    with srv.client() as c:
        r = c.post("/streaming/streams", json={"name": "ingest test", "active": True, **fields})
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


def get_stream(srv: OnairServer, sid: int) -> dict[str, Any]:
    with srv.client() as c:
        data: dict[str, Any] = c.get(f"/streaming/streams/{sid}").raise_for_status().json()
        return data


def patch_stream(srv: OnairServer, sid: int, **fields: Any) -> dict[str, Any]:
    with srv.client() as c:
        data: dict[str, Any] = c.patch(f"/streaming/streams/{sid}", json={"stream": fields}).raise_for_status().json()
        return data
