"""A minimal keep-alive HTTP/1.1 client on asyncio streams, for load generation.

httpx costs about a millisecond of CPU per request, which on a 2-core machine would make the load
generator, not the server, the bottleneck; this client parses only what it needs (status,
Content-Length or chunked transfer) and costs a fraction of that.
"""

from __future__ import annotations

import asyncio


class HttpError(Exception):
    pass


class Connection:
    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None) -> None:
        self.host, self.port = host, port
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self._head = f"Host: {host}:{port}\r\n{extra}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port, limit=1 << 22)

    async def get(self, path: str) -> tuple[int, bytes]:
        """GET path on the kept-alive connection (reconnects once if the server closed it)."""
        for attempt in (0, 1):
            if self._writer is None or self._writer.is_closing():
                await self._connect()
            assert self._reader is not None and self._writer is not None
            try:
                self._writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self._head)
                return await self._response()
            except (ConnectionError, asyncio.IncompleteReadError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def _response(self) -> tuple[int, bytes]:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ", 2)[1])
        length, chunked, close = -1, False, False
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
            elif name == b"connection" and b"close" in value.lower():
                close = True
        if chunked:
            body = bytearray()
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self._reader.readuntil(b"\r\n")
                    break
                body += await self._reader.readexactly(size + 2)
                del body[-2:]
            data = bytes(body)
        elif length >= 0:
            data = await self._reader.readexactly(length)
        else:
            data, close = await self._reader.read(), True
        if close:
            self.close()
        return status, data

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = self._reader = None


class Pool:
    """Connections handed out one request at a time; at most `limit` open (then requests queue)."""

    def __init__(self, host: str, port: int, headers: dict[str, str] | None = None, limit: int = 256) -> None:
        self.host, self.port, self.headers = host, port, headers
        self._idle: list[Connection] = []
        self._sem = asyncio.Semaphore(limit)
        self.opened = 0

    async def get(self, path: str) -> tuple[int, bytes]:
        async with self._sem:
            if self._idle:
                conn = self._idle.pop()
            else:
                conn = Connection(self.host, self.port, self.headers)
                self.opened += 1
            try:
                result = await conn.get(path)
            except BaseException:
                conn.close()
                raise
            self._idle.append(conn)
            return result

    def close(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()
