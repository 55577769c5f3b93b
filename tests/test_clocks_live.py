"""Honest clocks and aligned renditions over a real 60 s RTMP push.

The test is the encoder: it sends pre-encoded FLV tags over RTMP at the pace of their timestamps, so the
moment each frame was captured (sent) is known. The program date-time of the segment holding a frame must
be that moment (within 0.5 s), the newest part must never end later than the wall clock at which it is
listed, and audio must be cut where video is (same segment numbers, durations within one audio frame).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from onair.formats.flv_tracker import FLV_AUDIO, FLV_VIDEO, FlvTracker
from onair.formats.fmp4 import parse_fragment, parse_init
from onair.package.packager import MIN_SPLIT_SAMPLES
from tests.conftest import OnairServer, wait_until
from tests.ingest_media import create_stream, get_stream
from tests.rtmp_client import Publisher, chunk, set_chunk_size

pytestmark = pytest.mark.media

PUSH_S = 60
CHUNK = 4096
AAC_FRAME_S = 1024 / 48000  # the transcoder's audio frame
PDT_TOLERANCE_S = 0.5


def encode_flv(path: Path, seconds: int) -> None:
    cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
           "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25", "-f", "lavfi", "-i", "sine=frequency=440",
           "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", "50",
           "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-f", "flv", str(path)]  # fmt: skip
    subprocess.run(cmd, check=True, timeout=120)


class PacedPush(threading.Thread):
    """Sends the audio/video tags of an FLV file over RTMP, each at T0 + its timestamp (the encoder's clock)."""

    def __init__(self, host: str, port: int, name: str, flv: bytes) -> None:
        super().__init__(daemon=True)
        self.tags = [t for t in FlvTracker().feed(flv) if t.type in (FLV_AUDIO, FLV_VIDEO)]
        self.pub = Publisher(host, port)
        self.name = name
        self.t0: float | None = None  # wall clock at which the tag with timestamp 0 was sent
        self.first_ts = self.tags[0].timestamp
        self.done = threading.Event()
        self.stop_now = threading.Event()

    def run(self) -> None:
        try:
            assert self.pub.publish("in", self.name) == "NetStream.Publish.Start"
            self.pub.sock.sendall(set_chunk_size(CHUNK))
            start = time.time()
            for tag in self.tags:
                if self.stop_now.is_set():
                    break
                due = start + (tag.timestamp - self.first_ts) / 1000
                if (delay := due - time.time()) > 0:
                    time.sleep(delay)  # the source's pacing (a live encoder), not synchronisation
                if self.t0 is None:
                    self.t0 = time.time() - (tag.timestamp - self.first_ts) / 1000
                body = tag.raw[11:-4]
                csid = 4 if tag.type == FLV_AUDIO else 6
                self.pub.sock.sendall(chunk(csid, tag.type, body, stream_id=1, ts=tag.timestamp, chunk_size=CHUNK))
        finally:
            self.pub.close()
            self.done.set()


@dataclass
class Entry:
    msn: int
    pdt: float
    duration: float | None  # EXTINF; None while in progress
    parts: list[float] = field(default_factory=list)

    @property
    def end(self) -> float:
        return self.pdt + (self.duration if self.duration is not None else sum(self.parts))


def parse_media(text: str) -> tuple[list[Entry], dict[str, int], bool]:
    """Listed segments (complete and in progress), the rendition reports' LAST-MSN, ENDLIST."""
    entries: list[Entry] = []
    for line in text.splitlines():
        if line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            entries.append(Entry(-1, datetime.fromisoformat(line.split(":", 1)[1]).timestamp(), None))
        elif line.startswith("#EXT-X-PART:"):
            m = re.search(r'DURATION=([0-9.]+),URI="part(\d+)\.', line)
            assert m and entries
            entries[-1].parts.append(float(m[1]))
            entries[-1].msn = int(m[2])
        elif line.startswith("#EXTINF:"):
            entries[-1].duration = float(line[8:].rstrip(","))
        elif line.startswith("seg"):
            entries[-1].msn = int(line[3:].split(".")[0])
    reports = {m[1]: int(m[2])
               for m in re.finditer(r'RENDITION-REPORT:URI="../([^/]+)/index.m3u8",LAST-MSN=(\d+)', text)}
    return entries, reports, "#EXT-X-ENDLIST" in text


@dataclass
class Observed:
    push: PacedPush
    snapshots: dict[str, list[tuple[float, str]]]  # rendition -> (wall clock after the answer, playlist)
    capture_errors: list[tuple[str, int, float]]  # (rendition, msn, PDT - capture time of its first frame)
    ast_error: float
    final: dict[str, str]


def _decode_start(http: httpx.Client, base: str, msn: int, timescale: dict[str, Any]) -> float:
    rendition = base.rsplit("/", 1)[1]
    if rendition not in timescale:
        timescale[rendition] = parse_init(http.get(f"{base}/init.mp4").raise_for_status().content)
    track = timescale[rendition]
    frag = parse_fragment(http.get(f"{base}/seg{msn}.m4s").raise_for_status().content, track)
    assert frag.base_media_decode_time is not None
    return float(frag.base_media_decode_time / track.timescale)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    tmp = tmp_path_factory.mktemp("clocks")
    flv = tmp / "source.flv"
    encode_flv(flv, PUSH_S)
    srv = OnairServer(tmp / "node").start()
    try:
        yield _observe(srv, flv.read_bytes())
    finally:
        srv.stop()


def _observe(srv: OnairServer, flv: bytes) -> Observed:
    stream = create_stream(srv)
    push = PacedPush("127.0.0.1", srv.ports["rtmp"], stream["push_url"].split("/in/", 1)[1], flv)
    push.start()
    http = httpx.Client(timeout=30)
    master_url = stream["hls_cmaf_url"]
    base = master_url.rsplit("/", 1)[0]
    master = wait_until(lambda: (r := http.get(master_url)).status_code == 200 and r.text, 20, what="master")
    video = next(ln for ln in master.splitlines() if ln and not ln.startswith("#")).split("/")[0]
    urls = {video: f"{base}/{video}/index.m3u8", "audio": f"{base}/audio/index.m3u8"}
    snapshots: dict[str, list[tuple[float, str]]] = {name: [] for name in urls}
    captured: list[tuple[str, int, float]] = []
    seen: set[tuple[str, int]] = set()
    inits: dict[str, Any] = {}
    ast_error = float("nan")
    try:
        while not push.done.is_set():
            for name, url in urls.items():
                text = http.get(url).raise_for_status().text
                snapshots[name].append((time.time(), text))
                assert push.t0 is not None
                for e in parse_media(text)[0]:
                    if e.duration is not None and (name, e.msn) not in seen:
                        seen.add((name, e.msn))
                        start = _decode_start(http, url.rsplit("/", 1)[0], e.msn, inits)
                        captured.append((name, e.msn, e.pdt - (push.t0 + start)))
            if ast_error != ast_error:  # once, when the MPD is there: nan != nan
                mpd = http.get(f"{base}/index.mpd").raise_for_status().text
                ast = re.search(r'availabilityStartTime="([^"]+)"', mpd)
                assert ast and push.t0 is not None
                ast_error = datetime.fromisoformat(ast[1]).timestamp() - push.t0
            time.sleep(0.3)  # sampling interval of the observation, not a synchronisation
    finally:
        push.stop_now.set()
        push.join(10)
    wait_until(lambda: not get_stream(srv, stream["id"])["live"], 30, what="live=false after the push")
    final = {name: wait_until(lambda u=url: "#EXT-X-ENDLIST" in (t := http.get(u).text) and t, 30, what="ENDLIST")
             for name, url in urls.items()}
    return Observed(push, snapshots, captured, ast_error, final)


def test_program_date_times_are_the_capture_times(observed: Observed) -> None:
    errors = observed.capture_errors
    assert len({msn for _, msn, _ in errors}) >= PUSH_S // 2 - 3, "segments of the whole push were checked"
    worst = max(errors, key=lambda e: abs(e[2]))
    print(f"PDT - capture: {len(errors)} segments, worst {worst[2]:+.3f} s ({worst[0]} seg{worst[1]}); "
          f"availabilityStartTime - capture {observed.ast_error:+.3f} s")
    assert abs(worst[2]) <= PDT_TOLERANCE_S, f"PDT - capture time of {worst[0]} seg{worst[1]}: {worst[2]:+.3f} s"
    assert abs(observed.ast_error) <= PDT_TOLERANCE_S, f"availabilityStartTime - capture: {observed.ast_error:+.3f} s"


def test_the_newest_part_never_ends_after_the_wall_clock(observed: Observed) -> None:
    checked, latest = 0, -1e9
    for name, snaps in observed.snapshots.items():
        for listed_by, text in snaps:
            entries = parse_media(text)[0]
            if entries:
                checked += 1
                ahead = entries[-1].end - listed_by
                latest = max(latest, ahead)
                assert ahead <= 0.002, f"{name}: newest part ends {ahead:+.3f} s after the time it was listed"
    print(f"newest part end - wall clock when listed: at most {latest:+.3f} s over {checked} playlists")
    assert checked >= PUSH_S  # observed throughout the push


def test_audio_is_cut_where_video_is(observed: Observed) -> None:
    (video, vsnaps), (_, asnaps) = observed.snapshots.items()
    durations: dict[str, dict[int, float]] = {video: {}, "audio": {}}
    for name, snaps in ((video, vsnaps), ("audio", asnaps)):
        for _, text in snaps:
            durations[name].update({e.msn: e.duration for e in parse_media(text)[0] if e.duration is not None})
    common = sorted(set(durations[video]) & set(durations["audio"]))
    assert len(common) >= PUSH_S // 2 - 3
    print("largest video/audio segment duration difference: "
          f"{max(abs(durations[video][m] - durations['audio'][m]) for m in common):.3f} s over {len(common)} segments")
    for msn in common:
        # each end within MIN_SPLIT_SAMPLES - 0.5 frames of the video's (no audio part under that many frames)
        off = abs(durations[video][msn] - durations["audio"][msn])
        assert off <= (2 * MIN_SPLIT_SAMPLES - 1) * AAC_FRAME_S + 0.002, (
            f"seg{msn}: video {durations[video][msn]} s, audio {durations['audio'][msn]} s")
    # at the end of the stream both renditions end on the same segment, and the reports agree
    vend, vreports, vended = parse_media(observed.final[video])
    aend, areports, aended = parse_media(observed.final["audio"])
    assert vended and aended
    assert vend[-1].msn == aend[-1].msn
    assert vreports.get("audio") == aend[-1].msn and areports.get(video) == vend[-1].msn
