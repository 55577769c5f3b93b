"""Recording live streams into the video library (spec §13.5, R45–R55).

A `Recording` becomes one Video. It is made of pieces, one per source session: a source that comes
back within `GRACE_S` (R50) continues the same recording in a new piece. Pieces are crash-safe on
disk as they are written:

* ``origin``: the publisher's source bytes remuxed without re-encoding (``ffmpeg -c copy``) to a
  fragmented MP4 (``empty_moov``): a killed writer leaves a playable prefix;
* ``transcoded``: the top rendition's and the audio's packaged fMP4 segments appended to
  ``init + segments`` files (also fragmented MP4).

Each recording lives in ``{data_dir}/recordings/{id}/`` with a ``journal.json`` (the Video id, the
pieces, the state). Finishing a recording (stop, grace expiry, or recovery at start-up after a crash)
concatenates the pieces into the library: an MP4 with faststart for download, a VOD HLS (MPEG-TS and
fMP4) and a poster, then marks the Video ``ready``. All media work runs in ffmpeg subprocesses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import shutil
import string
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from onair.outputs.library import VideoLibrary
from onair.outputs.tap import SourceTap
from onair.package.packager import Segment, TrackPackager
from onair.store.models import Stream, Video
from onair.timeutil import utcnow
from onair.transcode.ffmpeg_run import ffprobe_for, probe_file, run_ffmpeg
from onair.transcode.transcoder import Transcoder

if TYPE_CHECKING:
    from onair.hub.registry import LiveOutput

log = logging.getLogger("onair.outputs.recording")

GRACE_S = 10.0  # R50
JOURNAL = "journal.json"
HLS_SEGMENT_S = 4
_SLUG = string.ascii_letters + string.digits


def new_slug() -> str:
    return "".join(secrets.choice(_SLUG) for _ in range(16))


def record_name(stream_name: str, end: datetime) -> str:
    return f"Stream Record: {stream_name}, {end.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S')} UTC"


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)  # atomic: a crash leaves the old or the new journal, never half of one


# --------------------------------------------------------------------------------------------------
# piece writers


class OriginWriter:
    """The source bytes, remuxed without re-encoding to a fragmented MP4 by a cheap ffmpeg."""

    def __init__(self, path: Path, transcoder: Transcoder, ffmpeg: str) -> None:
        self.path = path
        self.tap = SourceTap(
            transcoder,
            ["-map", "0:v?", "-map", "0:a?", "-c", "copy",
             "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-frag_duration", "1000000",
             "-flush_packets", "1", path.name],
            ffmpeg=ffmpeg, input_args=["-fflags", "+genpts"], cwd=path.parent,
        )  # fmt: skip

    @property
    def files(self) -> list[str]:
        return [self.path.name]

    async def start(self) -> None:
        await self.tap.start()

    @property
    def pid(self) -> int | None:
        return self.tap.pid

    async def feed(self, data: bytes) -> None:
        """Called with each source chunk right after the transcoder got it."""
        was_dead = self.tap.dead
        await self.tap.feed(data)
        if self.tap.dead and not was_dead:
            log.warning("origin recorder ffmpeg went away", extra={"path": str(self.path)})

    async def close(self) -> None:
        await self.tap.close()


class TranscodedWriter:
    """The top rendition and the audio, as packaged: init + complete segments appended to fMP4 files."""

    def __init__(self, base: Path, output: LiveOutput) -> None:
        self.base = base
        self.output = output
        plan = output.transcoder.plan
        self.video_track = plan[0].name if plan else None
        self._inits: dict[str, bytes] = {}
        self._t0: float | None = None  # start (s) of the first recorded video segment
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rec")

    def track_path(self, track: str) -> Path:
        return self.base.with_name(f"{self.base.name}.{track}.mp4")

    @property
    def files(self) -> list[str]:
        return [self.track_path(t).name for t in self._inits]

    @property
    def pid(self) -> int | None:
        return None

    async def start(self) -> None:
        self.output.segment_listeners.append(self.on_segment)

    async def feed(self, data: bytes) -> None:
        pass

    def on_segment(self, tp: TrackPackager, seg: Segment) -> None:
        if tp.init is None or (tp.is_video and tp.name != self.video_track):
            return
        if tp.is_video and self._t0 is None:
            self._t0 = seg.start
        if self._t0 is None or seg.start + seg.duration <= self._t0:
            return  # audio waits for the first video segment so both begin together
        known = self._inits.get(tp.name)
        if known is not None and known != tp.init:
            return  # the transcoder restarted with new streams: the rest goes unrecorded in this piece
        head = tp.init if known is None else b""
        self._inits[tp.name] = tp.init
        self._io.submit(self._append, self.track_path(tp.name), head + seg.data)

    @staticmethod
    def _append(path: Path, data: bytes) -> None:
        with path.open("ab") as f:
            f.write(data)
            f.flush()

    async def close(self) -> None:
        with contextlib.suppress(ValueError):
            self.output.segment_listeners.remove(self.on_segment)
        await asyncio.get_running_loop().run_in_executor(None, self._io.shutdown, True)


Writer = OriginWriter | TranscodedWriter


# --------------------------------------------------------------------------------------------------
# one recording


class Recording:
    def __init__(self, directory: Path, journal: dict[str, Any]) -> None:
        self.dir = directory
        self.journal = journal
        self.writer: Writer | None = None
        self.piece_started: float | None = None
        self.done_seconds = 0.0
        self.grace: asyncio.Task[None] | None = None

    @property
    def stream_id(self) -> int:
        return int(self.journal["stream_id"])

    @property
    def video_id(self) -> int:
        return int(self.journal["video_id"])

    @property
    def duration(self) -> float:
        running = time.monotonic() - self.piece_started if self.piece_started is not None else 0.0
        return self.done_seconds + running

    def save(self) -> None:
        _write_json(self.dir / JOURNAL, self.journal)

    async def open_piece(self, output: LiveOutput, ffmpeg: str) -> None:
        n = len(self.journal["pieces"])
        writer: Writer
        if self.journal["record_type"] == "transcoded" and output.transcoder.plan:
            writer = TranscodedWriter(self.dir / f"p{n}", output)
        else:
            writer = OriginWriter(self.dir / f"p{n}.mp4", output.transcoder, ffmpeg)
        await writer.start()
        self.writer = writer
        self.piece_started = time.monotonic()
        self.journal["pieces"].append({"kind": "transcoded" if isinstance(writer, TranscodedWriter) else "origin",
                                       "base": f"p{n}", "pid": writer.pid})
        self.save()

    async def close_piece(self) -> None:
        writer, self.writer = self.writer, None
        if writer is None:
            return
        await writer.close()
        if self.piece_started is not None:
            self.done_seconds += time.monotonic() - self.piece_started
        self.piece_started = None
        self.journal["pieces"][-1]["pid"] = None
        self.save()


# --------------------------------------------------------------------------------------------------
# the manager owned by StreamLifecycle


class Recordings:
    def __init__(self, root: Path, sessionmaker: async_sessionmaker[AsyncSession], library: VideoLibrary,
                 ffmpeg: str = "ffmpeg", min_free_mb: int = 0) -> None:
        self.root = root
        self.min_free_mb = min_free_mb
        self.sessionmaker = sessionmaker
        self.library = library
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe_for(ffmpeg)
        self.active: dict[int, Recording] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.finished: dict[int, asyncio.Event] = {}  # video id → set once the files are in the library

    def _spawn(self, coro: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def duration(self, stream_id: int) -> float | None:
        rec = self.active.get(stream_id)
        return round(rec.duration, 1) if rec is not None else None

    def is_recording(self, stream_id: int) -> bool:
        return stream_id in self.active

    # --- control ------------------------------------------------------------------------------------
    async def start(self, stream: Stream, output: LiveOutput) -> Recording:
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

    async def source_ended(self, stream_id: int) -> None:
        """The publisher left: close the piece and give the source GRACE_S to come back (R50)."""
        rec = self.active.get(stream_id)
        if rec is None or rec.writer is None:
            return
        await rec.close_piece()

        async def expire() -> None:
            await asyncio.sleep(GRACE_S)
            if self.active.get(stream_id) is rec:
                await self.stop(stream_id)

        rec.grace = self._spawn(expire())

    async def source_resumed(self, stream: Stream, output: LiveOutput) -> bool:
        """A publisher went live: continue a recording in its grace period, else auto_record (R48)."""
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
        _write_json(directory / JOURNAL, journal)
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
            await self._set_video(video_id, status="error", error=f"recording could not be finished: {exc}")
        finally:
            ev = self.finished.get(video_id)
            if ev is not None:
                ev.set()

    async def _finalise_files(self, directory: Path, journal: dict[str, Any], recovered: bool) -> None:
        video_id = int(journal["video_id"])
        for piece in journal["pieces"]:
            await _wait_gone(piece.get("pid"))  # an orphaned writer of a crashed run flushes and exits on EOF
        # 1. each piece → a plain MP4 (remux; a truncated fragmented MP4 still yields its prefix)
        plain: list[Path] = []
        for i, piece in enumerate(journal["pieces"]):
            out = directory / f"n{i}.mp4"
            base = piece["base"]
            if piece["kind"] == "origin":
                inputs = [directory / f"{base}.mp4"]
            else:
                inputs = sorted(directory.glob(f"{base}.*.mp4"))
            inputs = [p for p in inputs if p.is_file() and p.stat().st_size > 0]
            if not inputs:
                continue
            args: list[str] = ["-copyts"] if len(inputs) > 1 else []  # keep A/V alignment of separate tracks
            for p in inputs:
                args += ["-i", str(p)]
            for j in range(len(inputs)):
                args += ["-map", f"{j}"]
            await run_ffmpeg([*args, "-c", "copy", "-f", "mp4", str(out)], ffmpeg=self.ffmpeg)
            if out.is_file() and (await probe_file(out, self.ffprobe)).duration > 0:
                plain.append(out)
        slug = str(journal["slug"])
        vdir = self.library.video_dir(slug)
        if not plain:
            await self._set_video(video_id, status="error", error="nothing was recorded")
            self._done(directory, journal)
            return
        # 2. concatenate into the library MP4 (faststart: plays while downloading)
        vdir.mkdir(parents=True, exist_ok=True)
        listing = directory / "concat.txt"
        listing.write_text("".join(f"file '{p.name}'\n" for p in plain))
        tmp = vdir / "video.tmp.mp4"
        rc, err = await run_ffmpeg(["-f", "concat", "-safe", "0", "-i", str(listing), "-map", "0", "-c", "copy",
                                    "-movflags", "+faststart", "-f", "mp4", str(tmp)], ffmpeg=self.ffmpeg)
        if rc != 0 or not tmp.is_file():
            raise RuntimeError(f"concat failed: {err.strip()[-300:]}")
        info = await probe_file(tmp, self.ffprobe)
        # 3. VOD HLS: MPEG-TS (master.m3u8) and fMP4 (master-cmaf.m3u8); remux only
        for sub, extra in (("hls", ["-hls_segment_filename", "seg%d.ts"]),
                           ("cmaf", ["-hls_segment_type", "fmp4", "-hls_fmp4_init_filename", "init.mp4",
                                     "-hls_segment_filename", "seg%d.m4s"])):
            d = vdir / sub
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir()
            rc, err = await run_ffmpeg(["-i", str(tmp), "-map", "0", "-c", "copy", "-f", "hls",
                                        "-hls_time", str(HLS_SEGMENT_S), "-hls_playlist_type", "vod",
                                        *extra, "index.m3u8"], cwd=d, ffmpeg=self.ffmpeg)
            if rc != 0:
                log.warning("VOD HLS failed", extra={"video_id": video_id, "kind": sub, "error": err[-300:]})
        # DASH (dash_url = master.mpd): separate video/audio representations, remux only
        shutil.rmtree(vdir / "dash", ignore_errors=True)
        (vdir / "dash").mkdir()
        rc, err = await run_ffmpeg(["-i", str(tmp), "-map", "0", "-c", "copy", "-f", "dash",
                                    "-seg_duration", str(HLS_SEGMENT_S), "-use_template", "1", "-use_timeline", "1",
                                    "-init_seg_name", "dash/init-$RepresentationID$.m4s",
                                    "-media_seg_name", "dash/chunk-$RepresentationID$-$Number%05d$.m4s",
                                    "master.mpd"], cwd=vdir, ffmpeg=self.ffmpeg)
        if rc != 0:
            log.warning("VOD DASH failed", extra={"video_id": video_id, "error": err[-300:]})
        size = tmp.stat().st_size
        bandwidth = int(size * 8 / info.duration) if info.duration > 0 else 1
        codecs = ",".join(c for c in ("avc1.64001f" if info.video_codec == "h264" else None,
                                      "mp4a.40.2" if info.audio_codec == "aac" else None) if c)
        res = f",RESOLUTION={info.width}x{info.height}" if info.width else ""
        for name, sub in (("master.m3u8", "hls"), ("master-cmaf.m3u8", "cmaf")):
            (vdir / name).write_text(f"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
                                     f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth}{res},CODECS="{codecs}"\n'
                                     f"{sub}/index.m3u8\n")
        # 4. poster from a frame near the start
        if info.width:
            at = f"{min(2.0, info.duration / 2):.2f}"
            await run_ffmpeg(["-ss", at, "-i", str(tmp), "-frames:v", "1", "-q:v", "3", str(vdir / "poster.jpg")],
                             ffmpeg=self.ffmpeg)
        tmp.replace(vdir / "video.mp4")
        end = datetime.fromisoformat(journal["ended_at"]) if journal.get("ended_at") else \
            datetime.fromtimestamp(max(p.stat().st_mtime for p in plain), UTC)
        await self._set_video(video_id, status="ready", duration_ms=int(info.duration * 1000), size=size,
                              width=info.width, height=info.height,
                              name=record_name(str(journal.get("stream_name", "")), end) if recovered else None,
                              slug=slug, journal=journal)
        self._done(directory, journal)
        log.info("recording ready", extra={"video_id": video_id, "seconds": round(info.duration, 2),
                                           "bytes": size, "recovered": recovered})

    def _done(self, directory: Path, journal: dict[str, Any]) -> None:
        journal["state"] = "done"
        _write_json(directory / JOURNAL, journal)
        # the pieces are in the library now; keep only the journal (marks the directory as handled)
        for p in directory.iterdir():
            if p.name != JOURNAL:
                p.unlink(missing_ok=True)

    async def _set_video(self, video_id: int, *, name: str | None = None, slug: str | None = None,
                         journal: dict[str, Any] | None = None, **values: Any) -> None:
        async with self.sessionmaker() as db:
            video = await db.get(Video, video_id)
            if video is None and journal is not None and slug is not None:
                # the row was never committed (crash right at the start): recreate it for the files
                now = utcnow()
                video = Video(id=video_id, slug=slug, name=name or "Stream Record", description="",
                              stream_id=journal["stream_id"], record_type=journal["record_type"],
                              recording_started_at=datetime.fromisoformat(journal["started_at"]),
                              created_at=now, updated_at=now)
                db.add(video)
            if video is None:
                return
            for k, v in values.items():
                setattr(video, k, v)
            if name is not None:
                video.name = name
            video.updated_at = utcnow()
            await db.commit()


async def _wait_gone(pid: int | None, timeout: float = 15.0) -> None:  # noqa: ASYNC109
    if not pid:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return
        if ") Z" in stat or ") X" in stat:
            return  # exited, waiting to be reaped
        await asyncio.sleep(0.2)
