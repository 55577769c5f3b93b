from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from onair.formats.flv_tracker import FLV_AUDIO, FLV_VIDEO, FlvTracker
from onair.formats.probe import (
    MediaInfo,
    SourceInfo,
    parse_ffmpeg_input_info,
    parse_ffprobe_json,
    parse_ffprobe_media_json,
)
from onair.transcode.command import FIRST_KEYFRAME_INTERVAL_S, build_ffmpeg_command
from onair.transcode.ffmpeg_report import ProgressBlocks, StderrHeader, header_changes, progress_changes
from onair.transcode.ffmpeg_run import ffprobe_for
from onair.transcode.ladder import DEFAULT_LADDER, plan_ladder
from onair.transcode.source_resume import SourceResume
from onair.transcode.transcoder import Transcoder

HAVE_FFMPEG = shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None

# ----------------------------------------------------------------------------------- pure tests

FFMPEG_STDERR = """\
Input #0, flv, from 'pipe:0':
  Metadata:
    encoder         : Lavf59.27.100
  Duration: N/A, start: 0.000000, bitrate: N/A
  Stream #0:0: Video: h264 (Constrained Baseline), yuv420p(progressive), 1280x720 [SAR 1:1 DAR 16:9], \
25 fps, 25 tbr, 1k tbn
  Stream #0:1: Audio: aac (LC), 44100 Hz, mono, fltp, 96 kb/s
Stream mapping:
  Stream #0:0 -> #0:0 (h264 (native) -> h264 (libx264))
Output #0, tee, to 'x':
  Stream #0:0: Video: h264, yuv420p(progressive), 854x480 [SAR 1:1 DAR 427:240], q=2-31, 25 fps
"""


def test_parse_ffmpeg_input_info() -> None:
    info = parse_ffmpeg_input_info(FFMPEG_STDERR)
    assert info == SourceInfo(1280, 720, 25.0, "h264", "aac")


def test_parse_ffmpeg_input_info_ts_with_pids_and_tbr_only() -> None:
    text = (
        "Input #0, mpegts, from 'pipe:0':\n"
        "  Program 1\n"
        "  Stream #0:0[0x100]: Video: hevc (Main) ([36][0][0][0] / 0x0024), yuv420p(tv), 1920x1080, "
        "29.97 tbr, 90k tbn\n"
        "  Stream #0:1[0x101](eng): Audio: aac (LC) ([15][0][0][0] / 0x000F), 48000 Hz, stereo, fltp\n"
    )
    info = parse_ffmpeg_input_info(text)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (1920, 1080, "hevc", "aac")
    assert info.fps == pytest.approx(29.97)


def test_parse_ffmpeg_input_info_missing() -> None:
    assert parse_ffmpeg_input_info("garbage\n") == SourceInfo()
    audio_only = "Input #0, flv, from 'a':\n  Stream #0:0: Audio: mp3, 44100 Hz, stereo\n"
    assert parse_ffmpeg_input_info(audio_only) == SourceInfo(audio_codec="mp3")


def test_parse_ffprobe_json() -> None:
    text = json.dumps(
        {
            "streams": [
                {"codec_type": "video", "codec_name": "h264", "width": 640, "height": 360,
                 "avg_frame_rate": "30000/1001", "r_frame_rate": "30000/1001"},
                {"codec_type": "audio", "codec_name": "aac"},
            ]
        }
    )  # fmt: skip
    info = parse_ffprobe_json(text)
    assert (info.width, info.height, info.video_codec, info.audio_codec) == (640, 360, "h264", "aac")
    assert info.fps == pytest.approx(29.97, abs=0.01)
    assert parse_ffprobe_json("not json") == SourceInfo()
    assert parse_ffprobe_json('{"streams": [{"codec_type": "video", "avg_frame_rate": "0/0"}]}').fps is None


def _tag(ttype: int, ts: int, body: bytes) -> bytes:
    hdr = bytes([ttype]) + len(body).to_bytes(3, "big") + (ts & 0xFFFFFF).to_bytes(3, "big")
    hdr += bytes([ts >> 24]) + b"\0\0\0"
    return hdr + body + (11 + len(body)).to_bytes(4, "big")


def test_flv_tracker_resume_from_gop() -> None:
    header = b"FLV\x01\x05\x00\x00\x00\x09" + b"\0\0\0\0"
    script = _tag(18, 0, b"\x02\x00\x0aonMetaData")
    avc_seq = _tag(FLV_VIDEO, 0, b"\x17\x00\0\0\0" + b"cfg")
    aac_seq = _tag(FLV_AUDIO, 0, b"\xaf\x00\x12\x10")
    key1 = _tag(FLV_VIDEO, 1000, b"\x17\x01\0\0\0" + b"k1")
    inter = _tag(FLV_VIDEO, 1040, b"\x27\x01\0\0\0" + b"p")
    audio = _tag(FLV_AUDIO, 1050, b"\xaf\x01" + b"aa")
    key2 = _tag(FLV_VIDEO, 3000, b"\x17\x01\0\0\0" + b"k2")
    stream = header + script + avc_seq + aac_seq + key1 + inter + audio + key2 + inter[:5]

    t = FlvTracker()
    tags = []
    for i in range(0, len(stream), 7):  # arbitrary chunking
        tags += t.feed(stream[i : i + 7])
    assert [tag.keyframe for tag in tags].count(True) == 2
    assert t.header == header and t.script == script and t.video_seq == avc_seq and t.audio_seq == aac_seq
    assert t.gop == [key2] and t.gop_ts == 3000
    resume = t.resume_data()
    assert resume is not None
    assert resume.startswith(header) and resume.endswith(key2 + inter[:5])
    # config tags re-stamped to the GOP start
    restamped = FlvTracker()
    restamped.feed(resume)
    assert restamped.video_seq is not None and int.from_bytes(restamped.video_seq[4:7], "big") == 3000


def test_flv_tracker_no_keyframe_yet_and_garbage() -> None:
    t = FlvTracker()
    t.feed(b"FLV\x01\x05\x00\x00\x00\x09\0\0\0\0" + _tag(FLV_VIDEO, 0, b"\x17\x00\0\0\0"))
    assert t.resume_data() is None
    bad = FlvTracker()
    bad.feed(b"NOTFLV-at-all")
    assert bad.broken and bad.resume_data() is None


def test_build_command_720p() -> None:
    src = SourceInfo(1280, 720, 25.0, "h264", "aac")
    plan = plan_ladder(DEFAULT_LADDER, 1280, 720)
    fds = {"720p": 10, "480p": 11, "360p": 12, "audio": 13}
    cmd = build_ffmpeg_command(
        ffmpeg="ffmpeg", input_format="flv", plan=plan, source=src, track_fds=fds, progress_fd=14
    )
    assert "-re" not in cmd
    joined = " ".join(cmd)
    assert "pipe:10" in joined and "pipe:13" in joined and "-progress pipe:14" in joined
    assert "scale=1280:720" in joined and "scale=854:480" in joined and "1920" not in joined
    assert cmd[cmd.index("-g:v:0") + 1] == "50"
    assert "hls/480p/seg%d.ts" in joined and "atomic_writing=1:onfail=ignore]screenshot.jpg|[f=null]-" in joined
    # outputs on disk may fail alone (full disk): MPEG-TS HLS and screenshots, never the fMP4 pipes
    tee = cmd[cmd.index("tee") + 1].split("|")
    assert all("onfail=ignore" in t for t in tee if "f=hls" in t)
    assert not any("onfail" in t for t in tee if "pipe:" in t)
    assert "fps=" not in cmd[cmd.index("-filter_complex") + 1].split("select")[0]  # 25 fps <= caps



def test_ffprobe_for_follows_the_configured_ffmpeg(tmp_path: Path) -> None:
    assert ffprobe_for("ffmpeg") == "ffprobe"
    ffmpeg = tmp_path / "bin" / "ffmpeg"
    assert ffprobe_for(str(ffmpeg)) == "ffprobe"  # no sibling: PATH
    ffmpeg.parent.mkdir()
    (tmp_path / "bin" / "ffprobe").touch()
    assert ffprobe_for(str(ffmpeg)) == str(tmp_path / "bin" / "ffprobe")


def test_parse_ffprobe_media_json() -> None:
    text = json.dumps({"format": {"duration": "8.04"}, "streams": [
        {"codec_type": "audio", "codec_name": "aac"},
        {"codec_type": "video", "codec_name": "h264", "width": 1280, "height": 720},
        {"codec_type": "video", "codec_name": "mjpeg", "width": 64, "height": 64}]})
    assert parse_ffprobe_media_json(text) == MediaInfo(8.04, 1280, 720, "h264", "aac")
    assert parse_ffprobe_media_json("") == MediaInfo() and parse_ffprobe_media_json("{oops") == MediaInfo()
    assert parse_ffprobe_media_json('{"format": {"duration": "N/A"}}').duration == 0.0


def test_progress_blocks_across_chunks() -> None:
    blocks = ProgressBlocks()
    text = b"frame=50\nfps=25.0\nout_time_us=2000000\nspeed=1.01x\nprogress=continue\nframe=7\nspeed=N/A\n"
    got = [b for i in range(0, len(text), 5) for b in blocks.feed(text[i : i + 5])]
    assert len(got) == 1
    assert progress_changes(got[0]) == {"speed": 1.01, "fps": 25.0, "frames": 50, "out_time_s": 2.0}
    (last,) = blocks.feed(b"progress=end\n")
    assert progress_changes(last) == {"frames": 7}


def test_stderr_header_ends_at_output() -> None:
    header = StderrHeader()
    lines = FFMPEG_STDERR.splitlines()
    texts = [t for t in (header.feed(line) for line in lines) if t is not None]
    assert len(texts) == 1 and header.feed("more") is None
    assert header_changes(texts[0]) == {"source_width": 1280, "source_height": 720, "source_fps": 25.0}


def test_source_resume_mpegts_cuts_at_packet_boundary() -> None:
    resume = SourceResume("mpegts")
    assert resume.resume_point() == b""
    resume.track(b"x" * 200)  # 12 bytes into the second packet
    assert resume.restart() == b""
    data = b"y" * 180
    assert resume.forward(data, resume.track(data)) == b"y" * 4  # 176 bytes to the boundary dropped

# ------------------------------------------------------------------------------ real ffmpeg tests

media = pytest.mark.skipif(not HAVE_FFMPEG, reason="ffmpeg/ffprobe not installed")


async def wait_for(cond: Callable[[], bool], within: float, what: str) -> None:
    """Poll a condition with a deadline (no sleeps as synchronisation)."""
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)


async def pump_source(
    tx: Transcoder, width: int, height: int, seconds: float, realtime: bool, fmt: str = "flv", vcodec: str = "libx264"
) -> None:
    """Generate an H.264/AAC FLV (or TS) with ffmpeg and write it into the transcoder as produced."""
    args = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    args += ["-re"] if realtime else []
    args += [
        "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate=25",
        "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100",
        "-t", str(seconds), "-c:v", vcodec, *(["-preset", "ultrafast", "-tune", "zerolatency"] if vcodec == "libx264"
                                              else []),
        "-g", "50", "-b:v", "1M", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
        "-f", fmt, "pipe:1",
    ]  # fmt: skip
    proc = await asyncio.create_subprocess_exec(*args, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    while chunk := await proc.stdout.read(16384):
        await tx.write(chunk)
    assert await proc.wait() == 0


def ffprobe_streams(path: Path) -> list[dict[str, object]]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-show_entries",
         "stream=codec_type,codec_name,width,height,nb_read_packets", "-of", "json", str(path)],
        capture_output=True, check=True, text=True,
    )  # fmt: skip
    streams: list[dict[str, object]] = json.loads(out.stdout)["streams"]
    return streams


class Sink:
    """Collects fMP4 bytes per track; a restart starts a new session per track."""

    def __init__(self) -> None:
        self.sessions: list[dict[str, bytearray]] = [{}]
        self.restarts = 0

    def on_data(self, track: str, data: bytes) -> None:
        self.sessions[-1].setdefault(track, bytearray()).extend(data)

    def on_restart(self) -> None:
        self.restarts += 1
        self.sessions.append({})


@pytest.mark.media
@media
async def test_transcode_720p_flv_ladder_hls_screenshot_restart(tmp_path: Path) -> None:
    sink = Sink()
    tx = Transcoder(
        stream_id=1, input_format="flv", renditions=DEFAULT_LADDER, work_dir=tmp_path / "work",
        on_track_data=sink.on_data, on_restart=sink.on_restart,
    )  # fmt: skip
    await tx.start()
    pump = asyncio.create_task(pump_source(tx, 1280, 720, 10, realtime=True))
    try:
        expected = {"720p", "480p", "360p", "audio"}
        await wait_for(lambda: set(sink.sessions[0]) == expected, 15, "first bytes on every track")
        assert tx.stats.renditions == ("720p", "480p", "360p")
        assert tx.planned_from_headers, "planned from the FLV sequence headers, without ffprobe"
        await wait_for(lambda: (tx.stats.speed or 0) > 0 and tx.stats.source_width is not None, 10, "stats")
        assert (tx.stats.source_width, tx.stats.source_height) == (1280, 720)
        assert tx.stats.source_fps == pytest.approx(25, abs=0.5)
        # a few media fragments (not just ftyp/moov) on every track before the crash
        await wait_for(lambda: all(d.count(b"moof") >= 3 for d in sink.sessions[0].values()), 10, "fragments")

        # kill -9 mid-stream: restarted, on_restart called, data resumes on every track
        run = tx._run
        assert run is not None
        os.kill(run.proc.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        await wait_for(lambda: sink.restarts == 1, 5, "on_restart")
        await wait_for(
            lambda: len(sink.sessions) == 2 and set(sink.sessions[1]) == expected, 5, "resumed data"
        )
        resumed_after = time.monotonic() - killed_at
        assert tx.stats.restarts == 1
        await pump
    finally:
        if not pump.done():
            pump.cancel()
        await tx.stop()
    print(f"speed={tx.stats.speed} fps={tx.stats.fps} resumed_after={resumed_after:.2f}s")

    # Each session of each track is a self-contained decodable fMP4 of the right size.
    sizes = {"720p": (1280, 720), "480p": (854, 480), "360p": (640, 360)}
    for i, session in enumerate(sink.sessions):
        for track, data in session.items():
            f = tmp_path / f"s{i}-{track}.mp4"
            f.write_bytes(bytes(data))
            assert data[4:8] == b"ftyp"
            (st,) = ffprobe_streams(f)
            assert int(str(st.get("nb_read_packets", 0))) > 10, (i, track, st)
            if track == "audio":
                assert st["codec_type"] == "audio" and st["codec_name"] == "aac"
            else:
                assert st["codec_type"] == "video" and (st["width"], st["height"]) == sizes[track]

    # Legacy HLS: every rendition has a playlist and TS segments with video + audio.
    assert tx.ts_dir == tmp_path / "work" / "hls"
    assert not (tx.ts_dir / "1080p").exists()
    for track, (w, h) in sizes.items():
        d = tx.ts_dir / track
        playlist = (d / "index.m3u8").read_text()
        assert "#EXT-X-PROGRAM-DATE-TIME" in playlist
        durations = [float(d) for d in re.findall(r"#EXTINF:([\d.]+),", playlist)]
        # the first run's first segment ends at the early keyframe; the restart's runs to the one after it
        # (ffmpeg ignores hls_init_time when it continues a playlist), the others are whole keyframe intervals
        assert durations[0] < FIRST_KEYFRAME_INTERVAL_S + 0.1 and max(durations) < 4.1, durations
        assert f"#EXT-X-TARGETDURATION:{round(max(durations))}" in playlist
        segs = sorted(d.glob("seg*.ts"), key=lambda p: int(p.stem[3:]))
        assert len(segs) >= 2
        streams = ffprobe_streams(segs[0])
        kinds = {str(s["codec_type"]) for s in streams}
        assert kinds == {"video", "audio"}
        assert [(s["width"], s["height"]) for s in streams if s["codec_type"] == "video"] == [(w, h)]

    # Screenshot: a complete JPEG, never wider than 1080.
    assert tx.screenshot_path.exists()
    (shot,) = ffprobe_streams(tx.screenshot_path)
    assert shot["codec_name"] == "mjpeg" and 0 < int(str(shot["width"])) <= 1080
    assert int(str(shot["width"])) == 1080  # 1280 wide source is scaled down to 1080


@pytest.mark.media
@media
@pytest.mark.parametrize("fmt", ["flv", "mpegts"])
async def test_transcode_tiny_source_single_rendition(tmp_path: Path, fmt: str) -> None:
    sink = Sink()
    tx = Transcoder(
        stream_id=2, input_format=fmt, renditions=DEFAULT_LADDER, work_dir=tmp_path / "work",
        on_track_data=sink.on_data, on_restart=sink.on_restart,
    )  # fmt: skip
    await tx.start()
    pump = asyncio.create_task(pump_source(tx, 320, 240, 8, realtime=True, fmt=fmt))
    expected = {"240p", "audio"}
    try:
        await wait_for(lambda: all(b"moof" in sink.sessions[0].get(t, b"") for t in expected), 15, "tracks")
        assert tx.stats.renditions == ("240p",)
        assert [(r.width, r.height) for r in tx.plan] == [(320, 240)]
        assert tx.planned_from_headers
        run = tx._run
        assert run is not None
        os.kill(run.proc.pid, signal.SIGKILL)
        await wait_for(lambda: len(sink.sessions) == 2 and set(sink.sessions[1]) == expected, 5, "resumed")
        await pump
    finally:
        if not pump.done():
            pump.cancel()
        await tx.stop()
    assert sink.restarts == 1
    for i, session in enumerate(sink.sessions):
        f = tmp_path / f"{i}-240p.mp4"
        f.write_bytes(bytes(session["240p"]))
        (st,) = ffprobe_streams(f)
        assert (st["width"], st["height"]) == (320, 240)
    (shot,) = ffprobe_streams(tx.screenshot_path)
    assert shot["width"] == 320  # never upscaled


@pytest.mark.media
@media
async def test_stop_before_any_data(tmp_path: Path) -> None:
    tx = Transcoder(
        stream_id=3, input_format="mpegts", renditions=DEFAULT_LADDER, work_dir=tmp_path / "w",
        on_track_data=lambda _t, _d: None,
    )  # fmt: skip
    await tx.start()
    started = time.monotonic()
    await tx.stop()
    assert time.monotonic() - started < 3
    assert tx.stats.running is False and tx.plan == []
    await tx.write(b"ignored after stop")


@pytest.mark.media
@media
async def test_source_its_head_does_not_describe_goes_to_ffprobe(tmp_path: Path) -> None:
    """MPEG-2 video in MPEG-TS: no SPS to read, so ffprobe plans the ladder from the buffered head."""
    sink = Sink()
    tx = Transcoder(
        stream_id=4, input_format="mpegts", renditions=DEFAULT_LADDER, work_dir=tmp_path / "work",
        on_track_data=sink.on_data,
    )  # fmt: skip
    await tx.start()
    pump = asyncio.create_task(pump_source(tx, 320, 240, 4, realtime=True, fmt="mpegts", vcodec="mpeg2video"))
    try:
        await wait_for(lambda: b"moof" in sink.sessions[0].get("240p", b""), 15, "video fragments")
        assert not tx.planned_from_headers and tx.stats.video_codec == "mpeg2video"
        assert [(r.width, r.height) for r in tx.plan] == [(320, 240)]
        await pump
    finally:
        if not pump.done():
            pump.cancel()
        await tx.stop()
