"""WHIP → LL-HLS glass-to-glass: a Chromium publisher (the go-live page) whose camera is a canvas stamped with
the wall clock, read back from the frames the built-in player presents (bench/latency.py's bar code and probe).

Two set-ups:
* publisher and player in separate browser processes (the way to measure), the player joining a few
  seconds after the stream went live, warm-up, then the window;
* the player as a second page in the publisher's browser context, as tests/test_whip.py measures. The
  publisher's draws per second are printed beside each run: Playwright keeps both pages active (about 60
  draws/s), so a throttled background publisher is not what made that test once report 6.2 s.
  What did: it took the first 60 frames a stock hls.js presented after joining at the very start of the
  stream, while the server started ffmpeg only after ffprobe had read a second of buffered head and
  `-fflags +nobuffer` dropped the first GOP (WebRTC encoders send the next keyframe only on request); the
  outside figure (2.3-2.9 s) watched a settled stream. The same test on this tree reports ~1.2 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlencode

from bench.harness import CHROMIUM, CHROMIUM_ARGS, median, poll, running_server
from bench.latency import BITS, H, Mode, g2g_run, summary_line

WEBRTC_ARGS = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
               "--allow-loopback-in-peer-connection"]
CW, CH = 1280, 720
SCALE = CH / H  # the bar code at the geometry bench/latency.py's probe reads (two rows: bits, inverted bits)

# The camera: a canvas redrawn at 60 Hz with the epoch ms as bar code, captured at 30 fps.
STAMP_CAMERA = """
(() => {
  const BITS = $BITS, CELL = $CW / BITS, ROW = $ROW;
  window.__draws = 0;
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async () => {
    const canvas = Object.assign(document.createElement("canvas"), { width: $CW, height: $CH });
    const ctx = canvas.getContext("2d");
    const draw = () => {
      const t = Date.now() % 2 ** 32;
      ctx.fillStyle = "#808080"; ctx.fillRect(0, 0, $CW, $CH);
      ctx.fillStyle = "#3060c0"; ctx.fillRect((window.__draws * 8) % $CW, $CH / 2, 120, 120);
      for (let i = 0; i < BITS; i++) {
        const bit = Math.floor(t / 2 ** (BITS - 1 - i)) % 2;
        ctx.fillStyle = bit ? "#ebebeb" : "#101010"; ctx.fillRect(i * CELL, 0, CELL, ROW);
        ctx.fillStyle = bit ? "#101010" : "#ebebeb"; ctx.fillRect(i * CELL, ROW, CELL, ROW);
      }
      window.__draws++;
    };
    draw(); setInterval(draw, 1000 / 60);
    const video = canvas.captureStream(30).getVideoTracks();
    const audio = (await real({ audio: true })).getAudioTracks();
    return new MediaStream([...video, ...audio]);
  };
})();
"""
for _k, _v in {"BITS": BITS, "CW": CW, "CH": CH, "ROW": int(16 * SCALE)}.items():
    STAMP_CAMERA = STAMP_CAMERA.replace("$" + _k, str(_v))


@contextmanager
def _browsers() -> Iterator[tuple[Any, Any]]:
    """The publisher's browser (fake camera, loopback ICE) and the player's, two processes of one Playwright."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        publisher = p.chromium.launch(executable_path=CHROMIUM, args=WEBRTC_ARGS)
        player = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield publisher, player
        finally:
            player.close()
            publisher.close()


def _go_live(context: Any, srv: Any, stream: dict[str, Any]) -> Any:
    page = context.new_page()
    pid = stream["iframe_url"].rsplit("/", 1)[1]
    page.goto(f"{srv.base_url}/streams/{pid}/golive?" + urlencode({"whip": stream["push_url_whip"], "autostart": "1"}))
    poll(lambda: page.evaluate("golive.state") == "live", 30, 0.1, "go-live page live")
    return page


def _draw_rate(page: Any, seconds: float) -> float:
    before = page.evaluate("window.__draws")
    time.sleep(seconds)
    return float(page.evaluate("window.__draws") - before) / seconds


def whip_run(srv: Any, publisher: Any, player: Any | None, n: int, warmup: float, window: float,
             console: list[str]) -> dict[str, float]:
    """One stream: go live over WHIP, then watch it (in `player`, or beside the publisher when None)."""
    stream = srv.create_stream(f"whip-{n}")
    context = publisher.new_context()
    context.add_init_script(STAMP_CAMERA)
    try:
        page = _go_live(context, srv, stream)
        poll(lambda: httpx_ok(stream["hls_cmaf_url"]), 30, 0.1, "LL-HLS of the WHIP stream")
        viewer = player if player is not None else context
        res = g2g_run(viewer, stream["iframe_url"], Mode("WHIP→LL-HLS", "", 1), warmup, window, console)
        res["draws_per_s"] = _draw_rate(page, 1.0)
        page.click("#stop")
        return res
    finally:
        context.close()


def httpx_ok(url: str) -> bool:
    import httpx

    return httpx.get(url, timeout=10).status_code == 200


def main(quick: bool = False) -> None:
    runs = 1 if quick else 3
    warmup, window = (3.0, 4.0) if quick else (5.0, 10.0)
    console: list[str] = []
    print(f"(c) WHIP (Chromium go-live page, stamped {CW}x{CH} canvas camera) → LL-HLS in the built-in player, "
          f"warm-up {warmup:.0f} s, window {window:.0f} s per run", flush=True)
    results: list[dict[str, float]] = []
    beside: list[dict[str, float]] = []
    with running_server() as srv, _browsers() as (publisher, player):
        for n in range(runs):
            res = whip_run(srv, publisher, player, n, warmup, window, console)
            results.append(res)
            print(f"    separate browsers         run {n + 1}: glass-to-glass {res['g2g_ms']:6.0f} ms   "
                  f"now-PDT {res['pdt_ms']:6.0f} ms   publisher draws {res['draws_per_s']:4.0f}/s   "
                  f"stalls {res['stalls']:.0f}", flush=True)
        res = whip_run(srv, publisher, None, runs, warmup, window, console)
        beside.append(res)
        print(f"    player beside publisher   run 1: glass-to-glass {res['g2g_ms']:6.0f} ms   "
              f"now-PDT {res['pdt_ms']:6.0f} ms   publisher draws {res['draws_per_s']:4.0f}/s   "
              f"(tests/test_whip.py's set-up: a second page of the publisher's browser)", flush=True)
    g2g = median([r["g2g_ms"] for r in results]) / 1000
    print(summary_line("WHIP→LL-HLS", g2g, f"player beside the publisher: {beside[0]['g2g_ms'] / 1000:.2f} s"),
          flush=True)
    errors = [c for c in console if "error" in c.lower()]
    for line in list(dict.fromkeys(errors))[:10]:
        print("      " + line[:300], flush=True)


if __name__ == "__main__":
    main()
