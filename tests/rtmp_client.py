"""A minimal RTMP publisher over a blocking socket: handshake, connect, createStream, publish, a few tags.

Enough to reach every branch of the ingest server without ffmpeg (which rewrites some stream names).
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from onair.formats import amf0


def chunk(csid: int, type_id: int, payload: bytes, *, stream_id: int = 0, ts: int = 0,
          chunk_size: int = 128, length: int | None = None) -> bytes:
    """One message: a type 0 header (csid < 64), then type 3 continuations."""
    length = len(payload) if length is None else length
    out = bytearray([csid]) + ts.to_bytes(3, "big") + length.to_bytes(3, "big") + bytes([type_id])
    out += stream_id.to_bytes(4, "little") + payload[:chunk_size]
    for i in range(chunk_size, len(payload), chunk_size):
        out += bytes([0xC0 | csid]) + payload[i : i + chunk_size]
    return bytes(out)


def command(*values: Any, stream_id: int = 0, csid: int = 3) -> bytes:
    return chunk(csid, 20, amf0.encode(*values), stream_id=stream_id)


def set_chunk_size(size: int) -> bytes:
    return chunk(2, 1, struct.pack(">I", size))


def connect_command(app: str, tc_url: str) -> bytes:
    return command("connect", 1.0, {"app": app, "tcUrl": tc_url, "flashVer": "FMLE/3.0", "type": "nonprivate"})


HANDSHAKE_C0C1 = b"\x03" + bytes(1536)


class Publisher:
    """One connection; :meth:`publish` returns the onStatus code the server answered with."""

    def __init__(self, host: str, port: int, timeout: float = 10.0, source: str | None = None) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self._in = bytearray()
        self._chunk_size = 128
        self._partial: dict[int, tuple[int, int, bytearray]] = {}

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def handshake(self) -> None:
        self.sock.sendall(HANDSHAKE_C0C1)
        s0s1s2 = self._recv_exactly(1 + 2 * 1536)
        self.sock.sendall(s0s1s2[1:1537])

    def publish(self, app: str, name: str, tc_url: str | None = None) -> str:
        self.handshake()
        self.sock.sendall(connect_command(app, tc_url or f"rtmp://127.0.0.1/{app}"))
        self._wait_command("_result")
        self.sock.sendall(command("releaseStream", 2.0, None, name) + command("FCPublish", 3.0, None, name)
                          + command("createStream", 4.0, None))
        self.sock.sendall(command("publish", 5.0, None, name, "live", stream_id=1, csid=8))
        try:
            status = self._wait_command("onStatus")
        except ConnectionError:
            return "closed"
        code: str = status[3]["code"]
        return code

    def send_media(self, count: int = 3) -> None:
        for i in range(count):
            self.sock.sendall(chunk(6, 9, b"\x17\x01\x00\x00\x00" + bytes(100), stream_id=1, ts=40 * i))

    # ------------------------------------------------------------------ reading

    def _recv_exactly(self, n: int) -> bytes:
        while len(self._in) < n:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("server closed the connection")
            self._in += data
        out = bytes(self._in[:n])
        del self._in[:n]
        return out

    def _wait_command(self, name: str) -> list[Any]:
        while True:
            type_id, payload = self._read_message()
            if type_id == 1:
                self._chunk_size = struct.unpack(">I", payload[:4])[0]
            elif type_id == 20:
                values = amf0.decode_all(payload)
                if values and values[0] == name:
                    return values

    def _read_message(self) -> tuple[int, bytes]:
        """The server sends type 0 chunks (csid < 64) and type 3 continuations only."""
        while True:
            b0 = self._recv_exactly(1)[0]
            fmt, csid = b0 >> 6, b0 & 0x3F
            if fmt == 0:
                head = self._recv_exactly(11)
                self._partial[csid] = (int.from_bytes(head[3:6], "big"), head[6], bytearray())
            length, type_id, buf = self._partial[csid]
            buf += self._recv_exactly(min(self._chunk_size, length - len(buf)))
            if len(buf) == length:
                del self._partial[csid]
                return type_id, bytes(buf)
