"""asyncio glue around :class:`RTMPServerConnection`: sockets, TLS, timeouts, the gateway."""

from __future__ import annotations

import asyncio
import logging
import ssl
from dataclasses import dataclass, field
from typing import Any

from onair.formats.flv import TAG_SCRIPT, flv_file_header, flv_tag
from onair.hub.ports import IngestGateway, IngestRefused, IngestSession
from onair.protocols.rtmp.protocol import (
    MediaMessage,
    MetaData,
    ProtocolError,
    PublishEnded,
    PublishRequested,
    RTMPServerConnection,
)

__all__ = ["RTMPServer"]

log = logging.getLogger("onair.ingest.rtmp")

_READ_SIZE = 64 * 1024
_CLOSE_GRACE = 0.5  # seconds to let a graceful (TLS) close finish before aborting


def _redact(value: str) -> str:
    """Drop the query part (it carries the stream token) from names/URLs before logging."""
    head, sep, _ = value.partition("?")
    return head + ("?<redacted>" if sep else "")


@dataclass
class _Conn:
    peer: str
    proto: RTMPServerConnection = field(default_factory=RTMPServerConnection)
    session: IngestSession | None = None
    # Strings that must never reach the logs (query parts of app/name/tcUrl).
    secrets: list[str] = field(default_factory=list)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "<redacted>")
        return text


class _Done(Exception):
    """Ends a connection; the message is the session close reason."""


class RTMPServer:
    def __init__(
        self,
        gateway: IngestGateway,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None = None,
        idle_timeout: float = 10.0,
    ) -> None:
        self._gateway = gateway
        self._host = host
        self._requested_port = port
        self._ssl = ssl_context
        self._idle_timeout = idle_timeout
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def protocol_name(self) -> str:
        return "rtmps" if self._ssl is not None else "rtmp"

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle,
            self._host,
            self._requested_port,
            ssl=self._ssl,
            ssl_handshake_timeout=self._idle_timeout if self._ssl is not None else None,
        )
        log.info("%s ingest listening on %s:%d", self.protocol_name, self._host, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # ------------------------------------------------------------------ per connection

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        conn = _Conn(peer=peer)
        reason = "publisher disconnected"
        try:
            await self._serve(conn, reader, writer)
        except _Done as done:
            reason = str(done)
        except asyncio.CancelledError:
            # only stop() cancels these tasks; ending quietly keeps asyncio's stream callback from
            # logging the cancellation as an error at every shutdown
            reason = "server stopping"
        except (ConnectionError, OSError, ssl.SSLError) as exc:
            reason = "connection error"
            log.info("connection from %s failed: %s", peer, type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - one bad connection must not take the server down
            reason = "internal error"
            log.error("unexpected error on connection from %s: %s", peer, type(exc).__name__)
        finally:
            try:
                if conn.session is not None:
                    log.info("session from %s ended: %s", peer, conn.scrub(reason))
                    try:
                        await conn.session.close(reason)
                    except Exception as exc:  # noqa: BLE001
                        log.warning("closing session from %s failed: %s", peer, type(exc).__name__)
                await self._close_writer(writer)
            finally:
                if task is not None:
                    self._tasks.discard(task)

    async def _serve(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        kicked: asyncio.Task[bool] | None = None
        try:
            while True:
                read = asyncio.ensure_future(reader.read(_READ_SIZE))
                waiters: set[asyncio.Future[Any]] = {read}
                if kicked is not None:
                    waiters.add(kicked)
                done, _ = await asyncio.wait(
                    waiters, timeout=self._idle_timeout, return_when=asyncio.FIRST_COMPLETED
                )
                if kicked is not None and kicked in done:
                    read.cancel()
                    raise _Done("ended by platform")
                if read not in done:
                    read.cancel()
                    log.info("connection from %s idle for %.0fs, closing", conn.peer, self._idle_timeout)
                    raise _Done("idle timeout")
                data = read.result()
                if not data:
                    raise _Done("publisher disconnected")
                events = conn.proto.receive_data(data)
                await self._flush(conn, writer)
                for event in events:
                    await self._on_event(conn, writer, event)
                    if kicked is None and conn.session is not None:
                        kicked = asyncio.ensure_future(conn.session.closed.wait())
        finally:
            if kicked is not None:
                kicked.cancel()

    async def _on_event(
        self,
        conn: _Conn,
        writer: asyncio.StreamWriter,
        event: PublishRequested | PublishEnded | MetaData | MediaMessage | ProtocolError,
    ) -> None:
        if isinstance(event, MediaMessage):
            if conn.session is not None:
                await conn.session.feed(flv_tag(event.tag_type, event.timestamp_ms, event.payload))
        elif isinstance(event, MetaData):
            if conn.session is not None:
                await conn.session.feed(flv_tag(TAG_SCRIPT, event.timestamp_ms, event.payload))
        elif isinstance(event, PublishRequested):
            await self._on_publish(conn, writer, event)
        elif isinstance(event, PublishEnded):
            raise _Done(f"publisher ended stream ({event.reason})")
        elif isinstance(event, ProtocolError):
            log.info("protocol error from %s: %s", conn.peer, conn.scrub(event.reason))
            raise _Done("protocol error")

    async def _on_publish(self, conn: _Conn, writer: asyncio.StreamWriter, event: PublishRequested) -> None:
        conn.secrets.extend(
            value.partition("?")[2] for value in (event.name, event.app, event.tc_url) if "?" in value
        )
        what = f"app={_redact(event.app)!r} stream={_redact(event.name)!r} peer={conn.peer}"
        try:
            session = await self._gateway.open_session(
                protocol=self.protocol_name, app=event.app, stream_name=event.name, remote=conn.peer
            )
        except IngestRefused as exc:
            log.info("publish refused: %s: %s", what, conn.scrub(str(exc)))
            conn.proto.reject_publish(conn.scrub(str(exc)) or "publishing refused")
            await self._flush(conn, writer)
            raise _Done("refused") from None
        conn.session = session
        conn.proto.accept_publish()
        await self._flush(conn, writer)
        await session.feed(flv_file_header())
        log.info("publish started: %s", what)

    @staticmethod
    async def _flush(conn: _Conn, writer: asyncio.StreamWriter) -> None:
        out = conn.proto.data_to_send()
        if out:
            writer.write(out)
            await writer.drain()

    @staticmethod
    async def _close_writer(writer: asyncio.StreamWriter) -> None:
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), _CLOSE_GRACE)
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
            writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
            raise
