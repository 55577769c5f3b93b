"""Signed playback: `playback_signed` streams play only through token URLs (`/t/{token}/`) minted by the API.

Unit tests of the token functions and the in-memory guard, the API of tokens, the migration of existing
streams, and a real RTMP push played through tokenised URLs (httpx, hls.js in Chromium, the player page).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from alembic import command
from sqlalchemy import Connection, select, text

from onair.delivery.signing import MAX_EXPIRES_IN, PlaybackGuard, mint_token, parse_token, verify_token
from onair.store.db import alembic_config, make_engine, make_sessionmaker, migrate
from onair.store.models import Stream
from onair.timeutil import utcnow
from onair.urls import UrlBuilder
from tests.browser import PLAYER_ARGS, launch_chromium
from tests.conftest import OnairServer, have, wait_until
from tests.ingest_media import create_stream, get_stream, patch_stream
from tests.media import parse_master, push_rtmp, stop

SECRET = "ab" * 32


# --- token functions ---------------------------------------------------------------------------------

def test_token_round_trip_and_refusals() -> None:
    now = 1_800_000_000
    token = mint_token(SECRET, 42, now + 60)
    assert re.fullmatch(r"[0-9A-Za-z._-]+", token), "a token is one URL path segment as is"
    assert parse_token(token) == (42, now + 60)
    assert verify_token(SECRET, 42, token, now)
    assert verify_token(SECRET, 42, token, now + 59.9)
    assert not verify_token(SECRET, 42, token, now + 60), "expired at expires_at"
    assert not verify_token(SECRET, 43, token, now), "another stream's token"
    assert not verify_token("cd" * 32, 42, token, now), "another secret (after a reset)"
    assert not verify_token("", 42, token, now)
    sid, exp, mac = token.split(".")
    assert not verify_token(SECRET, 42, f"{sid}.{int(exp) + 3600}.{mac}", now), "a lengthened expiry"
    flipped = mac[:-1] + ("0" if mac[-1] != "0" else "1")
    assert not verify_token(SECRET, 42, f"{sid}.{exp}.{flipped}", now), "a changed MAC"
    assert not verify_token(SECRET, 42, f"{sid}.{exp}.{mac.upper()}", now)
    assert mint_token(SECRET, 42, now + 60) == token, "deterministic: any node with the row mints the same"
    with pytest.raises(ValueError):
        mint_token("", 42, now)


@pytest.mark.parametrize("bad", ["", ".", "1.2", "1.2.3", "a.1." + "0" * 32, "1.1." + "0" * 31, "1.1." + "g" * 32,
                                 "1.1." + "0" * 33, "1..1." + "0" * 32, " 1.1." + "0" * 32, "1.1." + "0" * 32 + "\n",
                                 "12345678901.1." + "0" * 32, "².1." + "0" * 32, "../1.1." + "0" * 32])
def test_malformed_tokens_never_verify(bad: str) -> None:
    assert parse_token(bad) is None
    assert not verify_token(SECRET, 1, bad, 0)


def test_playback_urls_put_the_token_after_the_stream() -> None:
    urls = UrlBuilder("h", 8080, 1935, 1936, 5001, 7).playback_urls(3, "3.9.abc")
    assert urls == {
        "hls_cmaf_url": "http://h:8080/cmaf/7_3/t/3.9.abc/master.m3u8",
        "hls_mpegts_url": "http://h:8080/mpegts/7_3/t/3.9.abc/master_mpegts.m3u8",
        "dash_url": "http://h:8080/cmaf/7_3/t/3.9.abc/index.mpd",
        "iframe_url": "http://h:8080/streams/7_3/t/3.9.abc",
        "whep_url": "http://h:8080/whep/7_3/t/3.9.abc/whep",
        "screenshot": "http://h:8080/videoplatform/streams/7/3/t/3.9.abc/screenshots/last.jpg",
    }
    # a relative URI in the master playlist resolves beneath the token
    assert urljoin(urls["hls_cmaf_url"], "720p/index.m3u8") == "http://h:8080/cmaf/7_3/t/3.9.abc/720p/index.m3u8"


# --- the guard: the flag and secret in memory --------------------------------------------------------

class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_guard_caches_invalidates_and_expires(tmp_path: Path) -> None:
    async def run() -> None:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'g.db'}")
        await migrate(engine)
        sessionmaker = make_sessionmaker(engine)
        now = utcnow()
        async with sessionmaker() as db:
            stream = Stream(name="s", token="t", created_at=now, updated_at=now, broadcast_ids=[],
                            playback_signed=True)
            db.add(stream)
            await db.commit()
        assert stream.playback_secret and len(stream.playback_secret) == 64, "the model default makes a secret"
        clock = _Clock()
        loads = 0

        def counting_sessions() -> Any:  # the database reads of the guard
            nonlocal loads
            loads += 1
            return sessionmaker()

        guard = PlaybackGuard(counting_sessions, ttl=10, clock=clock, wallclock=lambda: 5000.0)  # type: ignore[arg-type]
        token = mint_token(stream.playback_secret, stream.id, 5060)
        results = await asyncio.gather(*[guard.allows(stream.id, None) for _ in range(20)])
        assert results == [False] * 20 and loads == 1, "concurrent requests share one database read"
        assert await guard.allows(stream.id, token) and loads == 1, "then it answers from memory"
        assert not await guard.allows(stream.id, mint_token(stream.playback_secret, stream.id, 5000)), "expired"

        # a change made elsewhere (another node) shows within the TTL; one made here at once
        async with sessionmaker() as db:
            await db.execute(text("UPDATE streams SET playback_signed = 0 WHERE id = :i"), {"i": stream.id})
            await db.commit()
        assert not await guard.allows(stream.id, None) and loads == 1
        clock.now += 10.5
        assert await guard.allows(stream.id, None) and loads == 2, "reloaded after the TTL"
        stream.playback_signed = True
        stream.playback_secret = "cd" * 32
        guard.update(stream)
        assert not await guard.allows(stream.id, None) and not await guard.allows(stream.id, token)
        assert loads == 2, "update() replaced the entry without reading the database"
        guard.remove(stream.id)
        assert await guard.allows(stream.id, token), "a deleted stream is unknown"
        assert await guard.allows(999, None) and loads == 3, "unknown streams pass: the route answers 404"
        assert await guard.allows(999, None) and loads == 3, "and are remembered as unknown"
        await engine.dispose()

    asyncio.run(run())


def test_migration_gives_existing_streams_their_own_secret(tmp_path: Path) -> None:
    async def run() -> list[Any]:
        engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'm.db'}")

        def to_0003(conn: Connection) -> None:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0003")

        async with engine.begin() as conn:
            await conn.run_sync(to_0003)
            for i in (1, 2):
                await conn.execute(text(
                    "INSERT INTO streams (id, name, active, pull, token, auto_record, record_type, dvr_enabled, "
                    "dvr_duration, hls_mpegts_endlist_tag, html_overlay, projection, broadcast_ids, created_at, "
                    "updated_at, live, backup_live) VALUES (:i, 'old', 1, 0, 'tok', 0, 'origin', 0, 3600, 1, 0, "
                    "'regular', '[]', '2026-01-01', '2026-01-01', 0, 0)"), {"i": i})
        await migrate(engine)
        async with make_sessionmaker(engine)() as db:
            rows = (await db.execute(select(Stream.playback_signed, Stream.playback_secret))).all()
        await engine.dispose()
        return list(rows)

    rows = asyncio.run(run())
    assert [r.playback_signed for r in rows] == [False, False]
    secrets_ = [r.playback_secret for r in rows]
    assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in secrets_) and secrets_[0] != secrets_[1]


# --- the API -----------------------------------------------------------------------------------------

def test_api_tokens_and_reset(api_server: OnairServer) -> None:
    with api_server.client() as c:
        stream = c.post("/streaming/streams", json={"name": "signed"}).raise_for_status().json()
        assert stream["playback_signed"] is False
        sid = stream["id"]
        signed = c.patch(f"/streaming/streams/{sid}", json={"stream": {"playback_signed": True}}).json()
        assert signed["playback_signed"] is True and c.get(f"/streaming/streams/{sid}").json()["playback_signed"]
        assert signed["hls_cmaf_url"] == stream["hls_cmaf_url"], "the stream's own URLs stay as they are"
        assert "secret" not in c.get(f"/streaming/streams/{sid}").text

        before = int(time.time())
        r = c.post(f"/streaming/streams/{sid}/playback_tokens", json={"expires_in": 120})
        assert r.status_code == 201, r.text
        body = r.json()
        assert set(body) == {"token", "expires_at", "hls_cmaf_url", "hls_mpegts_url", "dash_url", "iframe_url",
                             "whep_url", "screenshot"}
        token_sid, exp = parse_token(body["token"]) or (0, 0)
        assert token_sid == sid and before + 120 <= exp <= int(time.time()) + 120
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z", body["expires_at"])
        pid = stream["iframe_url"].rsplit("/", 1)[1]
        assert body["hls_cmaf_url"].endswith(f"/cmaf/{pid}/t/{body['token']}/master.m3u8")
        assert body["iframe_url"].endswith(f"/streams/{pid}/t/{body['token']}")
        assert body["whep_url"].endswith(f"/whep/{pid}/t/{body['token']}/whep")
        default = c.post(f"/streaming/streams/{sid}/playback_tokens")
        assert default.status_code == 201
        assert 3590 <= parse_token(default.json()["token"])[1] - int(time.time()) <= 3600  # type: ignore[index]
        assert c.post(f"/streaming/streams/{sid}/playback_tokens", json={}).status_code == 201
        for bad in (0, -1, MAX_EXPIRES_IN + 1, "60", True, 1.5, None, 10**30):
            r = c.post(f"/streaming/streams/{sid}/playback_tokens", json={"expires_in": bad})
            assert r.status_code == 422 and "expires_in" in r.json()["errors"], (bad, r.text)
        assert c.post(f"/streaming/streams/{sid}/playback_tokens",
                      json={"expires_in": MAX_EXPIRES_IN}).status_code == 201
        assert c.post("/streaming/streams/999999/playback_tokens", json={}).status_code == 404

        reset = c.post(f"/streaming/streams/{sid}/reset_playback_tokens")
        assert reset.status_code == 200 and reset.json()["id"] == sid and reset.json()["token"] == stream["token"]
        again = c.post(f"/streaming/streams/{sid}/playback_tokens", json={"expires_in": 120}).json()
        assert parse_token(again["token"]) is not None and again["token"] != body["token"]
        assert c.post("/streaming/streams/999999/reset_playback_tokens").status_code == 404
    assert httpx.post(f"{api_server.base_url}/streaming/streams/{sid}/playback_tokens", json={}).status_code == 401


def test_signed_player_page_without_media(server: OnairServer) -> None:
    """The player page and its info.json: 403 for a signed stream without a token, tokenised URLs with one."""
    stream = create_stream(server, playback_signed=True)
    pid = stream["iframe_url"].rsplit("/", 1)[1]
    assert httpx.get(stream["iframe_url"]).status_code == 403
    assert httpx.get(f"{server.base_url}/streams/{pid}/info.json").status_code == 403
    with server.client() as c:
        minted = c.post(f"/streaming/streams/{stream['id']}/playback_tokens", json={}).json()
    page = httpx.get(minted["iframe_url"])
    assert page.status_code == 200 and f"/streams/{pid}/t/{minted['token']}/info.json" in page.text
    info = httpx.get(f"{minted['iframe_url']}/info.json").json()
    for key in ("hls_cmaf_url", "hls_mpegts_url", "dash_url", "screenshot"):
        assert info[key] == minted[key], key
    assert stream["token"] not in page.text
    tampered = minted["token"][:-2] + ("00" if not minted["token"].endswith("00") else "11")
    assert httpx.get(f"{server.base_url}/streams/{pid}/t/{tampered}").status_code == 403
    # switched off: the untokenised page plays again at once; an invalid token is still refused
    patch_stream(server, stream["id"], playback_signed=False)
    assert httpx.get(stream["iframe_url"]).status_code == 200
    assert httpx.get(f"{server.base_url}/streams/{pid}/t/{tampered}/info.json").status_code == 403
    assert httpx.get(f"{minted['iframe_url']}/info.json").status_code == 200


# --- a real push ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch_chromium(PLAYER_ARGS, need_player_assets=True)


def _mint(srv: OnairServer, sid: int, expires_in: int = 600) -> dict[str, Any]:
    with srv.client() as c:
        r = c.post(f"/streaming/streams/{sid}/playback_tokens", json={"expires_in": expires_in})
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data


def _media_lines(body: str) -> list[str]:
    return [ln for ln in body.splitlines() if ln and not ln.startswith("#")]


def _every_url(http: httpx.Client, urls: dict[str, str]) -> dict[str, str]:
    """Playback URL kind → URL, following the playlists and the MPD from `urls` (a stream or a token's)."""
    master_url = urls["hls_cmaf_url"]
    master = http.get(master_url).raise_for_status().text
    media_url = parse_master(master, master_url)[0]["uri"]
    playlist = wait_until(lambda: (t := http.get(media_url).text).count("#EXTINF") >= 1 and t, 20, what="segment")
    part = re.findall(r'#EXT-X-PART:[^\n]*URI="([^"]+)"', playlist)[0]
    segment = next(ln for ln in _media_lines(playlist) if ln.endswith(".m4s"))
    ts_master_url = urls["hls_mpegts_url"]
    ts_media_url = parse_master(http.get(ts_master_url).raise_for_status().text, ts_master_url)[0]["uri"]
    ts_playlist = wait_until(lambda: (t := http.get(ts_media_url).text).count(".ts") >= 1 and t, 20, what="ts")
    return {
        "master": master_url, "media": media_url, "part": urljoin(media_url, part),
        "segment": urljoin(media_url, segment), "init": urljoin(media_url, "init.mp4"), "mpd": urls["dash_url"],
        "ts_master": ts_master_url, "ts_media": ts_media_url, "ts_segment": urljoin(ts_media_url,
                                                                                   _media_lines(ts_playlist)[0]),
        "screenshot": urls["screenshot"], "page": urls["iframe_url"], "info": urls["iframe_url"] + "/info.json",
    }


def _statuses(http: httpx.Client, urls: dict[str, str]) -> dict[str, int]:
    return {kind: http.get(url).status_code for kind, url in urls.items()}


HLS_PLAYER = """
async (src) => {
  await new Promise((ok, fail) => {
    const s = Object.assign(document.createElement("script"), { src: "/player/vendor/hls.min.js" });
    s.onload = ok; s.onerror = fail; document.head.appendChild(s);
  });
  const video = Object.assign(document.createElement("video"), { muted: true, autoplay: true });
  document.body.appendChild(video);
  const hls = new Hls({ lowLatencyMode: true });
  window.hlsErrors = [];
  hls.on(Hls.Events.ERROR, (_e, d) => window.hlsErrors.push(d.details + " " + (d.response ? d.response.code : "")));
  hls.loadSource(src); hls.attachMedia(video);
  window.testVideo = video;
}
"""


def _advances(page: Any, expr: str, timeout: float, what: str) -> None:
    t0 = wait_until(lambda: (t := float(page.evaluate(expr))) > 0 and t, timeout, interval=0.2, what=what)
    wait_until(lambda: float(page.evaluate(expr)) > t0 + 1.0, timeout, interval=0.2, what=what + " advancing")


@pytest.mark.media
@pytest.mark.skipif(not have("ffmpeg"), reason="ffmpeg missing")
def test_signed_stream_plays_only_with_a_token(server: OnairServer, browser: Any) -> None:
    stream = create_stream(server, playback_signed=True)
    sid = stream["id"]
    publisher = push_rtmp(stream["push_url"], size="640x360", rate=30)
    http = httpx.Client(timeout=30)
    try:
        wait_until(lambda: get_stream(server, sid)["live"], 10, what="live=true")
        minted = _mint(server, sid)
        wait_until(lambda: http.get(minted["hls_cmaf_url"]).status_code == 200, 20, what="tokenised master")
        wait_until(lambda: http.get(minted["screenshot"]).status_code == 200, 30, what="screenshot")
        signed_urls = _every_url(http, minted)  # parts are kept seconds only: fetched at once
        assert _statuses(http, signed_urls) == dict.fromkeys(signed_urls, 200)
        assert all(f"/t/{minted['token']}/" in u or u.endswith(f"/t/{minted['token']}") for u in signed_urls.values())

        # the same files without the token, with a tampered one, with another stream's: 403
        bare = {k: u.replace(f"/t/{minted['token']}", "") for k, u in signed_urls.items()}
        assert bare["master"] == stream["hls_cmaf_url"] and bare["page"] == stream["iframe_url"]
        assert bare["screenshot"] == stream["screenshot"] and bare["mpd"] == stream["dash_url"]
        assert _statuses(http, bare) == dict.fromkeys(bare, 403)
        token = minted["token"]
        forged = token[:-4] + ("1111" if token.endswith("0000") else "0000")
        forged_urls = {k: u.replace(token, forged) for k, u in signed_urls.items()}
        assert _statuses(http, forged_urls) == dict.fromkeys(signed_urls, 403)
        other = create_stream(server)
        other_token = _mint(server, other["id"])["token"]
        assert http.get(signed_urls["master"].replace(minted["token"], other_token)).status_code == 403
        metrics = http.get(f"{server.base_url}/metrics").text
        assert re.search(r'onair_playback_requests_total\{kind="hls_master",status="403"\} [1-9]', metrics)
        assert minted["token"] not in server.log_tail(400), "tokens never reach the logs"

        # hls.js plays the tokenised hls_cmaf_url; every request it makes carries the token
        page = browser.new_page()
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto(f"{server.base_url}/healthz")
        page.evaluate(HLS_PLAYER, minted["hls_cmaf_url"])
        _advances(page, "window.testVideo.currentTime", 40,
                  f"hls.js currentTime; errors {page.evaluate('window.hlsErrors')}")
        media = [u for u in requested if "/cmaf/" in u]
        assert media and all(f"/t/{minted['token']}/" in u for u in media), media[:5]
        page.close()

        # the player page at the tokenised iframe_url plays too
        page = browser.new_page()
        requested.clear()
        page.on("request", lambda r: requested.append(r.url))
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text))
        page.goto(minted["iframe_url"])
        wait_until(lambda: page.evaluate("document.body.dataset.state") == "playing", 40,
                   what=f"player playing; console {console[-10:]}")
        _advances(page, "onairPlayer.video.currentTime", 30, f"player currentTime; console {console[-10:]}")
        playback = [u for u in requested if "/cmaf/" in u or "/streams/" in u or "/videoplatform/" in u]
        assert playback and all(f"/t/{minted['token']}" in u for u in playback), playback[:5]
        page.close()

        # a short token plays until it expires, then is refused
        short = _mint(server, sid, expires_in=2)
        assert http.get(short["hls_cmaf_url"]).status_code == 200
        wait_until(lambda: http.get(short["hls_cmaf_url"]).status_code == 403, 10, interval=0.25,
                   what="the 2 s token refused")
        assert http.get(short["iframe_url"]).status_code == 403

        # the reset revokes every token minted before it, at once; new ones play
        signed_urls = _every_url(http, minted)
        assert _statuses(http, signed_urls) == dict.fromkeys(signed_urls, 200)
        with server.client() as c:
            c.post(f"/streaming/streams/{sid}/reset_playback_tokens").raise_for_status()
        assert _statuses(http, signed_urls) == dict.fromkeys(signed_urls, 403)
        fresh = _every_url(http, _mint(server, sid))
        assert _statuses(http, fresh) == dict.fromkeys(fresh, 200)

        # playback_signed off: the stream's own URLs play again at once (tokens still do); on: refused again
        patch_stream(server, sid, playback_signed=False)
        unsigned = _every_url(http, stream)
        assert _statuses(http, unsigned) == dict.fromkeys(unsigned, 200)
        assert http.get(fresh["master"]).status_code == 200
        patch_stream(server, sid, playback_signed=True)
        assert _statuses(http, unsigned) == dict.fromkeys(unsigned, 403)
    finally:
        stop(publisher)
        http.close()
