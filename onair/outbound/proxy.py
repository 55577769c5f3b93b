"""The node's egress proxy for the ffmpeg clients of HTTP(S) PULL sources.

ffmpeg is started with ``http_proxy`` pointing here, so every connection it makes over HTTP or
HTTPS, including redirects and the playlists and segments of an HLS source on other hosts, is a
request to this proxy: ``CONNECT host:port`` (https) or ``GET http://host/path`` (plain HTTP).
Each one resolves the host once, checks every address (onair.outbound.policy) and connects to the
checked address, so DNS cannot rebind past the check. TLS stays end to end between ffmpeg and the
origin: the server name (SNI), certificate and Host header are the original host's.

Only ffmpeg processes of this node know the proxy's address and its per-process credentials.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable

from onair.outbound.policy import IPAddress, TargetRefused, parse_target

__all__ = ["EgressProxy"]

log = logging.getLogger("onair.outbound")

Resolver = Callable[[str, int], Awaitable[IPAddress]]
_HEAD_MAX = 64 * 1024
_CONNECT_TIMEOUT = 10.0
_HEAD_TIMEOUT = 30.0
_CHUNK = 64 * 1024


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class EgressProxy:
    """A CONNECT and absolute-form HTTP/1.1 proxy on 127.0.0.1 that admits only what `resolve` admits."""

    def __init__(self, resolve: Resolver) -> None:
        self.resolve = resolve
        self._user = "onair"
        self._password = secrets.token_urlsafe(18)
        self._server: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        """For ffmpeg's ``http_proxy``; the credentials keep other local processes out."""
        return f"http://{self._user}:{self._password}@127.0.0.1:{self.port}/"

    async def start(self) -> None:
        if self._server is None:
            self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, limit=_HEAD_MAX)
            self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._conns):
            task.cancel()
        await asyncio.gather(*self._conns, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    # -- one client connection ----------------------------------------------------------------------
    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except _Refused as exc:
            with contextlib.suppress(ConnectionError):
                writer.write(f"HTTP/1.1 {exc.status} Refused\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                             .encode())
                await writer.drain()
        finally:
            self._conns.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method, target, headers, head = await self._read_head(reader)
        if not self._authorized(headers):
            writer.write(b'HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm="onair"\r\n'
                         b"Content-Length: 0\r\n\r\n")
            await writer.drain()
            method, target, headers, head = await self._read_head(reader)  # ffmpeg answers the challenge
            if not self._authorized(headers):
                raise _Refused(407, "proxy credentials")
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            host = host.strip("[]")
            if not port.isdigit():
                raise _Refused(400, "malformed CONNECT target")
            upstream = await self._open(host, int(port), f"tls://{target}")
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await writer.drain()
            await _pipe_both(reader, writer, *upstream)
            return
        try:
            parsed = parse_target(target, ("http",))
        except TargetRefused as exc:
            raise _Refused(400, str(exc)) from None
        up_reader, up_writer = await self._open(parsed.host, parsed.port, parsed.label)
        up_writer.write(_origin_form(method, parsed.rest or "/", head))
        down = asyncio.create_task(_pipe(up_reader, writer))
        try:
            await _relay_requests(reader, up_writer, parsed.host, parsed.port, self._read_head)
        finally:
            await _finish(down, up_writer)

    def _authorized(self, headers: dict[str, str]) -> bool:
        scheme, _, value = headers.get("proxy-authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip()).decode().partition(":")
        except ValueError:
            return False
        return secrets.compare_digest(user, self._user) and secrets.compare_digest(password, self._password)

    async def _open(self, host: str, port: int, label: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            ip = await self.resolve(host, port)
        except TargetRefused as exc:
            log.warning("outbound connection refused", extra={"target": label, "reason": str(exc)})
            raise _Refused(403, str(exc)) from None
        try:
            return await asyncio.wait_for(asyncio.open_connection(str(ip), port), _CONNECT_TIMEOUT)
        except (OSError, TimeoutError) as exc:
            raise _Refused(502, f"cannot connect: {exc}") from None

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[str, str, dict[str, str], list[bytes]]:
        """One request head: (method, target, lowercase headers, raw header lines)."""
        raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT)
        lines = raw[:-4].split(b"\r\n")
        parts = lines[0].decode("latin-1").split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _Refused(400, "malformed request line")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.decode("latin-1").partition(":")
            if not sep:
                raise _Refused(400, "malformed header")
            headers[name.strip().lower()] = value.strip()
        return parts[0], parts[1], headers, lines


def _origin_form(method: str, path: str, head: list[bytes]) -> bytes:
    """The request as the origin expects it: path only, no proxy headers."""
    kept = [ln for ln in head[1:] if not ln.lower().startswith((b"proxy-authorization:", b"proxy-connection:"))]
    return b"\r\n".join([f"{method} {path} {head[0].decode('latin-1').rsplit(' ', 1)[1]}".encode("latin-1"),
                         *kept]) + b"\r\n\r\n"


async def _relay_requests(reader: asyncio.StreamReader, up: asyncio.StreamWriter, host: str, port: int,
                          read_head: Callable[[asyncio.StreamReader],
                                              Awaitable[tuple[str, str, dict[str, str], list[bytes]]]]) -> None:
    """Further requests on a kept-alive connection: same origin only (ffmpeg reuses a connection per host)."""
    while True:
        await up.drain()
        try:
            method, target, headers, head = await read_head(reader)
        except asyncio.IncompleteReadError:
            return
        if "transfer-encoding" in headers:
            raise _Refused(501, "chunked request bodies are not supported")
        parsed = parse_target(target, ("http",))
        if (parsed.host, parsed.port) != (host, port):
            return  # another origin on the same connection: the client reconnects
        up.write(_origin_form(method, parsed.rest or "/", head))
        length = int(headers.get("content-length", "0") or 0)
        if length:
            up.write(await reader.readexactly(length))


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
    with contextlib.suppress(Exception):
        dst.close()


async def _pipe_both(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                     up_reader: asyncio.StreamReader, up_writer: asyncio.StreamWriter) -> None:
    down = asyncio.create_task(_pipe(up_reader, writer))
    try:
        await _pipe(reader, up_writer)
    finally:
        await _finish(down, up_writer)


async def _finish(down: asyncio.Task[None], up_writer: asyncio.StreamWriter) -> None:
    """The client went away (ffmpeg never half-closes): so does the upstream connection."""
    down.cancel()
    await asyncio.gather(down, return_exceptions=True)
    up_writer.close()
    with contextlib.suppress(Exception):
        await up_writer.wait_closed()
