"""The ffmpeg command line of the live ABR transcoder (pure: settings in, argv out)."""

from __future__ import annotations

from collections.abc import Sequence

from onair.formats.probe import SourceInfo
from onair.transcode.ladder import AUDIO_KBPS, AUDIO_TRACK, Rendition

FMP4_MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"
# One fMP4 fragment = one LL-HLS part: 200 ms (6 frames at 30 fps, 5 at 25) puts PART-HOLD-BACK (3x the part
# target) at 0.6 s; ffmpeg flushes each fragment to the pipe as it completes (no muxer buffering).
FRAG_DURATION_US = 200_000
KEYFRAME_INTERVAL_S = 2
# The first keyframe interval is short, and the packager closes the first segment there: a player gets a
# playable playlist (and the stream turns `live`) sooner. A media playlist request is held while a player would
# start inside that short segment (LiveRendition.starts_in_first_segment: hls.js would stall at its end).
FIRST_KEYFRAME_INTERVAL_S = 0.3
HLS_LIST_SIZE = 6
SCREENSHOT_INTERVAL_S = 10
SCREENSHOT_MAX_WIDTH = 1080
SCREENSHOT_FILE = "screenshot.jpg"
# Outputs written to disk (MPEG-TS HLS, screenshots) are tee slaves that may fail alone: on a full disk
# ffmpeg drops them ("Slave muxer #n failed") and goes on with the fMP4 pipes the live output is made of.
ON_DISK_FAIL = "onfail=ignore"
# Live input: keep probing short. ffprobe on the head and ffmpeg use the same limits so ffmpeg sees
# the same streams ffprobe saw.
PROBESIZE = 2_000_000
ANALYZEDURATION_US = 1_000_000  # FLV probing is bound by this (~1.3 s to learn the source)
# A source whose own headers planned the ladder (formats/source_header.py) has said what it carries: ffmpeg
# only has to see its first frames, and every millisecond of analysis delays the first part.
DESCRIBED_ANALYZEDURATION_US = 200_000


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
    described: bool = False,
    ts_continues: bool = False,
) -> list[str]:
    """Build the ffmpeg argv. Paths are relative: ffmpeg runs with ``cwd=work_dir`` (so tee option
    strings never need path escaping). ``track_fds`` maps track names (rendition names and
    ``"audio"``) to the pipe write fds inherited by ffmpeg. ``described``: the source's own headers said what
    it carries (no ffprobe), so ffmpeg's own analysis is kept short. ``ts_continues``: an earlier run of this
    stream wrote MPEG-TS playlists in the work dir, which this one continues."""
    has_video = source.has_video and bool(plan)
    has_audio = source.has_audio
    cmd = [
        ffmpeg, "-hide_banner", "-nostats", "-loglevel", "info", "-y",
        "-progress", f"pipe:{progress_fd}", "-stats_period", "0.5",
        # Live input: no -re, short probing. No +nobuffer: it drops the packets read while ffmpeg analyses
        # the input, i.e. the first GOP of every push (the head replayed after the probe arrives at once).
        "-fflags", "+genpts", "-flags", "low_delay",
        "-probesize", str(PROBESIZE),
        "-analyzeduration", str(DESCRIBED_ANALYZEDURATION_US if described else ANALYZEDURATION_US),
        "-f", input_format, "-i", "pipe:0",
    ]  # fmt: skip
    if has_video:
        cmd += ["-filter_complex", _filter_graph(plan, source, screenshot)]
        for i in range(len(plan)):
            cmd += ["-map", f"[v{i}]"]
    if has_audio:
        cmd += ["-map", "0:a:0?"]
    if has_video:
        cmd += _video_codec_args(plan, source)
    if has_audio:
        cmd += ["-c:a", "aac", "-profile:a", "aac_low", "-b:a", f"{AUDIO_KBPS}k", "-ac", "2", "-ar", "48000"]
    slaves = _tee_slaves(plan if has_video else [], has_audio, track_fds, hls_list_size, ts_continues)
    # Tee does not advertise AVFMT_GLOBALHEADER, but mp4 with empty_moov needs the SPS/PPS and
    # AudioSpecificConfig up front; the mpegts muxer re-inserts them in-band by itself.
    cmd += ["-flags", "+global_header", "-f", "tee", "|".join(slaves)]
    if has_video and screenshot:
        # a tee of its own, so that a failed write (full disk) drops the screenshot instead of ending ffmpeg
        # (any failing output ends them all); the null slave keeps that tee alive without it
        cmd += [
            "-map", "[shot]", "-fps_mode", "vfr", "-c:v", "mjpeg", "-q:v", "4",
            "-f", "tee", f"[f=image2:update=1:atomic_writing=1:{ON_DISK_FAIL}]{SCREENSHOT_FILE}|[f=null]-",
        ]  # fmt: skip
    return cmd


def _filter_graph(plan: Sequence[Rendition], source: SourceInfo, screenshot: bool) -> str:
    """The source video split into one scaled chain per rendition (``[v{i}]``) and the screenshot (``[shot]``)."""
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
    return ";".join(chains)


def forced_keyframes() -> str:
    """Forced keyframes: the first frame, FIRST_KEYFRAME_INTERVAL_S later, then every KEYFRAME_INTERVAL_S.
    Counted from the previous forced one, so a source whose timestamps do not start at 0 gets no burst; the
    millisecond of slack keeps a frame whose time prints as 0.49999... from slipping to the next one (and
    x264's own keyint from putting a keyframe one frame before it)."""
    step = f"if(eq(n_forced,1),{FIRST_KEYFRAME_INTERVAL_S},{KEYFRAME_INTERVAL_S})"
    return f"expr:if(n_forced,gte(t+0.001,prev_forced_t+{step}),1)"


def _video_codec_args(plan: Sequence[Rendition], source: SourceInfo) -> list[str]:
    """x264 settings shared by all renditions, then each rendition's GOP and rate control."""
    args = [
        "-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency", "-profile:v", "high",
        "-pix_fmt", "yuv420p", "-sc_threshold", "0", "-a53cc", "0",
        "-force_key_frames", forced_keyframes(),
    ]  # fmt: skip
    if source.fps is None:
        # variable-rate source (WebRTC): without a rate ffmpeg's CFR default would duplicate frames at
        # the time-base rate (90 kHz for MPEG-TS); keep the source timing instead
        args += ["-fps_mode", "vfr"]
    for i, r in enumerate(plan):
        gop = max(1, round(KEYFRAME_INTERVAL_S * output_fps(r, source.fps)))
        kb = r.video_kbps
        args += [
            f"-g:v:{i}", str(gop),
            f"-b:v:{i}", f"{kb}k", f"-maxrate:v:{i}", f"{kb}k", f"-bufsize:v:{i}", f"{kb * 2}k",
        ]  # fmt: skip
    return args


def _tee_slaves(video_plan: Sequence[Rendition], has_audio: bool, track_fds: dict[str, int],
                hls_list_size: int, ts_continues: bool) -> list[str]:
    """The tee outputs: one fMP4 pipe per video rendition, one for the audio, then one HLS per rendition."""
    frag = f"f=mp4:movflags={FMP4_MOVFLAGS}:frag_duration={FRAG_DURATION_US}"
    # temp_file: segments appear atomically. A restart continues the old playlist (append_list: numbering
    # included, the break marked EXT-X-DISCONTINUITY); ffmpeg ignores hls_init_time then, so only a first run
    # ends its first segment at the early keyframe (else it would run to the next one, 3 s in).
    flags = "program_date_time+delete_segments+independent_segments+temp_file"
    hls = f"f=hls:{ON_DISK_FAIL}:hls_time={KEYFRAME_INTERVAL_S}:hls_list_size={hls_list_size}:hls_flags={flags}"
    hls += "+append_list" if ts_continues else f":hls_init_time={FIRST_KEYFRAME_INTERVAL_S}"
    slaves = [f"[select=\\'v:{i}\\':{frag}]pipe:{track_fds[r.name]}" for i, r in enumerate(video_plan)]
    if has_audio:
        slaves.append(f"[select=a:{frag}]pipe:{track_fds[AUDIO_TRACK]}")
    for i, r in enumerate(video_plan):
        sel = f"v:{i},a" if has_audio else f"v:{i}"
        slaves.append(f"[select=\\'{sel}\\':{hls}:hls_segment_filename=hls/{r.name}/seg%d.ts]hls/{r.name}/index.m3u8")
    return slaves
