"""WHEP (WebRTC playback) figures, all in headless Chromium with the clock burned into the source frames.

(a) RTMP source → WHEP: bench.latency's stamped source; the web player with `?protocol=webrtc`, the same
    bar-code probe on every presented frame (glass-to-glass), and page → playing.
(b) WHIP source → WHEP: a Chromium page publishes a canvas drawing the same bar code through the golive
    page; another page plays it over WHEP.
(c) N WHEP viewers of one stream: N peer connections in one page. What the server delivers is measured
    on the encoded frames (RTCRtpReceiver.createEncodedStreams, never decoded): a viewer stalls when it
    gets under 90 % of the source's frame rate, or when two frames arrive further apart than WebRTC's
    freeze threshold, max(3 frame intervals, 1 interval + 150 ms). The same N viewers decoding in the
    page are printed beside: there one headless Chromium decodes N streams on the server's two cores,
    so that figure is the client's as much as the server's.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from bench.harness import CHROMIUM, CHROMIUM_ARGS, median, poll, running_server
from bench.latency import BITS, CELL_H, CELL_W, FPS, H, Mode, StampedSource, W, g2g_run

WEBRTC_ARGS = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
               "--allow-loopback-in-peer-connection"]

# the golive page's camera replaced by a canvas with bench.latency's bar code (row A bits, row B inverted)
STAMPED_CAMERA = """
(() => {
  const BITS = $BITS, W = $W, H = $H, CW = $CW, CH = $CH;
  const real = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = async () => {
    const canvas = Object.assign(document.createElement("canvas"), { width: W, height: H });
    const ctx = canvas.getContext("2d");
    const draw = () => {
      const t = Date.now() % 4294967296;
      ctx.fillStyle = "#808080"; ctx.fillRect(0, 0, W, H);
      for (let i = 0; i < BITS; i++) {
        const bit = Math.floor(t / 2 ** (BITS - 1 - i)) % 2;
        ctx.fillStyle = bit ? "#fff" : "#000"; ctx.fillRect(i * CW, 0, CW, CH);
        ctx.fillStyle = bit ? "#000" : "#fff"; ctx.fillRect(i * CW, CH, CW, CH);
      }
    };
    draw(); setInterval(draw, 1000 / 120);
    const video = canvas.captureStream($FPS).getVideoTracks();
    const audio = (await real({ audio: true })).getAudioTracks();
    return new MediaStream([...video, ...audio]);
  };
})();
"""
for _k, _v in {"BITS": BITS, "W": W, "H": H, "CW": CELL_W, "CH": CELL_H, "FPS": FPS}.items():
    STAMPED_CAMERA = STAMPED_CAMERA.replace("$" + _k, str(_v))

# In both viewer scripts: `whep(pc, url)` offers the peer connection's transceivers to the WHEP URL (all ICE
# candidates gathered, no trickle) and applies the answer; `openAll(n, make)` opens n of them, ten offers at a
# time (each waits for its ICE gathering); `closeAll(pcs)` DELETEs their sessions.
WHEP_HELPERS = """
  const whep = async (pc, url) => {
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((ok) => { if (pc.iceGatheringState === "complete") ok();
      pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") ok(); };
      setTimeout(ok, 2000); });
    const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/sdp" },
                                 body: pc.localDescription.sdp });
    if (r.status !== 201) throw new Error("WHEP " + r.status);
    pc.location = new URL(r.headers.get("Location"), url).href;
    await pc.setRemoteDescription({ type: "answer", sdp: await r.text() });
    return pc;
  };
  const openAll = async (n, make) => {
    const pcs = [];
    for (let i = 0; i < n; i += 10) {
      pcs.push(...await Promise.all(Array.from({ length: Math.min(10, n - i) }, make)));
    }
    return pcs;
  };
  const closeAll = (pcs) =>
    Promise.all(pcs.map((pc) => fetch(pc.location, { method: "DELETE" }).then(() => pc.close())));
  const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));
"""

# N peer connections on one WHEP URL; returns per viewer [framesDecoded, freezeCount] after `window` ms
VIEWERS_JS = """
async ([url, n, windowMs]) => {""" + WHEP_HELPERS + """
  const open = () => {
    const pc = new RTCPeerConnection({ iceServers: [] });
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    return whep(pc, url);
  };
  const stats = async (pc) => {
    let out = [0, 0];
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") out = [s.framesDecoded || 0, s.freezeCount || 0];
    });
    return out;
  };
  const pcs = await openAll(n, open);
  await sleep(3000);  // every viewer past its first keyframe
  const before = await Promise.all(pcs.map(stats));
  const t1 = performance.now();
  await sleep(windowMs);
  const after = await Promise.all(pcs.map(stats));
  const seconds = (performance.now() - t1) / 1000;
  await closeAll(pcs);
  return { seconds, viewers: after.map((a, i) => [a[0] - before[i][0], a[1] - before[i][1]]) };
}
"""

# N peer connections whose encoded video frames are counted and dropped (no decoder in the client): per
# viewer [frames, largest gap between two frames' receive times in ms, frames missing by RTP timestamp]
# over `window` ms
DELIVERY_JS = """
async ([url, n, windowMs, fps]) => {""" + WHEP_HELPERS + """
  const step = 90000 / fps;
  const count = async (reader, st) => {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      const m = value.getMetadata();  // receiveTime: the frame's last packet in, not when this loop ran
      const t = m.receiveTime === undefined ? performance.now() : m.receiveTime;
      if (st.on) {
        st.frames += 1;
        st.maxGap = Math.max(st.maxGap, t - st.last);
        if (st.lastTs !== null) {
          st.missing += Math.max(0, Math.round(((value.timestamp - st.lastTs) >>> 0) / step) - 1);
        }
      }
      st.last = t; st.lastTs = value.timestamp;
    }
  };
  const open = () => {
    const pc = new RTCPeerConnection({ iceServers: [], encodedInsertableStreams: true });
    const video = pc.addTransceiver("video", { direction: "recvonly" });
    const audio = pc.addTransceiver("audio", { direction: "recvonly" });
    audio.receiver.createEncodedStreams().readable.pipeTo(new WritableStream());
    pc.st = { frames: 0, maxGap: 0, missing: 0, last: 0, lastTs: null, on: false };
    count(video.receiver.createEncodedStreams().readable.getReader(), pc.st);
    return whep(pc, url);
  };
  const pcs = await openAll(n, open);
  await sleep(3000);  // every viewer past its first keyframe
  const t1 = performance.now();
  for (const pc of pcs) { pc.st.on = true; pc.st.last = t1; }
  await sleep(windowMs);
  const t2 = performance.now();
  const out = pcs.map((pc) => [pc.st.frames, Math.max(pc.st.maxGap, t2 - pc.st.last), pc.st.missing]);
  await closeAll(pcs);
  return { seconds: (t2 - t1) / 1000, viewers: out };
}
"""
FREEZE_MS = max(3 * 1000 / FPS, 1000 / FPS + 150)  # WebRTC's freeze: a gap this long between two frames


def _launch() -> Any:
    from playwright.sync_api import sync_playwright

    pw = sync_playwright().start()
    return pw, pw.chromium.launch(executable_path=CHROMIUM, args=WEBRTC_ARGS)


def _report(label: str, results: list[dict[str, float]]) -> None:
    for n, res in enumerate(results):
        print(f"    {label:24s} run {n + 1}: glass-to-glass {res['g2g_ms']:6.0f} ms   page→playing "
              f"{res['startup_s']:4.1f} s   frames {res['frames']:.0f} (unreadable {res['bad']:.0f})", flush=True)
    print(f"    {label:24s} median glass-to-glass {median([r['g2g_ms'] for r in results]):6.0f} ms   "
          f"page→playing {median([r['startup_s'] for r in results]):4.1f} s", flush=True)


def _whip_source(browser: Any, srv: Any, stream: dict[str, Any]) -> Any:
    context = browser.new_context()
    context.add_init_script(STAMPED_CAMERA)
    page = context.new_page()
    pid = stream["iframe_url"].rsplit("/", 1)[1]
    page.goto(f"{srv.base_url}/streams/{pid}/golive?" + str(httpx.QueryParams(
        {"whip": stream["push_url_whip"], "autostart": "1"})))
    poll(lambda: page.evaluate("golive.state") == "live", 30, 0.1, "golive live")
    return context


def _viewers(browser: Any, script: str, args: list[Any]) -> dict[str, Any]:
    """Run one of the viewer scripts in a page of its own; `took_s` is how long set-up and window took."""
    page = browser.new_page()
    try:
        started = time.monotonic()
        out: dict[str, Any] = page.evaluate(script, args)
        out["took_s"] = time.monotonic() - started
        return out
    finally:
        page.close()


def _many_viewers(browser: Any, stream: dict[str, Any], n: int, window: float) -> None:
    print(f"(c) {n} WHEP viewers of the RTMP stream, {window:.0f} s window", flush=True)
    res = _viewers(browser, DELIVERY_JS, [stream["whep_url"], n, int(window * 1000), FPS])
    rates = [v[0] / res["seconds"] for v in res["viewers"]]
    gaps = [v[1] for v in res["viewers"]]
    stalled = sum(1 for r, g in zip(rates, gaps, strict=True) if r < 0.9 * FPS or g > FREEZE_MS)
    print(f"    {n} viewers, frames delivered: fps min {min(rates):4.1f} median {median(rates):4.1f} "
          f"(source {FPS})   largest gap median {median(gaps):4.0f} ms max {max(gaps):4.0f} ms   "
          f"missing frames {sum(v[2] for v in res['viewers'])}   stalled {stalled}   "
          f"(set up and measured in {res['took_s']:4.1f} s)", flush=True)
    res = _viewers(browser, VIEWERS_JS, [stream["whep_url"], n, int(window * 1000)])
    rates = [v[0] / res["seconds"] for v in res["viewers"]]
    stalled = sum(1 for r, v in zip(rates, res["viewers"], strict=True) if r < 0.9 * FPS or v[1])
    print(f"    {n} viewers decoding in one page: fps min {min(rates):4.1f} median {median(rates):4.1f}   "
          f"with a freeze or under 90 %: {stalled}   (the client's decoders share the 2 cores)", flush=True)


def main(quick: bool = False) -> None:
    runs = 1 if quick else 3
    warmup, window = (2.0, 3.0) if quick else (3.0, 5.0)
    n_viewers = 20 if quick else 50
    console: list[str] = []
    pw, browser = _launch()
    try:
        with running_server() as srv:
            print(f"(a) RTMP → WHEP glass-to-glass, stamped {W}x{H}@{FPS} source, {runs} run(s)", flush=True)
            stream = srv.create_stream("whep-rtmp")
            source = StampedSource(stream["push_url"])
            try:
                poll(lambda: httpx.get(stream["hls_cmaf_url"], timeout=10).status_code == 200, 30, 0.1, "live")
                mode = Mode("RTMP → WHEP", "?protocol=webrtc", runs)
                results = [g2g_run(browser, stream["iframe_url"], mode, warmup, window, console) for _ in range(runs)]
                _report(mode.label, results)

                _many_viewers(browser, stream, n_viewers, window)
            finally:
                source.stop()

            print(f"(b) WHIP (Chromium canvas {W}x{H}) → WHEP glass-to-glass, {runs} run(s)", flush=True)
            stream = srv.create_stream("whep-whip")
            publisher = _whip_source(browser, srv, stream)
            try:
                poll(lambda: httpx.get(stream["hls_cmaf_url"], timeout=10).status_code == 200, 30, 0.1, "live")
                mode = Mode("WHIP → WHEP", "?protocol=webrtc", runs)
                results = [g2g_run(browser, stream["iframe_url"], mode, warmup, window, console) for _ in range(runs)]
                _report(mode.label, results)
            finally:
                publisher.close()
    finally:
        browser.close()
        pw.stop()
    print("    targets: WHIP → WHEP ≤ 500 ms, RTMP → WHEP ≤ 1000 ms, 50 viewers delivered without a stall",
          flush=True)


if __name__ == "__main__":
    main()
