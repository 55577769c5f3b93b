"""RTMP/RTMPS ingest server against real sockets and a real ffmpeg publisher."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import logging
import os
import shutil
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from onair.formats.flv import TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO
from onair.hub.ports import IngestRefused
from onair.ingest.rtmp.server import RTMPServer

FFMPEG = shutil.which("ffmpeg")
FFPROBE = shutil.which("ffprobe")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None or FFPROBE is None, reason="ffmpeg/ffprobe not installed")


class FakeSession:
    input_format = "flv"

    def __init__(self) -> None:
        self.closed = asyncio.Event()
        self.data = bytearray()
        self.close_reason: str | None = None
        self.close_time: float | None = None

    async def feed(self, data: bytes) -> None:
        self.data += data

    async def close(self, reason: str) -> None:
        self.close_reason = reason
        self.close_time = time.monotonic()


class FakeGateway:
    """Accepts stream id 12 (any token) under app "in"; refuses everything else."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []
        self.sessions: list[FakeSession] = []

    async def open_session(self, *, protocol: str, app: str, stream_name: str, remote: str) -> FakeSession:
        self.requests.append({"protocol": protocol, "app": app, "stream_name": stream_name, "remote": remote})
        if app == "in" and stream_name.partition("?")[0] == "12":
            session = FakeSession()
            self.sessions.append(session)
            return session
        raise IngestRefused("unknown stream key")


async def poll(cond: Callable[[], bool], within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before deadline")
        await asyncio.sleep(0.02)


def flv_tags(data: bytes) -> list[tuple[int, int, bytes]]:
    """(type, timestamp, body) for each tag of an FLV byte stream."""
    assert data[:3] == b"FLV"
    pos = 13
    tags = []
    while pos + 11 <= len(data):
        tag_type = data[pos]
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11 : pos + 11 + size]
        prev = int.from_bytes(data[pos + 11 + size : pos + 15 + size], "big")
        assert prev == size + 11
        tags.append((tag_type, ts, body))
        pos += 15 + size
    assert pos == len(data)
    return tags


async def run_ffmpeg(url: str, seconds: float = 3, limit: float = 60) -> tuple[int, str]:
    assert FFMPEG is not None
    proc = await asyncio.create_subprocess_exec(
        FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "info",
        "-re", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
        "-f", "lavfi", "-i", "sine",
        "-t", str(seconds), "-c:v", "libx264", "-preset", "ultrafast", "-g", "50",
        "-c:a", "aac", "-f", "flv", url,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        _, err = await asyncio.wait_for(proc.communicate(), limit)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return proc.returncode, err.decode(errors="replace")


def ffprobe_codecs(path: Path) -> set[str]:
    assert FFPROBE is not None
    out = subprocess.run(
        [FFPROBE, "-v", "error", "-show_streams", "-of", "json", str(path)],
        check=True, capture_output=True, timeout=30,
    )  # fmt: skip
    return {s["codec_name"] for s in json.loads(out.stdout)["streams"]}


@pytest.fixture
async def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
async def server(gateway: FakeGateway) -> AsyncIterator[RTMPServer]:
    srv = RTMPServer(gateway, "127.0.0.1", 0, idle_timeout=5.0)
    await srv.start()
    try:
        yield srv
    finally:
        await srv.stop()


def assert_media(session: FakeSession, tmp_path: Path) -> None:
    data = bytes(session.data)
    assert data.startswith(b"FLV\x01")
    tags = flv_tags(data)
    types = [t for t, _, _ in tags]
    assert types.count(TAG_VIDEO) > 10
    assert types.count(TAG_AUDIO) > 10
    assert TAG_SCRIPT in types
    video_ts = [ts for t, ts, _ in tags if t == TAG_VIDEO]
    assert video_ts == sorted(video_ts)
    out = tmp_path / "capture.flv"
    out.write_bytes(data)
    assert {"h264", "aac"} <= ffprobe_codecs(out)


@pytest.mark.media
@needs_ffmpeg
async def test_ffmpeg_publish(
    server: RTMPServer, gateway: FakeGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="onair.ingest.rtmp")
    rc, err = await run_ffmpeg(f"rtmp://127.0.0.1:{server.port}/in/12?s3cret")
    assert rc == 0, err
    assert len(gateway.sessions) == 1
    session = gateway.sessions[0]
    await poll(lambda: session.close_reason is not None)
    req = gateway.requests[0]
    assert req["protocol"] == "rtmp"
    # ffmpeg splits at the last path segment: app "in", stream name keeps the query.
    assert req["app"] == "in"
    assert req["stream_name"] == "12?s3cret"
    assert req["remote"].startswith("127.0.0.1:")
    assert_media(session, tmp_path)
    assert "stream=12 " in caplog.text
    assert "s3cret" not in caplog.text


@pytest.mark.media
@needs_ffmpeg
async def test_wrong_key_refused(
    server: RTMPServer, gateway: FakeGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="onair.ingest.rtmp")
    rc, _ = await run_ffmpeg(f"rtmp://127.0.0.1:{server.port}/in/13?s3cret", seconds=1)
    assert rc != 0
    assert len(gateway.requests) == 1
    assert gateway.sessions == []
    assert "s3cret" not in caplog.text


@pytest.mark.media
@needs_ffmpeg
async def test_garbage_does_not_break_server(
    server: RTMPServer, gateway: FakeGateway, tmp_path: Path
) -> None:
    # Random bytes: the first byte is almost surely a bad version; also try a valid
    # handshake followed by garbage chunks.
    for prefix in (b"", b"\x03" + bytes(1536 * 2)):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(prefix + os.urandom(64 * 1024))
        # The server may reset us mid-write; either way it must close the connection promptly.
        with contextlib.suppress(ConnectionError):
            await writer.drain()
            await asyncio.wait_for(reader.read(), 5)
        writer.close()
    rc, err = await run_ffmpeg(f"rtmp://127.0.0.1:{server.port}/in/12?s3cret", seconds=1)
    assert rc == 0, err
    assert len(gateway.sessions) == 1


async def test_idle_connection_closed(gateway: FakeGateway) -> None:
    srv = RTMPServer(gateway, "127.0.0.1", 0, idle_timeout=0.3)
    await srv.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.port)
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
    finally:
        await srv.stop()


@pytest.mark.media
@needs_ffmpeg
async def test_platform_kick_closes_publisher(server: RTMPServer, gateway: FakeGateway) -> None:
    publish = asyncio.create_task(run_ffmpeg(f"rtmp://127.0.0.1:{server.port}/in/12?s3cret", seconds=30))
    await poll(lambda: bool(gateway.sessions) and len(gateway.sessions[0].data) > 10_000)
    session = gateway.sessions[0]
    kicked_at = time.monotonic()
    session.closed.set()
    await poll(lambda: session.close_time is not None, within=5)
    assert session.close_time is not None and session.close_time - kicked_at < 1.0
    assert session.close_reason == "ended by platform"  # not taken for the server stopping
    rc, _ = await asyncio.wait_for(publish, 15)
    assert rc != 0


def make_tls_context(tmp_path: Path) -> ssl.SSLContext:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_path = tmp_path / "cert.pem"
    key_path = tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


@pytest.mark.media
@needs_ffmpeg
async def test_rtmps_publish(gateway: FakeGateway, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="onair.ingest.rtmp")
    srv = RTMPServer(gateway, "127.0.0.1", 0, ssl_context=make_tls_context(tmp_path), idle_timeout=5.0)
    await srv.start()
    try:
        rc, err = await run_ffmpeg(f"rtmps://127.0.0.1:{srv.port}/in/12?s3cret")
        assert rc == 0, err
        assert len(gateway.sessions) == 1
        session = gateway.sessions[0]
        await poll(lambda: session.close_reason is not None)
        assert gateway.requests[0]["protocol"] == "rtmps"
        assert_media(session, tmp_path)
        assert "s3cret" not in caplog.text
    finally:
        await srv.stop()
