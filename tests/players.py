"""Players and encoders of the player x encoder matrix (tests/test_player_matrix.py).

Browser players (hls.js, dash.js, Shaka) run in Debian's Chromium on a harness page that Playwright serves on the
onair server's own origin (so playlists are same-origin, as for the built-in player), the libraries read from
node_modules. GStreamer plays with `gst-launch-1.0 playbin3` (hlsdemux2/dashdemux2, fakesinks); its progress is
read from the pipeline: the presentation times the video fakesink reports (gst-launch pauses it while buffering).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tests.browser import ROOT

VENDOR = {
    "hlsjs": "hls.js/dist/hls.min.js",
    "dashjs": "dashjs/dist/dash.all.min.js",
    "shaka": "shaka-player/dist/shaka-player.compiled.js",
}
HARNESS_PATH = "/__matrix/"

# One page per player. `m.started` is the wall-clock time (s) of the first `playing` event; afterwards every
# `waiting`/`stalled` outside a seek (and Shaka's `buffering`, and a seek slower than 0.5 s) counts as a stall.
# For Shaka, a `playing` while it holds playback for buffering is not the start; the end of that hold is.
# A fatal error before the start loads again after 250 ms, as a page embedding the player would.
_PAGE = """<!doctype html><html><body><video id="v" muted autoplay playsinline></video>
<script src="%(vendor)s"></script>
<script>
const v = document.getElementById("v");
window.m = {started: null, startTime: null, stalls: [], errors: [], tries: 0};
const now = () => Date.now() / 1000;
const ahead = () => v.buffered.length ? +(v.buffered.end(v.buffered.length - 1) - v.currentTime).toFixed(2) : null;
// Shaka holds playback (playbackRate 0) while it reports buffering: the element's `playing` is the start only
// when the player is not holding it; otherwise the start is the end of that buffering
let holding = () => false;
const started = () => { if (m.started === null) { m.started = now(); m.startTime = v.currentTime; } };
v.addEventListener("playing", () => { if (!holding()) started(); });
// A `waiting` while the element seeks is the seek, not a rebuffer (hls.js seeking to its start position just
// after Chrome began playing at 0); a seek that takes over 0.5 s to land counts as one.
let seekAt = null;
v.addEventListener("seeking", () => { seekAt = now(); });
v.addEventListener("seeked", () => {
  const slow = m.started !== null && seekAt !== null && now() - seekAt > 0.5;
  if (slow) m.stalls.push(["seek", now(), v.currentTime, ahead()]);
  seekAt = null;
});
for (const ev of ["waiting", "stalled"])
  v.addEventListener(ev, () => {
    if (m.started !== null && !v.seeking) m.stalls.push([ev, now(), v.currentTime, ahead()]);
  });
function failed(err) {
  m.errors.push(String(err).slice(0, 300));
  if (m.started === null) Promise.resolve(teardown()).catch(() => {}).then(() => setTimeout(start, 250));
}
let teardown = () => {};
// the stream's URL: given with the page, or later by play() (a page that loaded its player before the stream)
window.streamUrl = %(url)s;
function start() {
  m.tries++;
  const url = window.streamUrl;
  const kind = %(kind)r;
  if (kind === "hlsjs") {
    const hls = new Hls({lowLatencyMode: true});
    hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal) failed("hls.js " + d.type + " " + d.details); });
    hls.loadSource(url); hls.attachMedia(v);
    teardown = () => hls.destroy();
  } else if (kind === "dashjs") {
    const p = dashjs.MediaPlayer().create();
    p.updateSettings({streaming: {liveCatchup: {enabled: true}}});  // as the built-in player
    p.on("error", (e) => failed("dash.js " + JSON.stringify(e.error || e).slice(0, 200)));
    p.initialize(v, url, true);
    teardown = () => p.reset();
  } else {
    shaka.polyfill.installAll();
    const p = new shaka.Player();
    // sequenceMode: Shaka 5.2's segments mode aborts its SourceBuffers before nearly every append of a live
    // HLS stream (it compares a re-read timestampOffset it had moved by 1 ms against a 1 ms threshold), which
    // drops the rest of a GOP on every part: fixed upstream (shaka-player pull 10559) after 5.2.12, the newest
    // release on npm here. Sequence mode skips that re-computation.
    p.configure({streaming: {lowLatencyMode: true}, manifest: {hls: {sequenceMode: true}}});
    p.addEventListener("error", (e) => failed("shaka " + (e.detail && e.detail.code)));
    holding = () => p.isBuffering();
    p.addEventListener("buffering", (e) => {
      if (e.buffering && m.started !== null && !v.seeking) m.stalls.push(["buffering", now(), v.currentTime, ahead()]);
      if (!e.buffering && !v.paused && v.readyState >= 3) started();
    });
    teardown = () => p.destroy();  // a promise: the next try attaches once this player let go of <video>
    p.attach(v).then(() => p.load(url)).then(() => v.play().catch(() => {}))
      .catch((e) => failed("shaka load " + (e && e.code) + " " + e));
  }
  // dash.js plays by itself (initialize's autoplay): a play() before it attached is a `play` event it never
  // sees, and it then keeps its manifest refresh paused
  if (kind !== "dashjs") v.play().catch(() => {});
}
if (window.streamUrl) start();
</script></body></html>
"""


@dataclass
class Outcome:
    """What one player did, measured from the moment the stream's `live` turned true."""

    player: str
    start_delay: float | None = None  # seconds from `live` to playback start
    played: float = 0.0  # media seconds advanced during the watch
    stalls: list[Any] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def ok(self, max_start: float, min_played: float) -> bool:
        return (self.start_delay is not None and self.start_delay <= max_start and not self.stalls
                and self.played >= min_played)

    def row(self, source: str, max_start: float, min_played: float) -> str:
        delay = "never" if self.start_delay is None else f"{self.start_delay:.2f}s"
        verdict = "pass" if self.ok(max_start, min_played) else "FAIL"
        # a browser stall: (event, wall time, media time, seconds buffered ahead); GStreamer's: (gap, wall, length)
        stalls = [f"{x[0]} {x[2]:.2f}" + (f" ahead {x[3]}" if len(x) > 3 else "") for x in self.stalls[:3]]
        return (f"{source:<14} {self.player:<10} {verdict:<5} start {delay:>7}  played {self.played:5.1f}s  "
                f"stalls {len(self.stalls)} {stalls}  "
                f"errors {len(self.errors)} {self.errors[:2]}")


class BrowserPlayer:
    """hls.js, dash.js or Shaka on a harness page of its own."""

    def __init__(self, browser: Any, base_url: str, kind: str, url: str | None) -> None:
        """Loads the harness page with the player's library; plays `url` at once, or once play() is called."""
        self.kind = kind
        self.page = browser.new_page()
        self.console: list[str] = []
        self.page.on("console", lambda msg: self.console.append(f"{msg.type}: {msg.text}"))
        html = _PAGE % {"vendor": HARNESS_PATH + "vendor.js", "url": json.dumps(url), "kind": kind}
        vendor = (ROOT / "node_modules" / VENDOR[kind]).read_bytes()

        def serve(route: Any) -> None:
            if route.request.url.endswith("vendor.js"):
                route.fulfill(status=200, body=vendor, headers={"Content-Type": "text/javascript"})
            else:
                route.fulfill(status=200, body=html, headers={"Content-Type": "text/html"})

        self.page.route(base_url + HARNESS_PATH + "**", serve)
        self.page.goto(base_url + HARNESS_PATH + kind + ".html")

    def play(self, url: str) -> None:
        self.page.evaluate("(u) => { window.streamUrl = u; start(); }", url)

    def console_errors(self) -> list[str]:
        return [c[:200] for c in self.console if c.startswith(("error", "warning"))]

    def state(self) -> dict[str, Any]:
        value: dict[str, Any] = self.page.evaluate("({...window.m, t: document.getElementById('v').currentTime})")
        return value

    def close(self) -> None:
        self.page.close()


_PTS = re.compile(r"vsink.*last-message = chain.*pts: (\d+):(\d\d):(\d\d\.\d+)")


class GstPlayer:
    """`gst-launch-1.0 playbin3` with fakesinks; restarted while it fails before the first frame."""

    def __init__(self, kind: str, url: str, *, watchdog: float | None = None) -> None:
        self.kind = kind
        self.url = url
        self.watchdog = watchdog
        self.frames: list[tuple[float, float]] = []  # (wall time, pts) of each video frame the sink got
        self.errors: list[str] = []
        self.tries = 0
        self._stop = False
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        env = {**os.environ, "GST_PLUGIN_FEATURE_RANK": "hlsdemux2:MAX,dashdemux2:MAX"}
        while not self._stop and not self.frames:
            self.tries += 1
            cmd = ["gst-launch-1.0", "-m", "-v", "playbin3", f"uri={self.url}",
                   "video-sink=fakesink name=vsink sync=true silent=false", "audio-sink=fakesink sync=true"]
            with self._lock:
                if self._stop:
                    return
                self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                              errors="replace", env=env)
            assert self._proc.stdout is not None
            # a try that hangs (hlsdemux2 prerolled after a 404, never buffering) is ended after `watchdog` s
            # without a frame and started again, as an application's watchdog would (dashdemux2 is given none:
            # it buffers 30 s by design)
            timer = threading.Timer(self.watchdog, self._end_try, (self._proc,)) if self.watchdog else None
            if timer is not None:
                timer.start()
            for line in self._proc.stdout:
                self._parse(line)
            self._proc.wait()
            if timer is not None:
                timer.cancel()
            if not self.frames and not self._stop:
                time.sleep(0.25)  # between tries, like the browser harness; not synchronisation

    def _end_try(self, proc: subprocess.Popen[str]) -> None:
        if not self.frames and proc.poll() is None:
            self.errors.append(f"no frame within {self.watchdog} s: pipeline restarted")
            proc.terminate()

    def _parse(self, line: str) -> None:
        if (m := _PTS.search(line)) is not None:
            self.frames.append((time.time(), int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])))
        elif line.startswith("ERROR") or "error" in line[:40].lower():
            self.errors.append(line.strip()[:300])

    def outcome(self, live_at: float, watch_from: float | None = None) -> Outcome:
        out = Outcome(self.kind, errors=self.errors[:5])
        if not self.frames:
            return out
        started = self.frames[0][0]
        out.start_delay = started - live_at
        frames = self.frames if watch_from is None else [f for f in self.frames if f[0] >= watch_from]
        if frames:
            out.played = frames[-1][1] - frames[0][1]
        # a stall: no frame at the sink for over a second (gst-launch pauses the pipeline while it buffers)
        out.stalls = [("gap", a[0], b[0] - a[0]) for a, b in zip(frames, frames[1:], strict=False)
                      if b[0] - a[0] > 1.0]
        return out

    def stop(self) -> None:
        with self._lock:
            self._stop = True
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()
        self._thread.join(10)
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()


# --------------------------------------------------------------------------- GStreamer encoders

_GST_SOURCE = ["videotestsrc", "is-live=true", "pattern=ball", "!", "video/x-raw,width=320,height=180,framerate=25/1",
               "!", "x264enc", "tune=zerolatency", "speed-preset=ultrafast", "key-int-max=50", "bitrate=400", "!",
               "h264parse", "!"]
_GST_AUDIO = ["audiotestsrc", "is-live=true", "!", "audioconvert", "!", "avenc_aac", "!", "aacparse", "!", "m."]


def gst_encoder(kind: str, push_url: str, *, srt_url: str = "", rtmps_port: int = 0) -> subprocess.Popen[bytes]:
    """GStreamer as an encoder: `rtmp2sink`, `rtmpsink` (librtmp), `srtsink` or `rtmps` (rtmp2sink over TLS).

    stderr carries the rtmp2 elements' warnings (GST_DEBUG), e.g. about a `_result` without transaction.
    """
    if kind == "srtsink":
        host, query = srt_url.removeprefix("srt://").split("?", 1)
        streamid = query.removeprefix("streamid=")  # `{id}#{token}`: a `#` in an SRT URI would be a fragment
        # alignment=7: 7 TS packets (1316 bytes) per buffer, one SRT live-mode message each (GStreamer's advice)
        sink = ["mpegtsmux", "name=m", "alignment=7", "!", "srtsink", f"uri=srt://{host}?mode=caller",
                f"streamid={streamid}"]
    elif kind == "rtmpsink":
        sink = ["flvmux", "name=m", "streamable=true", "!", "rtmpsink", f"location={push_url} live=1"]
    elif kind == "rtmps":
        host_port, path = push_url.removeprefix("rtmp://").split("/", 1)
        url = f"rtmps://{host_port.rsplit(':', 1)[0]}:{rtmps_port}/{path}"
        sink = ["flvmux", "name=m", "streamable=true", "!", "rtmp2sink", f"location={url}", "tls-validation-flags=0"]
    else:
        sink = ["flvmux", "name=m", "streamable=true", "!", "rtmp2sink", f"location={push_url}"]
    cmd = ["gst-launch-1.0", "-q", *_GST_SOURCE, *sink, *_GST_AUDIO]
    env = {**os.environ, "GST_DEBUG": "rtmp*:2", "GST_DEBUG_NO_COLOR": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
