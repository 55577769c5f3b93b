"""Latency benchmarks.

(a) Start-up: from the publisher's first RTMP connect/byte to `master.m3u8` answering 200 and the first
    LL-HLS part (`part*.m4s`) of the top rendition fully downloaded; beside it the first complete
    segment, which is what a non-LL player needs before it can start.
(b) Glass-to-glass in headless Chromium (hls.js, the web player page): a Python source stamps each raw
    frame with the wall clock (epoch ms as a 32-bit black/white bar code at the top of the picture) at
    the moment it hands the frame to ffmpeg (x264 ultrafast/zerolatency, 2 s GOP, AAC, RTMP). The page
    reads the bar code back from the frame being presented (requestVideoFrameCallback + canvas) and
    subtracts it from the presentation wall-clock time: no OCR. The same loop also records
    now - EXT-X-PROGRAM-DATE-TIME of the playing frame (`hls.playingDate`), the OCR-free figure a
    player can compute alone; the packager stamps PDT when a segment's first part arrives, so it
    leaves out capture, encoding, ingest and transcoding.
LL mode (lowLatencyMode on, the player's default) against the same CMAF stream with lowLatencyMode off
(`?ll=0`), plus the MPEG-TS HLS (`?no_low_latency`) and LL-DASH (`?dash`) for reference.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.harness import TcpTap, chromium, median, poll, push_testsrc, running_server, stop_process

W, H, FPS = 640, 360, 30
BITS, CELL_W, CELL_H = 32, W // 32, 16  # row A: bits, row B (below): inverted bits, for validation
LUMA_ON, LUMA_OFF = 235, 16


# --- (a) first part -----------------------------------------------------------------------------------

@dataclass
class StartupRun:
    master_s: float  # first RTMP byte → master.m3u8 200
    part_s: float  # first RTMP byte → first part of the top rendition downloaded
    segment_s: float  # first RTMP byte → first complete segment of the top rendition downloaded
    spawn_to_byte_s: float  # ffmpeg spawned → first RTMP byte


def _top_variant(master: str) -> str:
    best, best_bw, lines = "", -1, master.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-STREAM-INF:"):
            m = re.search(r"(?:^|[:,])BANDWIDTH=(\d+)", line)
            bw = int(m[1]) if m else 0
            if bw > best_bw and i + 1 < len(lines):
                best, best_bw = lines[i + 1].strip(), bw
    if not best:
        raise RuntimeError("master playlist without variants:\n" + master)
    return best


def startup_run(srv: Any, n: int) -> StartupRun:
    stream = srv.create_stream(f"startup-{n}")
    tap = TcpTap(srv.ports["rtmp"])
    url = f"rtmp://127.0.0.1:{tap.port}/in/{stream['id']}?{stream['token']}"
    master_url = stream["hls_cmaf_url"]
    base = master_url.rsplit("/", 1)[0]
    spawned = time.monotonic()
    pub = push_testsrc(url, size=f"{W}x{H}", rate=FPS)
    try:
        with httpx.Client(timeout=15) as http:
            def master_ok() -> str | None:
                r = http.get(master_url)
                return r.text if r.status_code == 200 else None

            master = poll(master_ok, 30, 0.01, "master.m3u8 200")
            t_master = time.monotonic()
            rendition = base + "/" + _top_variant(master).rsplit("/", 1)[0]
            playlist = http.get(rendition + "/index.m3u8").text
            m = re.search(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', playlist) or \
                re.search(r'#EXT-X-PRELOAD-HINT:[^\n]*URI="([^"]+)"', playlist)
            if m is None:
                raise RuntimeError("no part in the media playlist:\n" + playlist)
            r = http.get(rendition + "/" + m[1])
            r.raise_for_status()
            t_part = time.monotonic()
            msn = re.match(r"part(\d+)\.", m[1])
            r = http.get(f"{rendition}/seg{msn[1] if msn else 0}.m4s")
            r.raise_for_status()
            t_seg = time.monotonic()
    finally:
        stop_process(pub)
        tap.close()
    first = tap.first_byte or tap.first_connect or spawned
    return StartupRun(t_master - first, t_part - first, t_seg - first, first - spawned)


# --- (b) glass to glass -----------------------------------------------------------------------------

def _base_frames() -> list[bytes]:
    """One second of testsrc2 as raw yuv420p frames, looped under the bar code (keeps the encoder busy)."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i",
                          f"testsrc2=size={W}x{H}:rate={FPS}", "-frames:v", str(FPS), "-f", "rawvideo",
                          "-pix_fmt", "yuv420p", "-"], capture_output=True, check=True, timeout=60)
    size = W * H * 3 // 2
    return [out.stdout[i * size:(i + 1) * size] for i in range(FPS)]


def _band(value: int) -> bytes:
    row_a, row_b = bytearray(), bytearray()
    for i in range(BITS):
        bit = (value >> (BITS - 1 - i)) & 1
        row_a += bytes([LUMA_ON if bit else LUMA_OFF]) * CELL_W
        row_b += bytes([LUMA_OFF if bit else LUMA_ON]) * CELL_W
    return bytes(row_a) * CELL_H + bytes(row_b) * CELL_H


class StampedSource:
    """Raw frames stamped with the wall clock, paced in real time into ffmpeg, published over RTMP."""

    def __init__(self, url: str) -> None:
        self.frames = _base_frames()
        cmd = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
               "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s", f"{W}x{H}", "-r", str(FPS),
               "-thread_queue_size", "64", "-i", "pipe:0",
               "-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
               "-map", "0:v", "-map", "1:a",
               "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(2 * FPS),
               "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "96k", "-f", "flv", url]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        self.late_frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self.proc.stdin is not None
        chroma = W * H, W * H + (W // 2) * (H // 2)
        gray = b"\x80" * ((W // 2) * CELL_H)  # chroma rows under the bar code (2 luma rows each)
        t0 = time.monotonic()
        n = 0
        while not self._stop.is_set():
            delay = t0 + n / FPS - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            elif delay < -2 / FPS:
                self.late_frames += 1
            frame = bytearray(self.frames[n % FPS])
            for start in chroma:
                frame[start:start + len(gray)] = gray
            frame[:W * 2 * CELL_H] = _band(int(time.time() * 1000) & 0xFFFFFFFF)
            try:
                self.proc.stdin.write(frame)
                self.proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            n += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        stop_process(self.proc)


# In the page: decode the bar code of every presented frame; latency = presentation wall time - stamp.
_PROBE_JS = """
() => {
  const BITS = $BITS, W = $W, H = $H, CW = $CW, CH = $CH;
  const v = onairPlayer.video;
  const g = window.__g2g = {g2g: [], pdt: [], dash: [], bad: 0, frames: 0, stalls: 0};
  v.addEventListener("waiting", () => { g.stalls++; });
  const canvas = document.createElement("canvas");
  const ctx = canvas.getContext("2d", {willReadFrequently: true});
  const lum = (d, x, y, w) => { const i = 4 * (y * w + x); return (d[i] + d[i + 1] + d[i + 2]) / 3; };
  const onFrame = (now, meta) => {
    const w = v.videoWidth, h = v.videoHeight;
    if (w && h) {
      if (canvas.width !== w || canvas.height !== h) { canvas.width = w; canvas.height = h; }
      ctx.drawImage(v, 0, 0, w, h);
      const rows = Math.ceil(2 * CH * h / H) + 1;
      const d = ctx.getImageData(0, 0, w, rows).data;
      const ya = Math.floor(CH / 2 * h / H), yb = Math.floor(3 * CH / 2 * h / H);
      let value = 0, ok = true;
      for (let i = 0; i < BITS; i++) {
        const x = Math.floor((i * CW + CW / 2) * w / W);
        const a = lum(d, x, ya, w), b = lum(d, x, yb, w);
        if (Math.abs(a - b) < 60) { ok = false; break; }
        value = value * 2 + (a > b ? 1 : 0);
      }
      const shown = performance.timeOrigin + meta.expectedDisplayTime;
      g.frames++;
      if (ok) {
        let diff = (Math.floor(shown) % 4294967296) - value;
        if (diff < -2147483648) diff += 4294967296;
        if (diff > 2147483648) diff -= 4294967296;
        g.g2g.push(diff);
      } else {
        g.bad++;
      }
      const hls = onairPlayer.hls;
      if (hls && hls.playingDate) g.pdt.push(Date.now() - hls.playingDate.getTime());
      const dash = onairPlayer.dash;
      if (dash && dash.isDynamic()) g.dash.push(1000 * dash.getCurrentLiveLatency());
    }
    v.requestVideoFrameCallback(onFrame);
  };
  v.requestVideoFrameCallback(onFrame);
}
"""
for _k, _v in {"BITS": BITS, "W": W, "H": H, "CW": CELL_W, "CH": CELL_H}.items():
    _PROBE_JS = _PROBE_JS.replace("$" + _k, str(_v))


@dataclass
class Mode:
    label: str
    query: str
    runs: int
    results: list[dict[str, float]] = field(default_factory=list)


def g2g_run(browser: Any, iframe_url: str, mode: Mode, warmup: float, window: float,
            console: list[str], push: Callable[[], None] | None = None) -> dict[str, float]:
    """One viewer; with `push` it is on the page (offline) before `push()` starts the source."""
    page = browser.new_page()
    page.on("console", lambda m: console.append(f"[{mode.label}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: console.append(f"[{mode.label}] pageerror: {e}"))
    try:
        opened = time.monotonic()
        page.goto(iframe_url + mode.query)
        if push is not None:
            poll(lambda: page.evaluate("document.body.dataset.state") == "offline", 20, 0.05, "offline first")
            push()
            opened = time.monotonic()  # page→playing is then push→playing
        poll(lambda: page.evaluate("document.body.dataset.state") == "playing", 45, 0.05, f"{mode.label} playing")
        startup = time.monotonic() - opened
        page.evaluate(_PROBE_JS)
        page.wait_for_timeout(int(warmup * 1000))  # let the player settle at its target latency
        page.evaluate("() => { const g = window.__g2g; g.g2g = []; g.pdt = []; g.dash = []; g.bad = 0; g.frames = 0;"
                      " g.stalls = 0; }")
        page.wait_for_timeout(int(window * 1000))  # the measurement window
        g = page.evaluate("window.__g2g")
        level = page.evaluate("onairPlayer.hls ? onairPlayer.hls.currentLevel : -1")
    finally:
        page.close()
    if not g["g2g"]:
        raise RuntimeError(f"{mode.label}: no readable frame ({g['bad']} unreadable of {g['frames']})")
    return {"g2g_ms": median(g["g2g"]), "pdt_ms": median(g["pdt"]), "dash_ms": median(g["dash"]),
            "startup_s": startup, "frames": g["frames"], "bad": g["bad"], "level": level, "stalls": g["stalls"],
            "window_s": window}


def _fmt(v: float, unit: str = "ms") -> str:
    return "   n/a" if v != v else (f"{v:6.0f}" if unit == "ms" else f"{v:6.2f}")


# The earlier figures (make bench, medians of 3) and the targets, printed beside each result.
PREVIOUS_S = {"first part": 2.33, "LL-HLS": 2.49, "LL-HLS join at start": None, "LL-DASH": 5.61, "WHIP→LL-HLS": 6.2}
TARGET_S = {"first part": 1.5, "LL-HLS": 1.5, "LL-HLS join at start": 1.5, "LL-DASH": 2.5, "WHIP→LL-HLS": 2.0}


def summary_line(name: str, now_s: float, extra: str = "") -> str:
    prev, target = PREVIOUS_S.get(name), TARGET_S.get(name)
    prev_txt = f"{prev:5.2f} s" if prev is not None else "    n/a"
    verdict = "" if target is None or now_s != now_s else ("  meets" if now_s <= target else "  MISSES")
    return (f"    {name:24s} now {now_s:5.2f} s   before {prev_txt}   target ≤ {target:4.2f} s{verdict}"
            + (f"   {extra}" if extra else ""))


def join_at_start_run(srv: Any, browser: Any, n: int, warmup: float, window: float,
                      console: list[str]) -> dict[str, float]:
    """A viewer already on the page when the push starts: a new stream and source per run."""
    stream = srv.create_stream(f"join-{n}")
    sources: list[StampedSource] = []
    try:
        return g2g_run(browser, stream["iframe_url"], Mode("LL-HLS join at start", "", 1), warmup, window, console,
                       push=lambda: sources.append(StampedSource(stream["push_url"])))
    finally:
        for source in sources:
            source.stop()


def _print_run(label: str, n: int, res: dict[str, float]) -> None:
    print(f"    {label:38s} run {n + 1}: glass-to-glass {_fmt(res['g2g_ms'])} ms   "
          f"now-PDT {_fmt(res['pdt_ms'])} ms   dash.js latency {_fmt(res['dash_ms'])} ms   "
          f"page→playing {res['startup_s']:4.1f} s   stalls {res['stalls']:.0f} in {res['window_s']:.0f} s   "
          f"frames {res['frames']:.0f} (unreadable {res['bad']:.0f})", flush=True)


def main(quick: bool = False) -> None:
    runs_each = 1 if quick else 3
    modes = [Mode("LL-HLS hls.js lowLatencyMode", "", runs_each),
             Mode("CMAF HLS hls.js non-LL (baseline)", "?ll=0", 1),
             Mode("LL-DASH dash.js (?dash)", "?dash", runs_each)]
    if not quick:
        modes.insert(2, Mode("MPEG-TS HLS hls.js (?no_low_latency)", "?no_low_latency", 1))
    # 3 LL-HLS windows of 20 s: a 60 s watch for stalls
    warmup, window = (3.0, 4.0) if quick else (5.0, 20.0)
    console: list[str] = []
    with running_server() as srv:
        print(f"(a) first RTMP byte → first playable LL-HLS part, {W}x{H}@{FPS} testsrc2, "
              f"{runs_each} run(s)", flush=True)
        runs: list[StartupRun] = []
        for n in range(runs_each):
            r = startup_run(srv, n)
            runs.append(r)
            print(f"    run {n + 1}: master 200 {r.master_s:5.2f} s   first part {r.part_s:5.2f} s   "
                  f"first segment {r.segment_s:5.2f} s   (spawn→first byte {r.spawn_to_byte_s:4.2f} s)", flush=True)
        part, seg = median([r.part_s for r in runs]), median([r.segment_s for r in runs])
        print(f"    median: master 200 {median([r.master_s for r in runs]):5.2f} s   first part {part:5.2f} s   "
              f"first segment (non-LL baseline) {seg:5.2f} s   ratio part/segment {part / seg:4.2f}", flush=True)

        print(f"(b) glass-to-glass in headless Chromium (the built-in player), stamped {W}x{H}@{FPS} source, "
              f"warm-up {warmup:.0f} s, window {window:.0f} s per run", flush=True)
        joins: list[dict[str, float]] = []
        with chromium() as browser:
            for n in range(runs_each):
                res = join_at_start_run(srv, browser, n, 2.0, min(window, 10.0), console)
                joins.append(res)
                _print_run("LL-HLS hls.js, joined at the start", n, res)
            stream = srv.create_stream("g2g")
            source = StampedSource(f"{stream['push_url']}")
            try:
                poll(lambda: httpx.get(stream["hls_cmaf_url"], timeout=10).status_code == 200, 30, 0.1, "live")
                for mode in modes:
                    for n in range(mode.runs):
                        res = g2g_run(browser, stream["iframe_url"], mode, warmup, window, console)
                        mode.results.append(res)
                        _print_run(mode.label, n, res)
            finally:
                source.stop()
        if source.late_frames:
            print(f"    note: the source fell behind real time on {source.late_frames} frames", flush=True)

    print("    medians:", flush=True)
    ll = median([r["g2g_ms"] for r in modes[0].results])
    for mode in modes:
        g = median([r["g2g_ms"] for r in mode.results])
        p = median([r["pdt_ms"] for r in mode.results])
        print(f"    {mode.label:38s} glass-to-glass {_fmt(g)} ms   now-PDT {_fmt(p)} ms   "
              f"×{g / ll:4.2f} of LL", flush=True)
    dash = next(m for m in modes if m.query == "?dash")
    stalls = sum(r["stalls"] for r in modes[0].results)
    watched = sum(r["window_s"] for r in modes[0].results)
    print("    against the earlier figures (medians of runs):", flush=True)
    print(summary_line("first part", part), flush=True)
    print(summary_line("LL-HLS", ll / 1000, f"stalls {stalls:.0f} in {watched:.0f} s watched"), flush=True)
    print(summary_line("LL-HLS join at start", median([r["g2g_ms"] for r in joins]) / 1000), flush=True)
    print(summary_line("LL-DASH", median([r["g2g_ms"] for r in dash.results]) / 1000), flush=True)
    errors = [c for c in console if "error" in c.lower() or "warn" in c.lower()]
    if errors:
        print(f"    browser console warnings/errors ({len(errors)}), first 20 distinct:", flush=True)
        for line in list(dict.fromkeys(errors))[:20]:
            print("      " + line[:300], flush=True)


if __name__ == "__main__":
    main()
