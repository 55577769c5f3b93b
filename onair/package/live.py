"""Asyncio layer over the sans-IO packager: LL-HLS blocking reload and chunked segment streaming.

All methods run on the event loop thread; `feed()` is synchronous and wakes waiters.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime

from onair.formats.dash import render_dash_mpd
from onair.formats.hls import hold_back_for_parts, render_hls_master, render_hls_media
from onair.package.packager import Segment, SegmentCallback, TrackPackager

__all__ = ["MAX_MSN_AHEAD", "LiveRendition", "LiveStreamPackage"]

# RFC 8216bis 6.2.5.2: a request more than two segments ahead of the playlist gets 400.
MAX_MSN_AHEAD = 2


def _utcnow() -> datetime:
    return datetime.now(UTC)


class LiveRendition:
    """A TrackPackager plus change notification for HTTP handlers."""

    def __init__(self, packager: TrackPackager) -> None:
        self.packager = packager
        # Replaced on every change: waiters grab the current one after checking their predicate,
        # with no await in between, so no wake-up can be lost (and feed() needs no lock).
        self._changed = asyncio.Event()

    @property
    def name(self) -> str:
        return self.packager.name

    def _notify(self) -> None:
        ev, self._changed = self._changed, asyncio.Event()
        ev.set()

    def feed(self, data: bytes | bytearray | memoryview) -> int:
        try:
            added = self.packager.feed(data)
        finally:
            # Even on FMP4Error: init or earlier parts of this chunk may have been consumed.
            self._notify()
        return added

    def end(self) -> None:
        self.packager.end()
        self._notify()

    # -- predicates -------------------------------------------------------------

    def is_too_far_ahead(self, msn: int) -> bool:
        """True when `msn` is more than MAX_MSN_AHEAD past the newest segment (caller answers 400)."""
        last = self.packager.last_msn
        base = last if last is not None else self.packager.first_msn
        if base is None:
            base = -1  # nothing yet: msn 0 and 1 may still be awaited
        return msn > base + MAX_MSN_AHEAD

    def has_part(self, msn: int, part: int) -> bool:
        """Playlist already satisfies a blocking request for (msn, part).

        True if segment `msn` has part `part`, or `msn` is complete (its successor started), or
        `msn` is older than the window.
        """
        pk = self.packager
        seg = pk.get_segment(msn)
        if seg is not None:
            return seg.complete or len(seg.parts) > part
        last = pk.last_msn
        return last is not None and msn < last

    def starts_in_first_segment(self) -> bool:
        """A player starting PART-HOLD-BACK behind the edge would start inside segment 0, the only complete one.

        hls.js loads such a segment whole; when the segment is shorter than the parts listed after it (the short
        first GOP), it then waits for the next segment to complete before loading on: a stall at once.
        """
        pk = self.packager
        segs = pk.segments
        if pk.ended or len(segs) != 1 or segs[0].msn != 0:
            return False
        first_end = segs[0].start + segs[0].duration
        cur = pk.current
        edge = cur.start + cur.duration if cur is not None and cur.parts else first_end
        return edge - hold_back_for_parts(pk.part_target) < first_end

    # The hold time is part of the API (LL-HLS blocking reload), hence the timeout parameters.
    async def _wait(self, pred: Callable[[], bool], timeout: float | None) -> bool:  # noqa: ASYNC109
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            if pred():
                return True
            if self.packager.ended:
                return pred()
            ev = self._changed
            if deadline is None:
                await ev.wait()
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            try:
                await asyncio.wait_for(ev.wait(), remaining)
            except TimeoutError:
                return pred()

    async def wait_for_part(
        self,
        msn: int,
        part: int | None = None,
        timeout: float | None = 10.0,  # noqa: ASYNC109
    ) -> bool:
        """LL-HLS blocking reload: wait until part `part` of segment `msn` exists or `msn` is complete.

        Product rule: a missing `_HLS_part` means part 0. Returns False on timeout; True once
        satisfied or once the stream ended (then the playlist carries EXT-X-ENDLIST).
        """
        p = 0 if part is None else part
        ok = await self._wait(lambda: self.has_part(msn, p), timeout)
        return ok or self.packager.ended

    @property
    def playable(self) -> bool:
        """A player loading the playlist now starts at once: init, a complete segment, and not inside the first."""
        pk = self.packager
        return pk.has_init and bool(pk.segments) and not self.starts_in_first_segment()

    async def wait_past_first_segment(self, timeout: float | None = 2.0) -> bool:  # noqa: ASYNC109
        """Hold a playlist request while `starts_in_first_segment()` (a young stream: at most PART-HOLD-BACK)."""
        return await self._wait(lambda: not self.starts_in_first_segment(), timeout)

    async def wait_playable(self, timeout: float | None) -> bool:  # noqa: ASYNC109
        return await self._wait(lambda: self.playable, timeout)

    async def wait_for_init(self, timeout: float | None = 10.0) -> bool:  # noqa: ASYNC109
        return await self._wait(lambda: self.packager.has_init, timeout)

    async def wait_for_segment_bytes(
        self,
        msn: int,
        timeout: float | None = 10.0,  # noqa: ASYNC109
    ) -> AsyncIterator[bytes] | None:
        """Wait (up to `timeout`) for segment `msn` to start; then return an iterator of its bytes.

        Complete segments yield their bytes at once; the in-progress one yields each part as it
        arrives (HTTP chunked transfer for LL-DASH). Returns None when the segment is not (or
        no longer) available, i.e. the caller answers 404.
        """
        pk = self.packager
        if self.is_too_far_ahead(msn):
            return None
        await self._wait(lambda: pk.get_segment(msn) is not None or self._gone(msn), timeout)
        seg = pk.get_segment(msn)
        if seg is None:
            return None
        return self._stream_segment(seg)

    def _gone(self, msn: int) -> bool:
        first = self.packager.first_msn
        return first is not None and msn < first

    async def _stream_segment(self, seg: Segment) -> AsyncIterator[bytes]:
        if seg.complete:
            yield seg.data
            return
        sent = 0
        while True:
            # Holding the Segment object keeps its parts reachable even if the window slides.
            while sent < len(seg.parts):
                yield seg.parts[sent].data
                sent += 1
            if seg.complete or self.packager.ended:
                if sent < len(seg.parts):
                    continue
                return
            await self._changed.wait()


class LiveStreamPackage:
    """All renditions of one live stream, fed from the per-track ffmpeg pipes."""

    def __init__(
        self,
        video_names: Sequence[str],
        audio_name: str | None = "audio",
        *,
        target_segment: float = 2.0,
        first_segment: float | None = None,
        window_segments: int = 6,
        memory_segments: int | None = None,
        on_segment_complete: SegmentCallback | None = None,
        clock: Callable[[], datetime] = _utcnow,
        latency_target: float = 3.0,
    ) -> None:
        names = list(video_names) + ([audio_name] if audio_name is not None else [])
        if len(set(names)) != len(names):
            raise ValueError("rendition names must be unique")
        self._clock = clock
        self.latency_target = latency_target
        self.window_seconds = window_segments * target_segment  # what the playlists keep once that long

        def make(name: str) -> LiveRendition:
            return LiveRendition(
                TrackPackager(
                    name,
                    target_segment=target_segment,
                    first_segment=first_segment,
                    window_segments=window_segments,
                    memory_segments=memory_segments,
                    on_segment_complete=on_segment_complete,
                    clock=clock,
                )
            )

        self.video: dict[str, LiveRendition] = {n: make(n) for n in video_names}
        self.audio: LiveRendition | None = make(audio_name) if audio_name is not None else None
        # (rendition, skip) -> (the stream's state when rendered, the playlist's bytes): see media_playlist
        self._media_playlists: dict[tuple[str, bool], tuple[tuple[object, ...], bytes]] = {}
        if self.audio is not None and self.video:
            # audio is cut where the (first) video's segments begin: every rendition has the same numbers
            self.audio.packager.leader = next(iter(self.video.values())).packager

    # -- access -------------------------------------------------------------------

    def renditions(self) -> list[LiveRendition]:
        return list(self.video.values()) + ([self.audio] if self.audio is not None else [])

    def rendition(self, name: str) -> LiveRendition:
        """Raises KeyError for unknown names (caller answers 404)."""
        if name in self.video:
            return self.video[name]
        if self.audio is not None and self.audio.name == name:
            return self.audio
        raise KeyError(name)

    @property
    def ended(self) -> bool:
        return all(r.packager.ended for r in self.renditions())

    @property
    def ready(self) -> bool:
        """Every rendition is playable (LiveRendition.playable): a player starting now is served at once. A
        playlist of nothing but parts and a preload hint is not enough for every player, and one whose
        start point falls in the short first segment is held (the stream turns `live` after that hold)."""
        return all(r.playable for r in self.renditions())

    async def wait_ready(self, timeout: float) -> bool:  # noqa: ASYNC109
        """Wait (up to `timeout` s) until `ready`; each rendition's condition, once true, stays true."""
        deadline = asyncio.get_running_loop().time() + timeout
        for r in self.renditions():
            remaining = deadline - asyncio.get_running_loop().time()
            if not await r.wait_playable(max(remaining, 0.0)):
                return False
        return self.ready

    @property
    def availability_start(self) -> datetime | None:
        """Wall clock of decode time 0 (DASH availabilityStartTime): the capture clock of the first
        media; it only ever moves back, when a source was found ahead of real time."""
        known = [a for a in (r.packager.wallclock_anchor for r in self.renditions()) if a is not None]
        return min(known) if known else None

    # -- input --------------------------------------------------------------------

    def set_origin(self, origin: datetime | None) -> None:
        """Capture clock of the first byte streams (see TrackPackager.set_origin)."""
        for r in self.renditions():
            r.packager.set_origin(origin)

    def feed(self, track_name: str, data: bytes | bytearray | memoryview) -> int:
        rendition = self.rendition(track_name)
        added = rendition.feed(data)
        if self.audio is not None and self.audio.packager.leader is rendition.packager:
            self.audio.packager.follow_leader_clock()
        return added

    def end(self) -> None:
        # every rendition ends on the same segment: a tail that began past another's end is dropped
        lasts = [msn for r in self.renditions() if (msn := r.packager.last_msn) is not None]
        for r in self.renditions():
            cur = r.packager.current
            if lasts and cur is not None and cur.msn > min(lasts):
                r.packager.drop_in_progress()
        for r in self.renditions():
            r.end()

    # -- manifests ----------------------------------------------------------------

    def render_master(self) -> str:
        return render_hls_master(
            [r.packager for r in self.video.values()], self.audio.packager if self.audio else None
        )

    def render_media(self, name: str, *, skip: bool = False, part_hold_back: float | None = None) -> str:
        r = self.rendition(name)
        others = [o.packager for o in self.renditions() if o is not r]
        return render_hls_media(
            r.packager, other_tracks_for_reports=others, part_hold_back=part_hold_back, skip=skip
        )

    def media_playlist(self, name: str, *, skip: bool = False) -> bytes:
        """`render_media`'s bytes, rendered once per change of the stream: the viewers one new part wakes all get
        the same bytes. A playlist is a function of every rendition's window, parts and end (rendition reports
        name the others), so their positions are the cache key; no caller has to invalidate it."""
        state = tuple((pk.first_msn, pk.last_part_ref(), pk.ended, len(pk.segments))
                      for pk in (r.packager for r in self.renditions()))
        key = (name, skip)
        cached = self._media_playlists.get(key)
        if cached is not None and cached[0] == state:
            return cached[1]
        body = self.render_media(name, skip=skip).encode()
        self._media_playlists[key] = (state, body)
        return body

    def render_mpd(self, now: datetime | None = None, *, include_in_progress: bool = False,
                   utc_timing_url: str = "/time") -> str:
        ast = self.availability_start or self._clock()
        return render_dash_mpd(
            [r.packager for r in self.video.values()],
            self.audio.packager if self.audio else None,
            availability_start=ast,
            now=now if now is not None else self._clock(),
            ended=self.ended,
            latency_target=self.latency_target,
            include_in_progress=include_in_progress,
            utc_timing_url=utc_timing_url,
            time_shift_depth=self.window_seconds,
        )
