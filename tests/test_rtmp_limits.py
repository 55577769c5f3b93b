"""RTMP ingest under hostile clients, over real sockets: setup deadline, buffer budget, connection caps.

Nothing about a connection is known until its publish is accepted, so until then it gets a fixed time
(not extended by trickling bytes), little memory and one of a limited number of places.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable

import pytest

from onair.ingest.rtmp.server import RTMPServer
from tests.conftest import OnairServer
from tests.rtmp_client import HANDSHAKE_C0C1, Publisher, chunk, connect_command, set_chunk_size
from tests.test_rtmp_server import FakeGateway, poll

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@pytest.fixture
async def default_server() -> AsyncIterator[tuple[RTMPServer, FakeGateway]]:
    """The server as `onair serve` builds it when no limit is configured."""
    gateway = FakeGateway()
    srv = RTMPServer(gateway, "127.0.0.1", 0)
    await srv.start()
    try:
        yield srv, gateway
    finally:
        await srv.stop()


async def open_conn(srv: RTMPServer, source: str = "127.0.0.1") -> Stream:
    return await asyncio.open_connection("127.0.0.1", srv.port, local_addr=(source, 0))


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    """True if the server closes (or resets) the connection within ``seconds``; data read is discarded."""
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not await asyncio.wait_for(reader.read(65536), left):
                return True
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return False


async def handshake(conn: Stream, within: float = 5.0) -> None:
    reader, writer = conn
    writer.write(HANDSHAKE_C0C1)
    s0s1s2 = await asyncio.wait_for(reader.readexactly(1 + 2 * 1536), within)
    writer.write(s0s1s2[1:1537])


async def accepted(conn: Stream) -> bool:
    """The server answers the handshake (a refused connection is closed before that)."""
    try:
        await handshake(conn, within=3.0)
        return True
    except (asyncio.IncompleteReadError, ConnectionError):
        return False


def close(conn: Stream) -> None:
    conn[1].transport.abort()


async def test_slow_handshake_cannot_extend_the_deadline(default_server: tuple[RTMPServer, FakeGateway]) -> None:
    """One byte a second resets no timer: the connection goes at the 10 s setup deadline."""
    srv, _ = default_server
    reader, writer = await open_conn(srv)
    start = time.monotonic()
    writer.write(b"\x03")
    closed_at = None
    while time.monotonic() - start < 14:
        with contextlib.suppress(ConnectionError):
            writer.write(b"\x00")
        if await closed_within(reader, 1.0):
            closed_at = time.monotonic() - start
            break
    close((reader, writer))
    assert closed_at is not None, "still open after 14 s of trickling"
    assert 9.0 <= closed_at <= 12.0, closed_at


async def test_deadline_covers_connect_and_publish() -> None:
    """Handshaken and connected, then pings to look alive: closed at the deadline, not by idleness."""
    srv = RTMPServer(FakeGateway(), "127.0.0.1", 0, idle_timeout=5.0, setup_timeout=1.0)
    await srv.start()
    try:
        conn = await open_conn(srv)
        start = time.monotonic()
        await handshake(conn)
        conn[1].write(connect_command("in", "rtmp://127.0.0.1/in"))
        closed = False
        while not closed and time.monotonic() - start < 4:
            conn[1].write(chunk(2, 4, struct.pack(">HI", 6, 1)))  # ping request
            closed = await closed_within(conn[0], 0.2)
        assert closed and time.monotonic() - start < 2.0
        close(conn)
    finally:
        await srv.stop()


async def test_accepted_publish_outlives_the_setup_deadline() -> None:
    gateway = FakeGateway()
    srv = RTMPServer(gateway, "127.0.0.1", 0, idle_timeout=5.0, setup_timeout=1.0)
    await srv.start()
    try:
        def publish_for(seconds: float) -> str:
            with Publisher("127.0.0.1", srv.port) as pub:
                code = pub.publish("in", "12?s3cret")
                end = time.monotonic() + seconds
                while time.monotonic() < end:
                    pub.send_media(1)
                    time.sleep(0.05)
                return code

        assert await asyncio.to_thread(publish_for, 2.0) == "NetStream.Publish.Start"
        (session,) = gateway.sessions
        await poll(lambda: session.close_reason is not None)
        assert session.close_reason == "publisher disconnected"
        assert len(session.data) > 30 * 100
    finally:
        await srv.stop()


async def test_no_big_message_before_publish(default_server: tuple[RTMPServer, FakeGateway]) -> None:
    """A chunk size and message length of 8 MiB before publish used to be buffered: now refused at once."""
    srv, _ = default_server
    conn = await open_conn(srv)
    await handshake(conn)
    reader, writer = conn
    writer.write(connect_command("in", "rtmp://127.0.0.1/in") + set_chunk_size(8 * 1024 * 1024))
    writer.write(chunk(6, 9, bytes(1024 * 1024), length=8 * 1024 * 1024 - 1, chunk_size=8 * 1024 * 1024))
    with contextlib.suppress(ConnectionError):
        await writer.drain()
    assert await closed_within(reader, 3.0)
    close(conn)
    await poll(lambda: srv.connections == 0, within=5)


async def test_connection_caps_per_address_and_total(default_server: tuple[RTMPServer, FakeGateway]) -> None:
    srv, _ = default_server
    mine = [await open_conn(srv) for _ in range(50)]
    assert all([await accepted(c) for c in mine])
    over = await open_conn(srv)
    assert not await accepted(over), "a 51st connection from one address was served"
    close(over)
    other = await open_conn(srv, source="127.0.0.2")
    assert await accepted(other), "another address is not limited by the first one's connections"
    # places are given back when connections close
    close(mine.pop())
    await poll(lambda: srv.connections == 50)
    again = await open_conn(srv)
    assert await accepted(again)
    for c in [*mine, other, again]:
        close(c)
    await poll(lambda: srv.connections == 0, within=5)


async def test_total_connection_cap() -> None:
    srv = RTMPServer(FakeGateway(), "127.0.0.1", 0, max_connections=3, max_connections_per_ip=10)
    await srv.start()
    try:
        conns = [await open_conn(srv, source=f"127.0.0.{i}") for i in (1, 2, 3)]
        assert all([await accepted(c) for c in conns])
        extra = await open_conn(srv, source="127.0.0.4")
        assert not await accepted(extra)
        for c in [*conns, extra]:
            close(c)
        await poll(lambda: srv.connections == 0, within=5)
    finally:
        await srv.stop()


def test_onair_serve_rtmp_settings(make_server: Callable[..., OnairServer]) -> None:
    srv = make_server(rtmp_max_connections_per_ip=2, rtmp_setup_timeout=1).start()
    port = srv.ports["rtmp"]
    first, second = (socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(2))
    third = socket.create_connection(("127.0.0.1", port), timeout=5)
    third.sendall(HANDSHAKE_C0C1)
    with contextlib.suppress(ConnectionError):
        assert third.recv(10) == b"", "a third connection from one address was served"
    start = time.monotonic()
    first.sendall(HANDSHAKE_C0C1)
    assert len(first.recv(1)) == 1  # served...
    first.settimeout(5)
    with contextlib.suppress(ConnectionError):
        while first.recv(65536):
            pass
    assert time.monotonic() - start < 3  # ...and closed at the 1 s setup deadline
    for s in (first, second, third):
        s.close()
