"""asyncio glue around :class:`RTMPServerConnection`: sockets, TLS, deadlines, connection caps, the gateway.

Until a publish is accepted nothing about a peer is known, so it gets little: ``setup_timeout`` seconds
from accept for TLS + handshake + connect + publish (an absolute deadline that slow senders cannot
extend), a small buffer budget (see :class:`~onair.protocols.rtmp.Limits`), and a place among at most
``max_connections`` (``max_connections_per_ip`` per remote address). A publisher then has to keep
sending: ``idle_timeout`` seconds of silence end it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, NoReturn

from onair import logs
from onair.formats.flv import TAG_SCRIPT, flv_file_header, flv_tag
from onair.hub.keys import parse_stream_key
from onair.hub.ports import IngestGateway, IngestRefused, IngestSession
from onair.protocols.rtmp import (
    Event,
    Limits,
    MediaMessage,
    MetaData,
    ProtocolError,
    PublishEnded,
    PublishRequested,
    RTMPServerConnection,
)
from onair.protocols.rtmp.wire import HANDSHAKE_SIZE

__all__ = ["RTMPServer"]

log = logging.getLogger("onair.ingest.rtmp")

_READ_SIZE = 64 * 1024
_CLOSE_GRACE = 0.5  # seconds to let a graceful (TLS) close finish before aborting
_REFUSAL_LOG_PERIOD = 10.0  # at most one "connection refused" line per period: a flood must not flood the log
_PLAIN_APP = re.compile(r"[A-Za-z0-9_.-]{1,32}")


def _stream_label(name: str) -> str:
    """What the logs may say about a publish name: the stream id (+ b for backup), never the token."""
    key = parse_stream_key(name)
    return key.redacted() if key is not None else "<malformed>"


def _app_label(app: str) -> str:
    # clients that split the URL differently put the key into the app: only a plain name is logged
    return app if _PLAIN_APP.fullmatch(app) else "<other>"


@dataclass
class _Conn:
    peer: str
    proto: RTMPServerConnection
    deadline: float  # loop time by which the publish must be accepted
    session: IngestSession | None = None
    secrets: list[str] = field(default_factory=list)  # registered with logs while the session lives


async def _cancel_when_set(event: asyncio.Event, task: asyncio.Task[Any]) -> None:
    await event.wait()
    task.cancel()


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
        *,
        setup_timeout: float = 10.0,
        max_connections: int = 1000,
        max_connections_per_ip: int = 50,
        limits: Limits | None = None,
    ) -> None:
        self._gateway = gateway
        self._host = host
        self._requested_port = port
        self._ssl = ssl_context
        self._idle_timeout = idle_timeout
        self._setup_timeout = setup_timeout
        self._max_connections = max_connections
        self._max_per_ip = max_connections_per_ip
        self._limits = limits or Limits()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._per_ip: Counter[str] = Counter()
        self._refused = 0  # connections refused since the last log line about it
        self._refused_logged_at = -_REFUSAL_LOG_PERIOD

    @property
    def protocol_name(self) -> str:
        return "rtmps" if self._ssl is not None else "rtmp"

    @property
    def port(self) -> int:
        if self._server is None or not self._server.sockets:
            return self._requested_port
        return int(self._server.sockets[0].getsockname()[1])

    @property
    def connections(self) -> int:
        return len(self._tasks)

    async def start(self) -> None:
        # TLS by the server itself, its handshake bounded by the setup deadline: a per-connection start_tls
        # would lose a ClientHello that arrived before it (clients send it at once)
        self._server = await asyncio.start_server(self._handle, self._host, self._requested_port, ssl=self._ssl,
                                                  ssl_handshake_timeout=self._setup_timeout if self._ssl else None)
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

    def _admit(self, ip: str) -> bool:
        if len(self._tasks) < self._max_connections and self._per_ip[ip] < self._max_per_ip:
            return True
        self._refused += 1
        now = time.monotonic()
        if now - self._refused_logged_at >= _REFUSAL_LOG_PERIOD:
            log.warning("%s connection limit reached: refused %d connection(s), latest from %s "
                        "(%d open, %d from that address)", self.protocol_name, self._refused, ip,
                        len(self._tasks), self._per_ip[ip])
            self._refused, self._refused_logged_at = 0, now
        return False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._setup_timeout
        peername = writer.get_extra_info("peername")
        ip = str(peername[0]) if isinstance(peername, tuple) else str(peername)
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else str(peername)
        task = asyncio.current_task()
        if task is None or not self._admit(ip):
            writer.transport.abort()
            return
        self._tasks.add(task)
        self._per_ip[ip] += 1
        conn = _Conn(peer, RTMPServerConnection(limits=self._limits, epoch_ms=int(loop.time() * 1000),
                                                handshake_random=os.urandom(HANDSHAKE_SIZE - 8)), deadline)
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
                await self._end(conn, writer, reason)
            finally:
                conn.proto.close()  # its buffers go now, not when the last reference does
                self._tasks.discard(task)
                self._per_ip[ip] -= 1
                if self._per_ip[ip] <= 0:
                    del self._per_ip[ip]

    async def _end(self, conn: _Conn, writer: asyncio.StreamWriter, reason: str) -> None:
        try:
            if conn.session is not None:
                log.info("session from %s ended: %s", conn.peer, logs.redact(reason))
                try:
                    await conn.session.close(reason)
                except Exception as exc:  # noqa: BLE001
                    log.warning("closing session from %s failed: %s", conn.peer, type(exc).__name__)
            await self._close_writer(writer)
        finally:
            for secret in conn.secrets:
                logs.forget_secret(secret)
            conn.secrets.clear()

    def _read_timeout(self, conn: _Conn) -> float:
        if conn.proto.publishing:
            return self._idle_timeout
        remaining = conn.deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            self._setup_timed_out(conn)
        return min(self._idle_timeout, remaining)

    def _setup_timed_out(self, conn: _Conn) -> NoReturn:
        log.info("connection from %s did not publish within %.0fs, closing", conn.peer, self._setup_timeout)
        raise _Done("setup timeout")

    async def _serve(self, conn: _Conn, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # one plain awaited read per chunk of bytes (a task and asyncio.wait per read cost more than the parsing);
        # a publisher the platform ends is interrupted by cancelling this task (see _cancel_when_set)
        kick: asyncio.Task[None] | None = None
        try:
            while True:
                timeout = self._read_timeout(conn)
                try:
                    async with asyncio.timeout(timeout):
                        data = await reader.read(_READ_SIZE)
                except TimeoutError:
                    if timeout < self._idle_timeout:
                        self._setup_timed_out(conn)  # the deadline was nearer than the idle timer
                    log.info("connection from %s idle for %.0fs, closing", conn.peer, self._idle_timeout)
                    raise _Done("idle timeout") from None
                if not data:
                    raise _Done("publisher disconnected")
                await self._process(conn, writer, conn.proto.receive_data(data))
                if kick is None and conn.session is not None and (task := asyncio.current_task()) is not None:
                    kick = asyncio.ensure_future(_cancel_when_set(conn.session.closed, task))
        except asyncio.CancelledError:
            task = asyncio.current_task()
            # the kick's own cancellation only (stop() cancelling too leaves one pending: that one goes on)
            if kick is not None and kick.done() and not kick.cancelled() and task is not None and task.uncancel() == 0:
                raise _Done("ended by platform") from None
            raise
        finally:
            if kick is not None:
                kick.cancel()

    async def _process(self, conn: _Conn, writer: asyncio.StreamWriter, events: list[Event]) -> None:
        await self._flush(conn, writer)
        for event in events:
            if isinstance(event, MediaMessage):
                if conn.session is not None:
                    await conn.session.feed(flv_tag(event.tag_type, event.timestamp_ms, event.payload))
            elif isinstance(event, MetaData):
                if conn.session is not None:
                    await conn.session.feed(flv_tag(TAG_SCRIPT, event.timestamp_ms, event.payload))
            elif isinstance(event, PublishRequested):
                await self._on_publish(conn, writer, event)
                # parsing paused at the publish command; what followed it is read under the new budget
                await self._process(conn, writer, conn.proto.receive_data(b""))
            elif isinstance(event, PublishEnded):
                raise _Done(f"publisher ended stream ({event.reason})")
            elif isinstance(event, ProtocolError):
                log.info("protocol error from %s: %s", conn.peer, logs.redact(event.reason))
                raise _Done("protocol error")

    async def _on_publish(self, conn: _Conn, writer: asyncio.StreamWriter, event: PublishRequested) -> None:
        what = f"app={_app_label(event.app)!r} stream={_stream_label(event.name)} peer={conn.peer}"
        try:
            session = await self._gateway.open_session(
                protocol=self.protocol_name, app=event.app, stream_name=event.name, remote=conn.peer
            )
        except IngestRefused as exc:
            reason = logs.redact(str(exc))
            log.info("publish refused: %s: %s", what, reason)
            conn.proto.reject_publish(reason or "publishing refused")
            await self._flush(conn, writer)
            raise _Done("refused") from None
        key = parse_stream_key(event.name)
        if key is not None:
            # an accepted token is a real one: scrubbed from every log line while this session lives
            logs.register_secret(key.token)
            conn.secrets.append(key.token)
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
