"""HTTP request limits: a header deadline slow senders cannot stretch, a header size cap (431), a connection cap.

First against a real uvicorn on 127.0.0.1 built with :func:`onair.httpguard.uvicorn_options` and a
tiny ASGI app (short limits, so each case takes a second), then against `onair serve` itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import uvicorn

from onair import httpguard
from tests.conftest import OnairServer

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]
GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


async def echo_app(scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                   send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] == "/slow":
        await asyncio.sleep(1.5)  # a response that takes longer than the header deadline
    reply = f"ok {len(body)}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(reply)).encode())]})
    await send({"type": "http.response.body", "body": reply})


@pytest.fixture
async def guarded() -> AsyncIterator[int]:
    """A uvicorn with a 1 s header deadline, 8 KiB of headers and 3 connections; yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(echo_app, log_config=None, access_log=False, lifespan="off", timeout_keep_alive=30,
                            **httpguard.uvicorn_options(max_connections=3, header_timeout=1.0,
                                                        max_header_bytes=8192))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.02)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def open_conn(port: int) -> Stream:
    return await asyncio.open_connection("127.0.0.1", port)


async def read_response(reader: asyncio.StreamReader, within: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of one response; (0, b"") when the connection closes without one."""
    try:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), within)
    except (asyncio.IncompleteReadError, ConnectionError):
        return 0, b""
    status = int(head.split(b" ", 2)[1])
    length = next(int(ln.split(b":", 1)[1]) for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length"))
    return status, await asyncio.wait_for(reader.readexactly(length), within)


async def closed_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        return await asyncio.wait_for(reader.read(65536), seconds) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


async def trickle(conn: Stream, data: bytes, every: float, limit: float) -> float | None:
    """Send ``data`` a byte at a time; seconds until the server closed the connection, None if it did not."""
    reader, writer = conn
    start = time.monotonic()
    for byte in data:
        if time.monotonic() - start > limit:
            return None
        with contextlib.suppress(ConnectionError):
            writer.write(bytes([byte]))
        with contextlib.suppress(TimeoutError, ConnectionError):
            if await asyncio.wait_for(reader.read(65536), every) == b"":
                return time.monotonic() - start
            return time.monotonic() - start  # a response (408) precedes the close
    return None


def slowloris_request() -> bytes:
    return b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200 + b"\r\n\r\n"


async def test_silent_connection_closed(guarded: int) -> None:
    reader, writer = await open_conn(guarded)
    start = time.monotonic()
    assert await closed_within(reader, 3.0)
    assert 0.8 <= time.monotonic() - start < 2.0
    writer.close()


async def test_slowloris_headers_closed_at_deadline(guarded: int) -> None:
    conn = await open_conn(guarded)
    took = await trickle(conn, slowloris_request(), every=0.1, limit=4.0)
    assert took is not None and took < 2.0, took
    conn[1].close()


async def test_slowloris_on_a_keep_alive_connection(guarded: int) -> None:
    reader, writer = await open_conn(guarded)
    writer.write(GET)
    assert await read_response(reader) == (200, b"ok 0")
    took = await trickle((reader, writer), slowloris_request(), every=0.1, limit=4.0)
    assert took is not None and took < 2.0, took
    writer.close()


async def test_huge_headers_get_431(guarded: int) -> None:
    reader, writer = await open_conn(guarded)
    sent = 0

    async def send_headers() -> None:
        nonlocal sent
        with contextlib.suppress(ConnectionError):
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
            while sent < 32 * 1024 * 1024:
                writer.write(b"X-Filler: " + b"f" * 1000 + b"\r\n")
                sent += 1012
                await writer.drain()
                await asyncio.sleep(0)  # let the reader see an early answer

    sender = asyncio.create_task(send_headers())
    try:
        status, _ = await read_response(reader)
        answered_after = sent
    finally:
        sender.cancel()
    assert status == 431
    assert answered_after < 2 * 1024 * 1024, f"{answered_after} bytes of headers were sent before the 431"
    assert await closed_within(reader, 5.0)
    writer.close()


async def test_normal_requests_unaffected(guarded: int) -> None:
    """Keep-alive, a body sent slower than the header deadline and a slow response all still work."""
    reader, writer = await open_conn(guarded)
    writer.write(GET + GET)  # pipelined
    assert await read_response(reader) == (200, b"ok 0")
    assert await read_response(reader) == (200, b"ok 0")
    writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\n")
    for part in (b"ab", b"cd", b"ef"):
        await asyncio.sleep(0.6)
        writer.write(part)
    assert await read_response(reader) == (200, b"ok 6")
    writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n" + b"X-Ok: 1\r\n" * 100 + b"\r\n")
    assert await read_response(reader) == (200, b"ok 0")
    writer.close()


async def test_connection_cap_answers_503(guarded: int) -> None:
    conns = [await open_conn(guarded) for _ in range(3)]
    for reader, writer in conns:  # three connections are served...
        writer.write(GET)
        assert await read_response(reader) == (200, b"ok 0")
    reader, writer = await open_conn(guarded)
    writer.write(GET)
    assert (await read_response(reader))[0] == 503  # ...a fourth is not
    for _, w in [*conns, (reader, writer)]:
        w.close()


# --------------------------------------------------------------------------- onair serve


def _raw(srv: OnairServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", srv.http_port), timeout=10)


def _closed_after(sock: socket.socket, limit: float) -> float | None:
    sock.settimeout(limit)
    start = time.monotonic()
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return None
    except ConnectionError:
        pass
    return time.monotonic() - start


def test_onair_serve_http_limits(make_server: Callable[..., OnairServer]) -> None:
    srv = make_server(http_header_timeout=1, http_max_header_bytes=16384, http_max_connections=20).start()
    # silent and slow clients are closed at the deadline
    silent = _raw(srv)
    slow = _raw(srv)
    slow.sendall(b"GET /healthz HTTP/1.1\r\n")
    took = _closed_after(silent, 4.0)
    assert took is not None and took < 2.5
    took = _closed_after(slow, 4.0)
    assert took is not None and took < 2.5
    # oversized headers: 431
    big = _raw(srv)
    with contextlib.suppress(ConnectionError):
        big.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Filler: " + b"f" * (1 << 20) + b"\r\n\r\n")
    assert big.recv(100).startswith(b"HTTP/1.1 431 ")
    # a connection cap: 20 connections are served, the 21st request gets 503
    idle = [_raw(srv) for _ in range(20)]
    extra = _raw(srv)
    extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert extra.recv(100).startswith(b"HTTP/1.1 503 ")
    for s in [silent, slow, big, extra, *idle]:
        s.close()
