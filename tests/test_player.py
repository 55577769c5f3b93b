"""The web player at `iframe_url`: real RTMP push, headless Chromium (Debian's) with hls.js and dash.js."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import OnairServer, have, wait_until
from tests.media import push_rtmp, stop

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--autoplay-policy=no-user-gesture-required"]

pytestmark = pytest.mark.media


def _create(srv: OnairServer, **fields: Any) -> dict[str, Any]:
    with srv.client() as c:
        r = c.post("/streaming/streams", json={"name": "player", "active": True, **fields})
        assert r.status_code in (200, 201), r.text
        stream: dict[str, Any] = r.json()
        return stream


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (make deps)")
    if not (ROOT / "node_modules" / "hls.js" / "dist" / "hls.min.js").is_file():
        pytest.skip("node_modules missing (make deps runs npm install)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def test_player_info_and_vendor(server: OnairServer) -> None:
    stream = _create(server)
    pid = stream["iframe_url"].rsplit("/", 1)[1]
    r = httpx.get(f"{server.base_url}/streams/{pid}/info.json")
    assert r.status_code == 200
    info = r.json()
    assert info["live"] is False
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


def _state(page: Any) -> str:
    return str(page.evaluate("document.body.dataset.state"))


def _assert_plays(page: Any, timeout: float, console: list[str]) -> None:
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
    # before the push the page is offline and keeps retrying
    page.goto(stream["iframe_url"])
    wait_until(lambda: _state(page) == "offline", 15, what="offline before the push")
    publisher = push_rtmp(stream["push_url"], size="640x360", rate=30)
    try:
        wait_until(lambda: _state(page) == "playing", 40, what=f"playing; console: {console[-15:]}")
        assert page.evaluate("onairPlayer.mode") == "llhls" and page.evaluate("onairPlayer.hls !== null")
        _assert_plays(page, 30, console)
        assert page.evaluate("onairPlayer.video.muted") is True
        assert any(u.startswith(stream["screenshot"]) for u in requested), "the poster is the stream screenshot"
        page.click("#onair-live")  # the live edge button keeps playback going
        _assert_plays(page, 15, console)
    finally:
        stop(publisher)
    wait_until(lambda: _state(page) == "offline", 45, interval=0.3,
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
        wait_until(lambda: _state(page) == "playing", 60, what=f"playing ?{query}; console: {console[-15:]}")
        _assert_plays(page, 30, console)
    finally:
        page.close()
        stop(publisher)
