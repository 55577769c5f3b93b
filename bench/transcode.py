"""Transcoder CPU: onair (server + its ffmpeg) against the same ffmpeg ladder run alone.

Source: a pre-encoded 40 s 1280x720@30 H.264/AAC FLV (testsrc2 + sine, 2 s GOP), read in real time.
onair: the file is pushed over RTMP with `ffmpeg -re -c copy`; CPU of the server's process tree (the
Python process + its ffmpeg/ffprobe children, /proc utime+stime incl. reaped children) over a window
once ffmpeg has run for a few seconds. Alone: the argv of `onair.transcode.transcoder.build_ffmpeg_command`
for the same ladder (720p/480p/360p + audio, fMP4 per track to /dev/null instead of onair's pipes,
MPEG-TS HLS and screenshots to a temp dir), reading the same file with `-stream_loop -1 -re`, same
window. Both figures are CPU seconds per second of media produced in the window (alone: ffmpeg's
progress out_time; onair: the 720p LL-HLS playlist's position, 0.5 s parts), and the ratio is the
overhead of onair around ffmpeg (ingest, pipes, packaging, HTTP idle).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.harness import poll, running_server, stop_process
from bench.procs import CpuMeter, comm, cpu_seconds, loadavg, push_file, ratio, source_file, table, tree

W, H, FPS = 1280, 720, 30


@dataclass
class Result:
    label: str
    cores: float  # CPU seconds per wall second
    speed: float  # media seconds per wall second
    ffmpeg_cores: float

    @property
    def per_media_s(self) -> float:
        return self.cores / self.speed if self.speed else float("nan")


def _ffmpeg_child(pid: int) -> int | None:
    return next((p for p in tree(pid)[1:] if comm(p) == "ffmpeg"), None)


def media_position(playlist: str) -> float:
    """Seconds of media the packager has produced: evicted segments (at the 2 s target) + listed segments +
    parts of the segment being written."""
    m = re.search(r"#EXT-X-MEDIA-SEQUENCE:(\d+)", playlist)
    pos = 2.0 * int(m[1]) if m else 0.0
    pending = 0.0
    for line in playlist.splitlines():
        if line.startswith("#EXTINF:"):
            pos += float(line[8:].split(",")[0])
            pending = 0.0
        elif line.startswith("#EXT-X-PART:"):
            pending += float(re.search(r"DURATION=([\d.]+)", line)[1])  # type: ignore[index]
    return pos + pending


def run_onair(src: Path, warmup: float, window: float) -> tuple[Result, list[str]]:
    with running_server() as srv:
        assert srv.proc is not None
        pid = srv.proc.pid
        stream = srv.create_stream("transcode")
        pub = push_file(src, stream["push_url"])
        try:
            child = poll(lambda: _ffmpeg_child(pid), 30, 0.05, "onair's ffmpeg")
            cmd = Path(f"/proc/{child}/cmdline").read_bytes().decode().split("\0")[:-1]
            top = stream["hls_cmaf_url"].rsplit("/", 1)[0] + f"/{H}p/index.m3u8"
            time.sleep(warmup)
            with httpx.Client(timeout=10) as http:
                media0 = media_position(http.get(top).text)
                meter = CpuMeter([pid]).start()
                ff0 = cpu_seconds(child)
                time.sleep(window)
                meter.stop()
                ff = cpu_seconds(child) - ff0
                media = media_position(http.get(top).text) - media0
            if _ffmpeg_child(pid) != child:
                raise RuntimeError("onair's ffmpeg restarted during the window")
        finally:
            stop_process(pub)
    return Result("onair (server + ffmpeg, RTMP in)", meter.cores, media / meter.wall, ff / meter.wall), cmd


def standalone_command(src: Path, fds: dict[str, int], progress_fd: int) -> list[str]:
    from onair.formats.probe import SourceInfo
    from onair.transcode.command import build_ffmpeg_command
    from onair.transcode.ladder import DEFAULT_LADDER, plan_ladder

    plan = plan_ladder(DEFAULT_LADDER, W, H)
    cmd = build_ffmpeg_command(ffmpeg="ffmpeg", input_format="flv", plan=plan,
                               source=SourceInfo(W, H, float(FPS), "h264", "aac"),
                               track_fds={name: fds[name] for name in fds}, progress_fd=progress_fd)
    i = cmd.index("-i")
    if cmd[i + 1] != "pipe:0":
        raise RuntimeError(f"unexpected ffmpeg input {cmd[i + 1]!r}")
    return [*cmd[:i], "-stream_loop", "-1", "-re", "-i", str(src), *cmd[i + 2:]]


def run_alone(src: Path, warmup: float, window: float) -> tuple[Result, list[str]]:
    from onair.transcode.ladder import AUDIO_TRACK, DEFAULT_LADDER, plan_ladder

    names = [r.name for r in plan_ladder(DEFAULT_LADDER, W, H)] + [AUDIO_TRACK]
    with tempfile.TemporaryDirectory(prefix="onair-bench-ladder-") as tmp:
        for name in names:
            (Path(tmp) / "hls" / name).mkdir(parents=True, exist_ok=True)
        fds = {name: os.open(os.devnull, os.O_WRONLY) for name in names}
        prog_r, prog_w = os.pipe()
        cmd = standalone_command(src, fds, prog_w)
        proc = subprocess.Popen(cmd, cwd=tmp, pass_fds=(*fds.values(), prog_w), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (*fds.values(), prog_w):
            os.close(fd)
        out_time = [0.0]

        def progress() -> None:
            with os.fdopen(prog_r, "rb") as f:
                for line in f:
                    if line.startswith(b"out_time_us=") and line[12:].strip().isdigit():
                        out_time[0] = int(line[12:]) / 1e6

        reader = threading.Thread(target=progress, daemon=True)
        reader.start()
        try:
            time.sleep(warmup)
            if proc.poll() is not None:
                raise RuntimeError(f"ffmpeg exited with {proc.returncode}: {' '.join(cmd)}")
            meter = CpuMeter([proc.pid]).start()
            media0 = out_time[0]
            time.sleep(window)
            meter.stop()
            speed = (out_time[0] - media0) / meter.wall
        finally:
            stop_process(proc)
            reader.join(5)
    return Result("ffmpeg alone (same ladder argv, -re)", meter.cores, speed, meter.cores), cmd


def _comparable(cmd: list[str]) -> list[str]:
    """argv without what legitimately differs: input, pipe fd numbers."""
    out = [re.sub(r"pipe:\d+", "pipe:N", a) for a in cmd]
    i = out.index("-i")
    return [a for a in out[:i] if a not in ("-stream_loop", "-1", "-re")] + out[i + 2:]


def main(quick: bool = False) -> None:
    # ffmpeg needs ~2.5 s to start and then catches up on what -re / the publisher queued meanwhile
    warmup, window = (5.0, 5.0) if quick else (8.0, 20.0)
    src = source_file(f"{W}x{H}", FPS, 40)  # longer than warm-up + window: no loop point inside the window
    print(f"    source {W}x{H}@{FPS} H.264/AAC file, window {window:.0f} s after {warmup:.0f} s of ffmpeg; "
          f"load average {loadavg()}", flush=True)
    onair, onair_cmd = run_onair(src, warmup, window)
    alone, alone_cmd = run_alone(src, warmup, window)
    same = _comparable(onair_cmd) == _comparable(alone_cmd)
    rows = [["run", "cores", "of which ffmpeg", "speed", "CPU s / media s"]]
    for r in (onair, alone):
        rows.append([r.label, f"{r.cores:.2f}", f"{r.ffmpeg_cores:.2f}", f"{r.speed:.2f}×", f"{r.per_media_s:.2f}"])
    table(rows)
    print(f"    onair / alone CPU per media second: {ratio(onair.per_media_s, alone.per_media_s)} "
          f"(onair's Python process: {onair.cores - onair.ffmpeg_cores:.2f} cores); ffmpeg argv identical to "
          f"onair's apart from input and pipe fds: {'yes' if same else 'NO'}; load average after {loadavg()}",
          flush=True)
    if not same:
        print("    onair: " + " ".join(_comparable(onair_cmd)) + "\n    alone: " + " ".join(_comparable(alone_cmd)),
              flush=True)


if __name__ == "__main__":
    import sys

    main("--quick" in sys.argv)
