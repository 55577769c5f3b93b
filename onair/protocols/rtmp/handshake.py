"""The server side of the simple RTMP handshake: C0+C1 in, S0+S1+S2 out, C2 in."""

from __future__ import annotations

import enum
import struct

from onair.protocols.rtmp.chunks import Fatal
from onair.protocols.rtmp.wire import HANDSHAKE_SIZE, RTMP_VERSION, U32_MASK

__all__ = ["Handshake"]


class _Stage(enum.Enum):
    C0 = enum.auto()
    C1 = enum.auto()
    C2 = enum.auto()
    DONE = enum.auto()


class Handshake:
    """S1 = time + zero + random, S2 = echo of C1.

    Clients sending a digest C1 (ffmpeg, OBS) only validate S1's digest when S1 claims a version, which
    our zero field does not. Time and random bytes come from the caller (the core has no clock or RNG).
    """

    def __init__(self, epoch_ms: int = 0, random: bytes = b"") -> None:
        self._s1 = struct.pack(">II", epoch_ms & U32_MASK, 0) + random[: HANDSHAKE_SIZE - 8].ljust(
            HANDSHAKE_SIZE - 8, b"\0")
        self._stage = _Stage.C0

    @property
    def done(self) -> bool:
        return self._stage is _Stage.DONE

    def step(self, buf: bytearray, pos: int, out: bytearray) -> int | None:
        """Consume one part at ``pos`` (answers go to ``out``); None if more data is needed."""
        avail = len(buf) - pos
        if self._stage is _Stage.C0:
            if avail < 1:
                return None
            if buf[pos] != RTMP_VERSION:
                raise Fatal(f"unsupported RTMP version {buf[pos]}")
            self._stage = _Stage.C1
            return pos + 1
        if avail < HANDSHAKE_SIZE:
            return None
        if self._stage is _Stage.C1:
            out += bytes([RTMP_VERSION]) + self._s1 + buf[pos : pos + HANDSHAKE_SIZE]
            self._stage = _Stage.C2
        else:
            self._stage = _Stage.DONE  # C2 content is not checked: clients are sloppy here
        return pos + HANDSHAKE_SIZE
