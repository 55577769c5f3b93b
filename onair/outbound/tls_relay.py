"""RTMPS through a checked address: ffmpeg speaks plain RTMP to a one-shot relay on 127.0.0.1, the relay
speaks TLS to the checked address with the original host as server name (SNI).

ffmpeg's own RTMPS cannot be pinned to an address without losing SNI (an address literal in the URL
sends none), and it stalls when tunnelled through an HTTP proxy (its non-blocking peek at the server's
messages blocks inside the proxy layer). As with ffmpeg's default (``tls_verify=0``), the certificate is
not verified: the target is the one the operator configured, reached at the address checked for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from onair.outbound.policy import IPAddress

__all__ = ["TlsRelay"]

ACCEPT_TIMEOUT_S = 30.0  # an ffmpeg that never connects (it failed to start) leaves no listener behind
_CHUNK = 64 * 1024


class TlsRelay:
    """Relays the first connection to 127.0.0.1:`port` over TLS to `ip`:`target_port`, then is `done`."""

    def __init__(self, ip: IPAddress, target_port: int, server_name: str) -> None:
        self.ip = ip
        self.target_port = target_port
        self.server_name = server_name
        self.port = 0
        self.done = asyncio.Event()  # the relayed connection ended, or none came in time
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        expiry = asyncio.create_task(self._expire())
        self._tasks.add(expiry)
        expiry.add_done_callback(self._tasks.discard)
        return self.port

    async def _expire(self) -> None:
        await asyncio.sleep(ACCEPT_TIMEOUT_S)
        if self._stop_listening():
            self.done.set()

    def _stop_listening(self) -> bool:
        """Close the listener; True when it was still open (no connection came yet)."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        return server is not None

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._stop_listening():  # one connection per relay: one ffmpeg, one push or pull
            writer.close()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(reader, writer)
        finally:
            self._tasks.discard(task)
            writer.close()
            self.done.set()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(str(self.ip), self.target_port, ssl=ctx, server_hostname=self.server_name),
                10.0)
        except (OSError, TimeoutError, ssl.SSLError):
            return
        down = asyncio.create_task(_pipe(up_reader, writer))
        try:
            await _pipe(reader, up_writer)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(down), 5)  # what the server still says as ffmpeg leaves
        finally:
            down.cancel()
            await asyncio.gather(down, return_exceptions=True)
            up_writer.close()

    async def close(self) -> None:
        self._stop_listening()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.done.set()


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        while data := await src.read(_CHUNK):
            dst.write(data)
            await dst.drain()
    with contextlib.suppress(Exception):
        if dst.can_write_eof():
            dst.write_eof()
