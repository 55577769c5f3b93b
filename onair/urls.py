"""Every public URL of a stream, built from the settings and the ports actually bound."""

from __future__ import annotations

import re
from dataclasses import dataclass

_PUBLIC_ID = re.compile(r"^([0-9]{1,10})_([0-9]{1,10})$")


@dataclass
class UrlBuilder:
    host: str
    http_port: int
    rtmp_port: int
    rtmps_port: int
    srt_port: int
    client_id: int

    @property
    def http_base(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def public_id(self, stream_id: int) -> str:
        return f"{self.client_id}_{stream_id}"

    def parse_public_id(self, pid: str) -> int | None:
        """`{client_id}_{n}` of a public URL → n; None when malformed, out of range or another account's."""
        m = _PUBLIC_ID.match(pid)
        if m is None or int(m[1]) != self.client_id or not 0 < int(m[2]) < 2**31:
            return None
        return int(m[2])

    def stream_urls(self, stream_id: int, token: str) -> dict[str, str]:
        base = self.http_base
        rtmp = f"rtmp://{self.host}:{self.rtmp_port}/in"
        srt = f"srt://{self.host}:{self.srt_port}"
        return {
            "push_url": f"{rtmp}/{stream_id}?{token}",
            "backup_push_url": f"{rtmp}/{stream_id}b?{token}",
            "push_url_srt": f"{srt}?streamid={stream_id}#{token}",
            "backup_push_url_srt": f"{srt}?streamid={stream_id}b#{token}",
            "push_url_whip": f"{base}/whip/{stream_id}_{token}/whip",
            **self._playback(stream_id, ""),
        }

    def playback_urls(self, stream_id: int, playback_token: str) -> dict[str, str]:
        """The stream's playback URLs carrying a playback token: `/t/{token}` after the segment naming the stream.

        Playlists name everything relative to themselves, so what a player resolves from these carries it too.
        """
        return self._playback(stream_id, f"/t/{playback_token}")

    def _playback(self, stream_id: int, t: str) -> dict[str, str]:
        pid = self.public_id(stream_id)
        base = self.http_base
        return {
            "hls_cmaf_url": f"{base}/cmaf/{pid}{t}/master.m3u8",
            "dash_url": f"{base}/cmaf/{pid}{t}/index.mpd",
            "hls_mpegts_url": f"{base}/mpegts/{pid}{t}/master_mpegts.m3u8",
            "iframe_url": f"{base}/streams/{pid}{t}",
            "whep_url": f"{base}/whep/{pid}{t}/whep",
            "screenshot": f"{base}/videoplatform/streams/{self.client_id}/{stream_id}{t}/screenshots/last.jpg",
        }

    def video_urls(self, slug: str) -> dict[str, str]:
        vid = f"{self.client_id}_{slug}"
        base = f"{self.http_base}/videos/{vid}"
        return {
            "hls_url": f"{base}/master.m3u8",
            "hls_cmaf_url": f"{base}/master-cmaf.m3u8",
            "dash_url": f"{base}/master.mpd",
            "iframe_url": f"{self.http_base}/videos/{vid}/player",
        }
