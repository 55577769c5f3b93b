"""Finished recordings go to S3-compatible object storage, and any node serves them, after their
origin is gone too. The S3 server is moto's server mode, started here; onair talks plain S3 to it."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import OnairServer, free_port, wait_until
from tests.ingest_media import create_stream
from tests.media import codecs, ffprobe, parse_master, push_rtmp, stop
from tests.test_cluster import cluster_node, push_url_on
from tests.test_recording import api, ready_video, stream_state

pytestmark = pytest.mark.media

BUCKET = "onair-media"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "onair-test", "AWS_SECRET_ACCESS_KEY": "onair-test-secret",
               "AWS_REGION": "us-east-1"}


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    """An S3-compatible server on loopback with an empty bucket; the nodes started after it get its credentials."""
    import boto3

    for k, v in CREDENTIALS.items():
        monkeypatch.setenv(k, v)
    port = free_port()
    log = open(tmp_path / "s3.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([str(Path(sys.executable).with_name("moto_server")), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: httpx.get(endpoint, timeout=2).status_code < 500, 20, what="the S3 server up")
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def _objects(endpoint: str, prefix: str) -> list[str]:
    import boto3

    listing = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").list_objects_v2(
        Bucket=BUCKET, Prefix=prefix)
    return [o["Key"] for o in listing.get("Contents", [])]


def test_a_recording_plays_from_another_node_after_its_origin_is_gone(  # type: ignore[no-untyped-def]
        make_server: Callable[..., OnairServer], pg_url: str, redis_url: str, s3_endpoint: str) -> None:
    storage = {"storage_url": f"s3://{BUCKET}/cluster-a", "s3_endpoint_url": s3_endpoint}
    a = cluster_node(make_server, "a", pg_url, redis_url)
    a.settings.update(storage)
    b = cluster_node(make_server, "b", pg_url, redis_url)
    b.settings.update(storage)
    a.start()
    b.start()
    stream = create_stream(b)
    sid = stream["id"]
    encoder = push_rtmp(push_url_on(a, stream), size="320x240", rate=15)
    try:
        wait_until(lambda: stream_state(a, sid)["live"], 20, what="live on A")
        with a.client() as c:
            assert c.put(f"/streaming/streams/{sid}/start_recording").status_code == 204
        wait_until(lambda: (stream_state(a, sid)["recording_duration"] or 0) >= 4, 30, what="4 s recorded on A")
        video = api(a, "PUT", f"/streaming/streams/{sid}/stop_recording")
        ready_video(a, video["id"])
    finally:
        stop(encoder)
    keys = _objects(s3_endpoint, "cluster-a/videos/")
    assert any(k.endswith("/video.mp4") for k in keys) and any(k.endswith("/hls/index.m3u8") for k in keys), keys

    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(5)
    done: dict[str, Any] = api(b, "GET", f"/streaming/videos/{video['id']}")
    assert done["status"] == "ready" and done["origin_url"] and done["screenshot"]
    assert done["hls_url"].startswith(b.base_url)  # B's URLs: B serves what A finished
    with httpx.Client(timeout=30) as http:
        master = http.get(done["hls_url"]).raise_for_status().text
        media = http.get(parse_master(master, done["hls_url"])[0]["uri"]).raise_for_status().text
        assert media.count("#EXTINF") >= 2
        mp4 = http.get(done["origin_url"]).raise_for_status()
        assert codecs(ffprobe(mp4.content)) == {"h264", "aac"}
        # players seek in the MP4 with ranges: they pass through to the storage
        part = http.get(done["origin_url"], headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == mp4.content[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(mp4.content)}"
        assert http.get(done["screenshot"]).raise_for_status().content[:2] == b"\xff\xd8"
        missing = done["hls_url"].replace("master.m3u8", "hls/seg99999.ts")
        assert http.get(missing).status_code == 404

    # deleting the Video deletes its objects too
    with b.client() as c:
        assert c.delete(f"/streaming/videos/{video['id']}").status_code == 204
    assert not [k for k in _objects(s3_endpoint, "cluster-a/videos/") if k in keys]
