"""Supervised per-stream ffmpeg ABR transcoder.

One ffmpeg process per live stream reads the source (FLV or MPEG-TS) from stdin and produces:

* one video-only fragmented MP4 per rendition and one audio-only fMP4, each on its own pipe fd;
* legacy HLS (MPEG-TS segments, video + audio per rendition) written by ffmpeg into ``ts_dir``;
* a JPEG screenshot every 10 s, written atomically by the image2 muxer (``atomic_writing``);
* progress key=value blocks on another pipe fd.

All fMP4 and HLS outputs are slaves of a single ``tee`` output, so each rendition is encoded once.
The outputs on disk (MPEG-TS HLS, the screenshot) may fail alone: on a full disk ffmpeg drops them
and the fMP4 pipes (LL-HLS, DASH, from memory) go on; the log says so once per output.

The ladder depends on the source resolution, so the first source bytes are buffered until they say
what the source is (FLV sequence headers and metadata, MPEG-TS PMT and SPS; ffprobe only when they do
not); then the ladder is planned and ffmpeg is started with the buffered head replayed into it.
If ffmpeg dies while the stream is live, it is restarted with a decodable stream start (FLV: header +
script/sequence-header tags + the cached current GOP; MPEG-TS: the next 188-byte packet boundary).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from onair.formats.flv_tracker import FLV_AUDIO, FLV_VIDEO, FlvTag
from onair.formats.probe import SourceInfo
from onair.transcode.command import HLS_LIST_SIZE, SCREENSHOT_FILE, build_ffmpeg_command
from onair.transcode.ffmpeg_report import ProgressBlocks, StderrHeader, header_changes, progress_changes
from onair.transcode.ffmpeg_run import ffprobe_for
from onair.transcode.ladder import AUDIO_TRACK, Rendition, plan_ladder
from onair.transcode.source_head import SourceHead
from onair.transcode.source_resume import SourceResume

log = logging.getLogger("onair.transcode.transcoder")

STOP_TIMEOUT_S = 10.0
READ_CHUNK = 64 * 1024


@dataclass(frozen=True)
class TranscoderStats:
    speed: float | None = None  # x realtime, from ffmpeg -progress
    fps: float | None = None  # output frame rate, from ffmpeg -progress
    frames: int = 0
    out_time_s: float | None = None
    source_width: int | None = None
    source_height: int | None = None
    source_fps: float | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    renditions: tuple[str, ...] = ()  # planned video renditions (track names), highest first
    tracks: tuple[str, ...] = ()  # tracks that have delivered bytes since the last (re)start
    restarts: int = 0
    running: bool = False
    failed: bool = False


# --------------------------------------------------------------------------------------------------
# Transcoder
# --------------------------------------------------------------------------------------------------


async def _read_fd(fd: int, on_data: Callable[[bytes], None]) -> None:
    """Read a pipe fd until EOF without blocking the loop (owns and closes the fd)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=READ_CHUNK * 4)
    pipe = os.fdopen(fd, "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    try:
        while chunk := await reader.read(READ_CHUNK):
            on_data(chunk)
    finally:
        transport.close()


@dataclass
class _Run:
    """One ffmpeg process and its pipe readers."""

    proc: asyncio.subprocess.Process
    readers: list[asyncio.Task[None]]
    started: float
    stderr_tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))
    dead: bool = False
    # wall clock (time.time()) at which the media its output begins with (output time 0) reached the node
    origin: float | None = None


class Transcoder:
    def __init__(
        self,
        *,
        stream_id: int,
        input_format: str,
        renditions: Sequence[Rendition],
        work_dir: Path,
        on_track_data: Callable[[str, bytes], None],
        on_stats: Callable[[TranscoderStats], None] | None = None,
        on_restart: Callable[[], None] | None = None,
        ffmpeg: str = "ffmpeg",
        max_restarts: int = 10,
        hls_list_size: int = HLS_LIST_SIZE,
        clean_ts_dir: bool = True,
    ) -> None:
        if input_format not in ("flv", "mpegts"):
            raise ValueError(f"unsupported input format {input_format!r}")
        self.stream_id = stream_id
        self.input_format = input_format
        self.renditions = tuple(renditions)
        self.work_dir = Path(work_dir)
        self._on_track_data = on_track_data
        self._on_stats = on_stats
        self._on_restart = on_restart
        self.ffmpeg = ffmpeg
        self.ffprobe = ffprobe_for(ffmpeg)
        self.max_restarts = max_restarts
        self.hls_list_size = hls_list_size  # MPEG-TS playlist length: the DVR window when DVR is on
        # False when taking over from another transcoder of the same output (failover): append_list
        # then continues its MPEG-TS playlists with a discontinuity.
        self.clean_ts_dir = clean_ts_dir

        self._stats = TranscoderStats()
        self._source = SourceInfo()
        self._plan: list[Rendition] = []
        self._tracks_seen: set[str] = set()
        self._resume = SourceResume(input_format)
        self._first_media: float | None = None  # wall clock of the source's first media at the node
        self._gop_arrival: float | None = None  # wall clock of the keyframe a restart resumes at (FLV)

        self._lock = asyncio.Lock()  # serialises writes to ffmpeg stdin and (re)spawns
        self._probe = SourceHead(self.ffprobe, input_format, stream_id)
        self._run: _Run | None = None
        self._main_task: asyncio.Task[None] | None = None
        self._started = False
        self._stopping = False
        self._failed = False
        self.command: list[str] = []

    # ------------------------------------------------------------------ public API

    @property
    def stats(self) -> TranscoderStats:
        return self._stats

    @property
    def plan(self) -> list[Rendition]:
        return list(self._plan)

    @property
    def planned_from_headers(self) -> bool:
        """The ladder came from what the source said in its first bytes (False: ffprobe, or not planned yet)."""
        return self._probe.described

    @property
    def ts_dir(self) -> Path:
        return self.work_dir / "hls"

    @property
    def screenshot_path(self) -> Path:
        return self.work_dir / SCREENSHOT_FILE

    @property
    def clock_origin(self) -> datetime | None:
        """The capture clock of the running ffmpeg's output: when the media at its output time 0
        reached the node (ffmpeg starts its output timestamps at the input's first one). None
        before ffmpeg has been given media."""
        run = self._run
        if run is None or run.origin is None:
            return None
        return datetime.fromtimestamp(run.origin, UTC)

    def resume_point(self) -> bytes | None:
        """A decodable start of the source as of the bytes written so far, for a second consumer (the
        recorder) joining mid-stream: FLV header + sequence headers + current GOP. b"" for MPEG-TS
        (any packet boundary will do); None while no keyframe has been seen."""
        return self._resume.resume_point()

    async def start(self) -> None:
        """Start reading the source head; ffmpeg itself starts once the head has said what the source is."""
        if self._started:
            return
        self._started = True
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # A previous session's segments would confuse append_list and players.
        if self.clean_ts_dir:
            await asyncio.to_thread(shutil.rmtree, self.ts_dir, True)
        self._main_task = asyncio.create_task(self._main(), name=f"transcoder-{self.stream_id}")

    async def write(self, data: bytes, *, captured: float | None = None) -> None:
        """Feed source bytes. Never raises because of ffmpeg: data is dropped while it is down.

        `captured`: wall clock (time.time()) at which the media in `data` reached the node, when
        that was earlier than now (a standby's GOP replayed at a switch)."""
        if not data or self._stopping:
            return
        async with self._lock:
            tags = self._resume.track(data)
            now = time.time()
            self._note_media(now if captured is None else captured, tags)
            run = self._run
            if run is None:
                if not self._failed:
                    await self._probe.feed(data)
                return
            if run.dead:
                return
            data = self._resume.forward(data, tags)
            if data:
                if run.origin is None:
                    run.origin = now if captured is None else captured
                await self._stdin_write(run, data)

    def _note_media(self, at: float, tags: list[FlvTag]) -> None:
        if self.input_format != "flv":
            if self._first_media is None:
                self._first_media = at
            return
        if self._first_media is None and any(t.type in (FLV_AUDIO, FLV_VIDEO) for t in tags):
            self._first_media = at  # the FLV header and metadata come first, the media a moment later
        if any(t.keyframe for t in tags):
            self._gop_arrival = at

    async def stop(self) -> None:
        """Close ffmpeg's stdin so it flushes the outputs, wait (then kill), stop the readers."""
        if self._stopping:
            return
        self._stopping = True
        self._probe.kill()
        main = self._main_task
        if main is not None and self._run is None:
            main.cancel()  # still probing (maybe no data ever came)
            await asyncio.wait({main}, timeout=5.0)
        run = self._run
        if run is not None:
            if run.proc.stdin is not None:
                run.proc.stdin.close()
            try:
                await asyncio.wait_for(run.proc.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log.warning("stream %s: ffmpeg did not exit in %ss, killing", self.stream_id, STOP_TIMEOUT_S)
                with contextlib.suppress(ProcessLookupError):
                    run.proc.kill()
                await run.proc.wait()
            await self._drain_readers(run)
        if main is not None and not main.done():
            _, pending = await asyncio.wait({main}, timeout=5.0)
            for t in pending:
                t.cancel()
        self._update(running=False)

    # ------------------------------------------------------------------ supervision

    async def _main(self) -> None:
        try:
            info = await self._probe.result()
            if self._stopping:
                return
            if not info.has_video and not info.has_audio:
                log.error("stream %s: no audio/video in the source head", self.stream_id)
                self._fail()
                return
            self._source = info
            if info.has_video and info.width and info.height:
                self._plan = plan_ladder(self.renditions, info.width, info.height)
            elif info.has_video:
                log.error("stream %s: source video size unknown; no video renditions", self.stream_id)
            if not info.has_video:
                self._resume.source_has_no_video()
            self._update(
                source_width=info.width, source_height=info.height, source_fps=info.fps,
                video_codec=info.video_codec, audio_codec=info.audio_codec,
                renditions=tuple(r.name for r in self._plan),
            )  # fmt: skip
            log.info(
                "stream %s: source %sx%s@%s %s/%s (%s) -> ladder %s", self.stream_id, info.width, info.height,
                info.fps, info.video_codec, info.audio_codec,
                "from its headers" if self._probe.described else "ffprobe",
                [f"{r.name}:{r.width}x{r.height}" for r in self._plan],
            )  # fmt: skip
            async with self._lock:
                if self._stopping:
                    return
                head = self._probe.take_head()
                run = await self._spawn()
                run.origin = self._first_media
                await self._stdin_write(run, head)
            await self._supervise()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("stream %s: transcoder supervisor crashed", self.stream_id)
            self._fail()

    async def _supervise(self) -> None:
        budget = self.max_restarts
        while True:
            run = self._run
            assert run is not None
            rc = await run.proc.wait()
            run.dead = True
            await self._drain_readers(run)
            if self._stopping:
                log.info("stream %s: ffmpeg exited with %s", self.stream_id, rc)
                return
            log.warning(
                "stream %s: ffmpeg exited unexpectedly (rc=%s); last stderr:\n%s",
                self.stream_id, rc, "\n".join(run.stderr_tail),
            )  # fmt: skip
            if time.monotonic() - run.started > 60:
                budget = self.max_restarts  # only count crash loops, not rare crashes
            if budget <= 0:
                log.error("stream %s: ffmpeg restarted too often, giving up", self.stream_id)
                self._fail()
                return
            budget -= 1
            # Restart at once after a one-off crash; back off (up to 1 s) only in crash loops.
            quick_fail = time.monotonic() - run.started < 2.0
            await asyncio.sleep(1.0 if quick_fail else 0.05)
            async with self._lock:
                if self._stopping:
                    return
                self._tracks_seen.clear()
                self._update(restarts=self._stats.restarts + 1, tracks=(), speed=None, fps=None)
                if self._on_restart is not None:
                    try:
                        self._on_restart()
                    except Exception:
                        log.exception("stream %s: on_restart callback failed", self.stream_id)
                new = await self._spawn()
                resume = self._resume.restart()
                if resume:  # FLV: the current GOP again, from the keyframe that came in at _gop_arrival
                    new.origin = self._gop_arrival if self.input_format == "flv" else None
                await self._stdin_write(new, resume)

    async def _spawn(self) -> _Run:
        fds: dict[str, int] = {}
        read_fds: dict[str, int] = {}
        names = [r.name for r in self._plan] + ([AUDIO_TRACK] if self._source.has_audio else [])
        for name in names:
            read_fds[name], fds[name] = os.pipe()
        prog_r, prog_w = os.pipe()
        for rend in self._plan:
            (self.ts_dir / rend.name).mkdir(parents=True, exist_ok=True)
        cmd = build_ffmpeg_command(
            ffmpeg=self.ffmpeg, input_format=self.input_format, plan=self._plan, source=self._source,
            track_fds=fds, progress_fd=prog_w, hls_list_size=self.hls_list_size, described=self._probe.described,
            ts_continues=any((self.ts_dir / r.name / "index.m3u8").exists() for r in self._plan),
        )  # fmt: skip
        self.command = cmd
        log.debug("stream %s: ffmpeg command: %s", self.stream_id, " ".join(cmd))
        try:
            proc = await asyncio.create_subprocess_exec(
                *cmd, cwd=str(self.work_dir), pass_fds=(*fds.values(), prog_w),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except BaseException:
            for fd in (*fds.values(), *read_fds.values(), prog_r, prog_w):
                os.close(fd)
            raise
        finally:
            # The child has its copies; ours must go so the readers see EOF when ffmpeg exits.
            for fd in (*fds.values(), prog_w):
                with contextlib.suppress(OSError):
                    os.close(fd)
        run = _Run(proc=proc, readers=[], started=time.monotonic())
        for name, fd in read_fds.items():
            run.readers.append(asyncio.create_task(_read_fd(fd, self._track_cb(name))))
        run.readers.append(asyncio.create_task(self._read_progress(prog_r)))
        run.readers.append(asyncio.create_task(self._read_stderr(run)))
        self._run = run
        self._update(running=True)
        return run

    async def _stdin_write(self, run: _Run, data: bytes) -> None:
        stdin = run.proc.stdin
        if not data or stdin is None or run.dead or run.proc.returncode is not None or stdin.is_closing():
            return
        try:
            stdin.write(data)
            await stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            # The supervisor notices the exit and restarts; until then data is dropped.
            log.debug("stream %s: ffmpeg stdin write failed: %s", self.stream_id, exc)
            run.dead = True

    async def _drain_readers(self, run: _Run) -> None:
        if not run.readers:
            return
        done, pending = await asyncio.wait(run.readers, timeout=5.0)
        for t in pending:
            t.cancel()
        for t in done:
            if not t.cancelled() and t.exception() is not None:
                log.warning("stream %s: reader failed: %r", self.stream_id, t.exception())
        run.readers = []

    def _fail(self) -> None:
        self._failed = True
        self._probe.clear()
        self._update(running=False, failed=True)

    # ------------------------------------------------------------------ readers

    def _track_cb(self, name: str) -> Callable[[bytes], None]:
        def on_data(chunk: bytes) -> None:
            if name not in self._tracks_seen:
                self._tracks_seen.add(name)
                self._update(tracks=tuple(sorted(self._tracks_seen)))
            try:
                self._on_track_data(name, chunk)
            except Exception:
                # Never let a consumer bug stall the pipe (ffmpeg would block on all outputs).
                log.exception("stream %s: on_track_data(%s) failed", self.stream_id, name)

        return on_data

    async def _read_progress(self, fd: int) -> None:
        blocks = ProgressBlocks()

        def on_data(chunk: bytes) -> None:
            for block in blocks.feed(chunk):
                self._apply_progress(block)

        await _read_fd(fd, on_data)

    def _apply_progress(self, block: dict[str, str]) -> None:
        self._update(**progress_changes(block))
        if self._on_stats is not None:
            try:
                self._on_stats(self._stats)
            except Exception:
                log.exception("stream %s: on_stats callback failed", self.stream_id)

    async def _read_stderr(self, run: _Run) -> None:
        stream = run.proc.stderr
        assert stream is not None
        header = StderrHeader()
        while True:
            try:
                line_b = await stream.readline()
            except ValueError:  # over-long line; skip it
                continue
            if not line_b:
                break
            line = line_b.decode("utf-8", "replace").rstrip()
            run.stderr_tail.append(line)
            if "Slave muxer #" in line and "failed" in line:
                # a tee output on disk gave up (e.g. "No space left on device"): the stream goes on without it
                log.warning("stream %s: an ffmpeg output on disk stopped, the live stream continues: %s",
                            self.stream_id, line.split("]", 1)[-1].strip())
            text = header.feed(line)
            if text is not None:
                # ffmpeg's own view of the input supersedes the head probe where it has a value.
                changes = header_changes(text)
                if changes:
                    self._update(**changes)

    def _update(self, **changes: object) -> None:
        self._stats = dataclasses.replace(self._stats, **changes)  # type: ignore[arg-type]


__all__ = ["Transcoder", "TranscoderStats"]
