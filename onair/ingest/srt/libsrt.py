"""Minimal ctypes binding of libsrt 1.5 (Debian's `libsrt-gnutls.so.1.5`): just what a listener needs."""

from __future__ import annotations

import ctypes
import ctypes.util
import socket
import struct
from collections.abc import Callable

__all__ = [
    "EPOLL_ERR",
    "EPOLL_IN",
    "LIBRARY_NAMES",
    "SRTError",
    "LibSRT",
    "load",
]

LIBRARY_NAMES = ("libsrt-gnutls.so.1.5", "libsrt-openssl.so.1.5", "libsrt.so.1.5", "libsrt.so.1")

# SRT_SOCKOPT values (srt.h)
SRTO_RCVSYN = 2
SRTO_SNDSYN = 1
SRTO_LATENCY = 23
SRTO_PASSPHRASE = 26
SRTO_PBKEYLEN = 27
SRTO_RCVLATENCY = 43
SRTO_STREAMID = 46
SRTO_PEERIDLETIMEO = 55

LOG_CRIT = 2  # syslog level for srt_setloglevel

EPOLL_IN = 0x1
EPOLL_ERR = 0x8
SRT_ERROR = -1
SRT_INVALID_SOCK = -1

# srt_getlasterror codes we look at
SRT_EASYNCRCV = 6002
SRT_ETIMEOUT = 6003

# Reject reasons sent back to the caller (SRT_REJX_*: 1000 + HTTP-like code).
REJX_BAD_REQUEST = 1400
REJX_UNAUTHORIZED = 1401
REJX_FORBIDDEN = 1403
REJX_NOT_FOUND = 1404
REJX_CONFLICT = 1409

# int (*)(void* opaq, SRTSOCKET ns, int hsversion, const struct sockaddr* peeraddr, const char* streamid)
LISTEN_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
)


class SRTError(OSError):
    pass


class EpollEvent(ctypes.Structure):
    _fields_ = [("fd", ctypes.c_int), ("events", ctypes.c_int)]


def sockaddr_to_str(ptr: int | None, length: int = 128) -> str:
    """'host:port' of a struct sockaddr (IPv4 or IPv6) at `ptr`."""
    if not ptr:
        return "?"
    raw = ctypes.string_at(ptr, min(length, 28))
    family = struct.unpack_from("=H", raw)[0]
    port = struct.unpack_from(">H", raw, 2)[0]
    if family == socket.AF_INET:
        return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{port}"
    if family == socket.AF_INET6 and len(raw) >= 24:
        return f"[{socket.inet_ntop(socket.AF_INET6, raw[8:24])}]:{port}"
    return "?"


def sockaddr_of(host: str, port: int) -> tuple[ctypes.Array[ctypes.c_char], int]:
    info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_NUMERICHOST)[0]
    family, host_str = info[0], str(info[4][0])
    if family == socket.AF_INET:
        raw = struct.pack("=H", socket.AF_INET) + struct.pack(">H", port) + socket.inet_pton(family, host_str)
        raw += b"\0" * 8
    else:
        raw = (struct.pack("=H", socket.AF_INET6) + struct.pack(">H", port) + b"\0" * 4
               + socket.inet_pton(family, host_str) + b"\0" * 4)
    return ctypes.create_string_buffer(raw, len(raw)), len(raw)


class LibSRT:
    """Typed wrappers; every call releases the GIL (ctypes), so blocking calls are fine in a thread."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        c_int, c_void_p, c_char_p = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p
        sigs: dict[str, tuple[object, list[object]]] = {
            "srt_startup": (c_int, []),
            "srt_setloglevel": (None, [c_int]),
            "srt_cleanup": (c_int, []),
            "srt_create_socket": (c_int, []),
            "srt_setsockflag": (c_int, [c_int, c_int, c_void_p, c_int]),
            "srt_bind": (c_int, [c_int, c_void_p, c_int]),
            "srt_listen": (c_int, [c_int, c_int]),
            "srt_listen_callback": (c_int, [c_int, LISTEN_CALLBACK, c_void_p]),
            "srt_accept": (c_int, [c_int, c_void_p, ctypes.POINTER(c_int)]),
            "srt_recvmsg": (c_int, [c_int, c_char_p, c_int]),
            "srt_close": (c_int, [c_int]),
            "srt_getsockname": (c_int, [c_int, c_void_p, ctypes.POINTER(c_int)]),
            "srt_getlasterror": (c_int, [ctypes.POINTER(c_int)]),
            "srt_getlasterror_str": (c_char_p, []),
            "srt_clearlasterror": (None, []),
            "srt_setrejectreason": (c_int, [c_int, c_int]),
            "srt_epoll_create": (c_int, []),
            "srt_epoll_add_usock": (c_int, [c_int, c_int, ctypes.POINTER(c_int)]),
            "srt_epoll_remove_usock": (c_int, [c_int, c_int]),
            "srt_epoll_uwait": (c_int, [c_int, ctypes.POINTER(EpollEvent), c_int, ctypes.c_int64]),
            "srt_epoll_release": (c_int, [c_int]),
        }
        for name, (restype, argtypes) in sigs.items():
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes

    # -- helpers --------------------------------------------------------------------------------

    def last_error(self) -> tuple[int, str]:
        code = self.lib.srt_getlasterror(None)
        text = self.lib.srt_getlasterror_str() or b""
        return int(code), text.decode("utf-8", "replace")

    def check(self, rc: int, what: str) -> int:
        if rc == SRT_ERROR:
            code, text = self.last_error()
            raise SRTError(code, f"{what}: {text}")
        return rc

    def set_int(self, sock: int, opt: int, value: int) -> None:
        v = ctypes.c_int(value)
        self.check(self.lib.srt_setsockflag(sock, opt, ctypes.byref(v), ctypes.sizeof(v)), f"setsockflag {opt}")

    def set_bytes(self, sock: int, opt: int, value: bytes) -> None:
        buf = ctypes.create_string_buffer(value, len(value))
        self.check(self.lib.srt_setsockflag(sock, opt, buf, len(value)), f"setsockflag {opt}")

    def local_port(self, sock: int) -> int:
        buf = ctypes.create_string_buffer(128)
        size = ctypes.c_int(128)
        self.check(self.lib.srt_getsockname(sock, buf, ctypes.byref(size)), "getsockname")
        return int(struct.unpack_from(">H", buf.raw, 2)[0])

    def accept(self, sock: int) -> tuple[int, str] | None:
        buf = ctypes.create_string_buffer(128)
        size = ctypes.c_int(128)
        ns = self.lib.srt_accept(sock, buf, ctypes.byref(size))
        if ns == SRT_INVALID_SOCK:
            return None
        return int(ns), sockaddr_to_str(ctypes.addressof(buf), size.value)

    def recv(self, sock: int, buf: ctypes.Array[ctypes.c_char]) -> int:
        """Bytes received, 0 when nothing is ready (non-blocking socket), -1 when the connection is gone."""
        n = self.lib.srt_recvmsg(sock, buf, len(buf))
        if n == SRT_ERROR:
            code, _ = self.last_error()
            self.lib.srt_clearlasterror()
            return 0 if code in (SRT_EASYNCRCV, SRT_ETIMEOUT) else -1
        return int(n)

    def epoll_add(self, eid: int, sock: int, events: int) -> None:
        ev = ctypes.c_int(events)
        self.check(self.lib.srt_epoll_add_usock(eid, sock, ctypes.byref(ev)), "epoll_add")

    def epoll_wait(self, eid: int, events: ctypes.Array[EpollEvent], timeout_ms: int) -> list[tuple[int, int]]:
        n = self.lib.srt_epoll_uwait(eid, events, len(events), timeout_ms)
        if n <= 0:
            self.lib.srt_clearlasterror()
            return []
        return [(events[i].fd, events[i].events) for i in range(n)]


_loaded: LibSRT | None = None


def load(names: tuple[str, ...] = LIBRARY_NAMES, loader: Callable[[str], ctypes.CDLL] = ctypes.CDLL) -> LibSRT:
    """Load libsrt once per process (srt_startup is reference counted by libsrt itself)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    errors: list[str] = []
    for name in names:
        try:
            _loaded = LibSRT(loader(name))
            return _loaded
        except OSError as exc:
            errors.append(str(exc))
    found = ctypes.util.find_library("srt")
    if found:
        _loaded = LibSRT(loader(found))
        return _loaded
    raise SRTError(0, "libsrt not found (apt-get install libsrt1.5-gnutls): " + "; ".join(errors))
