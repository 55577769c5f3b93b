"""Following the FLV tag framing of a source, to restart a decoder (or join a second one) mid-stream.

Pure: bytes in, tags out; the tracker remembers what a decoder needs to start at the current GOP.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass

log = logging.getLogger("onair.formats.flv")

GOP_CACHE_MAX_BYTES = 16 * 1024 * 1024

FLV_AUDIO, FLV_VIDEO, FLV_SCRIPT = 8, 9, 18


@dataclass(frozen=True)
class FlvTag:
    type: int
    timestamp: int
    raw: bytes  # 11-byte header + body + 4-byte PreviousTagSize
    keyframe: bool = False  # video keyframe carrying a picture (not a sequence header)
    seq_header: bool = False


def _with_timestamp(raw: bytes, ts: int) -> bytes:
    ts &= 0xFFFFFFFF
    return raw[:4] + (ts & 0xFFFFFF).to_bytes(3, "big") + bytes([ts >> 24]) + raw[8:]


class FlvTracker:
    """Follows the FLV tag framing of the source to be able to restart a decoder mid-stream.

    Remembers the file header, the first script tag, the latest AVC/AAC sequence headers and the
    tags of the current GOP (from the last video keyframe). If the framing looks corrupt it gives up
    (``broken``): a restart then just replays the header/config it has.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.header: bytes | None = None
        self.script: bytes | None = None
        self.video_seq: bytes | None = None
        self.audio_seq: bytes | None = None
        self.has_video_flag = True
        self.gop: list[bytes] = []
        self.gop_bytes = 0
        self.gop_ts: int | None = None
        self.broken = False

    @property
    def pending(self) -> bytes:
        """Bytes of an incomplete tag (already received, not yet a whole tag)."""
        return bytes(self._buf)

    def feed(self, data: bytes) -> list[FlvTag]:
        if self.broken:
            return []
        self._buf += data
        tags: list[FlvTag] = []
        buf = self._buf
        pos = 0
        if self.header is None:
            if len(buf) < 9:
                return tags
            if buf[:3] != b"FLV":
                self._break("no FLV signature")
                return tags
            hdr_len = struct.unpack(">I", buf[5:9])[0]
            if not 9 <= hdr_len <= 64:
                self._break(f"bad FLV header size {hdr_len}")
                return tags
            if len(buf) < hdr_len + 4:
                return tags
            self.header = bytes(buf[: hdr_len + 4])
            self.has_video_flag = bool(buf[4] & 0x01)
            pos = hdr_len + 4
        while len(buf) - pos >= 11:
            ttype = buf[pos] & 0x1F
            size = int.from_bytes(buf[pos + 1 : pos + 4], "big")
            if ttype not in (FLV_AUDIO, FLV_VIDEO, FLV_SCRIPT) or size > 32 * 1024 * 1024:
                self._break(f"bad tag type={ttype} size={size}")
                return tags
            end = pos + 11 + size + 4
            if len(buf) < end:
                break
            raw = bytes(buf[pos:end])
            ts = int.from_bytes(raw[4:7], "big") | (raw[7] << 24)
            tags.append(self._track(ttype, ts, raw, size))
            pos = end
        del buf[:pos]
        return tags

    def _break(self, why: str) -> None:
        log.warning("FLV framing lost (%s); restarts will not resume at a keyframe", why)
        self.broken = True
        self._buf.clear()
        self.gop.clear()

    def _track(self, ttype: int, ts: int, raw: bytes, size: int) -> FlvTag:
        body0 = raw[11] if size >= 1 else 0
        body1 = raw[12] if size >= 2 else 0xFF
        keyframe = seq = False
        if ttype == FLV_SCRIPT:
            if self.script is None:
                self.script = raw
                return FlvTag(ttype, ts, raw)
        elif ttype == FLV_VIDEO and size >= 2:
            keyframe = (body0 >> 4) & 0x07 == 1
            if body0 & 0x80:  # enhanced RTMP: low nibble is the packet type, 0 = sequence start
                seq = body0 & 0x0F == 0
            else:
                seq = body1 == 0 and body0 & 0x0F in (7, 12, 13)  # AVC (and common HEVC/AV1 ids)
            if seq:
                self.video_seq = raw
        elif ttype == FLV_AUDIO and size >= 2:
            seq = body0 >> 4 == 10 and body1 == 0  # AAC sequence header
            if seq:
                self.audio_seq = raw
        if keyframe and not seq:
            self.gop = [raw]
            self.gop_bytes = len(raw)
            self.gop_ts = ts
        elif self.gop and not seq:
            self.gop.append(raw)
            self.gop_bytes += len(raw)
            if self.gop_bytes > GOP_CACHE_MAX_BYTES:
                self.gop, self.gop_bytes, self.gop_ts = [], 0, None
        return FlvTag(ttype, ts, raw, keyframe and not seq, seq)

    def config(self, ts: int) -> bytes:
        """Header + script + sequence headers, re-stamped to ``ts`` so that ffmpeg's start-time
        normalisation makes the restarted output begin near 0 instead of at an old timestamp."""
        parts = [self.header or b""]
        for raw in (self.script, self.video_seq, self.audio_seq):
            if raw is not None:
                parts.append(_with_timestamp(raw, ts))
        return b"".join(parts)

    def resume_data(self) -> bytes | None:
        """Decodable stream start for a new decoder, or None if a keyframe must be awaited."""
        if self.header is None or self.broken:
            return None
        if self.gop and self.gop_ts is not None:
            return self.config(self.gop_ts) + b"".join(self.gop) + self.pending
        if not self.has_video_flag:
            return self.config(0) + self.pending  # audio only: any tag boundary will do
        return None
