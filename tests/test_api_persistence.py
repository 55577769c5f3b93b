"""Everything the API stored survives a SIGTERM and a new server process on the same data dir/database."""

from __future__ import annotations

import signal
import socket
from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import OnairServer, free_port

VOLATILE = {
    "live",
    "backup_live",
    "active_ingest_region_primary",
    "active_ingest_region_backup",
    "stream_source_type",
    "recording_duration",
    "transcoded_qualities",
    "transcoding_speed",
    "frame_rate",
    "video_width",
    "video_height",
    "broadcasts",
}


def test_state_survives_restart(make_server: Callable[..., OnairServer], database_url: str | None) -> None:
    # pin the ports: they are part of the URLs the API hands out
    srv = make_server(database_url=database_url, http_port=free_port(), rtmp_port=free_port(),
                      srt_port=free_port(socket.SOCK_DGRAM)).start()
    sdk = srv.sdk()
    stream = sdk.streaming.streams.create(
        name="persist me",
        active=True,
        dvr_enabled=True,
        dvr_duration=900,
        record_type="transcoded",
        projection="vr180",
        html_overlay=True,
        client_user_id=42,
        client_entity_data='{"a": 1}',
        srt_passphrase="0123456789abc",
        broadcast_ids=[7],
        quality_set_id=2,
        hls_mpegts_endlist_tag=False,
    )
    sdk.streaming.streams.overlays.create(
        stream.id, body=[{"url": "https://example.com/w.html", "width": 320, "height": 180, "x": 16, "y": 9}]
    )
    clip = sdk.streaming.streams.clips.create(stream.id, duration=30)
    broadcast = sdk.streaming.broadcasts.create(broadcast={"name": "ev", "stream_ids": [stream.id]})
    restream = sdk.streaming.restreams.create(
        restream={"name": "out", "stream_id": stream.id, "uri": "rtmp://x.example/live/key"}
    )
    player = sdk.streaming.players.create(player={"name": "pl", "autoplay": True})
    sdk.streaming.quality_sets.set_default(live={"id": 3})
    deleted = sdk.streaming.streams.create(name="gone")
    sdk.streaming.streams.delete(deleted.id)

    with srv.client() as c:
        before: dict[str, Any] = c.get(f"/streaming/streams/{stream.id}").json()
        docs_before = {
            p: c.get(f"/streaming/{p}/{i}").json()
            for p, i in (("broadcasts", broadcast.id), ("restreams", restream.id), ("players", player.id))
        }

    assert srv.stop(signal.SIGTERM) == 0, srv.log_tail()
    srv.start()  # a new process: same data dir, database and ports
    with srv.client() as c:
        after = c.get(f"/streaming/streams/{stream.id}").json()
        for key in set(before) - VOLATILE:
            assert after[key] == before[key], key
        for key in (
            "token",
            "push_url",
            "backup_push_url",
            "push_url_srt",
            "backup_push_url_srt",
            "push_url_whip",
            "hls_cmaf_url",
            "dash_url",
            "hls_mpegts_url",
            "iframe_url",
            "created_at",
        ):
            assert after[key] == getattr(stream, key), key
        assert after["srt_passphrase"] == "0123456789abc" and after["dvr_duration"] == 900
        assert after["html_overlays"][0]["width"] == 320 and after["html_overlays"][0]["url"].endswith("/w.html")
        assert after["live"] is False
        assert [x["id"] for x in c.get(f"/streaming/streams/{stream.id}/clip_recording").json()] == [clip.id]
        for p, i in (("broadcasts", broadcast.id), ("restreams", restream.id), ("players", player.id)):
            assert c.get(f"/streaming/{p}/{i}").json() == docs_before[p], p
        qs = c.get("/streaming/quality_sets").json()
        assert [q["id"] for q in qs["live"] if q["default"]] == [3]
        assert c.get(f"/streaming/streams/{deleted.id}").status_code == 404
        # ids keep growing after a restart: a deleted id is never handed out again
        new = c.post("/streaming/streams", json={"name": "fresh"}).json()
        assert new["id"] > deleted.id
        assert new["token"] != stream.token
    assert httpx.get(srv.base_url + "/healthz").status_code == 200
