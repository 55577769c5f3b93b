"""WHEP: WebRTC playback at `whep_url`, played by headless Chromium from RTMP and WHIP sources."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.browser import WEBRTC_ARGS, launch_chromium
from tests.conftest import OnairServer, wait_until
from tests.ingest_media import create_stream, get_stream, patch_stream
from tests.media import push_rtmp, stop
from tests.test_whip import STAMP_CAMERA, STAMP_LATENCY

pytestmark = pytest.mark.media

# a WHEP offer as a viewer sends it (what the refusals are tested with; Chromium sends its own)
OFFER = "\r\n".join([
    "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
    "m=video 9 UDP/TLS/RTP/SAVPF 102", "c=IN IP4 0.0.0.0", "a=mid:0", "a=recvonly", "a=rtcp-mux",
    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass",
    "a=rtpmap:102 H264/90000", "a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
    "",
])

# Samples the picture of the player's <video> for the stamp STAMP_CAMERA draws (capture time in ms).
STAMP_READER = """
() => {""" + STAMP_LATENCY + """
  const video = window.onairPlayer.video;
  window.samples = [];
  const sample = () => {
    const latency = stampLatency(video);
    if (latency !== null) window.samples.push(latency);
    video.requestVideoFrameCallback(sample);
  };
  video.requestVideoFrameCallback(sample);
}
"""

PLAYBACK = """
async () => {
  const p = window.onairPlayer, v = p.video;
  let decoded = null;
  if (p.whep) {
    const stats = await p.whep.pc.getStats();
    stats.forEach((r) => { if (r.type === "inbound-rtp" && r.kind === "video") decoded = r.framesDecoded; });
  }
  return { mode: p.mode, state: p.state, fallback: p.fallback, whep: !!p.whep, time: v.currentTime,
           frames: v.getVideoPlaybackQuality().totalVideoFrames, decoded: decoded, width: v.videoWidth,
           location: p.whep ? p.whep.location : null };
}
"""


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    yield from launch_chromium(WEBRTC_ARGS, need_player_assets=True)


def _sessions(server: OnairServer) -> float:
    m = re.search(r"^onair_whep_sessions (\S+)$", httpx.get(server.base_url + "/metrics").text, re.M)
    assert m, "onair_whep_sessions missing from /metrics"
    return float(m[1])


def _requests(server: OnairServer, status: str) -> float:
    text = httpx.get(server.base_url + "/metrics").text
    m = re.search(r'^onair_playback_requests_total\{kind="whep",status="' + status + r'"\} (\S+)$', text, re.M)
    return float(m[1]) if m else 0.0


def _plays_webrtc(page: Any, what: str) -> dict[str, Any]:
    """The player page plays over WebRTC: frames decoded and rendered, currentTime advancing."""
    first = wait_until(lambda: (s := page.evaluate(PLAYBACK))["whep"] and s["state"] == "playing"
                       and s["frames"] > 10 and s["decoded"] and s["time"] > 0 and s, 30,
                       what=f"{what}: WebRTC playing ({page.evaluate(PLAYBACK)})")
    later = wait_until(lambda: (s := page.evaluate(PLAYBACK))["time"] > first["time"] + 1.0
                       and s["frames"] > first["frames"] + 20 and s, 15, what=f"{what}: currentTime advancing")
    assert later["mode"] == "webrtc" and later["fallback"] is None, later
    assert later["decoded"] > first["decoded"], later
    return later


def _frames(server: OnairServer, path: str) -> float:
    text = httpx.get(server.base_url + "/metrics").text
    m = re.search(r'^onair_whep_video_frames_total\{path="' + path + r'"\} (\S+)$', text, re.M)
    return float(m[1]) if m else 0.0


# x264 ultrafast is Constrained Baseline without B-frames: WebRTC carries the source as it is; High with
# B-frames goes through the transcoder (its top rendition has none)
@pytest.mark.parametrize(("encoder", "path"), [([], "source"),
                                               (["-preset", "veryfast", "-tune", "film", "-bf", "2"], "transcoder")])
def test_whep_plays_an_rtmp_source_in_chromium(server: OnairServer, chromium: Any, encoder: list[str],
                                               path: str) -> None:
    stream = create_stream(server)
    assert stream["whep_url"] == f"{server.base_url}/whep/{stream['iframe_url'].rsplit('/', 1)[1]}/whep"
    pub = push_rtmp(stream["push_url"], size="640x360", rate=25, extra=encoder)
    page = chromium.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text))
    try:
        wait_until(lambda: get_stream(server, stream["id"])["live"], 20, what="live")
        page.goto(stream["iframe_url"] + "?protocol=webrtc")
        try:
            played = _plays_webrtc(page, "RTMP")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; console={console[-8:]}; server={server.log_tail(15)}") from None
        assert played["width"] == 640, played
        other = {"source": "transcoder", "transcoder": "source"}[path]
        assert _frames(server, path) > 20 and _frames(server, other) < 5, (path, _frames(server, other))
        assert _sessions(server) == 1
        assert _requests(server, "201") >= 1
        assert get_stream(server, stream["id"])["viewers"] >= 1

        # DELETE on the Location ends the session on the server
        location = played["location"]
        assert httpx.delete(location).status_code == 200
        wait_until(lambda: _sessions(server) == 0, 10, what="WHEP session gone after DELETE")
        assert httpx.delete(location).status_code == 404
    finally:
        page.close()
        stop(pub)


def test_whep_plays_a_whip_source_in_chromium(server: OnairServer, chromium: Any, request: Any) -> None:
    stream = create_stream(server)
    pid = stream["iframe_url"].rsplit("/", 1)[1]
    context = chromium.new_context()
    context.add_init_script(STAMP_CAMERA)
    publisher = context.new_page()
    try:
        publisher.goto(f"{server.base_url}/streams/{pid}/golive?" + str(httpx.QueryParams(
            {"whip": stream["push_url_whip"], "autostart": "1"})))
        wait_until(lambda: publisher.evaluate("golive.state") == "live", 20, what="golive live")
        wait_until(lambda: get_stream(server, stream["id"])["live"], 10, what="live=true")
        player = context.new_page()
        player.goto(stream["iframe_url"] + "?protocol=webrtc")
        _plays_webrtc(player, "WHIP")
        player.evaluate(STAMP_READER)
        samples = wait_until(lambda: len(s := player.evaluate("window.samples")) >= 60 and s, 30,
                             what="glass-to-glass samples")
        report = {"glass_to_glass_ms_median": round(statistics.median(samples[-60:])),
                  "min": min(samples[-60:]), "max": max(samples[-60:])}
        print("WHIP -> WHEP latency:", json.dumps(report))
        request.node.user_properties.append(("whip_whep_latency", report))
        # the source's frames pass through (about 0.1 s here); through the transcoder it would be over 1.5 s
        assert report["glass_to_glass_ms_median"] < 1200, report
        player.goto("about:blank")  # leaving the page ends the session (the player DELETEs it)
        wait_until(lambda: _sessions(server) == 0, 10, what="session gone once the page is left")
    finally:
        context.close()


def test_player_falls_back_to_llhls_when_webrtc_fails(server: OnairServer, chromium: Any) -> None:
    stream = create_stream(server)
    pub = push_rtmp(stream["push_url"], size="640x360", rate=25)
    context = chromium.new_context()
    context.add_init_script("window.RTCPeerConnection = undefined;")  # a browser without WebRTC
    page = context.new_page()
    try:
        wait_until(lambda: get_stream(server, stream["id"])["live"], 20, what="live")
        page.goto(stream["iframe_url"] + "?protocol=webrtc")
        state = wait_until(lambda: (s := page.evaluate(PLAYBACK))["state"] == "playing" and s["frames"] > 10 and s,
                           40, what=f"LL-HLS fallback playing ({page.evaluate(PLAYBACK)})")
        assert state["mode"] == "llhls" and "WebRTC" in state["fallback"], state
    finally:
        context.close()
        stop(pub)


def test_whep_refusals(server: OnairServer) -> None:
    stream = create_stream(server)
    url = stream["whep_url"]
    sdp = {"Content-Type": "application/sdp"}

    def post(target: str, body: str = OFFER, headers: dict[str, str] = sdp) -> httpx.Response:
        return httpx.post(target, content=body.encode(), headers=headers, timeout=20)

    unknown = post(url.replace(f"_{stream['id']}/", "_999999/"))
    assert unknown.status_code == 404 and unknown.json()["error"] == "no such stream"
    not_live = post(url)
    assert not_live.status_code == 409 and "not live" in not_live.json()["error"]
    garbage = post(url, "hello")
    assert garbage.status_code == 400 and "error" in garbage.json()
    no_video = post(url, OFFER.replace("m=video", "m=audio").replace("H264/90000", "opus/48000/2"))
    assert no_video.status_code == 400 and "video" in no_video.json()["error"]
    assert post(url, headers={"Content-Type": "application/json"}).status_code == 415
    assert httpx.options(url).headers.get("accept-post") == "application/sdp"
    assert httpx.delete(url + "/nope").status_code == 404
    assert httpx.patch(url + "/nope").status_code == 405

    patch_stream(server, stream["id"], playback_signed=True)
    signed = post(url)
    assert signed.status_code == 403 and "token" in signed.json()["error"]
    with server.client() as c:
        tokenised = c.post(f"/streaming/streams/{stream['id']}/playback_tokens", json={"expires_in": 60}).json()
    assert "/t/" in tokenised["whep_url"]
    assert post(tokenised["whep_url"]).status_code == 409  # the token lets it through; the stream is not live
    bad_token = tokenised["whep_url"].replace(tokenised["token"], tokenised["token"][:-4] + "0000")
    assert post(bad_token).status_code == 403
    assert _requests(server, "403") >= 2 and _requests(server, "404") >= 1
