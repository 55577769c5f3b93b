"""The web player at `iframe_url`: real RTMP push, headless Chromium (Debian's) with hls.js and dash.js."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser import PLAYER_ARGS, ROOT, launch_chromium
from tests.conftest import OnairServer, have, wait_until
from tests.media import push_rtmp, stop

SCREENSHOTS = Path("/tmp")

pytestmark = pytest.mark.media


def _create(srv: OnairServer, **fields: Any) -> dict[str, Any]:
    with srv.client() as c:
        r = c.post("/streaming/streams", json={"name": "player", "active": True, **fields})
        assert r.status_code in (200, 201), r.text
        stream: dict[str, Any] = r.json()
        return stream


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium(PLAYER_ARGS, need_player_assets=True)


def test_player_info_and_vendor(server: OnairServer) -> None:
    stream = _create(server)
    pid = stream["iframe_url"].rsplit("/", 1)[1]
    r = httpx.get(f"{server.base_url}/streams/{pid}/info.json")
    assert r.status_code == 200
    info = r.json()
    assert info["live"] is False and info["screenshot_ready"] is False
    assert info["hls_cmaf_url"] == stream["hls_cmaf_url"] and info["dash_url"] == stream["dash_url"]
    assert info["hls_mpegts_url"] == stream["hls_mpegts_url"] and info["screenshot"] == stream["screenshot"]
    assert stream["token"] not in r.text and "push" not in r.text
    page = httpx.get(stream["iframe_url"])
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert stream["token"] not in page.text
    assert httpx.get(f"{server.base_url}/streams/{pid.split('_')[0]}_999999").status_code == 404
    assert httpx.get(f"{server.base_url}/streams/abc/info.json").status_code == 404
    js = httpx.get(f"{server.base_url}/player/static/player.js")
    assert js.status_code == 200 and "onairPlayer" in js.text
    vendor = httpx.get(f"{server.base_url}/player/vendor/hls.min.js")
    if (ROOT / "node_modules" / "hls.js").is_dir():
        assert vendor.status_code == 200 and "javascript" in vendor.headers["content-type"]
    else:
        assert vendor.status_code == 503 and "npm" in vendor.text
    assert httpx.get(f"{server.base_url}/player/vendor/..%2Fpackage.json").status_code == 404
    assert info["overlays"] == [] and info["dvr_enabled"] is False and info["projection"] == "regular"
    assert httpx.get(f"{server.base_url}/player/static/projection.js").status_code == 200
    if (ROOT / "node_modules" / "three" / "build").is_dir():  # the ES module imports ./three.core.js
        for name in ("three.module.js", "three.core.js"):
            r = httpx.get(f"{server.base_url}/player/vendor/{name}")
            assert r.status_code == 200 and "javascript" in r.headers["content-type"], name


def player_state(page: Any) -> str:
    return str(page.evaluate("document.body.dataset.state"))


def assert_plays(page: Any, timeout: float, console: list[str]) -> None:
    """currentTime advances by a second and a decoded picture exists, within the deadline."""
    t0 = float(page.evaluate("onairPlayer.video.currentTime"))

    def advanced() -> bool:
        v = page.evaluate("({t: onairPlayer.video.currentTime, w: onairPlayer.video.videoWidth})")
        return bool(v["t"] > t0 + 1.0 and v["w"] > 0)

    wait_until(advanced, timeout, interval=0.2, what=f"video advancing; console: {console[-15:]}")


@pytest.mark.skipif(not have("ffmpeg"), reason="ffmpeg missing")
def test_player_plays_then_goes_offline(server: OnairServer, browser: Any) -> None:
    stream = _create(server)
    console: list[str] = []
    page = browser.new_page()
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    missing: list[str] = []  # the page asks for the poster only once it exists: no 404 in its network log
    page.on("response", lambda r: missing.append(r.url) if r.status == 404 and "screenshot" in r.url else None)
    # before the push the page is offline and keeps retrying
    page.goto(stream["iframe_url"])
    wait_until(lambda: player_state(page) == "offline", 15, what="offline before the push")
    publisher = push_rtmp(stream["push_url"], size="640x360", rate=30)
    try:
        wait_until(lambda: player_state(page) == "playing", 40, what=f"playing; console: {console[-15:]}")
        assert page.evaluate("onairPlayer.mode") == "llhls" and page.evaluate("onairPlayer.hls !== null")
        # low latency: hls.js aims at the playlist's PART-HOLD-BACK and catches up when it falls behind
        config = page.evaluate("(() => { const c = onairPlayer.hls.config; return {ll: c.lowLatencyMode,"
                               " rate: c.maxLiveSyncPlaybackRate, sync: c.liveSyncDuration}; })()")
        assert config["ll"] is True and config["rate"] > 1 and config["sync"] is None, config
        assert_plays(page, 30, console)
        held = page.evaluate("(() => { const d = onairPlayer.hls.latestLevelDetails; return {target:"
                             " onairPlayer.hls.targetLatency, hold: d.partHoldBack, part: d.partTarget}; })()")
        assert held["hold"] == pytest.approx(3 * held["part"], abs=0.002) and held["part"] <= 0.34, held
        assert held["target"] >= held["hold"] - 0.001, held  # the target is PART-HOLD-BACK (+ stall increments)
        assert page.evaluate("onairPlayer.video.muted") is True
        # the page polls info.json every 30 s: the poster follows once the first screenshot exists
        wait_until(lambda: str(page.evaluate("onairPlayer.video.poster")).startswith(stream["screenshot"]), 40,
                   interval=0.5, what="the poster (the stream screenshot) once it exists")
        assert any(u.startswith(stream["screenshot"]) for u in requested)
        assert missing == []
        page.click("#onair-live")  # the live edge button keeps playback going
        assert_plays(page, 15, console)
    finally:
        stop(publisher)
    wait_until(lambda: player_state(page) == "offline", 45, interval=0.3,
               what=f"offline after stop; console: {console[-15:]}")
    page.close()


@pytest.mark.skipif(not have("ffmpeg"), reason="ffmpeg missing")
@pytest.mark.parametrize("query", ["dash", "no_low_latency"])
def test_player_other_formats(server: OnairServer, browser: Any, query: str) -> None:
    stream = _create(server)
    publisher = push_rtmp(stream["push_url"], size="640x360", rate=30)
    console: list[str] = []
    page = browser.new_page()
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    try:
        page.goto(stream["iframe_url"] + "?" + query)
        wait_until(lambda: player_state(page) == "playing", 60, what=f"playing ?{query}; console: {console[-15:]}")
        assert_plays(page, 30, console)
        if query == "dash":  # dash.js holds a set distance to the live edge with its catch-up
            streaming = page.evaluate("onairPlayer.dash.getSettings().streaming")
            assert streaming["delay"]["liveDelay"] == 1.5 and streaming["liveCatchup"]["enabled"] is True
    finally:
        page.close()
        stop(publisher)


@pytest.fixture
def widget_server() -> Iterator[str]:
    """A tiny web server for overlay widgets: every path answers a small coloured HTML page."""
    body = (b"<!doctype html><html><body style='margin:0;background:rgba(255,200,0,.85);font:40px sans-serif'>"
            b"<div id='w'>WIDGET</div></body></html>")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _open_playing(browser: Any, stream: dict[str, Any], console: list[str]) -> Any:
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
    page.goto(stream["iframe_url"])
    wait_until(lambda: player_state(page) == "playing", 60, what=f"playing; console: {console[-15:]}")
    return page


def _box(page: Any, selector: str) -> dict[str, float] | None:
    el = page.query_selector(selector)
    box: dict[str, float] | None = el.bounding_box() if el is not None else None
    return box


def _near(box: dict[str, float] | None, x: float, y: float, w: float, h: float, tol: float = 4) -> bool:
    return box is not None and all(abs(box[k] - v) <= tol for k, v in
                                   (("x", x), ("y", y), ("width", w), ("height", h)))


@pytest.mark.skipif(not have("ffmpeg"), reason="ffmpeg missing")
def test_player_html_overlays(server: OnairServer, browser: Any, widget_server: str) -> None:
    stream = _create(server, html_overlay=True)
    sid = stream["id"]
    with server.client() as c:
        r = c.post(f"/streaming/streams/{sid}/overlays",
                   json=[{"url": widget_server + "/clock", "x": 40, "y": 30, "width": 200, "height": 100}])
        assert r.status_code in (200, 201), r.text
        oid = r.json()[0]["id"]
    info = httpx.get(f"{server.base_url}/streams/{stream['iframe_url'].rsplit('/', 1)[1]}/info.json").json()
    assert info["overlays"] == [{"id": oid, "url": widget_server + "/clock", "x": 40, "y": 30, "width": 200,
                                 "height": 100, "stretch": False}]
    publisher = push_rtmp(stream["push_url"], size="640x360", rate=30)
    console: list[str] = []
    page = None
    try:
        page = _open_playing(browser, stream, console)
        assert_plays(page, 30, console)
        sel = f'#onair-overlays iframe[data-overlay-id="{oid}"]'
        # 640x360 source shown contained in 1280x720: every source pixel is 2x2 CSS pixels
        wait_until(lambda: _near(_box(page, sel), 80, 60, 400, 200), 15,
                   what=f"overlay at (80,60) 400x200, got {_box(page, sel)}")
        frame = page.frame_locator(sel)
        assert frame.locator("#w").inner_text(timeout=10000) == "WIDGET"
        assert page.eval_on_selector(sel, "e => getComputedStyle(e).pointerEvents") == "none"
        assert page.eval_on_selector(sel, "e => e.getAttribute('sandbox')") == "allow-scripts"
        page.screenshot(path=str(SCREENSHOTS / "onair-player-overlay.png"))
        with server.client() as c:  # moved and resized live, no reload
            r = c.patch(f"/streaming/streams/{sid}/overlays/{oid}", json={"x": 300, "y": 200, "width": 100})
            assert r.status_code == 200, r.text
        wait_until(lambda: _near(_box(page, sel), 600, 400, 200, 200), 15,
                   what=f"moved overlay at (600,400) 200x200, got {_box(page, sel)}")
        with server.client() as c:  # off the 640x360 frame: all widgets hidden
            r = c.patch(f"/streaming/streams/{sid}/overlays/{oid}", json={"x": 600})
            assert r.status_code == 200, r.text
        wait_until(lambda: not page.is_visible(sel), 15, what="overlay off the frame hidden")
        with server.client() as c:
            assert c.delete(f"/streaming/streams/{sid}/overlays/{oid}").status_code == 204
        wait_until(lambda: page.query_selector(sel) is None, 15, what="deleted overlay removed")
        assert_plays(page, 15, console)  # overlay changes never interrupt playback
    finally:
        if page is not None:
            page.close()
        stop(publisher)


@pytest.mark.skipif(not have("ffmpeg"), reason="ffmpeg missing")
def test_player_vr360_projection(server: OnairServer, browser: Any) -> None:
    if not (ROOT / "node_modules" / "three" / "build" / "three.module.js").is_file():
        pytest.skip("three.js missing from node_modules (make deps runs npm install)")
    stream = _create(server, projection="vr360")
    publisher = push_rtmp(stream["push_url"], size="1280x640", rate=30)
    console: list[str] = []
    page = None
    try:
        page = _open_playing(browser, stream, console)
        assert_plays(page, 30, console)  # the <video> stays the media element
        wait_until(lambda: page.evaluate("onairPlayer.projection && onairPlayer.projection.frames > 0"), 30,
                   what=f"projection rendering; console: {console[-15:]}")
        proj = page.evaluate("({mode: onairPlayer.projection.mode, renderer: onairPlayer.projection.renderer})")
        assert proj == {"mode": "vr360", "renderer": "webgl"}, console[-15:]
        assert page.evaluate("document.querySelector('#onair canvas.onair-projection') !== null")
        assert page.evaluate("getComputedStyle(onairPlayer.video).opacity") == "0"
        f0 = page.evaluate("onairPlayer.projection.frames")
        wait_until(lambda: page.evaluate("onairPlayer.projection.frames") > f0 + 10, 20,
                   what="projection frames counting up with the video")
        # a 16x16 grid over the sphere view: a uniform (blank or single-colour) canvas has 1 colour
        sample = page.evaluate("onairPlayer.projection.sample(16)")
        assert sample["distinct"] >= 3 and sample["mean"] > 10, sample
        # looking around changes the picture
        page.focus("canvas.onair-projection")
        for _ in range(6):
            page.keyboard.press("ArrowRight")
        assert page.evaluate("onairPlayer.projection.view.yaw") == 30
        page.screenshot(path=str(SCREENSHOTS / "onair-player-vr360.png"))
    finally:
        if page is not None:
            page.close()
        stop(publisher)


@pytest.mark.skipif(not have("ffmpeg"), reason="ffmpeg missing")
def test_player_dvr_scrubbing(server: OnairServer, browser: Any) -> None:
    stream = _create(server, dvr_enabled=True, dvr_duration=600)
    publisher = push_rtmp(stream["push_url"], size="640x360", rate=30)
    console: list[str] = []
    page = None
    try:
        page = _open_playing(browser, stream, console)
        assert_plays(page, 30, console)

        def window_s() -> float:
            return float(page.evaluate("onairPlayer.video.seekable.length ? onairPlayer.video.seekable.end(0)"
                                       " - onairPlayer.video.seekable.start(0) : 0"))

        wait_until(lambda: window_s() > 16, 60, interval=0.5, what=f"a DVR window of 16 s, got {window_s()}")
        wait_until(lambda: page.is_visible("#onair-dvr"), 10, what="the DVR seek bar")
        t0 = float(page.evaluate("onairPlayer.video.currentTime"))
        page.fill("#onair-seek", str(t0 - 10))  # the bar's input + change events: seek 10 s back
        wait_until(lambda: float(page.evaluate("onairPlayer.video.currentTime")) < t0 - 5, 10,
                   what=f"seeked back from {t0}; console: {console[-10:]}")
        assert_plays(page, 20, console)
        wait_until(lambda: page.inner_text("#onair-behind").startswith("-"), 10, what="'-mm:ss' behind live")
        assert float(page.evaluate("onairPlayer.latency().edge_s")) > 5
        page.click("#onair-live")
        wait_until(lambda: float(page.evaluate("onairPlayer.latency().edge_s")) < 3, 15,
                   what=f"back at the live edge; console: {console[-10:]}")
        assert_plays(page, 15, console)
    finally:
        if page is not None:
            page.close()
        stop(publisher)
