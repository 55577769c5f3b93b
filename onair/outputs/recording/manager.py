"""The recordings of a node (owned by StreamLifecycle): start, grace period, stop, recovery.

A `Recording` becomes one Video. It is made of pieces, one per source session: a source that comes
back within `GRACE_S` continues the same recording in a new piece. Finishing a recording
(stop, grace expiry, or recovery at start-up after a crash) turns the pieces into the library files
(see finishing.py), then marks the Video ``ready``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import shutil
import string
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.outputs.library import VideoLibrary
from onair.outputs.recording.finishing import Finisher, recording_end, wait_gone, write_master_playlists
from onair.outputs.recording.journal import JOURNAL, Recording, mark_done, write_journal
from onair.store.models import Stream, Video
from onair.timeutil import utcnow
from onair.transcode.ffmpeg_run import ffprobe_for

if TYPE_CHECKING:
    from onair.hub.live_stream import LiveStream

log = logging.getLogger("onair.outputs.recording")

VideoReadyHook = Callable[[AsyncSession, Video], Awaitable[None]]

GRACE_S = 10.0  # a source back within 10 s continues the same recording
_SLUG = string.ascii_letters + string.digits


def new_slug() -> str:
    return "".join(secrets.choice(_SLUG) for _ in range(16))


def record_name(stream_name: str, end: datetime) -> str:
    return f"Stream Record: {stream_name}, {end.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC"


class Recordings:
    def __init__(self, root: Path, sessionmaker: async_sessionmaker[AsyncSession], library: VideoLibrary,
                 ffmpeg: str = "ffmpeg", min_free_mb: int = 0) -> None:
        self.root = root
        self.min_free_mb = min_free_mb
        self.sessionmaker = sessionmaker
        self.library = library
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe_for(ffmpeg)
        self.finisher = Finisher(ffmpeg, self.ffprobe)
        self.active: dict[int, Recording] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.finished: dict[int, asyncio.Event] = {}  # video id → set once the files are in the library
        # called with the session and the Video before the commit that makes it ready (the webhook outbox)
        self.ready_hooks: list[VideoReadyHook] = []
        self.discarded: set[int] = set()  # videos deleted while recorded or finished: never (re)made ready

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def add_ready_hook(self, hook: VideoReadyHook) -> None:
        self.ready_hooks.append(hook)

    def duration(self, stream_id: int) -> float | None:
        rec = self.active.get(stream_id)
        return round(rec.duration, 1) if rec is not None else None

    def is_recording(self, stream_id: int) -> bool:
        return stream_id in self.active

    # --- control ------------------------------------------------------------------------------------
    async def start(self, stream: Stream, output: LiveStream) -> Recording:
        """Start recording `stream` (its source arrives through `feed`). No-op if already recording."""
        rec = self.active.get(stream.id)
        if rec is not None:
            return rec
        now = utcnow()
        slug = new_slug()
        async with self.sessionmaker() as db:
            video = Video(slug=slug, name=record_name(stream.name, now), description="", status="empty",
                          stream_id=stream.id, client_user_id=stream.client_user_id, record_type=stream.record_type,
                          recording_started_at=now, projection=stream.projection,
                          quality_set_id=stream.quality_set_id, created_at=now, updated_at=now)
            db.add(video)
            await db.commit()
            video_id = video.id
        directory = self.root / f"{video_id}_{slug}"
        directory.mkdir(parents=True, exist_ok=True)
        rec = Recording(directory, {"stream_id": stream.id, "stream_name": stream.name, "video_id": video_id,
                                    "slug": slug, "record_type": stream.record_type, "started_at": now.isoformat(),
                                    "state": "recording", "pieces": []})
        self.active[stream.id] = rec
        await rec.open_piece(output, self.ffmpeg)
        log.info("recording started", extra={"stream_id": stream.id, "video_id": video_id,
                                             "record_type": stream.record_type})
        return rec

    async def feed(self, stream_id: int, data: bytes) -> None:
        rec = self.active.get(stream_id)
        if rec is not None and rec.writer is not None:
            await rec.writer.feed(data)

    async def source_ended(self, stream_id: int, grace: float = GRACE_S) -> None:
        """The publisher left: close the piece and give the source `grace` seconds to come back (longer
        within a stream's reconnect window)."""
        rec = self.active.get(stream_id)
        if rec is None or rec.writer is None:
            return
        await rec.close_piece()

        async def expire() -> None:
            await asyncio.sleep(grace)
            if self.active.get(stream_id) is rec:
                await self.stop(stream_id)

        rec.grace = self._spawn(expire())

    async def source_resumed(self, stream: Stream, output: LiveStream) -> bool:
        """A publisher went live: continue a recording in its grace period, else auto_record."""
        rec = self.active.get(stream.id)
        if rec is not None and rec.writer is None:
            if rec.grace is not None:
                rec.grace.cancel()
                rec.grace = None
            await rec.open_piece(output, self.ffmpeg)
            log.info("recording resumed", extra={"stream_id": stream.id, "video_id": rec.video_id})
            return True
        if rec is None and stream.auto_record:
            free_mb = shutil.disk_usage(self.root.parent).free / 2**20
            if free_mb < self.min_free_mb:
                log.warning("no space for auto recording", extra={"stream_id": stream.id, "free_mb": round(free_mb)})
                return False
            await self.start(stream, output)
            return True
        return False

    async def stop(self, stream_id: int) -> int | None:
        """Close the recording; returns the Video id (its files are finished in the background)."""
        rec = self.active.pop(stream_id, None)
        if rec is None:
            return None
        if rec.grace is not None and rec.grace is not asyncio.current_task():
            rec.grace.cancel()
        await rec.close_piece()
        rec.journal["state"] = "finalising"
        rec.journal["ended_at"] = utcnow().isoformat()
        rec.save()
        async with self.sessionmaker() as db:
            video = await db.get(Video, rec.video_id)
            if video is not None:
                video.status = "pending"
                video.name = record_name(rec.journal["stream_name"], utcnow())
                video.updated_at = utcnow()
                await db.commit()
        self.finished[rec.video_id] = asyncio.Event()
        self._spawn(self._finalise(rec.dir, rec.journal))
        log.info("recording stopped", extra={"stream_id": stream_id, "video_id": rec.video_id,
                                             "seconds": round(rec.duration, 1)})
        return rec.video_id

    async def discard(self, video_id: int) -> bool:
        """The Video was deleted: stop the recording that feeds it and never finish it into the library.

        A recording still running is stopped now (the stream stays live, auto_record does not restart it
        before the next session) and its files removed; one being finished stops at the next step and
        leaves nothing behind. Returns whether a recording of this Video was running or being finished.
        """
        rec = next((r for r in self.active.values() if r.video_id == video_id), None)
        if rec is not None:
            self.discarded.add(video_id)
            self.active.pop(rec.stream_id, None)
            if rec.grace is not None:
                rec.grace.cancel()
            await rec.close_piece()
            await asyncio.to_thread(shutil.rmtree, rec.dir, True)
            log.info("recording stopped: its Video was deleted", extra={"stream_id": rec.stream_id,
                                                                        "video_id": video_id})
            return True
        finishing = video_id in self.finished and not self.finished[video_id].is_set()
        if finishing:
            self.discarded.add(video_id)
        return finishing

    async def new_video(self, stream: Stream, name: str, record_type: str | None) -> tuple[int, str]:
        """A Video row (status empty) whose files `import_file` provides later; returns (id, slug)."""
        now = utcnow()
        slug = new_slug()
        async with self.sessionmaker() as db:
            video = Video(slug=slug, name=name, description="", status="empty", stream_id=stream.id,
                          client_user_id=stream.client_user_id, record_type=record_type, recording_started_at=now,
                          projection=stream.projection, quality_set_id=stream.quality_set_id,
                          created_at=now, updated_at=now)
            db.add(video)
            await db.commit()
            return video.id, slug

    async def import_file(self, video_id: int, slug: str, stream: Stream, src: Path) -> None:
        """Put a finished MP4 (e.g. a clip) into the library as Video `video_id`, like a recording."""
        directory = self.root / f"{video_id}_{slug}"
        directory.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, src, directory / "p0.mp4")
        journal = {"stream_id": stream.id, "stream_name": stream.name, "video_id": video_id, "slug": slug,
                   "record_type": None, "started_at": utcnow().isoformat(), "ended_at": utcnow().isoformat(),
                   "state": "finalising", "pieces": [{"kind": "origin", "base": "p0", "pid": None}]}
        write_journal(directory, journal)
        self.finished[video_id] = asyncio.Event()
        await self._finalise(directory, journal)

    async def shutdown(self) -> None:
        """Server stopping: close the writers; the journals make the next start finish the recordings."""
        for rec in list(self.active.values()):
            if rec.grace is not None:
                rec.grace.cancel()
            await rec.close_piece()
        self.active.clear()

    # --- recovery -----------------------------------------------------------------------------------
    async def recover(self) -> None:
        """Finish recordings a previous run left behind (crash, kill -9, shutdown mid-recording)."""
        if not self.root.is_dir():
            return
        for journal_path in sorted(self.root.glob(f"*/{JOURNAL}")):
            try:
                journal = json.loads(journal_path.read_text())
            except (OSError, ValueError):
                log.warning("unreadable recording journal", extra={"path": str(journal_path)})
                continue
            if journal.get("state") == "done":
                continue
            log.info("recovering recording", extra={"video_id": journal.get("video_id"),
                                                    "dir": str(journal_path.parent)})
            self.finished[int(journal["video_id"])] = asyncio.Event()
            self._spawn(self._finalise(journal_path.parent, journal, recovered=True))

    # --- finishing ----------------------------------------------------------------------------------
    async def _finalise(self, directory: Path, journal: dict[str, Any], recovered: bool = False) -> None:
        video_id = int(journal["video_id"])
        try:
            await self._finalise_files(directory, journal, recovered)
        except Exception as exc:
            log.exception("finishing a recording failed", extra={"video_id": video_id})
            await self.set_video(video_id, status="error", error=f"recording could not be finished: {exc}")
        finally:
            ev = self.finished.get(video_id)
            if ev is not None:
                ev.set()

    async def _finalise_files(self, directory: Path, journal: dict[str, Any], recovered: bool) -> None:
        video_id = int(journal["video_id"])
        for piece in journal["pieces"]:
            await wait_gone(piece.get("pid"))  # an orphaned writer of a crashed run flushes and exits on EOF
        plain = await self.finisher.remux_pieces(directory, journal["pieces"])
        slug = str(journal["slug"])
        vdir = self.library.video_dir(slug)
        if await self._dropped(video_id, directory, vdir):
            return
        if not plain:
            await self.set_video(video_id, status="error", error="nothing was recorded")
            mark_done(directory, journal)
            return
        vdir.mkdir(parents=True, exist_ok=True)
        tmp = vdir / "video.tmp.mp4"
        info = await self.finisher.concat(directory, plain, tmp)
        await self.finisher.vod_hls(tmp, vdir, video_id)
        await self.finisher.dash(tmp, vdir, video_id)
        size = tmp.stat().st_size
        write_master_playlists(vdir, info, size)
        await self.finisher.poster(tmp, vdir, info)
        if await self._dropped(video_id, directory, vdir):
            return
        tmp.replace(vdir / "video.mp4")
        if self.library.storage is not None:  # before it is ready: any node may be asked for it then
            await self.library.storage.upload_dir(vdir, self.library.video_name(slug))
        name = record_name(str(journal.get("stream_name", "")), recording_end(journal, plain)) if recovered else None
        found = await self.set_video(video_id, status="ready", duration_ms=int(info.duration * 1000), size=size,
                                     width=info.width, height=info.height, name=name)
        if await self._dropped(video_id, directory, vdir, deleted=not found):
            return
        mark_done(directory, journal)
        log.info("recording ready", extra={"video_id": video_id, "seconds": round(info.duration, 2),
                                           "bytes": size, "recovered": recovered})

    async def _dropped(self, video_id: int, directory: Path, vdir: Path, *, deleted: bool = False) -> bool:
        """Whether the Video was deleted meanwhile (or `deleted`); then whatever was made of it is removed."""
        if not deleted and video_id not in self.discarded:
            async with self.sessionmaker() as db:
                if await db.get(Video, video_id) is not None:
                    return False
        await asyncio.to_thread(shutil.rmtree, vdir, True)
        await asyncio.to_thread(shutil.rmtree, directory, True)  # with its journal: nothing to recover
        log.info("recording not finished: its Video was deleted", extra={"video_id": video_id})
        return True

    async def set_video(self, video_id: int, *, name: str | None = None, **values: Any) -> bool:
        """Update the Video row; False when there is none (deleted: a recording never recreates it).

        The ready hooks add their rows to the transaction that makes it ready (the webhook outbox); a failing
        hook costs its rows, never the Video's state: it is then written without the hooks."""
        hooks = self.ready_hooks if values.get("status") == "ready" else []
        try:
            return await self._set_video(video_id, name, values, hooks)
        except Exception:
            if not hooks:
                raise
            log.exception("a video-ready hook failed: writing the Video without it", extra={"video_id": video_id})
            return await self._set_video(video_id, name, values, [])

    async def _set_video(self, video_id: int, name: str | None, values: dict[str, Any],
                         hooks: list[VideoReadyHook]) -> bool:
        async with self.sessionmaker() as db:
            video = await db.get(Video, video_id)
            if video is None:
                return False
            for k, v in values.items():
                setattr(video, k, v)
            if name is not None:
                video.name = name
            video.updated_at = utcnow()
            for hook in hooks:
                await hook(db, video)
            await db.commit()
            return True
