"""Invalid input is a 400/422 with a JSON body naming the field — never a 500, on either database.

Raw httpx on purpose: the SDK's typing would refuse most of these bodies before sending them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import OnairServer, _pg_database

HUGE = 10**20
S = "{stream}"  # replaced by a real stream id
OV = "{overlay}"  # replaced by a real overlay id of that stream
B = "{broadcast}"
R = "{restream}"
P = "{player}"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    database_url = None if request.param == "sqlite" else _pg_database()
    server = OnairServer(tmp_path_factory.mktemp(f"val-{request.param}") / "node", database_url)
    server.start()
    client = server.client()
    stream = client.post("/streaming/streams", json={"name": "target", "dvr_enabled": True}).json()
    overlay = client.post(
        f"/streaming/streams/{stream['id']}/overlays", json=[{"url": "http://example.com/o.html", "x": 10, "y": 10}]
    ).json()[0]
    broadcast = client.post("/streaming/broadcasts", json={"broadcast": {"name": "b"}}).json()
    restream = client.post(
        "/streaming/restreams", json={"restream": {"stream_id": stream["id"], "uri": "rtmp://x.example/live/k"}}
    ).json()
    player = client.post("/streaming/players", json={"player": {"name": "p"}}).json()
    ids = {
        "stream": stream["id"],
        "overlay": overlay["id"],
        "broadcast": broadcast["id"],
        "restream": restream["id"],
        "player": player["id"],
    }
    yield {"server": server, "client": client, "ids": ids}
    try:
        assert httpx.get(server.base_url + "/healthz").status_code == 200
    finally:
        client.close()
        server.stop()


def _names(body: Any) -> str:
    """Every field name / text in an error body, flattened for a containment check."""
    return json.dumps(body)


# (method, path, body — dict/list for JSON or str for raw bytes, field expected in the error body)
CASES: list[tuple[str, str, Any, str]] = [
    # stream create
    ("POST", "/streaming/streams", {"name": "x", "dvr_duration": 29}, "dvr_duration"),
    ("POST", "/streaming/streams", {"name": "x", "dvr_duration": 14401}, "dvr_duration"),
    ("POST", "/streaming/streams", {"name": "x", "dvr_duration": "long"}, "dvr_duration"),
    ("POST", "/streaming/streams", {"name": "x", "dvr_duration": 30.5}, "dvr_duration"),
    ("POST", "/streaming/streams", {"name": "x", "dvr_duration": HUGE}, "dvr_duration"),
    ("POST", "/streaming/streams", {"name": "x", "client_entity_data": "a" * 4097}, "client_entity_data"),
    ("POST", "/streaming/streams", {"name": "x", "record_type": "raw"}, "record_type"),
    ("POST", "/streaming/streams", {"name": "x", "projection": "flat"}, "projection"),
    ("POST", "/streaming/streams", {"name": "x", "pull": True}, "uri"),
    ("POST", "/streaming/streams", {"name": "x", "pull": True, "uri": "ftp://host/file"}, "uri"),
    ("POST", "/streaming/streams", {"name": "x", "srt_passphrase": "short"}, "srt_passphrase"),
    ("POST", "/streaming/streams", {"name": "x", "srt_passphrase": "has a space inside"}, "srt_passphrase"),
    ("POST", "/streaming/streams", {"name": "x", "srt_passphrase": "pässwörd-12345"}, "srt_passphrase"),
    ("POST", "/streaming/streams", {"name": "x", "srt_passphrase": "x" * 81}, "srt_passphrase"),
    ("POST", "/streaming/streams", {}, "name"),
    ("POST", "/streaming/streams", {"name": "   "}, "name"),
    ("POST", "/streaming/streams", {"name": None}, "name"),
    ("POST", "/streaming/streams", {"name": 123}, "name"),
    ("POST", "/streaming/streams", {"name": "a\u0000b"}, "name"),
    ("POST", "/streaming/streams", '{"name": "\\ud800"}', "name"),
    ("POST", "/streaming/streams", {"name": "x", "active": "maybe"}, "active"),
    ("POST", "/streaming/streams", {"name": "x", "quality_set_id": HUGE}, "quality_set_id"),
    ("POST", "/streaming/streams", {"name": "x", "quality_set_id": 999}, "quality_set_id"),
    ("POST", "/streaming/streams", {"name": "x", "cdn_id": HUGE}, "cdn_id"),
    ("POST", "/streaming/streams", {"name": "x", "client_user_id": HUGE}, "client_user_id"),
    ("POST", "/streaming/streams", {"name": "x", "client_user_id": -HUGE}, "client_user_id"),
    ("POST", "/streaming/streams", {"name": "x", "broadcast_ids": "1,2"}, "broadcast_ids"),
    ("POST", "/streaming/streams", {"name": "x", "broadcast_ids": [HUGE]}, "broadcast_ids"),
    (
        "POST",
        "/streaming/streams",
        {"name": "x", "uri": "rtmp://a/b", "client_entity_data": ["a"]},
        "client_entity_data",
    ),
    ("POST", "/streaming/streams", [{"name": "x"}], "body"),
    ("POST", "/streaming/streams", "[]", "body"),
    ("POST", "/streaming/streams", "null", "body"),
    ("POST", "/streaming/streams", '"name"', "body"),
    ("POST", "/streaming/streams", "{", "body"),
    ("POST", "/streaming/streams", '{"name": "x",}', "body"),
    ("POST", "/streaming/streams", "", "body"),
    # stream update
    ("PATCH", f"/streaming/streams/{S}", {"stream": {"dvr_duration": 14401}}, "dvr_duration"),
    ("PATCH", f"/streaming/streams/{S}", {"stream": {"name": ""}}, "name"),
    ("PATCH", f"/streaming/streams/{S}", {"stream": {"name": None}}, "name"),
    ("PATCH", f"/streaming/streams/{S}", {"stream": {"pull": True}}, "uri"),
    ("PATCH", f"/streaming/streams/{S}", {"stream": {"projection": "sphere"}}, "projection"),
    ("PATCH", f"/streaming/streams/{S}", {"stream": {"srt_passphrase": "tiny"}}, "srt_passphrase"),
    ("PATCH", f"/streaming/streams/{S}", {"stream": {"client_entity_data": "z" * 4097}}, "client_entity_data"),
    ("PATCH", f"/streaming/streams/{S}", {"stream": []}, "stream"),
    ("PATCH", f"/streaming/streams/{S}", {"stream": "x"}, "stream"),
    ("PATCH", f"/streaming/streams/{S}", [], "body"),
    ("PATCH", f"/streaming/streams/{S}", "{not json", "body"),
    # non-numeric / out of range ids in paths
    ("GET", "/streaming/streams/abc", None, "stream_id"),
    ("GET", "/streaming/streams/1.5", None, "stream_id"),
    ("GET", "/streaming/streams/0", None, "stream_id"),
    ("GET", "/streaming/streams/-4", None, "stream_id"),
    ("GET", f"/streaming/streams/{HUGE}", None, "stream_id"),
    ("DELETE", "/streaming/streams/abc", None, "stream_id"),
    ("PUT", "/streaming/streams/abc/dvr_cleanup", None, "stream_id"),
    ("PUT", "/streaming/streams/abc/start_recording", None, "stream_id"),
    ("PUT", "/streaming/streams/abc/stop_recording", None, "stream_id"),
    ("POST", "/streaming/streams/abc/reset_push_token", None, "stream_id"),
    ("GET", "/streaming/streams/abc/overlays", None, "stream_id"),
    ("GET", f"/streaming/streams/{S}/overlays/abc", None, "overlay_id"),
    ("GET", f"/streaming/streams/{S}/overlays/{HUGE}", None, "overlay_id"),
    ("GET", "/streaming/streams/abc/clip_recording", None, "stream_id"),
    ("GET", "/streaming/broadcasts/abc", None, "_id"),
    ("GET", "/streaming/broadcasts/abc/spectators", None, "_id"),
    ("GET", "/streaming/restreams/abc", None, "_id"),
    ("GET", f"/streaming/players/{HUGE}", None, "_id"),
    ("GET", "/streaming/players/abc/preview", None, "_id"),
    ("GET", "/streaming/videos/abc", None, "video_id"),
    ("DELETE", "/streaming/videos/abc", None, "video_id"),
    ("GET", "/streaming/streams?page=abc", None, "page"),
    ("GET", "/streaming/streams?page=0", None, "page"),
    ("GET", f"/streaming/streams?page={HUGE}", None, "page"),
    ("GET", "/streaming/streams?with_broadcasts=yes", None, "with_broadcasts"),
    ("GET", "/streaming/broadcasts?page=-1", None, "page"),
    # overlays (create, bulk update, update)
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "http://a.example/", "width": 0}], "width"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "http://a.example/", "width": 1921}], "width"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "http://a.example/", "height": 1081}], "height"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "http://a.example/", "height": -1}], "height"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "http://a.example/", "x": -1}], "x"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "http://a.example/", "x": 1920}], "x"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "http://a.example/", "y": 1080}], "y"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "http://a.example/", "y": HUGE}], "y"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "http://a.example/", "stretch": True, "x": 1}], "stretch"),
    (
        "POST",
        f"/streaming/streams/{S}/overlays",
        [{"url": "http://a.example/", "stretch": True, "width": 5}],
        "stretch",
    ),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "ftp://a.example/"}], "url"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "javascript:alert(1)"}], "url"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"width": 10}], "url"),
    ("POST", f"/streaming/streams/{S}/overlays", [{"url": "http://a.example/", "width": "wide"}], "width"),
    ("POST", f"/streaming/streams/{S}/overlays", {"url": "http://a.example/"}, "body"),
    ("POST", f"/streaming/streams/{S}/overlays", [1], "body"),
    ("POST", f"/streaming/streams/{S}/overlays", "[{", "body"),
    ("PATCH", f"/streaming/streams/{S}/overlays", [{"x": 1}], "id"),
    ("PATCH", f"/streaming/streams/{S}/overlays", [{"id": HUGE, "x": 1}], "id"),
    ("PATCH", f"/streaming/streams/{S}/overlays", [{"id": OV, "x": 5000}], "x"),
    ("PATCH", f"/streaming/streams/{S}/overlays/{OV}", {"width": 0}, "width"),
    ("PATCH", f"/streaming/streams/{S}/overlays/{OV}", {"stretch": True}, "stretch"),
    ("PATCH", f"/streaming/streams/{S}/overlays/{OV}", {"url": None}, "url"),
    ("PATCH", f"/streaming/streams/{S}/overlays/{OV}", [{"x": 1}], "body"),
    # clips (create)
    ("PUT", f"/streaming/streams/{S}/clip_recording", {}, "duration"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", {"duration": 0}, "duration"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", {"duration": "ten"}, "duration"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", {"duration": HUGE}, "duration"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", {"duration": 3601}, "duration"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", {"duration": 10, "start": HUGE}, "start"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", {"duration": 10, "start": 2**31 - 100}, "start"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", {"duration": 10, "start": 5}, "start"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", {"duration": 10, "expiration": -5}, "expiration"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", {"duration": 10, "expiration": 2**31 - 1}, "expiration"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", {"duration": 10, "vod_required": "perhaps"}, "vod_required"),
    ("PUT", f"/streaming/streams/{S}/clip_recording", [], "body"),
    # quality sets (set default)
    ("PUT", "/streaming/quality_sets/default", {"live": {"id": "x"}}, "id"),
    ("PUT", "/streaming/quality_sets/default", {"live": 5}, "live"),
    ("PUT", "/streaming/quality_sets/default", {"live": {"id": HUGE}}, "id"),
    ("PUT", "/streaming/quality_sets/default", {"live": {"id": 424242}}, "424242"),
    ("PUT", "/streaming/quality_sets/default", [], "body"),
    # broadcasts (create, update)
    ("POST", "/streaming/broadcasts", {"broadcast": {"name": "x", "status": "Weird"}}, "status"),
    ("POST", "/streaming/broadcasts", {"broadcast": {"name": "x", "stream_ids": "1"}}, "stream_ids"),
    ("POST", "/streaming/broadcasts", {"broadcast": {"name": "x", "stream_ids": [HUGE]}}, "stream_ids"),
    ("POST", "/streaming/broadcasts", {"broadcast": {"name": "x", "player_id": HUGE}}, "player_id"),
    (
        "POST",
        "/streaming/broadcasts",
        {"broadcast": {"name": "x", "show_dvr_after_finish": "nah"}},
        "show_dvr_after_finish",
    ),
    ("POST", "/streaming/broadcasts", {"broadcast": {}}, "name"),
    ("POST", "/streaming/broadcasts", {}, "name"),
    ("POST", "/streaming/broadcasts", {"broadcast": []}, "broadcast"),
    ("POST", "/streaming/broadcasts", {"broadcast": {"name": "a\u0000"}}, "name"),
    ("PATCH", f"/streaming/broadcasts/{B}", {"broadcast": {"name": ""}}, "name"),
    ("PATCH", f"/streaming/broadcasts/{B}", {"broadcast": {"status": 3}}, "status"),
    # restreams (create, update)
    ("POST", "/streaming/restreams", {"restream": {"stream_id": HUGE, "uri": "rtmp://x/y"}}, "stream_id"),
    ("POST", "/streaming/restreams", {"restream": {"stream_id": "abc", "uri": "rtmp://x/y"}}, "stream_id"),
    ("POST", "/streaming/restreams", {"restream": {"stream_id": S, "uri": "http://x/y"}}, "uri"),
    ("POST", "/streaming/restreams", {"restream": {"stream_id": S, "uri": "srt://x:1?mode=listener"}}, "uri"),
    ("POST", "/streaming/restreams", {"restream": {"stream_id": S, "uri": "rtmp://x/y", "source": "raw"}}, "source"),
    (
        "POST",
        "/streaming/restreams",
        {"restream": {"stream_id": S, "uri": "rtmp://x/y", "no_audio_mode": "x"}},
        "no_audio_mode",
    ),
    (
        "POST",
        "/streaming/restreams",
        {"restream": {"stream_id": S, "uri": "rtmp://x/y", "no_audio": "true"}},
        "no_audio",
    ),
    ("POST", "/streaming/restreams", {"restream": {"stream_id": S, "uri": "rtmp://x/y", "active": 1}}, "active"),
    ("POST", "/streaming/restreams", {"restream": {"uri": "rtmp://x/y"}}, "stream"),
    ("PATCH", f"/streaming/restreams/{R}", {"restream": {"uri": "udp://x:1"}}, "uri"),
    ("PATCH", f"/streaming/restreams/{R}", {"restream": {"stream_id": 2**31 - 9}}, "stream"),
    # players (create, update)
    ("POST", "/streaming/players", {"player": {"name": "p", "bg_color": "red"}}, "bg_color"),
    ("POST", "/streaming/players", {"player": {"name": "p", "logo_position": "middle"}}, "logo_position"),
    ("POST", "/streaming/players", {"player": {"name": "p", "autoplay": "often"}}, "autoplay"),
    ("POST", "/streaming/players", {"player": {"autoplay": True}}, "name"),
    ("POST", "/streaming/players", {"player": {"name": "p", "custom_css": "a" * 70000}}, "custom_css"),
    ("PATCH", f"/streaming/players/{P}", {"player": {"fg_color": "#12345"}}, "fg_color"),
    ("PATCH", f"/streaming/players/{P}", {"player": {"name": ""}}, "name"),
    # videos (list)
    ("GET", "/streaming/videos?stream_id=abc", None, "stream_id"),
    ("GET", f"/streaming/videos?stream_id={HUGE}", None, "stream_id"),
    ("GET", "/streaming/videos?id=1,x", None, "id"),
    ("GET", f"/streaming/videos?id={HUGE}", None, "id"),
    ("GET", "/streaming/videos?page=0", None, "page"),
    ("GET", "/streaming/videos?per_page=100000", None, "per_page"),
    ("GET", "/streaming/videos?status=bogus", None, "status"),
    ("GET", "/streaming/videos?fields=secret", None, "fields"),
    ("GET", "/streaming/videos?search=a%00b", None, "search"),
    ("GET", f"/streaming/videos?client_user_id={HUGE}", None, "client_user_id"),
]

STATS_CASES: list[tuple[str, str]] = [
    ("/streaming/statistics/ffprobe?date_from=2023-10-01&date_to=2023-10-02&stream_id=1&interval=abc", "interval"),
    ("/streaming/statistics/ffprobe?date_from=2023-10-01&date_to=2023-10-02&stream_id=1&interval=0", "interval"),
    ("/streaming/statistics/ffprobe?date_from=2023-10-01&date_to=2023-10-02&stream_id=1&units=year", "units"),
    ("/streaming/statistics/ffprobe?date_from=2023-10-01&date_to=2023-10-02&stream_id=abc", "stream_id"),
    (f"/streaming/statistics/ffprobe?date_from=2023-10-01&date_to=2023-10-02&stream_id={HUGE}", "stream_id"),
    ("/streaming/statistics/ffprobe?date_from=2023-10-01&date_to=2023-10-02", "stream_id"),
    ("/streaming/statistics/ffprobe?date_from=2023-13-01&date_to=2023-10-02&stream_id=1", "date_from"),
    ("/streaming/statistics/ffprobe?date_from=2023-10-01&stream_id=1", "date_to"),
    ("/streaming/statistics/ffprobe?date_from=9999-12-31T23:59:59-14:00&date_to=2023-10-02&stream_id=1", "date_from"),
    ("/streaming/statistics/stream?from=2023-10-01", "to"),
    ("/streaming/statistics/stream?from=2023-10-02&to=2023-10-01", "to"),
    ("/streaming/statistics/stream?from=2023-10-01&to=2023-10-02&granularity=7m", "granularity"),
    ("/streaming/statistics/stream?from=0001-01-01&to=9999-12-31&granularity=1m", "granularity"),
    ("/streaming/statistics/max_stream?to=2023-10-01", "from"),
    ("/streaming/statistics/stream/viewers?from=2023-10-01&to=2023-10-02&stream_id=abc", "stream_id"),
    ("/streaming/statistics/stream/viewers?from=2023-10-01&to=2023-10-02&client_user_id=x", "client_user_id"),
    ("/streaming/statistics/stream/watching_duration?to=2023-10-02", "from"),
    ("/streaming/statistics/stream/watching_duration?from=2023-10-01&granularity=1y", "granularity"),
    (f"/streaming/statistics/stream/watching_duration/total?stream_id={HUGE}", "stream_id"),
    ("/streaming/statistics/stream/watching_duration/total?from=yesterday", "from"),
]


def _fill(value: Any, ids: dict[str, int]) -> Any:
    if isinstance(value, str):
        for key, v in ids.items():
            value = value.replace("{" + key + "}", str(v))
        return value
    if isinstance(value, list):
        return [_fill(x, ids) for x in value]
    if isinstance(value, dict):
        return {
            k: (
                _fill(v, ids)
                if not (isinstance(v, str) and v.startswith("{") and v.endswith("}") and v[1:-1] in ids)
                else ids[v[1:-1]]
            )
            for k, v in value.items()
        }
    return value


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    CASES,
    ids=[f"{m} {p} {json.dumps(b)[:40] if b is not None else ''}" for m, p, b, _ in CASES],
)
def test_invalid_input_is_a_client_error(env: dict[str, Any], method: str, path: str, body: Any, field: str) -> None:
    client: httpx.Client = env["client"]
    url = _fill(path, env["ids"])
    kwargs: dict[str, Any] = {}
    if isinstance(body, str):
        kwargs["content"] = body.encode()
        kwargs["headers"] = {"Content-Type": "application/json"}
    elif body is not None:
        kwargs["content"] = json.dumps(_fill(body, env["ids"])).encode()
        kwargs["headers"] = {"Content-Type": "application/json"}
    r = client.request(method, url, **kwargs)
    assert r.status_code in (400, 422), (r.status_code, r.text)
    parsed = r.json()
    assert isinstance(parsed, dict) and parsed, r.text
    assert field in _names(parsed), r.text
    if isinstance(body, str) and body and body not in ("[]", "null", '"name"') and "\\ud800" not in body:
        assert r.status_code == 400, r.text  # malformed JSON is a bad request
    if r.status_code == 422 and "errors" in parsed:
        errors = parsed["errors"]
        assert isinstance(errors, dict) and all(isinstance(v, list) and v for v in errors.values()), r.text


@pytest.mark.parametrize(("path", "field"), STATS_CASES, ids=[p.split("/statistics/")[1] for p, _ in STATS_CASES])
def test_invalid_statistics_query_is_400(env: dict[str, Any], path: str, field: str) -> None:
    r = env["client"].get(path)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["data"] == [] and body["errors"] and all(isinstance(e, str) for e in body["errors"]), r.text
    assert field in " ".join(body["errors"]), r.text


def test_rejected_writes_changed_nothing(env: dict[str, Any]) -> None:
    client: httpx.Client = env["client"]
    ids = env["ids"]
    s = client.get(f"/streaming/streams/{ids['stream']}").json()
    assert s["name"] == "target" and s["dvr_duration"] == 3600 and s["pull"] is False
    assert s["srt_passphrase"] is None and s["projection"] == "regular"
    overlays = client.get(f"/streaming/streams/{ids['stream']}/overlays").json()
    assert [(o["id"], o["x"], o["width"], o["stretch"]) for o in overlays] == [(ids["overlay"], 10, None, False)]
    names = [x["name"] for x in client.get("/streaming/streams").json()]
    assert names == ["target"], names  # no invalid create slipped through
    assert [x["id"] for x in client.get("/streaming/broadcasts").json()] == [ids["broadcast"]]
    assert [x["id"] for x in client.get("/streaming/restreams").json()] == [ids["restream"]]
    assert [x["id"] for x in client.get("/streaming/players").json()] == [ids["player"]]


def test_auth_is_checked_before_validation(env: dict[str, Any]) -> None:
    server: OnairServer = env["server"]
    r = httpx.post(server.base_url + "/streaming/streams", content=b"{", headers={"Authorization": "APIKey nope"})
    assert r.status_code == 401


def test_oversized_body_is_refused(env: dict[str, Any]) -> None:
    r = env["client"].post(
        "/streaming/streams",
        content=b'{"name": "' + b"a" * (2 << 20) + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code in (400, 413, 422)
    assert r.json()


def test_server_still_healthy(env: dict[str, Any]) -> None:
    server: OnairServer = env["server"]
    r = httpx.get(server.base_url + "/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok"
