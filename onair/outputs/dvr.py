"""DVR: the packaged segments of a live stream kept on disk for `dvr_duration` seconds.

The packager keeps segment metadata for the whole DVR window (so playlists and the MPD list it) but
only the bytes of the newest few segments in memory; every completed segment is written here by the
packager's segment hook, and older ones are served from disk. Layout::

    {root}/{track}/init.mp4   {root}/{track}/seg{msn}.m4s
"""

from __future__ import annotations

import errno
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
    """The DVR segments of one live session on disk, written off the event loop.

    Disk trouble never reaches the live path: below `min_free_mb` free (or on a failed write, e.g. ENOSPC)
    the store pauses writing with one warning and resumes once there is room again; the segments of the
    pause are missing from the DVR window on disk, the in-memory live edge plays on.
    """

    def __init__(self, root: Path, dvr_seconds: int, *, min_free_mb: float = 0, stream_id: int | None = None) -> None:
        self.root = root
        self.dvr_seconds = dvr_seconds
        self.window = dvr_window_segments(dvr_seconds)
        self.min_free_mb = min_free_mb
        self.stream_id = stream_id
        self.paused = False  # not writing: the disk is (nearly) full
        self.closed = False  # the session ended: no more writes, deletions (dvr_cleanup) still work
        self._inits: dict[str, bytes] = {}
        # one worker: writes and deletions of a track happen in order, off the event loop
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dvr")
        self._ts_cutoff: dict[str, int] = {}

    def path(self, track: str, msn: int) -> Path:
        return self.root / track / f"seg{msn}.m4s"

    def on_segment(self, tp: TrackPackager, seg: Segment) -> None:
        """Packager hook (event loop): queue the segment (and a changed init) for writing."""
        if self.closed:
            return
        track, data = tp.name, seg.data
        init = tp.init if tp.init is not None and self._inits.get(track) != tp.init else None
        if init is not None:
            self._inits[track] = init
        stale = seg.msn - tp.window_segments - 1
        self._io.submit(self._write, track, seg.msn, data, init, stale)

    def _room(self) -> bool:
        """Worker thread: whether to write now; logs the switch between writing and pausing once."""
        try:
            free_mb = shutil.disk_usage(self.root.parent).free / 2**20
        except OSError:
            free_mb = float("inf")  # unknown: let the write itself tell
        room = free_mb >= self.min_free_mb
        if room and self.paused:
            self.paused = False
            log.info("disk has room again: DVR writes resume", extra={"stream_id": self.stream_id,
                                                                       "free_mb": round(free_mb)})
        elif not room and not self.paused:
            self._pause(f"only {free_mb:.0f} MB free")
        return room

    def _pause(self, why: str) -> None:
        self.paused = True
        log.warning("disk full: DVR stops writing segments, the live stream plays on",
                    extra={"stream_id": self.stream_id, "reason": why})

    def _write(self, track: str, msn: int, data: bytes, init: bytes | None, stale: int) -> None:
        d = self.root / track
        if stale >= 0:
            (d / f"seg{stale}.m4s").unlink(missing_ok=True)  # deleting first: it is what frees space
        if not self._room():
            if init is not None:
                self._inits.pop(track, None)  # written with the next segment once there is room
            return
        tmp = d / f".seg{msn}.tmp"
        try:
            d.mkdir(parents=True, exist_ok=True)
            if init is not None:
                (d / "init.mp4").write_bytes(init)
            tmp.write_bytes(data)
            tmp.replace(d / f"seg{msn}.m4s")
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            self._inits.pop(track, None)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                self._pause(str(exc))
            else:
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

        if not self.closed:
            self._io.submit(rm)
            return
        # the session ended (its writer is shut down): a worker of its own, after the queued writes
        io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dvr-forget")
        io.submit(rm)
        io.shutdown(wait=False)

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
        """The session ended: queued writes still complete, nothing new is written."""
        self.closed = True
        self._io.shutdown(wait=False)
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


class DvrOutput:
    """Attaches a DVR store to every live session of a stream with DVR on (a hub event subscriber).

    The store is the session's `archive`: it lives as long as the session does (an ended session stays
    until the next one replaces it), so dvr_cleanup works live, just ended, or on a stream never live.
    """

    def __init__(self, hub: StreamHub, *, min_free_mb: float = 0) -> None:
        self.hub = hub
        self.min_free_mb = min_free_mb

    async def __call__(self, event: HubEvent) -> None:
        stream = event.stream
        if isinstance(event, SessionStarted) and stream.config.dvr_seconds:
            store = DvrStore(stream.work_dir / "dvr", stream.config.dvr_seconds, min_free_mb=self.min_free_mb,
                             stream_id=stream.stream_id)
            stream.segment_listeners.append(store.on_segment)
            stream.archive = store
        elif isinstance(event, SessionEnded) and isinstance(stream.archive, DvrStore):
            stream.archive.close()  # queued writes still complete; the files stay until the next session

    def cleanup(self, stream_id: int) -> None:
        """dvr_cleanup: drop everything before the live edge from the playlists, the MPD and the disk."""
        stream = self.hub.get(stream_id)
        if stream is not None:
            dvr_cleanup(stream, stream.archive if isinstance(stream.archive, DvrStore) else None)


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
