"""DVR: the packaged segments of a live stream kept on disk for `dvr_duration` seconds.

The packager keeps segment metadata for the whole DVR window (so playlists and the MPD list it) but
only the bytes of the newest few segments in memory; every completed segment is written here by the
packager's segment hook, and older ones are served from disk. Layout::

    {root}/{track}/init.mp4   {root}/{track}/seg{msn}.m4s
"""

from __future__ import annotations

import logging
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from onair.hub.events import HubEvent, SessionEnded, SessionStarted
from onair.hub.live_stream import LiveStream
from onair.hub.registry import StreamHub
from onair.package.packager import Segment, TrackPackager
from onair.package.window import dvr_window_segments

log = logging.getLogger("onair.outputs.dvr")

# Complete segments left in the playlists by dvr_cleanup: the live edge players are sitting on.
CLEANUP_KEEP = 3
_TS_SEG = re.compile(r"seg([0-9]+)\.ts")


class DvrStore:
    def __init__(self, root: Path, dvr_seconds: int) -> None:
        self.root = root
        self.dvr_seconds = dvr_seconds
        self.window = dvr_window_segments(dvr_seconds)
        self._inits: dict[str, bytes] = {}
        # one worker: writes and deletions of a track happen in order, off the event loop
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dvr")
        self._ts_cutoff: dict[str, int] = {}

    def path(self, track: str, msn: int) -> Path:
        return self.root / track / f"seg{msn}.m4s"

    def on_segment(self, tp: TrackPackager, seg: Segment) -> None:
        """Packager hook (event loop): queue the segment (and a changed init) for writing."""
        track, data = tp.name, seg.data
        init = tp.init if tp.init is not None and self._inits.get(track) != tp.init else None
        if init is not None:
            self._inits[track] = init
        stale = seg.msn - tp.window_segments - 1
        self._io.submit(self._write, track, seg.msn, data, init, stale)

    def _write(self, track: str, msn: int, data: bytes, init: bytes | None, stale: int) -> None:
        try:
            d = self.root / track
            d.mkdir(parents=True, exist_ok=True)
            if init is not None:
                (d / "init.mp4").write_bytes(init)
            tmp = d / f".seg{msn}.tmp"
            tmp.write_bytes(data)
            tmp.replace(d / f"seg{msn}.m4s")
            if stale >= 0:
                (d / f"seg{stale}.m4s").unlink(missing_ok=True)
        except OSError as exc:
            log.warning("DVR write failed", extra={"track": track, "msn": msn, "error": str(exc)})

    def read(self, track: str, msn: int) -> bytes | None:
        try:
            return self.path(track, msn).read_bytes()
        except OSError:
            return None

    def forget(self, track: str, msns: list[int]) -> None:
        def rm() -> None:
            for msn in msns:
                self.path(track, msn).unlink(missing_ok=True)

        self._io.submit(rm)

    # --- MPEG-TS HLS: ffmpeg owns those playlists; dvr_cleanup hides what came before the cut ----------
    def cut_ts(self, rendition: str, playlist: str) -> None:
        nums = [int(m[1]) for m in _TS_SEG.finditer(playlist)]
        if nums:
            self._ts_cutoff[rendition] = nums[-min(CLEANUP_KEEP, len(nums))]

    def filter_ts(self, rendition: str, playlist: str) -> str:
        cutoff = self._ts_cutoff.get(rendition)
        if cutoff is None:
            return playlist
        out: list[str] = []
        pending: list[str] = []  # tags that belong to the next segment URI
        first: int | None = None
        for line in playlist.splitlines():
            if line.startswith("#EXTINF") or line.startswith("#EXT-X-PROGRAM-DATE-TIME") or \
                    line.startswith("#EXT-X-DISCONTINUITY"):
                pending.append(line)
                continue
            if line and not line.startswith("#"):
                m = _TS_SEG.search(line)
                if m is not None and int(m[1]) < cutoff:
                    pending = []
                    continue
                if m is not None and first is None:
                    first = int(m[1])
                out.extend(pending)
                pending = []
            out.append(line)
        out.extend(pending)
        if first is not None:
            out = [f"#EXT-X-MEDIA-SEQUENCE:{first}" if ln.startswith("#EXT-X-MEDIA-SEQUENCE") else ln for ln in out]
        return "\n".join(out) + "\n"

    def close(self, remove: bool = False) -> None:
        self._io.shutdown(wait=False)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


class DvrOutput:
    """Attaches a DVR store to every live session of a stream with DVR on (a hub event subscriber)."""

    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        self._stores: dict[int, DvrStore] = {}

    async def __call__(self, event: HubEvent) -> None:
        stream = event.stream
        if isinstance(event, SessionStarted) and stream.config.dvr_seconds:
            store = DvrStore(stream.work_dir / "dvr", stream.config.dvr_seconds)
            stream.segment_listeners.append(store.on_segment)
            stream.archive = store
            self._stores[stream.stream_id] = store
        elif isinstance(event, SessionEnded) and (ended := self._stores.pop(stream.stream_id, None)) is not None:
            ended.close()  # queued writes still complete; the files stay until the next session

    def cleanup(self, stream_id: int) -> None:
        """S6/R35: drop everything before the live edge from the playlists, the MPD and the disk."""
        stream = self.hub.get(stream_id)
        if stream is not None:
            dvr_cleanup(stream, self._stores.get(stream_id))


def dvr_cleanup(stream: LiveStream, store: DvrStore | None) -> None:
    pkg = stream.package
    if pkg is not None:
        for r in pkg.renditions():
            dropped = r.packager.trim(CLEANUP_KEEP)
            if store is not None and dropped:
                store.forget(r.name, dropped)
    if store is not None:
        for rend in stream.transcoder.plan:
            try:
                text = (stream.ts_dir / rend.name / "index.m3u8").read_text(errors="replace")
            except OSError:
                continue
            store.cut_ts(rend.name, text)
