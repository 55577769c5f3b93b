"""Every /streaming endpoint driven through the official gcore SDK against a real server.

One server per backend (SQLite and PostgreSQL) is shared by the whole module; each test creates
the entities it needs, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import gcore
import httpx
import pytest

from tests.conftest import API_KEY, OnairServer, _pg_database

ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
CLIENT_ID = 1  # the default account id (settings.client_id)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def srv(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[OnairServer]:
    database_url = None if request.param == "sqlite" else _pg_database()
    server = OnairServer(tmp_path_factory.mktemp(f"sdk-{request.param}") / "node", database_url)
    server.start()
    yield server
    try:
        r = httpx.get(server.base_url + "/healthz", timeout=5)
        assert r.status_code == 200, r.text  # the server survived the whole module
    finally:
        server.stop()


@pytest.fixture(scope="module")
def sdk(srv: OnairServer) -> gcore.Gcore:
    return srv.sdk()


@pytest.fixture(scope="module")
def http(srv: OnairServer) -> Iterator[httpx.Client]:
    with srv.client() as c:
        yield c


def _db_url(srv: OnairServer) -> str:
    if srv.database_url:
        return srv.database_url
    return f"sqlite+aiosqlite:///{(srv.data_dir / 'onair.db').resolve()}"


def insert_videos(srv: OnairServer, rows: list[dict[str, Any]]) -> list[int]:
    """Videos are produced by recordings; the API only lists/gets/deletes them, so the test seeds rows."""
    from sqlalchemy.ext.asyncio import create_async_engine

    from onair.store.db import make_sessionmaker
    from onair.store.models import Video

    async def run() -> list[int]:
        engine = create_async_engine(_db_url(srv))
        try:
            async with make_sessionmaker(engine)() as db:
                now = datetime.now(UTC)
                videos = [
                    Video(
                        slug=secrets.token_hex(8),
                        name=r.get("name", "v"),
                        description="",
                        status=r.get("status", "ready"),
                        stream_id=r.get("stream_id"),
                        client_user_id=r.get("client_user_id"),
                        record_type=r.get("record_type"),
                        recording_started_at=now if r.get("stream_id") else None,
                        duration_ms=r.get("duration_ms", 60000),
                        projection="regular",
                        created_at=now,
                        updated_at=now,
                    )
                    for r in rows
                ]
                db.add_all(videos)
                await db.commit()
                return [v.id for v in videos]
        finally:
            await engine.dispose()

    return asyncio.run(run())


# ---------------------------------------------------------------------------------------------- auth


def test_auth_schemes_and_rejections(srv: OnairServer) -> None:
    for scheme in ("APIKey", "apikey", "APIKEY"):
        r = httpx.get(srv.base_url + "/streaming/streams", headers={"Authorization": f"{scheme} {API_KEY}"})
        assert r.status_code == 200, (scheme, r.text)
        assert isinstance(r.json(), list)
    assert httpx.get(srv.base_url + "/streaming/streams").status_code == 401
    r = httpx.get(srv.base_url + "/streaming/streams", headers={"Authorization": f"Bearer {API_KEY}"})
    assert r.status_code == 401
    bad = gcore.Gcore(api_key="wrong-key", base_url=srv.base_url, max_retries=0)
    with pytest.raises(gcore.AuthenticationError) as exc:
        bad.streaming.streams.list()
    assert exc.value.status_code == 401
    assert isinstance(exc.value.body, dict)


# ------------------------------------------------------------------------------------------- streams


def test_stream_create_defaults_and_urls(srv: OnairServer, sdk: gcore.Gcore) -> None:
    s = sdk.streaming.streams.create(name="defaults")
    assert isinstance(s.id, int) and s.id > 0
    assert s.name == "defaults"
    # omitted keys take their defaults
    assert s.active is False and s.pull is False and s.uri is None
    assert s.auto_record is False and s.record_type == "origin"
    assert s.hls_mpegts_endlist_tag is True
    assert s.dvr_enabled is False and s.dvr_duration == 3600
    assert s.html_overlay is False and s.html_overlays == []
    assert s.projection == "regular" and s.broadcast_ids == []
    assert s.srt_passphrase is None and s.quality_set_id is None and s.cdn_id is None
    assert s.client_user_id is None and s.client_entity_data is None
    assert s.live is False and s.backup_live is False
    assert s.active_ingest_region_primary is None and s.active_ingest_region_backup is None
    assert s.stream_source_type is None
    assert s.created_at is not None and ISO_Z.match(s.created_at)
    assert s.started_at_primary is None and s.finished_at_primary is None
    # ingest and playback URL shapes with the ports this server really bound
    assert s.token and re.fullmatch(r"[0-9a-f]{8,64}", s.token)
    host, sid, tok, p = "127.0.0.1", s.id, s.token, srv.ports
    http_base = f"http://{host}:{p['http']}"
    assert s.push_url == f"rtmp://{host}:{p['rtmp']}/in/{sid}?{tok}"
    assert s.backup_push_url == f"rtmp://{host}:{p['rtmp']}/in/{sid}b?{tok}"
    assert s.push_url_srt == f"srt://{host}:{p['srt']}?streamid={sid}#{tok}"
    assert s.backup_push_url_srt == f"srt://{host}:{p['srt']}?streamid={sid}b#{tok}"
    assert s.push_url_whip is not None and s.push_url_whip.startswith(http_base)
    assert s.push_url_whip.endswith(f"/{sid}_{tok}/whip")
    pid = f"{CLIENT_ID}_{sid}"
    assert s.hls_cmaf_url == f"{http_base}/cmaf/{pid}/master.m3u8"
    assert s.dash_url == f"{http_base}/cmaf/{pid}/index.mpd"
    assert s.hls_mpegts_url == f"{http_base}/mpegts/{pid}/master_mpegts.m3u8"
    assert s.iframe_url == f"{http_base}/streams/{pid}"
    assert s.screenshot is not None and s.screenshot.endswith(f"/streams/{CLIENT_ID}/{sid}/screenshots/last.jpg")
    # names are not unique; ids are
    s2 = sdk.streaming.streams.create(name="defaults")
    assert s2.id != s.id and s2.token != s.token


def test_stream_create_all_fields_get_and_partial_update(sdk: gcore.Gcore, http: httpx.Client) -> None:
    s = sdk.streaming.streams.create(
        name="full",
        active=True,
        pull=True,
        uri="rtmp://encoder.example.com/live/a srt://e2.example.com:9000",
        auto_record=True,
        record_type="transcoded",
        dvr_enabled=True,
        dvr_duration=7200,
        hls_mpegts_endlist_tag=False,
        html_overlay=True,
        projection="vr360",
        quality_set_id=2,
        cdn_id=7,
        broadcast_ids=[3, 4],
        client_user_id=1001,
        client_entity_data='{"k": "v"}',
        srt_passphrase="your_secret_passphrase",
    )
    got = sdk.streaming.streams.get(s.id)
    for st in (s, got):
        assert st.active is True and st.pull is True
        assert st.uri == "rtmp://encoder.example.com/live/a srt://e2.example.com:9000"
        assert st.auto_record is True and st.record_type == "transcoded"
        assert st.dvr_enabled is True and st.dvr_duration == 7200
        assert st.hls_mpegts_endlist_tag is False and st.html_overlay is True
        assert st.projection == "vr360" and st.quality_set_id == 2 and st.cdn_id == 7
        assert st.broadcast_ids == [3, 4] and st.client_user_id == 1001
        assert st.client_entity_data == '{"k": "v"}' and st.srt_passphrase == "your_secret_passphrase"
    assert got.token == s.token and got.push_url == s.push_url and got.created_at == s.created_at

    # PATCH is partial: only the sent keys change
    u = sdk.streaming.streams.update(s.id, stream={"name": "renamed"})  # type: ignore[typeddict-item]
    assert u.name == "renamed" and u.dvr_duration == 7200 and u.projection == "vr360" and u.active is True
    u = sdk.streaming.streams.update(s.id, stream={"active": False})  # type: ignore[typeddict-item]
    assert u.active is False and u.name == "renamed" and u.pull is True and u.client_user_id == 1001
    # null removes the SRT passphrase
    u = sdk.streaming.streams.update(s.id, stream={"srt_passphrase": None})  # type: ignore[typeddict-item]
    assert u.srt_passphrase is None
    assert sdk.streaming.streams.get(s.id).srt_passphrase is None
    # read-only fields in the body are ignored
    r = http.patch(
        f"/streaming/streams/{s.id}", json={"stream": {"active_ingest_region_primary": "x", "token": "hack", "id": 99}}
    )
    assert r.status_code == 200, r.text
    assert r.json()["active_ingest_region_primary"] is None and r.json()["token"] == s.token
    assert r.json()["id"] == s.id
    # the SDK may also send no stream at all
    r = http.patch(f"/streaming/streams/{s.id}", json={})
    assert r.status_code == 200 and r.json()["name"] == "renamed"
    # pulling off + uri null
    u = sdk.streaming.streams.update(s.id, stream={"pull": False, "uri": None})  # type: ignore[typeddict-item]
    assert u.pull is False and u.uri is None


def test_stream_validation_errors_via_sdk(sdk: gcore.Gcore) -> None:
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        sdk.streaming.streams.create(name="")
    assert exc.value.body == {"errors": {"name": ["can't be blank"]}}
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        sdk.streaming.streams.create(name="x", dvr_duration=29)
    assert "dvr_duration" in exc.value.body["errors"]
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        sdk.streaming.streams.create(name="x", pull=True)
    assert "uri" in exc.value.body["errors"]
    with pytest.raises(gcore.NotFoundError) as nf:
        sdk.streaming.streams.get(2**31 - 2)
    assert nf.value.body["status"] == 404


def test_stream_list_pagination(sdk: gcore.Gcore, http: httpx.Client) -> None:
    created = [sdk.streaming.streams.create(name=f"page-{i}").id for i in range(3)]
    page = sdk.streaming.streams.list(page=1)
    ids = [s.id for s in page.items]
    assert set(created) <= set(ids)
    assert page.next_page_info() is None
    r = http.get("/streaming/streams", params={"page": 1})
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body, list)  # bare array, not an envelope
    assert int(r.headers["X-Total-Count"]) >= 3
    assert int(r.headers["X-Total-Count"]) == len(body) or len(body) == 100
    # newest first, and an empty array past the last page
    assert [s["id"] for s in body[:3]] == sorted(created, reverse=True)
    assert sdk.streaming.streams.list(page=10**5).items == []
    # with_broadcasts=1 is accepted and still yields streams
    assert sdk.streaming.streams.list(with_broadcasts=1).items


def test_stream_delete_then_404(sdk: gcore.Gcore, http: httpx.Client) -> None:
    s = sdk.streaming.streams.create(name="doomed", dvr_enabled=True)
    sdk.streaming.streams.overlays.create(s.id, body=[{"url": "http://example.com/o.html"}])
    sdk.streaming.streams.clips.create(s.id, duration=10)
    r = http.delete(f"/streaming/streams/{s.id}")
    assert r.status_code == 204 and r.content == b""
    with pytest.raises(gcore.NotFoundError):
        sdk.streaming.streams.get(s.id)
    with pytest.raises(gcore.NotFoundError):
        sdk.streaming.streams.delete(s.id)
    with pytest.raises(gcore.NotFoundError):
        sdk.streaming.streams.clips.list(s.id)  # an unknown stream's clips are 404
    with pytest.raises(gcore.NotFoundError):
        sdk.streaming.streams.overlays.list(s.id)
    # ids are not reused
    assert sdk.streaming.streams.create(name="after").id > s.id


def test_dvr_cleanup_and_recording_controls(sdk: gcore.Gcore, http: httpx.Client) -> None:
    s = sdk.streaming.streams.create(name="rec", dvr_enabled=True)
    assert sdk.streaming.streams.clear_dvr(s.id) is None
    r = http.put(f"/streaming/streams/{s.id}/dvr_cleanup")
    assert r.status_code == 204 and r.content == b""
    # recording needs a live stream
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        sdk.streaming.streams.start_recording(s.id)
    assert "errors" in exc.value.body
    # stop_recording when nothing was recorded → an empty Video
    v = sdk.streaming.streams.stop_recording(s.id)
    assert v.id is None
    for call in (
        sdk.streaming.streams.clear_dvr,
        sdk.streaming.streams.start_recording,
        sdk.streaming.streams.stop_recording,
    ):
        with pytest.raises(gcore.NotFoundError):
            call(2**31 - 3)


def test_reset_push_token(srv: OnairServer, sdk: gcore.Gcore, http: httpx.Client) -> None:
    s = sdk.streaming.streams.create(name="x1")
    r = http.post(f"/streaming/streams/{s.id}/reset_push_token")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == s.id and out["token"] != s.token
    assert out["push_url"] == f"rtmp://127.0.0.1:{srv.ports['rtmp']}/in/{s.id}?{out['token']}"
    assert out["push_url_srt"].endswith(f"?streamid={s.id}#{out['token']}")
    assert out["push_url_whip"].endswith(f"/{s.id}_{out['token']}/whip")
    assert sdk.streaming.streams.get(s.id).token == out["token"]
    assert http.post("/streaming/streams/2147483600/reset_push_token").status_code == 404


# ------------------------------------------------------------------------------------------ overlays


def test_overlays_crud(sdk: gcore.Gcore, http: httpx.Client) -> None:
    s = sdk.streaming.streams.create(name="ov", html_overlay=True)
    ov = sdk.streaming.streams.overlays
    created = ov.create(
        s.id,
        body=[
            {"url": "http://domain.com/myoverlay1.html", "width": 120, "height": 40, "x": 30, "y": 30},
            {"url": "https://domain.com/full.html", "stretch": True},
        ],
    )
    assert len(created) == 2
    a, b = created
    assert a.stream_id == s.id and a.url == "http://domain.com/myoverlay1.html"
    assert (a.width, a.height, a.x, a.y, a.stretch) == (120, 40, 30, 30, False)
    assert b.stretch is True and b.x is None and b.width is None
    assert ISO_Z.match(a.created_at) and ISO_Z.match(a.updated_at)
    # list, and the stream's html_overlays
    assert [o.id for o in ov.list(s.id)] == [a.id, b.id]
    assert [o.id for o in (sdk.streaming.streams.get(s.id).html_overlays or [])] == [a.id, b.id]
    # get
    g = ov.get(a.id, stream_id=s.id)
    assert g.url == a.url and g.width == 120
    # partial update
    u = ov.update(a.id, stream_id=s.id, x=10)
    assert u.x == 10 and u.y == 30 and u.width == 120 and u.url == a.url
    # bulk update
    many = ov.update_multiple(s.id, body=[{"id": a.id, "y": 5}, {"id": b.id, "url": "https://domain.com/b2.html"}])
    assert [(o.id, o.y) for o in many][0] == (a.id, 5)
    assert many[1].url == "https://domain.com/b2.html" and many[1].stretch is True
    # out-of-range values and stretch with coordinates are rejected
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        ov.update(a.id, stream_id=s.id, width=1921)
    assert "width" in exc.value.body["errors"]
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        ov.update(a.id, stream_id=s.id, stretch=True)
    assert "stretch" in exc.value.body["errors"]
    # delete → 404 afterwards
    r = http.delete(f"/streaming/streams/{s.id}/overlays/{b.id}")
    assert r.status_code == 204 and r.content == b""
    with pytest.raises(gcore.NotFoundError):
        ov.get(b.id, stream_id=s.id)
    with pytest.raises(gcore.NotFoundError):
        ov.delete(b.id, stream_id=s.id)
    assert [o.id for o in ov.list(s.id)] == [a.id]
    ov.delete(a.id, stream_id=s.id)
    assert ov.list(s.id) == []
    # an overlay id of another stream is not found under this stream
    other = sdk.streaming.streams.create(name="ov2")
    c = ov.create(other.id, body=[{"url": "http://x.example/c.html"}])[0]
    with pytest.raises(gcore.NotFoundError):
        ov.get(c.id, stream_id=s.id)


# --------------------------------------------------------------------------------------------- clips


def test_clips(sdk: gcore.Gcore) -> None:
    off = sdk.streaming.streams.create(name="nodvr")
    with pytest.raises(gcore.UnprocessableEntityError) as exc:  # DVR is disabled
        sdk.streaming.streams.clips.create(off.id, duration=60)
    assert "DVR" in str(exc.value.body)
    s = sdk.streaming.streams.create(name="dvr", dvr_enabled=True, dvr_duration=600)
    before = int(time.time())
    clip = sdk.streaming.streams.clips.create(s.id, duration=60)
    assert isinstance(clip.id, str) and re.fullmatch(r"[a-z0-9]{12}", clip.id)
    assert clip.duration == 60 and clip.start is not None and before - 1 <= clip.start <= int(time.time()) + 1
    assert clip.expiration == clip.start + 60 + 3600  # default expiration: an hour after the clip's end
    assert clip.vod_required is True
    assert clip.created_at is not None and ISO_Z.match(clip.created_at)
    assert clip.hls_master is not None and clip.hls_master.endswith(
        f"/rec/{CLIENT_ID}_{s.id}/rec_{clip.id}_qsid1_master.m3u8"
    )
    assert clip.mp4_master is not None and clip.mp4_master.endswith(f"rec_{clip.id}_qsid1_master.mp4")
    start = int(time.time()) - 100
    clip2 = sdk.streaming.streams.clips.create(
        s.id, duration=30, start=start, expiration=start + 30 + 600, vod_required=False
    )
    assert (clip2.start, clip2.expiration, clip2.vod_required) == (start, start + 630, False)
    listed = sdk.streaming.streams.clips.list(s.id)
    assert {c.id for c in listed} == {clip.id, clip2.id}
    with pytest.raises(gcore.UnprocessableEntityError) as exc:  # longer than the stream's dvr_duration
        sdk.streaming.streams.clips.create(s.id, duration=601)
    assert "duration" in exc.value.body["errors"]
    with pytest.raises(gcore.NotFoundError):
        sdk.streaming.streams.clips.create(2**31 - 5, duration=10)


# -------------------------------------------------------------------------------------- quality sets


def test_quality_sets_default_switching(sdk: gcore.Gcore) -> None:
    qs = sdk.streaming.quality_sets.list()
    assert qs.live and qs.vod
    live_defaults = [q.id for q in qs.live if q.default]
    assert len(live_defaults) == 1
    system_live = live_defaults[0]
    other = next(q.id for q in qs.live if q.id != system_live)
    for q in qs.live + qs.vod:
        assert q.name and q.qualities and all(x.id is not None and x.name for x in q.qualities)
    out = sdk.streaming.quality_sets.set_default(live={"id": other})
    assert [q.id for q in out.live if q.default] == [other]
    assert [q.id for q in sdk.streaming.quality_sets.list().live if q.default] == [other]
    assert [q.default for q in out.vod] == [q.default for q in qs.vod]  # vod untouched
    out = sdk.streaming.quality_sets.set_default(live={"id": None}, vod={"id": None})  # null: the system default
    assert [q.id for q in out.live if q.default] == [system_live]
    with pytest.raises(gcore.BadRequestError):
        sdk.streaming.quality_sets.set_default(live={"id": 987654})
    vod_id = qs.vod[0].id
    with pytest.raises(gcore.BadRequestError):  # a vod set is not a live default
        sdk.streaming.quality_sets.set_default(live={"id": vod_id})
    assert [q.id for q in sdk.streaming.quality_sets.list().live if q.default] == [system_live]


# ---------------------------------------------------------------------------------------- broadcasts


def test_broadcasts(sdk: gcore.Gcore, http: httpx.Client) -> None:
    s = sdk.streaming.streams.create(name="for-broadcast")
    bc = sdk.streaming.broadcasts
    b = bc.create(broadcast={"name": "Event", "stream_ids": [s.id], "pending_message": "soon"})
    assert b.id and b.name == "Event" and b.status == "Pending" and b.stream_ids == [s.id]
    assert b.pending_message == "soon" and b.show_dvr_after_finish is False
    assert b.client_id == CLIENT_ID and b.iframe_url and b.iframe_embed_code and "<iframe" in b.iframe_embed_code
    got = bc.get(b.id)
    assert got.name == "Event" and got.stream_ids == [s.id]
    u = bc.update(b.id, broadcast={"status": "Live"})  # type: ignore[typeddict-item]
    assert u.status == "Live" and u.name == "Event" and u.pending_message == "soon"
    assert b.id in [x.id for x in bc.list(page=1).items]
    r = http.get("/streaming/broadcasts")
    assert isinstance(r.json(), list) and int(r.headers["X-Total-Count"]) >= 1
    assert bc.get_spectators_count(b.id).spectators_count == 0
    # the stream list can embed its broadcasts
    listed = http.get("/streaming/streams", params={"with_broadcasts": 1}).json()
    mine = next(x for x in listed if x["id"] == s.id)
    assert [x["id"] for x in mine["broadcasts"]] == [b.id]
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        bc.create(broadcast={"name": ""})
    assert exc.value.body == {"errors": {"name": ["can't be blank"]}}
    r = http.delete(f"/streaming/broadcasts/{b.id}")
    assert r.status_code == 204 and r.content == b""
    for call in (bc.get, bc.delete, bc.get_spectators_count):
        with pytest.raises(gcore.NotFoundError):
            call(b.id)


# ----------------------------------------------------------------------------------------- restreams


def test_restreams(sdk: gcore.Gcore, http: httpx.Client) -> None:
    s = sdk.streaming.streams.create(name="src")
    rs = sdk.streaming.restreams
    r = rs.create(restream={"name": "yt", "stream_id": s.id, "uri": "rtmp://a.rtmp.youtube.com/live2/abc"})
    assert r.id and r.name == "yt" and r.stream_id == s.id and r.uri == "rtmp://a.rtmp.youtube.com/live2/abc"
    assert r.active is True and r.source == "original" and r.no_audio is False and r.client_id == CLIENT_ID
    assert rs.get(r.id).uri == r.uri
    u = rs.update(r.id, restream={"no_audio": True, "no_audio_mode": "silence", "source": "transcoded"})
    assert (u.no_audio, u.no_audio_mode, u.source, u.name, u.uri) == (True, "silence", "transcoded", "yt", r.uri)
    u = rs.update(r.id, restream={"uri": "srt://example.com:1234?mode=caller"})
    assert u.uri == "srt://example.com:1234?mode=caller"
    assert r.id in [x.id for x in rs.list(page=1).items]
    resp = http.get("/streaming/restreams")
    assert isinstance(resp.json(), list) and int(resp.headers["X-Total-Count"]) >= 1
    # bad uri, unknown stream and non-boolean no_audio messages
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        rs.create(restream={"name": "bad", "stream_id": s.id, "uri": "http://example.com/x"})
    assert exc.value.body == {"errors": {"uri": ["invalid uri, supported protocols are rtmp, rtmps, srt"]}}
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        rs.create(restream={"name": "bad", "stream_id": 2**31 - 7, "uri": "rtmp://x/y"})
    assert exc.value.body == {"errors": {"stream": ["must exist"]}}
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        rs.create(restream={"name": "bad", "uri": "rtmp://x/y"})
    assert exc.value.body == {"errors": {"stream": ["must exist"]}}
    for value in ("true", 1):
        resp = http.post(
            "/streaming/restreams", json={"restream": {"stream_id": s.id, "uri": "rtmp://x/y", "no_audio": value}}
        )
        assert resp.status_code == 422 and "no_audio" in resp.json()["errors"], resp.text
    resp = http.delete(f"/streaming/restreams/{r.id}")
    assert resp.status_code == 204 and resp.content == b""
    with pytest.raises(gcore.NotFoundError):
        rs.get(r.id)
    with pytest.raises(gcore.NotFoundError):
        rs.delete(r.id)


# ------------------------------------------------------------------------------------------- players


def test_players(sdk: gcore.Gcore, http: httpx.Client) -> None:
    pl = sdk.streaming.players
    p = pl.create(player={"name": "mine", "autoplay": True, "bg_color": "#112233", "logo_position": "tr"})
    assert p.id and p.name == "mine" and p.autoplay is True and p.bg_color == "#112233"
    assert p.logo_position == "tr" and p.mute is False and p.show_sharing is True
    assert p.save_options_to_cookies is True and p.client_id == CLIENT_ID
    u = pl.update(p.id, player={"mute": True})  # type: ignore[typeddict-item]
    assert u.mute is True and u.autoplay is True and u.name == "mine"
    assert pl.get(p.id).mute is True
    assert p.id in [x.id for x in pl.list(page=1).items]
    assert pl.preview(p.id) is None
    prev = http.get(f"/streaming/players/{p.id}/preview", headers={"Accept": "*/*"})
    assert prev.status_code == 200 and "text/html" in prev.headers["content-type"] and "mine" in prev.text
    with pytest.raises(gcore.UnprocessableEntityError) as exc:
        pl.create(player={"name": " "})
    assert exc.value.body == {"errors": {"name": ["can't be blank"]}}
    pl.delete(p.id)
    with pytest.raises(gcore.NotFoundError):
        pl.get(p.id)
    with pytest.raises(gcore.NotFoundError):
        pl.preview(p.id)


# -------------------------------------------------------------------------------------------- videos


def test_videos_list_get_delete(srv: OnairServer, sdk: gcore.Gcore, http: httpx.Client) -> None:
    s = sdk.streaming.streams.create(name="recorded")
    ids = insert_videos(
        srv,
        [
            {
                "name": "Stream Record: recorded, A",
                "stream_id": s.id,
                "status": "ready",
                "record_type": "origin",
                "client_user_id": 77,
            },
            {"name": "Stream Record: recorded, B", "stream_id": s.id, "status": "pending", "record_type": "origin"},
            {"name": "unrelated clip", "status": "ready", "client_user_id": 77},
        ],
    )
    va, vb, vc = ids
    vids = sdk.streaming.videos
    assert {v.id for v in vids.list(stream_id=s.id).items} == {va, vb}
    assert [v.id for v in vids.list(stream_id=s.id, status="pending").items] == [vb]
    assert {v.id for v in vids.list(client_user_id=77).items} >= {va, vc}
    assert {v.id for v in vids.list(id=f"{va},{vc}").items} == {va, vc}
    assert [v.id for v in vids.list(search="unrelated").items] == [vc]
    # search matches id, slug, or a name containing the text: other videos of this module may have
    # the digit in their names (timestamps), so check the rule rather than one exact list
    found = vids.list(search=str(vb)).items
    assert vb in [v.id for v in found]
    assert all(v.id == vb or str(vb) in (v.name or "") for v in found)
    page1 = vids.list(stream_id=s.id, per_page=1, page=1).items
    page2 = vids.list(stream_id=s.id, per_page=1, page=2).items
    assert len(page1) == 1 and len(page2) == 1 and page1[0].id != page2[0].id
    assert vids.list(stream_id=s.id, per_page=1, page=3).items == []
    r = http.get("/streaming/videos", params={"stream_id": s.id, "per_page": 1})
    assert isinstance(r.json(), list) and r.headers["X-Total-Count"] == "2"
    item = r.json()[0]
    assert "iframe_url" not in item and "sprite" not in item  # VideoListItem
    r = http.get("/streaming/videos", params={"stream_id": s.id, "fields": "id,name"})
    assert all(set(x) == {"id", "name"} for x in r.json())
    v = vids.get(va)
    assert v.id == va and v.stream_id == s.id and v.status == "ready" and v.record_type == "origin"
    assert v.duration == 60000 and v.client_id == CLIENT_ID and v.slug
    assert v.hls_url and v.hls_url.endswith(f"/videos/{CLIENT_ID}_{v.slug}/master.m3u8")
    assert v.dash_url and v.dash_url.endswith(f"/videos/{CLIENT_ID}_{v.slug}/master.mpd")
    assert v.iframe_url
    assert v.recording_started_at and ISO_Z.match(v.recording_started_at)
    # deleting the stream keeps its recordings
    sdk.streaming.streams.delete(s.id)
    assert vids.get(va).stream_id == s.id
    assert {x.id for x in vids.list(stream_id=s.id).items} == {va, vb}
    r = http.delete(f"/streaming/videos/{va}")
    assert r.status_code == 204 and r.content == b""
    with pytest.raises(gcore.NotFoundError):
        vids.get(va)
    with pytest.raises(gcore.NotFoundError):
        vids.delete(va)
    assert http.get("/streaming/videos", params={"status": "bogus"}).status_code == 422


# ---------------------------------------------------------------------------------------- statistics


def test_statistics(sdk: gcore.Gcore, http: httpx.Client) -> None:
    st = sdk.streaming.statistics
    s = sdk.streaming.streams.create(name="stats")
    now = datetime.now(UTC)
    frm, to = (now - timedelta(hours=2)).isoformat(), now.isoformat()
    ff = st.get_ffprobes(date_from="2023-10-01", date_to="2023-10-11", stream_id=str(s.id), interval=6000)
    assert ff.data == []
    for series in (
        st.get_stream_series(from_=frm, to=to, granularity="1h"),
        st.get_max_streams_series(from_=frm, to=to),
        st.get_live_unique_viewers(from_=frm, to=to, stream_id=s.id, granularity="5m"),
        st.get_live_watch_time_cdn(from_=frm, stream_id=s.id, granularity="1mo"),
    ):
        assert len(series) == 1 and series[0].client == CLIENT_ID
        assert isinstance(series[0].metrics.streams, list)
    total = st.get_live_watch_time_total_cdn(stream_id=s.id, client_user_id=5)
    assert len(total) == 1 and total[0].client == CLIENT_ID and total[0].duration == 0
    assert total[0].stream_id == str(s.id) and total[0].client_user_id == 5
    assert len(st.get_live_watch_time_total_cdn()) == 1
    # missing parameters: 400 {"data": [], "errors": [...]}
    cases = {
        "/streaming/statistics/ffprobe": {"date_to": to, "stream_id": str(s.id)},
        "/streaming/statistics/stream": {"to": to},
        "/streaming/statistics/max_stream": {"from": frm},
        "/streaming/statistics/stream/viewers": {"to": to},
        "/streaming/statistics/stream/watching_duration": {},
    }
    for path, params in cases.items():
        r = http.get(path, params=params)
        assert r.status_code == 400, (path, r.text)
        body = r.json()
        assert body["data"] == [] and len(body["errors"]) == 1 and isinstance(body["errors"][0], str)
    r = http.get("/streaming/statistics/stream", params={"to": to})
    assert r.json() == {"data": [], "errors": ["from: query param is not set"]}
    with pytest.raises(gcore.BadRequestError) as exc:
        st.get_ffprobes(date_from="yesterday", date_to=to, stream_id=str(s.id))
    assert exc.value.body["data"] == [] and "date_from" in exc.value.body["errors"][0]
    with pytest.raises(gcore.BadRequestError):
        st.get_stream_series(from_=frm, to=to, granularity="2h")  # type: ignore[arg-type]


def test_healthz_at_end(srv: OnairServer) -> None:
    r = httpx.get(srv.base_url + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
