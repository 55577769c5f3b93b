"""Limits uvicorn does not enforce by itself: a deadline for request headers and a cap on their size.

uvicorn (httptools) reads headers for as long as a client cares to send them: its keep-alive timer
only runs between requests and restarts on every byte, a connection that never sends a byte has no
timer at all, and httptools accepts any amount of header data. :func:`uvicorn_options` returns the
`uvicorn.Config` arguments that fix this: an HTTP protocol class that

* closes a connection whose request line + headers are not complete ``header_timeout`` seconds after
  the connection opened or the request's first byte arrived (a 408 when some of it came, silence when
  nothing did), however slowly they trickle in;
* answers 431 and closes once request line + headers exceed ``max_header_bytes`` (counted as read,
  so at most one socket read more is ever held);

plus uvicorn's own ``limit_concurrency`` (503 beyond ``max_connections`` connections or requests in
progress) and h11's incomplete-event cap, should the h11 implementation be chosen instead.
"""

from __future__ import annotations

import asyncio
import http
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["GuardedHttpToolsProtocol", "guarded_protocol", "uvicorn_options"]

# After a 431/408 the client is often still sending; closing at once would reset the connection and
# with it the response, so input is read and dropped for up to this long first (nginx's lingering close).
_LINGER = 2.0


def _response(status: int, text: str) -> bytes:
    body = (text + "\n").encode()
    return (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header deadline and a header size cap (class attributes)."""

    max_header_bytes: ClassVar[int] = 64 * 1024
    header_timeout: ClassVar[float] = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True  # a new connection waits for its first request line
        self._header_bytes = 0
        self._header_started = False  # some byte of the current request arrived
        self._header_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_timer()
        if self._linger_timer is not None:
            self._linger_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._linger_timer is not None:
            return  # refused: what still comes is dropped
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers and self._header_bytes > self.max_header_bytes and self._open():
            self._refuse(431, "request line and headers too large")

    # ------------------------------------------------------------------ httptools parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._in_headers:
            # the next request on a keep-alive connection; bytes that came in the same read as the
            # previous request's end are not counted (at most one read)
            self._in_headers, self._header_bytes = True, 0
        self._header_started = True
        self._arm_header_timer()

    def on_headers_complete(self) -> None:
        self._in_headers, self._header_bytes, self._header_started = False, 0, False
        self._disarm_header_timer()
        super().on_headers_complete()

    # ------------------------------------------------------------------ internals

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline)

    def _disarm_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline(self) -> None:
        self._header_timer = None
        if self._in_headers and self._open():
            if self._header_started or self._header_bytes:
                self._refuse(408, "request headers not received in time")
            else:
                self.transport.close()  # never said a word: nothing to answer

    def _open(self) -> bool:
        return not self.transport.is_closing() and self._linger_timer is None

    def _refuse(self, status: int, text: str) -> None:
        self._disarm_header_timer()
        if self.cycle is not None and not self.cycle.response_complete:
            self.transport.close()  # mid-response a status line would corrupt the stream
            return
        self.transport.write(_response(status, text))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._linger_timer = self.loop.call_later(_LINGER, self.transport.close)


def guarded_protocol(max_header_bytes: int, header_timeout: float) -> type[GuardedHttpToolsProtocol]:
    """A protocol class for `uvicorn.Config(http=...)` with these limits."""
    return type("GuardedHttpProtocol", (GuardedHttpToolsProtocol,),
                {"max_header_bytes": max_header_bytes, "header_timeout": header_timeout})


def uvicorn_options(*, max_connections: int, header_timeout: float, max_header_bytes: int) -> dict[str, Any]:
    """Keyword arguments for `uvicorn.Config`.

    uvicorn answers 503 once the open connections, the requesting one included, reach
    ``limit_concurrency``: hence the +1, so that ``max_connections`` connections are all served.
    """
    return {
        "http": guarded_protocol(max_header_bytes, header_timeout),
        "limit_concurrency": max_connections + 1,
        "h11_max_incomplete_event_size": max_header_bytes,
    }
