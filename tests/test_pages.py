"""Public pages: the VOD player at a Video's `iframe_url`, the broadcast page and player
settings applied to the pages, with real ffmpeg pushes and Debian's headless Chromium."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import PLAYER_ARGS, launch_chromium
from tests.conftest import API_KEY, OnairServer, have, wait_until
from tests.media import push_rtmp, stop

needs_ffmpeg = pytest.mark.skipif(not have("ffmpeg"), reason="ffmpeg missing")
STATUS_DEADLINE = 6  # a status change shows in open pages within a few seconds (they poll every 2 s)
PLAYER = {"name": "branded", "autoplay": True, "mute": False, "bg_color": "#123456", "fg_color": "#203040",
          "text_color": "#fafafa", "logo_position": "br", "speed_control": True,
          "custom_css": ".onair-logo { outline: 3px solid rgb(1, 2, 3); }", "js_url": "https://evil.example/x.js"}


def api(srv: OnairServer, method: str, path: str, **kw: Any) -> Any:
    with srv.client() as c:
        r = c.request(method, path, **kw)
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json() if r.content and "json" in r.headers.get("content-type", "") else r.text


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnairServer]:
    """One server for the module: the recorded Video is made once and shared."""
    srv = OnairServer(tmp_path_factory.mktemp("pages") / "node").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium(PLAYER_ARGS, need_player_assets=True)


@pytest.fixture(scope="module")
def video(node: OnairServer) -> dict[str, Any]:
    """A ready Video: 7 s pushed to a stream with auto_record."""
    if not have("ffmpeg"):
        pytest.skip("ffmpeg missing")
    stream = api(node, "POST", "/streaming/streams", json={"name": "vod page", "active": True, "auto_record": True})
    publisher = push_rtmp(stream["push_url"], size="320x240", rate=15, seconds=7)
    try:
        assert publisher.wait(40) == 0
    finally:
        stop(publisher)
    found = wait_until(lambda: [v for v in api(node, "GET", "/streaming/videos", params={"stream_id": stream["id"]})
                                if v["status"] == "ready"], 60, interval=0.5, what="recording ready")
    done: dict[str, Any] = api(node, "GET", f"/streaming/videos/{found[0]['id']}")
    return done


def _console(page: Any) -> list[str]:
    lines: list[str] = []
    page.on("console", lambda m: lines.append(f"{m.type}: {m.text}"))
    return lines


def _state(page_or_frame: Any) -> str:
    return str(page_or_frame.evaluate("document.body.dataset.state"))


def _plays(target: Any, timeout: float, console: list[str], by: float = 1.0) -> float:
    """currentTime advances by `by` seconds with a decoded picture, within the deadline; returns it."""
    t0 = float(target.evaluate("onairPlayer.video.currentTime"))

    def advanced() -> float | None:
        v = target.evaluate("({t: onairPlayer.video.currentTime, w: onairPlayer.video.videoWidth})")
        return float(v["t"]) if v["t"] > t0 + by and v["w"] > 0 else None

    return float(wait_until(advanced, timeout, interval=0.2, what=f"video advancing; console: {console[-15:]}"))


def test_pages_public_endpoints(node: OnairServer) -> None:
    """Without media: 404s, what info.json and the player config expose, the preview page."""
    base = node.base_url
    stream = api(node, "POST", "/streaming/streams", json={"name": "bc", "active": True})
    client_id = stream["iframe_url"].rsplit("/", 1)[1].split("_")[0]
    r = httpx.get(f"{base}/videos/{client_id}_NoSuchSlug/player")
    assert r.status_code == 404 and "text/html" in r.headers["content-type"]
    assert httpx.get(f"{base}/videos/{client_id}_NoSuchSlug/player/info.json").status_code == 404
    assert httpx.get(f"{base}/videos/999_abc/player").status_code == 404  # another client id
    assert httpx.get(f"{base}/broadcasts/{client_id}_999999").status_code == 404
    assert httpx.get(f"{base}/broadcasts/{client_id}_999999/info.json").status_code == 404

    player = api(node, "POST", "/streaming/players", json={"player": {**PLAYER, "logo": base + "/logo.png"}})
    bc = api(node, "POST", "/streaming/broadcasts", json={"broadcast": {
        "name": "Launch", "pending_message": "Starts at 10:00", "stream_ids": [stream["id"]],
        "player_id": player["id"]}})
    page = httpx.get(bc["iframe_url"])
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert stream["token"] not in page.text and "evil.example" not in page.text
    info = httpx.get(bc["iframe_url"] + "/info.json").json()
    assert info["status"] == "Pending" and info["message"] == "Starts at 10:00" and info["stream"] is None
    api(node, "PATCH", f"/streaming/broadcasts/{bc['id']}", json={"broadcast": {"status": "live"}})
    r = httpx.get(bc["iframe_url"] + "/info.json")
    info = r.json()
    assert info["status"] == "Live" and info["stream"]["id"] == stream["id"]
    assert info["stream"]["iframe_url"] == f"{stream['iframe_url']}?player_id={player['id']}"
    assert stream["token"] not in r.text and "push" not in r.text

    config = httpx.get(f"{base}/player/config/{player['id']}.json").json()
    assert config == {"player_id": player["id"], "autoplay": True, "mute": False, "disable_skin": False,
                      "speed_control": True, "show_sharing": True, "bg_color": "#123456", "fg_color": "#203040",
                      "text_color": "#fafafa", "hover_color": None, "custom_css": PLAYER["custom_css"],
                      "logo": base + "/logo.png", "logo_position": "br"}
    assert httpx.get(f"{base}/player/config/999999.json").status_code == 404
    assert httpx.get(f"{base}/player/config/abc.json").status_code == 404

    preview = httpx.get(f"{base}/streaming/players/{player['id']}/preview")
    assert preview.status_code == 401  # the API's preview needs the key
    preview = httpx.get(f"{base}/streaming/players/{player['id']}/preview",
                        headers={"Authorization": f"APIKey {API_KEY}"})
    assert preview.status_code == 200 and "vod.js" in preview.text and '"bg_color": "#123456"' in preview.text
    live_page = httpx.get(f"{stream['iframe_url']}?player_id={player['id']}").text
    assert '"mute": false' in live_page and "skin.js" in live_page
    for name in ("skin.js", "vod.js", "broadcast.js"):
        assert httpx.get(f"{base}/player/static/{name}").status_code == 200, name


@pytest.mark.media
@needs_ffmpeg
def test_vod_player_plays_and_seeks(node: OnairServer, browser: Any, video: dict[str, Any]) -> None:
    assert video["iframe_url"].endswith("/player")
    page = browser.new_page()
    console = _console(page)
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    try:
        page.goto(video["iframe_url"])
        wait_until(lambda: _state(page) == "playing", 30, what=f"VOD playing; console: {console[-15:]}")
        _plays(page, 20, console)
        assert page.evaluate("onairPlayer.video.poster") == video["screenshot"]
        assert any(u == video["hls_url"] for u in requested), "plays the Video's hls_url"
        assert page.evaluate("onairPlayer.video.muted") is True  # the built-in player autoplays muted
        # ?t=3: starts 3 s in
        page.goto(video["iframe_url"] + "?t=3")
        wait_until(lambda: _state(page) == "playing", 30, what=f"VOD ?t=3 playing; console: {console[-15:]}")
        assert page.evaluate("onairPlayer.startAt") == 3
        first = float(page.evaluate("onairPlayer.video.currentTime"))
        assert first >= 2.5, first
        _plays(page, 15, console, by=0.5)
    finally:
        page.close()


@pytest.mark.media
@needs_ffmpeg
def test_player_settings_applied(node: OnairServer, browser: Any, video: dict[str, Any]) -> None:
    logo = video["screenshot"]  # any image the server has
    player = api(node, "POST", "/streaming/players", json={"player": {**PLAYER, "logo": logo}})
    page = browser.new_page(viewport={"width": 960, "height": 540})
    console = _console(page)
    try:
        page.goto(f"{video['iframe_url']}?player_id={player['id']}")
        wait_until(lambda: _state(page) == "playing", 30, what=f"playing; console: {console[-15:]}")
        _plays(page, 20, console)
        assert page.evaluate("onairPlayer.video.muted") is False  # mute=false, autoplay=true
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 52, 86)"
        assert page.evaluate("getComputedStyle(onairPlayer.video).backgroundColor") == "rgb(18, 52, 86)"
        assert page.evaluate("document.getElementById('onair-logo').src") == logo
        wait_until(lambda: page.evaluate("document.getElementById('onair-logo').naturalWidth") > 0, 10,
                   what="logo loaded")
        box = page.query_selector("#onair-logo").bounding_box()
        assert box["x"] > 480 and box["y"] > 270, box  # bottom right
        assert page.evaluate("getComputedStyle(document.getElementById('onair-logo')).outlineColor") == "rgb(1, 2, 3)"
        page.select_option("#onair-speed", "1.5")
        assert page.evaluate("onairPlayer.video.playbackRate") == 1.5
        assert page.evaluate("onairPlayer.video.controls") is True
        assert "evil.example" not in page.content()

        # disable_skin hides the controls; autoplay off waits for the play button
        api(node, "PATCH", f"/streaming/players/{player['id']}",
            json={"player": {"disable_skin": True, "autoplay": False}})
        page.goto(f"{video['iframe_url']}?player_id={player['id']}")
        wait_until(lambda: _state(page) == "ready", 20, what=f"ready, not autoplaying; console: {console[-15:]}")
        assert page.evaluate("onairPlayer.video.controls") is False and not page.is_visible("#onair-speed")
        assert page.evaluate("onairPlayer.video.paused") is True
        page.click("#onair-play")
        wait_until(lambda: _state(page) == "playing", 15, what="playing after the click")
    finally:
        page.close()

    # the API's preview renders the player page with the settings, in its demo state
    context = browser.new_context(extra_http_headers={"Authorization": f"APIKey {API_KEY}"})
    try:
        preview = context.new_page()
        preview.goto(f"{node.base_url}/streaming/players/{player['id']}/preview")
        wait_until(lambda: _state(preview) == "preview", 10, what="preview state")
        assert preview.is_visible("#onair-preview")
        assert preview.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 52, 86)"
        assert preview.evaluate("document.getElementById('onair-logo').src") == logo
    finally:
        context.close()


@pytest.mark.media
@needs_ffmpeg
def test_broadcast_page_follows_status(node: OnairServer, browser: Any) -> None:
    stream = api(node, "POST", "/streaming/streams", json={"name": "bc live", "active": True})
    spare = api(node, "POST", "/streaming/streams", json={"name": "bc spare", "active": True})
    bc = api(node, "POST", "/streaming/broadcasts", json={"broadcast": {
        "name": "Launch", "pending_message": "We start at noon", "stream_ids": [spare["id"], stream["id"]]}})
    bid = bc["id"]
    publisher = push_rtmp(stream["push_url"], size="640x360", rate=30)
    page = browser.new_page()
    console = _console(page)
    try:
        wait_until(lambda: api(node, "GET", f"/streaming/streams/{stream['id']}")["live"], 15, what="stream live")
        page.goto(bc["iframe_url"])
        wait_until(lambda: page.inner_text("#onair-status") == "We start at noon", 5, what="pending message")
        assert page.evaluate("document.body.dataset.status") == "pending"
        assert page.query_selector("#onair-frame").get_attribute("src") in (None, "about:blank")
        wait_until(lambda: api(node, "GET", f"/streaming/broadcasts/{bid}/spectators")["spectators_count"] >= 1,
                   5, what="a spectator counted")

        changed = time.monotonic()
        api(node, "PATCH", f"/streaming/broadcasts/{bid}", json={"broadcast": {"status": "Live"}})
        wait_until(lambda: page.evaluate("document.body.dataset.status") == "live", STATUS_DEADLINE,
                   what="Live shown")
        assert time.monotonic() - changed < STATUS_DEADLINE
        # the first *live* stream of stream_ids plays, in the live player
        wait_until(lambda: (page.query_selector("#onair-frame").get_attribute("src") or "")
                   .startswith(stream["iframe_url"]), 5, what="the live stream's player in the frame")

        def player_frame() -> Any:
            frame = page.query_selector("#onair-frame").content_frame()
            return frame if frame is not None and frame.url.startswith(stream["iframe_url"]) and \
                frame.evaluate("typeof onairPlayer") == "object" else None

        frame = wait_until(player_frame, 15, what=f"player frame among {[f.url for f in page.frames]}")
        wait_until(lambda: _state(frame) == "playing", 40, what=f"broadcast stream playing; console: {console[-15:]}")
        _plays(frame, 20, console)
        assert not page.is_visible("#onair-status")

        api(node, "PATCH", f"/streaming/broadcasts/{bid}", json={"broadcast": {"status": "Paused"}})
        wait_until(lambda: "paused" in page.inner_text("#onair-status"), STATUS_DEADLINE, what="Paused message")
        assert page.query_selector("#onair-frame").get_attribute("src") == "about:blank"
        api(node, "PATCH", f"/streaming/broadcasts/{bid}", json={"broadcast": {"status": "Finished"}})
        wait_until(lambda: "finished" in page.inner_text("#onair-status"), STATUS_DEADLINE, what="Finished message")
        assert page.evaluate("document.body.dataset.status") == "finished"
        assert api(node, "GET", f"/streaming/broadcasts/{bid}/spectators")["spectators_count"] >= 1
    finally:
        page.close()
        stop(publisher)
