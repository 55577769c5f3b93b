"""SRT ingest on one UDP port for every stream, routed by `streamid` during the handshake.

libsrt does the protocol. One thread owns every SRT socket: it waits in `srt_epoll_uwait`, accepts
connections and drains received MPEG-TS, handing bytes to the event loop with
`call_soon_threadsafe`. The listen callback (run by libsrt while the handshake is in progress)
checks the stream key against :class:`IngestDirectory`, sets the stream's passphrase on the new
socket and rejects unknown ids or wrong tokens before any data flows; a wrong passphrase then fails
the handshake inside libsrt. On the loop side each connection is an `IngestSession` of the gateway,
exactly like an RTMP publisher.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import threading
import time
from dataclasses import dataclass, field

from onair import logs
from onair.hub.access import IngestDirectory
from onair.hub.ports import IngestGateway, IngestRefused, IngestSession
from onair.ingest.srt import libsrt
from onair.ingest.srt.streamid import parse_streamid, stream_name_of

__all__ = ["SRTServer"]

log = logging.getLogger("onair.ingest.srt")

_POLL_MS = 200  # bounds how long stop() and close requests wait for the SRT thread
_RECV_BUF = 1500  # one SRT live-mode payload is at most 1456 bytes
_BATCH_BYTES = 64 * 1024
_MAX_QUEUED = 32 * 1024 * 1024  # a consumer this far behind is stuck: drop the publisher


@dataclass
class _Conn:
    sock: int
    remote: str
    stream_name: str
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    queued: int = 0
    session: IngestSession | None = None
    task: asyncio.Task[None] | None = None

    def push(self, data: bytes | None) -> None:
        if data is not None:
            self.queued += len(data)
            if self.queued > _MAX_QUEUED:
                self.queue.put_nowait(None)
                return
        self.queue.put_nowait(data)


class SRTServer:
    protocol_name = "srt"

    def __init__(self, gateway: IngestGateway, directory: IngestDirectory, host: str, port: int, *,
                 latency_ms: int = 120, idle_timeout: float = 10.0) -> None:
        self._gateway = gateway
        self._directory = directory
        self._host = host
        self._requested_port = port
        self._latency_ms = latency_ms
        self._idle_timeout = idle_timeout
        self._lib: libsrt.LibSRT | None = None
        self._listener = libsrt.SRT_INVALID_SOCK
        self._eid = -1
        self._port = port
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._callback = libsrt.LISTEN_CALLBACK(self._on_handshake)  # kept alive: libsrt holds a pointer
        self._handshakes: dict[int, str] = {}  # new socket -> stream name, written by libsrt's thread
        self._conns: dict[int, _Conn] = {}  # loop side
        self._thread_socks: set[int] = set()  # SRT thread side
        self._close_requests: list[int] = []
        self._close_lock = threading.Lock()

    @property
    def port(self) -> int:
        return self._port

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        lib = self._lib = libsrt.load()
        lib.check(lib.lib.srt_startup(), "srt_startup")
        lib.lib.srt_setloglevel(libsrt.LOG_CRIT)  # our own log says why a caller was refused
        sock = self._listener = lib.lib.srt_create_socket()
        try:
            lib.check(sock, "srt_create_socket")
            # Non-blocking: the accepted sockets inherit it and the thread drains them via epoll.
            lib.set_int(sock, libsrt.SRTO_RCVSYN, 0)
            lib.set_int(sock, libsrt.SRTO_SNDSYN, 0)
            lib.set_int(sock, libsrt.SRTO_LATENCY, self._latency_ms)
            addr, size = libsrt.sockaddr_of(self._host, self._requested_port)
            lib.check(lib.lib.srt_bind(sock, addr, size), f"srt_bind {self._host}:{self._requested_port}")
            lib.check(lib.lib.srt_listen_callback(sock, self._callback, None), "srt_listen_callback")
            lib.check(lib.lib.srt_listen(sock, 64), "srt_listen")
            self._port = lib.local_port(sock)
            self._eid = lib.check(lib.lib.srt_epoll_create(), "srt_epoll_create")
            lib.epoll_add(self._eid, sock, libsrt.EPOLL_IN | libsrt.EPOLL_ERR)
        except BaseException:
            self._release()
            raise
        self._thread = threading.Thread(target=self._run, name="srt-ingest", daemon=True)
        self._thread.start()
        log.info("srt ingest listening on %s:%d (latency %d ms)", self._host, self._port, self._latency_ms)

    async def stop(self) -> None:
        self._stopping.set()
        tasks = [c.task for c in self._conns.values() if c.task is not None]
        for conn in list(self._conns.values()):
            conn.push(None)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 5.0)
            self._thread = None
        self._release()

    def _release(self) -> None:
        lib = self._lib
        if lib is None:
            return
        for sock in list(self._thread_socks):
            lib.lib.srt_close(sock)
        self._thread_socks.clear()
        if self._eid >= 0:
            lib.lib.srt_epoll_release(self._eid)
            self._eid = -1
        if self._listener != libsrt.SRT_INVALID_SOCK:
            lib.lib.srt_close(self._listener)
            self._listener = libsrt.SRT_INVALID_SOCK
        lib.lib.srt_cleanup()
        self._lib = None

    # ------------------------------------------------------------------ libsrt threads

    def _on_handshake(self, _opaque: int | None, ns: int, _hsversion: int, peer: int | None,
                      streamid: bytes | None) -> int:
        """Listen callback (libsrt's thread): 0 accepts the caller, -1 rejects it."""
        lib = self._lib
        if lib is None or self._stopping.is_set():
            return -1
        try:
            text = (streamid or b"").decode("utf-8", "replace")
            key = parse_streamid(text)
            remote = libsrt.sockaddr_to_str(peer)
            if key is None:
                # never the value itself: a malformed streamid still tends to hold the token
                log.info("srt handshake refused: malformed streamid", extra={"remote": remote,
                                                                              "streamid_length": len(text)})
                lib.lib.srt_setrejectreason(ns, libsrt.REJX_BAD_REQUEST)
                return -1
            refusal, entry = self._directory.check(key)
            if refusal is not None or entry is None:
                log.info("srt handshake refused", extra={"stream": key.redacted(), "remote": remote,
                                                         "reason": refusal.reason if refusal else "unknown stream"})
                code = libsrt.REJX_NOT_FOUND if refusal is None or refusal.unknown else libsrt.REJX_FORBIDDEN
                lib.lib.srt_setrejectreason(ns, code)
                return -1
            if entry.srt_passphrase:
                # libsrt then fails the handshake itself when the caller's passphrase differs.
                lib.set_bytes(ns, libsrt.SRTO_PASSPHRASE, entry.srt_passphrase.encode())
            self._handshakes[ns] = stream_name_of(text) or ""
            return 0
        except Exception:  # noqa: BLE001 - an exception must never cross into C
            log.exception("srt listen callback failed")
            return -1

    def _run(self) -> None:
        lib = self._lib
        loop = self._loop
        assert lib is not None and loop is not None
        events = (libsrt.EpollEvent * 64)()
        buf = ctypes.create_string_buffer(_RECV_BUF)
        while not self._stopping.is_set():
            self._process_close_requests(lib)
            for sock, _ev in lib.epoll_wait(self._eid, events, _POLL_MS):
                if sock == self._listener:
                    self._accept_all(lib, loop)
                else:
                    self._drain(lib, loop, sock, buf)

    def _accept_all(self, lib: libsrt.LibSRT, loop: asyncio.AbstractEventLoop) -> None:
        while (accepted := lib.accept(self._listener)) is not None:
            sock, remote = accepted
            name = self._handshakes.pop(sock, "")
            if not name:
                lib.lib.srt_close(sock)
                continue
            try:
                lib.epoll_add(self._eid, sock, libsrt.EPOLL_IN | libsrt.EPOLL_ERR)
            except libsrt.SRTError:
                lib.lib.srt_close(sock)
                continue
            self._thread_socks.add(sock)
            loop.call_soon_threadsafe(self._on_accepted, sock, remote, name)

    def _drain(self, lib: libsrt.LibSRT, loop: asyncio.AbstractEventLoop, sock: int,
               buf: ctypes.Array[ctypes.c_char]) -> None:
        if sock not in self._thread_socks:
            return
        batch = bytearray()
        gone = False
        while len(batch) < _BATCH_BYTES:
            n = lib.recv(sock, buf)
            if n < 0:
                gone = True
                break
            if n == 0:
                break
            batch += buf.raw[:n]
        if batch:
            loop.call_soon_threadsafe(self._on_data, sock, bytes(batch))
        if gone:
            self._forget(lib, sock)
            loop.call_soon_threadsafe(self._on_data, sock, None)

    def _forget(self, lib: libsrt.LibSRT, sock: int) -> None:
        if sock in self._thread_socks:
            self._thread_socks.discard(sock)
            lib.lib.srt_epoll_remove_usock(self._eid, sock)
            lib.lib.srt_close(sock)

    def _process_close_requests(self, lib: libsrt.LibSRT) -> None:
        with self._close_lock:
            requests, self._close_requests = self._close_requests, []
        for sock in requests:
            self._forget(lib, sock)

    def _request_close(self, sock: int) -> None:
        with self._close_lock:
            self._close_requests.append(sock)

    # ------------------------------------------------------------------ event loop side

    def _on_accepted(self, sock: int, remote: str, name: str) -> None:
        conn = _Conn(sock=sock, remote=remote, stream_name=name)
        self._conns[sock] = conn
        conn.task = asyncio.create_task(self._serve(conn), name=f"srt-{sock}")

    def _on_data(self, sock: int, data: bytes | None) -> None:
        conn = self._conns.get(sock)
        if conn is not None:
            conn.push(data)

    async def _serve(self, conn: _Conn) -> None:
        key = parse_streamid(conn.stream_name)
        what = f"stream={key.redacted() if key else '?'} peer={conn.remote}"
        reason = "publisher disconnected"
        secret: str | None = None
        try:
            try:
                session = await self._gateway.open_session(protocol="srt", app="", stream_name=conn.stream_name,
                                                           remote=conn.remote)
            except IngestRefused as exc:
                log.info("srt publish refused: %s: %s", what, exc)
                return
            conn.session = session
            if key is not None:
                # an accepted token is a real one: scrubbed from every log line while this session lives
                logs.register_secret(key.token)
                secret = key.token
            log.info("srt publish started: %s", what)
            reason = await self._pump(conn, session)
        except asyncio.CancelledError:
            reason = "server stopping"
            raise
        except Exception as exc:  # noqa: BLE001 - one bad connection must not take the server down
            reason = "internal error"
            log.error("srt connection %s failed: %r", what, exc)
        finally:
            self._conns.pop(conn.sock, None)
            self._request_close(conn.sock)
            if conn.session is not None:
                log.info("srt session ended: %s: %s", what, reason)
                with contextlib.suppress(Exception):
                    await conn.session.close(reason)
            if secret is not None:
                logs.forget_secret(secret)

    async def _pump(self, conn: _Conn, session: IngestSession) -> str:
        kicked = asyncio.ensure_future(session.closed.wait())
        try:
            last = time.monotonic()
            while True:
                get = asyncio.ensure_future(conn.queue.get())
                done, _ = await asyncio.wait({get, kicked}, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                if kicked in done:
                    get.cancel()
                    return "ended by platform"
                if get not in done:
                    get.cancel()
                    if time.monotonic() - last > self._idle_timeout:
                        return "idle timeout"
                    if self._stopping.is_set():
                        return "server stopping"
                    continue
                data = get.result()
                if data is None:
                    return "server stopping" if self._stopping.is_set() else "publisher disconnected"
                conn.queued -= len(data)
                last = time.monotonic()
                await session.feed(data)
        finally:
            kicked.cancel()
