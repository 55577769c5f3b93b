"""The player x encoder matrix: every player starts within 1 s of `live` and plays 30 s without a stall.

Players: hls.js, dash.js and Shaka in Debian's Chromium, GStreamer playbin3 with hlsdemux2 and dashdemux2. Sources:
RTMP and SRT from ffmpeg, WHIP from aiortc, a light 320x180 source (a single rendition); per source one push that
the three browser players watch at once, and one that the two GStreamer players watch (GStreamer 1.22.0 misses the
1 s start: see GST_MAX_START). GStreamer's own encoders (rtmp2sink, rtmpsink, srtsink, RTMPS with
rtmp2sink) each go live and play in hls.js. Every run appends its rows to /tmp/onair-player-matrix.txt.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser import PLAYER_ARGS, ROOT, launch_chromium
from tests.conftest import OnairServer, have, wait_until
from tests.ingest_media import create_stream, get_stream, push_srt
from tests.media import push_rtmp, stop
from tests.players import BrowserPlayer, GstPlayer, Outcome, gst_encoder

pytestmark = [pytest.mark.media,
              pytest.mark.skipif(not (have("ffmpeg") and have("gst-launch-1.0")), reason="ffmpeg or GStreamer missing")]

MAX_START = 1.0  # seconds from `live` to playback start (the bar)
WATCH = 30.0  # seconds each player must play without a stall
MIN_PLAYED = WATCH - 3.0  # media seconds advanced in the watch (LL catch-up may play at 0.96x)
REPORT = Path("/tmp/onair-player-matrix.txt")
SOURCES = ["rtmp-ffmpeg", "srt-ffmpeg", "whip"]
SIZE = "320x180"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnairServer]:
    srv = OnairServer(tmp_path_factory.mktemp("matrix") / "node").start()  # RTMPS on a free port (-1)
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (ROOT / "node_modules" / "shaka-player" / "dist").is_dir():
        pytest.skip("shaka-player missing from node_modules (make deps runs npm install)")
    yield from launch_chromium(PLAYER_ARGS, need_player_assets=True)


def _wait_live(srv: OnairServer, sid: int, timeout: float = 30) -> float:
    """Wall-clock time at which the API first says `live` (polled every 50 ms)."""
    wait_until(lambda: get_stream(srv, sid)["live"], timeout, interval=0.05, what="live")
    return time.time()


def _browser_outcome(p: BrowserPlayer, live_at: float, watched_from: float) -> Outcome:
    """Stalls are every waiting/stalled/buffering event after the start; `watched_from` is currentTime then."""
    st = p.state()
    out = Outcome(p.kind, errors=list(st["errors"]) + p.console_errors()[-3:], stalls=list(st["stalls"]))
    if st["started"] is not None:
        out.start_delay = float(st["started"]) - live_at
        out.played = float(st["t"]) - watched_from
    return out


def _watch(browser_players: list[BrowserPlayer], gst_players: list[GstPlayer], live_at: float) -> list[Outcome]:
    """Wait for every player to start (or give up after 40 s), then watch all of them for WATCH seconds."""
    def all_started() -> bool:
        return (all(p.state()["started"] is not None for p in browser_players)
                and all(p.frames for p in gst_players))

    try:
        # 40 s: GStreamer's dashdemux2 buffers 30 s before it plays; each player is then watched for WATCH
        wait_until(all_started, 40, interval=0.1, what="every player started")
    except AssertionError:
        pass  # the ones that never started are reported as such below
    watch_from = time.time()
    t0 = {id(p): float(p.state()["t"]) for p in browser_players}
    wait_until(lambda: time.time() >= watch_from + WATCH, WATCH + 5, interval=0.5, what="the watch")
    outcomes = [_browser_outcome(p, live_at, t0[id(p)]) for p in browser_players]
    outcomes += [p.outcome(live_at, watch_from) for p in gst_players]
    return outcomes


def _report(source: str, outcomes: list[Outcome], max_start: float = MAX_START, min_played: float = MIN_PLAYED) -> str:
    rows = [o.row(source, max_start, min_played) for o in outcomes]
    with REPORT.open("a") as f:
        f.write("\n".join(rows) + "\n")
    return "\n".join(rows)


def _start_source(srv: OnairServer, stream: dict[str, Any], source: str) -> Any:
    if source == "rtmp-ffmpeg":
        return push_rtmp(stream["push_url"], size=SIZE, rate=25)
    if source == "srt-ffmpeg":
        return push_srt(stream["push_url_srt"], size=SIZE)
    from tests.whip_client import WhipPublisher

    pub = WhipPublisher(stream["push_url_whip"], size=(320, 180))
    r = pub.publish()
    assert r.status_code == 201, r.text
    return pub


def _stop_source(pub: Any) -> None:
    if hasattr(pub, "poll"):
        stop(pub)
    else:
        pub.stop()


@pytest.mark.parametrize("source", SOURCES)
def test_every_browser_player_starts_at_live_and_plays(node: OnairServer, browser: Any, source: str) -> None:
    stream = create_stream(node, name=f"matrix {source}")
    # the pages load their player libraries first: the start is measured from the moment each player is given the
    # stream's URL, as on a page that waits for the stream to go live
    players = [BrowserPlayer(browser, node.base_url, kind, None) for kind in ("hlsjs", "dashjs", "shaka")]
    urls = {"hlsjs": stream["hls_cmaf_url"], "dashjs": stream["dash_url"], "shaka": stream["hls_cmaf_url"]}
    pub = _start_source(node, stream, source)
    try:
        live_at = _wait_live(node, stream["id"])
        for p in players:  # every player is pointed at the stream the moment `live` turns true
            p.play(urls[p.kind])
        outcomes = _watch(players, [], live_at)
    finally:
        for p in players:
            p.close()
        _stop_source(pub)
    table = _report(source, outcomes)
    assert all(o.ok(MAX_START, MIN_PLAYED) for o in outcomes), "\n" + table


# GStreamer 1.22.0 (Debian 12) starts late for reasons of its own, read in its source: hlsdemux2 has no LL-HLS
# (parts are ignored lines until 1.24), so it starts on complete segments, and it cannot match a reloaded playlist
# against one that held a single segment (an off-by-one fixed in 1.23.1): it seeks back to the live edge about
# 2 s in. dashdemux2 leaves its buffering threshold at 0, which falls back to max-buffering-time (30 s; fixed in
# 1.22.1 as 10 s), so it plays once 30 s are buffered; nothing in the MPD changes that. Both then play without a stall.
GST_MAX_START = {"gst-hls": 5.0, "gst-dash": 40.0}


@pytest.mark.parametrize("source", SOURCES)
def test_gstreamer_players_play_without_a_stall(node: OnairServer, source: str) -> None:
    stream = create_stream(node, name=f"matrix gst {source}")
    pub = _start_source(node, stream, source)
    players: list[GstPlayer] = []
    try:
        live_at = _wait_live(node, stream["id"])
        players = [GstPlayer("gst-hls", stream["hls_cmaf_url"], watchdog=15), GstPlayer("gst-dash", stream["dash_url"])]
        outcomes = _watch([], players, live_at)
    finally:
        for p in players:
            p.stop()
        _stop_source(pub)
    table = _report(source, outcomes)
    assert all(o.ok(GST_MAX_START[o.player], MIN_PLAYED) for o in outcomes), "\n" + table
    late = [o for o in outcomes if o.start_delay is not None and o.start_delay > MAX_START]
    if late:
        pytest.xfail("GStreamer 1.22.0 starts later than 1 s after live (see GST_MAX_START):\n" + table)


@pytest.mark.parametrize("encoder", ["rtmp2sink", "rtmpsink", "srtsink", "rtmps"])
def test_gstreamer_encoders_go_live_and_play(node: OnairServer, browser: Any, encoder: str) -> None:
    stream = create_stream(node, name=f"matrix {encoder}")
    enc = gst_encoder(encoder, stream["push_url"], srt_url=stream["push_url_srt"], rtmps_port=node.ports["rtmps"])
    player = None
    try:
        live_at = _wait_live(node, stream["id"], timeout=20)
        player = BrowserPlayer(browser, node.base_url, "hlsjs", stream["hls_cmaf_url"])
        wait_until(lambda: player.state()["started"] is not None, 20, what=f"hls.js playing; {player.console[-5:]}")
        t0 = float(player.state()["t"])
        wait_until(lambda: float(player.state()["t"]) > t0 + 8, 15, interval=0.5, what="10 s of playback")
        out = _browser_outcome(player, live_at, t0)
    finally:
        if player is not None:
            player.close()
        stop(enc)
    stderr = enc.stderr.read().decode(errors="replace") if enc.stderr else ""
    _report(f"gst-{encoder}", [out], max_start=20, min_played=8)  # the bar here: live, then playing
    assert "without transaction" not in stderr, stderr[-2000:]
    assert not out.stalls, out.row(encoder, 20, 8)


@pytest.mark.parametrize("player_kind", ["hlsjs", "shaka", "dashjs"])
def test_a_viewer_waiting_before_the_push_plays_without_a_stall(node: OnairServer, browser: Any,
                                                                player_kind: str) -> None:
    """The page is open (retrying on 404) before the encoder connects, so the player takes the very first
    playlist: hls.js then used to load the short first segment whole and wait on the next complete one."""
    stream = create_stream(node, name=f"early {player_kind}")
    player = BrowserPlayer(browser, node.base_url, player_kind,
                           stream["dash_url"] if player_kind == "dashjs" else stream["hls_cmaf_url"])
    pub = None
    try:
        pub = push_rtmp(stream["push_url"], size=SIZE, rate=25)
        live_at = _wait_live(node, stream["id"], timeout=20)
        wait_until(lambda: player.state()["started"] is not None, 20, what=f"playing; {player.console[-5:]}")
        t0 = float(player.state()["t"])
        wait_until(lambda: float(player.state()["t"]) > t0 + 8, 15, interval=0.5, what="10 s of playback")
        out = _browser_outcome(player, live_at, t0)
    finally:
        player.close()
        if pub is not None:
            stop(pub)
    _report(f"early-{player_kind}", [out], max_start=5, min_played=8)
    assert not out.stalls, out.row(player_kind, 5, 8)
