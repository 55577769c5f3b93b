"""Supervised per-stream ffmpeg ABR transcoder.

One ffmpeg process per live stream reads the source (FLV or MPEG-TS) from stdin and produces:

* one video-only fragmented MP4 per rendition and one audio-only fMP4, each on its own pipe fd;
* legacy HLS (MPEG-TS segments, video + audio per rendition) written by ffmpeg into ``ts_dir``;
* a JPEG screenshot every 10 s, written atomically by the image2 muxer (``atomic_writing``);
* progress key=value blocks on another pipe fd.

All fMP4 and HLS outputs are slaves of a single ``tee`` output, so each rendition is encoded once.

The ladder depends on the source resolution, so the first source bytes are buffered and fed to a
short-lived ``ffprobe``; once it reports the streams, the ladder is planned and ffmpeg is started
with the buffered head replayed into it. If ffmpeg dies while the stream is live, it is restarted
with a decodable stream start (FLV: header + script/sequence-header tags + the cached current GOP;
MPEG-TS: the next 188-byte packet boundary).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import struct
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from onair.media.ladder import AUDIO_KBPS, AUDIO_TRACK, Rendition, plan_ladder
from onair.media.probe import SourceInfo, parse_ffmpeg_input_info, parse_ffprobe_json

log = logging.getLogger("onair.media.transcoder")

FMP4_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
FRAG_DURATION_US = 500_000
KEYFRAME_INTERVAL_S = 2
HLS_LIST_SIZE = 6
SCREENSHOT_INTERVAL_S = 10
SCREENSHOT_MAX_WIDTH = 1080
# Live input: keep probing short. ffprobe on the head and ffmpeg use the same limits so ffmpeg sees
# the same streams ffprobe saw.
PROBESIZE = 2_000_000
ANALYZEDURATION_US = 1_000_000  # FLV probing is bound by this (~1.3 s to learn the source)
PROBE_TIMEOUT_S = 10.0
HEAD_MAX_BYTES = 16 * 1024 * 1024
GOP_CACHE_MAX_BYTES = 16 * 1024 * 1024
STOP_TIMEOUT_S = 10.0
TS_PACKET = 188
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
# FLV tracking (minimal framing parser, only what a restart needs)
# --------------------------------------------------------------------------------------------------

FLV_AUDIO, FLV_VIDEO, FLV_SCRIPT = 8, 9, 18


@dataclass(frozen=True)
class FlvTag:
    type: int
    timestamp: int
    raw: bytes  # 11-byte header + body + 4-byte PreviousTagSize
    keyframe: bool = False  # video keyframe carrying a picture (not a sequence header)
    seq_header: bool = False


def _with_timestamp(raw: bytes, ts: int) -> bytes:
    ts &= 0xFFFFFFFF
    return raw[:4] + (ts & 0xFFFFFF).to_bytes(3, "big") + bytes([ts >> 24]) + raw[8:]


class FlvTracker:
    """Follows the FLV tag framing of the source to be able to restart a decoder mid-stream.

    Remembers the file header, the first script tag, the latest AVC/AAC sequence headers and the
    tags of the current GOP (from the last video keyframe). If the framing looks corrupt it gives up
    (``broken``): a restart then just replays the header/config it has.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.header: bytes | None = None
        self.script: bytes | None = None
        self.video_seq: bytes | None = None
        self.audio_seq: bytes | None = None
        self.has_video_flag = True
        self.gop: list[bytes] = []
        self.gop_bytes = 0
        self.gop_ts: int | None = None
        self.broken = False

    @property
    def pending(self) -> bytes:
        """Bytes of an incomplete tag (already received, not yet a whole tag)."""
        return bytes(self._buf)

    def feed(self, data: bytes) -> list[FlvTag]:
        if self.broken:
            return []
        self._buf += data
        tags: list[FlvTag] = []
        buf = self._buf
        pos = 0
        if self.header is None:
            if len(buf) < 9:
                return tags
            if buf[:3] != b"FLV":
                self._break("no FLV signature")
                return tags
            hdr_len = struct.unpack(">I", buf[5:9])[0]
            if not 9 <= hdr_len <= 64:
                self._break(f"bad FLV header size {hdr_len}")
                return tags
            if len(buf) < hdr_len + 4:
                return tags
            self.header = bytes(buf[: hdr_len + 4])
            self.has_video_flag = bool(buf[4] & 0x01)
            pos = hdr_len + 4
        while len(buf) - pos >= 11:
            ttype = buf[pos] & 0x1F
            size = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            if ttype not in (FLV_AUDIO, FLV_VIDEO, FLV_SCRIPT) or size > 32 * 1024 * 1024:
                self._break(f"bad tag type={ttype} size={size}")
                return tags
            end = pos + 11 + size + 4
            if len(buf) < end:
                break
            raw = bytes(buf[pos:end])
            ts = int.from_bytes(raw[4:7], "big") | (raw[7] << 24)
            tags.append(self._track(ttype, ts, raw, size))
            pos = end
        del buf[:pos]
        return tags

    def _break(self, why: str) -> None:
        log.warning("FLV framing lost (%s); restarts will not resume at a keyframe", why)
        self.broken = True
        self._buf.clear()
        self.gop.clear()

    def _track(self, ttype: int, ts: int, raw: bytes, size: int) -> FlvTag:
        body0 = raw[11] if size >= 1 else 0
        body1 = raw[12] if size >= 2 else 0xFF
        keyframe = seq = False
        if ttype == FLV_SCRIPT:
            if self.script is None:
                self.script = raw
                return FlvTag(ttype, ts, raw)
        elif ttype == FLV_VIDEO and size >= 2:
            keyframe = (body0 >> 4) & 0x07 == 1
            if body0 & 0x80:  # enhanced RTMP: low nibble is the packet type, 0 = sequence start
                seq = body0 & 0x0F == 0
            else:
                seq = body1 == 0 and body0 & 0x0F in (7, 12, 13)  # AVC (and common HEVC/AV1 ids)
            if seq:
                self.video_seq = raw
        elif ttype == FLV_AUDIO and size >= 2:
            seq = body0 >> 4 == 10 and body1 == 0  # AAC sequence header
            if seq:
                self.audio_seq = raw
        if keyframe and not seq:
            self.gop = [raw]
            self.gop_bytes = len(raw)
            self.gop_ts = ts
        elif self.gop and not seq:
            self.gop.append(raw)
            self.gop_bytes += len(raw)
            if self.gop_bytes > GOP_CACHE_MAX_BYTES:
                self.gop, self.gop_bytes, self.gop_ts = [], 0, None
        return FlvTag(ttype, ts, raw, keyframe and not seq, seq)

    def config(self, ts: int) -> bytes:
        """Header + script + sequence headers, re-stamped to ``ts`` so that ffmpeg's start-time
        normalisation makes the restarted output begin near 0 instead of at an old timestamp."""
        parts = [self.header or b""]
        for raw in (self.script, self.video_seq, self.audio_seq):
            if raw is not None:
                parts.append(_with_timestamp(raw, ts))
        return b"".join(parts)

    def resume_data(self) -> bytes | None:
        """Decodable stream start for a new decoder, or None if a keyframe must be awaited."""
        if self.header is None or self.broken:
            return None
        if self.gop and self.gop_ts is not None:
            return self.config(self.gop_ts) + b"".join(self.gop) + self.pending
        if not self.has_video_flag:
            return self.config(0) + self.pending  # audio only: any tag boundary will do
        return None


# --------------------------------------------------------------------------------------------------
# ffmpeg command line
# --------------------------------------------------------------------------------------------------


def _fmt_num(v: float) -> str:
    return f"{v:.3f}".rstrip("0").rstrip(".")


def output_fps(r: Rendition, source_fps: float | None) -> float:
    if source_fps is None or source_fps <= 0:
        return r.fps_max
    return min(source_fps, r.fps_max)


def build_ffmpeg_command(
    *,
    ffmpeg: str,
    input_format: str,
    plan: Sequence[Rendition],
    source: SourceInfo,
    track_fds: dict[str, int],
    progress_fd: int,
    screenshot: bool = True,
    hls_list_size: int = HLS_LIST_SIZE,
) -> list[str]:
    """Build the ffmpeg argv. Paths are relative: ffmpeg runs with ``cwd=work_dir`` (so tee option
    strings never need path escaping). ``track_fds`` maps track names (rendition names and
    ``"audio"``) to the pipe write fds inherited by ffmpeg."""
    has_video = source.has_video and bool(plan)
    has_audio = source.has_audio
    cmd = [
        ffmpeg, "-hide_banner", "-nostats", "-loglevel", "info", "-y",
        "-progress", f"pipe:{progress_fd}", "-stats_period", "0.5",
        # Live input: no -re, minimal buffering and probing.
        "-fflags", "+nobuffer+genpts", "-flags", "low_delay",
        "-probesize", str(PROBESIZE), "-analyzeduration", str(ANALYZEDURATION_US),
        "-f", input_format, "-i", "pipe:0",
    ]  # fmt: skip
    frag = f"f=mp4:movflags={FMP4_MOVFLAGS}:frag_duration={FRAG_DURATION_US}"
    hls = (
        f"f=hls:hls_time={KEYFRAME_INTERVAL_S}:hls_list_size={hls_list_size}"
        # append_list: after a restart ffmpeg continues the old playlist (numbering included) and
        # marks the break with EXT-X-DISCONTINUITY; temp_file: segments appear atomically.
        ":hls_flags=program_date_time+delete_segments+independent_segments+temp_file+append_list"
    )
    slaves: list[str] = []
    if has_video:
        n = len(plan)
        chains = [f"[0:v:0]split={n + (1 if screenshot else 0)}" + "".join(f"[s{i}]" for i in range(n))]
        if screenshot:
            chains[0] += "[sshot]"
        for i, r in enumerate(plan):
            fps_filter = ""
            if source.fps is not None and source.fps > r.fps_max + 0.01:  # unknown: keep timing
                fps_filter = f"fps={_fmt_num(r.fps_max)},"
            chains.append(f"[s{i}]{fps_filter}scale={r.width}:{r.height},setsar=1,format=yuv420p[v{i}]")
        if screenshot:
            # First frame at once, then one every 10 s; never upscale (min with input width).
            chains.append(
                f"[sshot]select='isnan(prev_selected_t)+gte(t-prev_selected_t\\,{SCREENSHOT_INTERVAL_S})',"
                f"scale='min({SCREENSHOT_MAX_WIDTH}\\,iw)':-2,format=yuvj420p[shot]"
            )
        cmd += ["-filter_complex", ";".join(chains)]
        for i in range(n):
            cmd += ["-map", f"[v{i}]"]
    if has_audio:
        cmd += ["-map", "0:a:0?"]
    if has_video:
        cmd += [
            "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "high",
            "-pix_fmt", "yuv420p", "-sc_threshold", "0",
            "-force_key_frames", f"expr:gte(t,n_forced*{KEYFRAME_INTERVAL_S})",
        ]  # fmt: skip
        if source.fps is None:
            # variable-rate source (WebRTC): without a rate ffmpeg's CFR default would duplicate frames at
            # the time-base rate (90 kHz for MPEG-TS); keep the source timing instead
            cmd += ["-fps_mode", "vfr"]
        for i, r in enumerate(plan):
            gop = max(1, round(KEYFRAME_INTERVAL_S * output_fps(r, source.fps)))
            kb = r.video_kbps
            cmd += [
                f"-g:v:{i}", str(gop),
                f"-b:v:{i}", f"{kb}k", f"-maxrate:v:{i}", f"{kb}k", f"-bufsize:v:{i}", f"{kb * 2}k",
            ]  # fmt: skip
            slaves.append(f"[select=\\'v:{i}\\':{frag}]pipe:{track_fds[r.name]}")
    if has_audio:
        cmd += ["-c:a", "aac", "-profile:a", "aac_low", "-b:a", f"{AUDIO_KBPS}k", "-ac", "2", "-ar", "48000"]
        slaves.append(f"[select=a:{frag}]pipe:{track_fds[AUDIO_TRACK]}")
    if has_video:
        for i, r in enumerate(plan):
            sel = f"v:{i},a" if has_audio else f"v:{i}"
            slaves.append(
                f"[select=\\'{sel}\\':{hls}:hls_segment_filename=hls/{r.name}/seg%d.ts]hls/{r.name}/index.m3u8"
            )
    # Tee does not advertise AVFMT_GLOBALHEADER, but mp4 with empty_moov needs the SPS/PPS and
    # AudioSpecificConfig up front; the mpegts muxer re-inserts them in-band by itself.
    cmd += ["-flags", "+global_header", "-f", "tee", "|".join(slaves)]
    if has_video and screenshot:
        cmd += [
            "-map", "[shot]", "-fps_mode", "vfr", "-c:v", "mjpeg", "-q:v", "4",
            "-f", "image2", "-update", "1", "-atomic_writing", "1", "screenshot.jpg",
        ]  # fmt: skip
    return cmd


def _parse_progress_value(key: str, value: str) -> float | None:
    value = value.strip().rstrip("x").strip()
    if not value or value == "N/A":
        return None
    try:
        return float(value)
    except ValueError:
        return None


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
        self.ffprobe = _sibling_ffprobe(ffmpeg)
        self.max_restarts = max_restarts
        self.hls_list_size = hls_list_size  # MPEG-TS playlist length: the DVR window when DVR is on
        # False when taking over from another transcoder of the same output (failover): append_list
        # then continues its MPEG-TS playlists with a discontinuity.
        self.clean_ts_dir = clean_ts_dir

        self._stats = TranscoderStats()
        self._source = SourceInfo()
        self._plan: list[Rendition] = []
        self._tracks_seen: set[str] = set()
        self._flv = FlvTracker() if input_format == "flv" else None
        self._ts_offset = 0  # bytes of source seen, to find TS packet boundaries
        self._skip = 0  # bytes to drop before the next TS packet boundary after a restart
        self._await_keyframe = False

        self._lock = asyncio.Lock()  # serialises writes to ffmpeg stdin and (re)spawns
        self._head: list[bytes] = []
        self._head_bytes = 0
        self._probe_proc: asyncio.subprocess.Process | None = None
        self._probe_input_closed = False
        self._first_data = asyncio.Event()
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
    def ts_dir(self) -> Path:
        return self.work_dir / "hls"

    @property
    def screenshot_path(self) -> Path:
        return self.work_dir / "screenshot.jpg"

    def resume_point(self) -> bytes | None:
        """A decodable start of the source as of the bytes written so far, for a second consumer (the
        recorder) joining mid-stream: FLV header + sequence headers + current GOP. b"" for MPEG-TS
        (any packet boundary will do); None while no keyframe has been seen."""
        if self._flv is None:
            return b""
        return self._flv.resume_data()

    async def start(self) -> None:
        """Start probing; ffmpeg itself starts once the source head has been probed."""
        if self._started:
            return
        self._started = True
        self.work_dir.mkdir(parents=True, exist_ok=True)
        # A previous session's segments would confuse append_list and players.
        if self.clean_ts_dir:
            await asyncio.to_thread(shutil.rmtree, self.ts_dir, True)
        self._probe_proc = await asyncio.create_subprocess_exec(
            self.ffprobe, "-v", "error",
            "-probesize", str(PROBESIZE), "-analyzeduration", str(ANALYZEDURATION_US),
            "-f", self.input_format, "-i", "pipe:0", "-show_streams", "-of", "json",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self._main_task = asyncio.create_task(self._main(), name=f"transcoder-{self.stream_id}")

    async def write(self, data: bytes) -> None:
        """Feed source bytes. Never raises because of ffmpeg: data is dropped while it is down."""
        if not data or self._stopping:
            return
        self._first_data.set()
        async with self._lock:
            tags = self._flv.feed(data) if self._flv is not None else []
            self._ts_offset += len(data)
            run = self._run
            if run is None:
                if not self._failed:
                    await self._feed_probe(data)
                return
            if run.dead:
                return
            if self._flv is not None and self._await_keyframe:
                data = self._flv_after_keyframe(tags)
            elif self._skip:
                n = min(self._skip, len(data))
                data, self._skip = data[n:], self._skip - n
            if data:
                await self._stdin_write(run, data)

    async def stop(self) -> None:
        """Close ffmpeg's stdin so it flushes the outputs, wait (then kill), stop the readers."""
        if self._stopping:
            return
        self._stopping = True
        if self._probe_proc is not None and self._probe_proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._probe_proc.kill()
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

    # ------------------------------------------------------------------ probing

    async def _feed_probe(self, data: bytes) -> None:
        self._head.append(data)
        self._head_bytes += len(data)
        proc = self._probe_proc
        if proc is None or proc.stdin is None or self._probe_input_closed:
            return
        if proc.returncode is not None or proc.stdin.is_closing():
            self._probe_input_closed = True
            return
        try:
            proc.stdin.write(data)
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            self._probe_input_closed = True  # ffprobe has seen enough and exited
        if self._head_bytes > HEAD_MAX_BYTES and not self._probe_input_closed:
            proc.stdin.close()  # EOF makes ffprobe report what it found so far
            self._probe_input_closed = True

    async def _probe(self) -> SourceInfo:
        proc = self._probe_proc
        assert proc is not None and proc.stdout is not None
        out_task = asyncio.create_task(proc.stdout.read())
        await self._first_data.wait()
        try:
            await asyncio.wait_for(proc.wait(), PROBE_TIMEOUT_S)
        except TimeoutError:
            log.warning("stream %s: ffprobe timed out, using what it found", self.stream_id)
            async with self._lock:
                if proc.stdin is not None:
                    proc.stdin.close()
                self._probe_input_closed = True
            try:
                await asyncio.wait_for(proc.wait(), 3.0)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        info = parse_ffprobe_json((await out_task).decode("utf-8", "replace"))
        if proc.stdin is not None:
            proc.stdin.close()
        return info

    # ------------------------------------------------------------------ supervision

    async def _main(self) -> None:
        try:
            info = await self._probe()
            if self._stopping:
                return
            if not info.has_video and not info.has_audio:
                log.error("stream %s: ffprobe found no audio/video in the source head", self.stream_id)
                self._fail()
                return
            self._source = info
            if info.has_video and info.width and info.height:
                self._plan = plan_ladder(self.renditions, info.width, info.height)
            elif info.has_video:
                log.error("stream %s: source video size unknown; no video renditions", self.stream_id)
            if self._flv is not None and not info.has_video:
                self._flv.has_video_flag = False
            self._update(
                source_width=info.width, source_height=info.height, source_fps=info.fps,
                video_codec=info.video_codec, audio_codec=info.audio_codec,
                renditions=tuple(r.name for r in self._plan),
            )  # fmt: skip
            log.info(
                "stream %s: source %sx%s@%s %s/%s -> ladder %s", self.stream_id, info.width, info.height,
                info.fps, info.video_codec, info.audio_codec,
                [f"{r.name}:{r.width}x{r.height}" for r in self._plan],
            )  # fmt: skip
            async with self._lock:
                if self._stopping:
                    return
                head = b"".join(self._head)
                self._head.clear()
                run = await self._spawn()
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
                await self._stdin_write(new, self._resume_data())

    def _resume_data(self) -> bytes:
        """Decodable start for the restarted ffmpeg; sets up dropping until one is available."""
        if self._flv is not None:
            data = self._flv.resume_data()
            if data is None and not self._flv.broken:
                self._await_keyframe = True
                return b""
            return data or b""
        self._skip = (-self._ts_offset) % TS_PACKET
        return b""

    def _flv_after_keyframe(self, tags: list[FlvTag]) -> bytes:
        assert self._flv is not None
        for i, tag in enumerate(tags):
            if tag.type == FLV_VIDEO and tag.keyframe:
                self._await_keyframe = False
                return self._flv.config(tag.timestamp) + b"".join(t.raw for t in tags[i:]) + self._flv.pending
        return b""

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
            track_fds=fds, progress_fd=prog_w, hls_list_size=self.hls_list_size,
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
        self._head.clear()
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
        block: dict[str, str] = {}
        partial = b""

        def on_data(chunk: bytes) -> None:
            nonlocal partial
            lines = (partial + chunk).split(b"\n")
            partial = lines.pop()
            for raw in lines:
                key, sep, value = raw.decode("utf-8", "replace").strip().partition("=")
                if not sep:
                    continue
                block[key] = value
                if key == "progress":
                    self._apply_progress(block)
                    block.clear()

        await _read_fd(fd, on_data)

    def _apply_progress(self, block: dict[str, str]) -> None:
        changes: dict[str, object] = {}
        speed = _parse_progress_value("speed", block.get("speed", ""))
        fps = _parse_progress_value("fps", block.get("fps", ""))
        if speed is not None:
            changes["speed"] = speed
        if fps is not None:
            changes["fps"] = fps
        frame = block.get("frame", "")
        if frame.strip().isdigit():
            changes["frames"] = int(frame)
        out_us = block.get("out_time_us", "").strip()
        if out_us.lstrip("-").isdigit():
            changes["out_time_s"] = int(out_us) / 1e6
        self._update(**changes)
        if self._on_stats is not None:
            try:
                self._on_stats(self._stats)
            except Exception:
                log.exception("stream %s: on_stats callback failed", self.stream_id)

    async def _read_stderr(self, run: _Run) -> None:
        stream = run.proc.stderr
        assert stream is not None
        header: list[str] = []
        header_done = False
        while True:
            try:
                line_b = await stream.readline()
            except ValueError:  # over-long line; skip it
                continue
            if not line_b:
                break
            line = line_b.decode("utf-8", "replace").rstrip()
            run.stderr_tail.append(line)
            if not header_done:
                header.append(line)
                if line.startswith(("Output #", "Stream mapping")) or len(header) > 200:
                    header_done = True
                    self._apply_ffmpeg_header("\n".join(header))

    def _apply_ffmpeg_header(self, text: str) -> None:
        # ffmpeg's own view of the input supersedes the head probe where it has a value.
        info = parse_ffmpeg_input_info(text)
        changes: dict[str, object] = {}
        if info.width and info.height:
            changes.update(source_width=info.width, source_height=info.height)
        if info.fps:
            changes["source_fps"] = info.fps
        if changes:
            self._update(**changes)

    def _update(self, **changes: object) -> None:
        self._stats = dataclasses.replace(self._stats, **changes)  # type: ignore[arg-type]


def _sibling_ffprobe(ffmpeg: str) -> str:
    """ffprobe next to the configured ffmpeg binary (same build), else from PATH."""
    p = Path(ffmpeg)
    if p.parent != Path("."):
        cand = p.with_name(p.name.replace("ffmpeg", "ffprobe"))
        if cand.exists():
            return str(cand)
    return "ffprobe"


__all__ = [
    "FlvTag",
    "FlvTracker",
    "Transcoder",
    "TranscoderStats",
    "build_ffmpeg_command",
    "output_fps",
]
