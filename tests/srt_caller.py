"""An SRT caller through libsrt (ctypes): connects with a given streamid, nothing more.

ffmpeg would do, but takes a second per attempt and rewrites some streamids; this connects in
milliseconds and sends the streamid byte for byte.
"""

from __future__ import annotations

import ctypes

from onair.ingest.srt import libsrt

SRTO_CONNTIMEO = 36


class Caller:
    """``connect()`` returns True when the listener accepted the streamid."""

    def __init__(self, host: str, port: int, streamid: str, timeout_ms: int = 3000) -> None:
        self.lib = libsrt.load()
        self.lib.check(self.lib.lib.srt_startup(), "srt_startup")
        fn = self.lib.lib.srt_connect
        fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
        self.sock = self.lib.lib.srt_create_socket()
        self.lib.set_int(self.sock, SRTO_CONNTIMEO, timeout_ms)
        self.lib.set_bytes(self.sock, libsrt.SRTO_STREAMID, streamid.encode())
        self.addr = libsrt.sockaddr_of(host, port)

    def connect(self) -> bool:
        addr, size = self.addr
        return bool(self.lib.lib.srt_connect(self.sock, addr, size) != libsrt.SRT_ERROR)

    def close(self) -> None:
        self.lib.lib.srt_close(self.sock)
        self.lib.lib.srt_cleanup()

    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
