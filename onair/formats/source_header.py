"""What a live source says about itself in its first bytes, so the ladder is planned without ffprobe.

FLV (RTMP): the file header's audio/video flags, ``onMetaData`` (frame rate) and the sequence headers (the AVC
decoder configuration record → SPS → picture size). MPEG-TS (SRT, WHIP, PULL): the PAT and PMT (which streams,
which codecs) and the first SPS of the video PID. Pure: bytes in, a :class:`SourceInfo` out once the head
answers every question, or a reason to fall back to ffprobe (an unknown codec, no SPS in time, broken framing).
"""

from __future__ import annotations

from onair.formats import amf0
from onair.formats.flv_tracker import FlvTracker
from onair.formats.h264 import Sps, parse_avc_config, sps_from_annexb
from onair.formats.probe import SourceInfo

__all__ = ["FlvHeadReader", "SourceHeadReader", "TsHeadReader", "head_reader"]

# How much source a reader looks at before it gives up and lets ffprobe decide.
HEAD_LIMIT_BYTES = 2 * 1024 * 1024
MEDIA_SPAN_MS = 1500  # of FLV media timestamps without every announced stream described

_FLV_AUDIO_CODECS = {10: "aac", 2: "mp3", 14: "mp3"}  # SoundFormat → ffmpeg's codec name
_FLV_VIDEO_AVC = 7
_TS_PACKET = 188
_TS_VIDEO = {0x1B: "h264"}
_TS_AUDIO = {0x0F: "aac", 0x11: "aac_latm", 0x81: "ac3", 0x87: "eac3"}
_TS_PRIVATE = 0x06
_SPS_SEARCH_BYTES = 512 * 1024  # of video PES payload
_TS_IGNORED = frozenset({0x05, 0x0D, 0x15, 0x86})  # private sections, DSM-CC, ID3 timed metadata, SCTE-35
_TEXT_DESCRIPTORS = frozenset({0x56, 0x59})  # DVB teletext, DVB subtitles


def _only_text(descriptors: bytes) -> bool:
    """A private stream (0x06) whose descriptors say teletext or subtitles: nothing the ladder needs."""
    tags, pos = set(), 0
    while pos + 2 <= len(descriptors):
        tags.add(descriptors[pos])
        pos += 2 + descriptors[pos + 1]
    return bool(tags) and tags <= _TEXT_DESCRIPTORS | {0x0A}  # 0x0A: ISO 639 language


class SourceHeadReader:
    """Common state: ``info`` once the head described the source, ``failed`` (a reason) when it cannot."""

    def __init__(self) -> None:
        self.info: SourceInfo | None = None
        self.failed: str | None = None
        self._seen = 0

    @property
    def done(self) -> bool:
        return self.info is not None or self.failed is not None

    def feed(self, data: bytes) -> None:
        if self.done or not data:
            return
        self._seen += len(data)
        try:
            self._feed(data)
        except ValueError as exc:  # malformed SPS, AMF0, framing
            self.failed = str(exc) or type(exc).__name__
        if not self.done and self._seen > HEAD_LIMIT_BYTES:
            self.failed = f"source undescribed after {HEAD_LIMIT_BYTES} bytes"

    def _feed(self, data: bytes) -> None:
        raise NotImplementedError


def _info(sps: Sps | None, fps: float | None, video: str | None, audio: str | None) -> SourceInfo:
    width, height = (sps.width, sps.height) if sps is not None else (None, None)
    return SourceInfo(width, height, fps, video, audio)


class FlvHeadReader(SourceHeadReader):
    def __init__(self) -> None:
        super().__init__()
        self._tracker = FlvTracker()  # the tag framing (the same one the transcoder's resume follows)
        self._want_audio = self._want_video = False
        self._sps: Sps | None = None
        self._video: str | None = None
        self._audio: str | None = None
        self._meta_fps: float | None = None
        self._first_ts: int | None = None

    def _feed(self, data: bytes) -> None:
        had_header = self._tracker.header is not None
        tags = self._tracker.feed(data)
        if self._tracker.broken:
            raise ValueError("broken FLV framing")
        header = self._tracker.header
        if header is not None and not had_header:
            self._want_audio, self._want_video = bool(header[4] & 0x04), bool(header[4] & 0x01)
        for tag in tags:
            if self.done:
                return
            self._tag(tag.type, tag.timestamp, tag.raw[11:-4])

    def _tag(self, kind: int, ts: int, body: bytes) -> None:
        if kind == 18:
            self._script(body)
        elif kind == 9 and body:
            self._media_time(ts)
            self._video_tag(body)
        elif kind == 8 and body:
            self._media_time(ts)
            self._audio_tag(body)
        if self.done:
            return
        if (self._video or not self._want_video) and (self._audio or not self._want_audio):
            if not self._video and not self._audio:
                self.failed = "FLV header announces no audio and no video"
                return
            self.info = _info(self._sps, self._meta_fps or (self._sps.fps if self._sps else None),
                              self._video, self._audio)

    def _media_time(self, ts: int) -> None:
        if self._first_ts is None:
            self._first_ts = ts
        elif ts - self._first_ts > MEDIA_SPAN_MS:
            self.failed = "an announced stream did not start in time"

    def _script(self, body: bytes) -> None:
        values = amf0.decode_all(body)
        while values and values[0] in ("@setDataFrame", "onMetaData"):
            name = values.pop(0)
            if name == "onMetaData" and values and isinstance(values[0], dict):
                rate = values[0].get("framerate")
                if isinstance(rate, int | float) and 0 < rate < 1000:
                    self._meta_fps = float(rate)

    def _video_tag(self, body: bytes) -> None:
        codec = body[0] & 0x0F
        if body[0] & 0x80 or codec != _FLV_VIDEO_AVC:
            self.failed = f"FLV video codec {codec} (not AVC)"  # enhanced RTMP (HEVC, AV1) or old codecs
            return
        if len(body) > 5 and body[1] == 0:  # AVC sequence header
            self._sps = parse_avc_config(body[5:])
            self._video = "h264"
        elif self._video is None:
            self.failed = "AVC frames before the sequence header"

    def _audio_tag(self, body: bytes) -> None:
        fmt = body[0] >> 4
        codec = _FLV_AUDIO_CODECS.get(fmt)
        if codec is None:
            self.failed = f"FLV sound format {fmt}"
        elif codec != "aac" or (len(body) > 1 and body[1] == 0):  # AAC: its AudioSpecificConfig
            self._audio = codec


class TsHeadReader(SourceHeadReader):
    def __init__(self) -> None:
        super().__init__()
        self._buf = bytearray()
        self._pmt_pid: int | None = None
        self._video_pid: int | None = None
        self._video: str | None = None
        self._audio: str | None = None
        self._pmt_done = False
        self._sps: Sps | None = None
        self._pes = bytearray()  # the video PES packet in progress
        self._pes_seen = 0

    def _feed(self, data: bytes) -> None:
        self._buf += data
        while not self.done and len(self._buf) >= _TS_PACKET:
            if self._buf[0] != 0x47:
                sync = self._buf.find(b"\x47", 1)
                if sync < 0:
                    self._buf.clear()
                    return
                del self._buf[:sync]  # resynchronise (a sender may start mid-packet)
                continue
            packet = bytes(self._buf[:_TS_PACKET])
            del self._buf[:_TS_PACKET]
            self._packet(packet)

    def _packet(self, p: bytes) -> None:
        pid = ((p[1] & 0x1F) << 8) | p[2]
        start = bool(p[1] & 0x40)
        afc = (p[3] >> 4) & 0x03
        offset = 4
        if afc & 0x02:
            offset += 1 + p[4]
        if not afc & 0x01 or offset >= _TS_PACKET:
            return
        payload = p[offset:]
        if pid == 0 and start and self._pmt_pid is None:
            self._pat(self._section(payload))
        elif pid == self._pmt_pid and start and not self._pmt_done:
            self._pmt(self._section(payload))
        elif pid == self._video_pid and self._pmt_done:
            self._video_payload(payload, start)
        if self._pmt_done and not self.done and (self._video_pid is None or self._video is not None):
            if self._video_pid is not None and self._sps is None:
                return
            if self._video is None and self._audio is None:
                self.failed = "no known stream in the PMT"
                return
            self.info = _info(self._sps, self._sps.fps if self._sps else None, self._video, self._audio)

    @staticmethod
    def _section(payload: bytes) -> bytes:
        pointer = payload[0]
        section = payload[1 + pointer:]
        if len(section) < 3:
            raise ValueError("short PSI section")
        length = ((section[1] & 0x0F) << 8) | section[2]
        if len(section) < 3 + length:
            raise ValueError("PSI section spans packets")  # PAT/PMT of live senders fit one packet
        return section[:3 + length - 4]  # without the CRC

    def _pat(self, s: bytes) -> None:
        for i in range(8, len(s) - 3, 4):
            program = int.from_bytes(s[i:i + 2], "big")
            if program != 0:  # 0 is the network PID
                self._pmt_pid = ((s[i + 2] & 0x1F) << 8) | s[i + 3]
                return

    def _pmt(self, s: bytes) -> None:
        if len(s) < 12:
            raise ValueError("short PMT")
        pos = 12 + (((s[10] & 0x0F) << 8) | s[11])
        while pos + 5 <= len(s):
            stype, pid = s[pos], ((s[pos + 1] & 0x1F) << 8) | s[pos + 2]
            es_len = ((s[pos + 3] & 0x0F) << 8) | s[pos + 4]
            descriptors = s[pos + 5:pos + 5 + es_len]
            pos += 5 + es_len
            if stype in _TS_VIDEO and self._video_pid is None:
                self._video_pid = pid
            elif stype in _TS_AUDIO and self._audio is None:
                self._audio = _TS_AUDIO[stype]
            elif stype == _TS_PRIVATE and b"\x05\x04Opus" in descriptors:
                self._audio = self._audio or "opus"
            elif stype in _TS_IGNORED or (stype == _TS_PRIVATE and _only_text(descriptors)):
                continue
            elif stype not in _TS_VIDEO and stype not in _TS_AUDIO:
                # HEVC, MPEG-2, MPEG audio, DVB AC-3, ...: what ffmpeg will see is for ffprobe to say
                self.failed = f"MPEG-TS stream type {stype:#x} needs ffprobe"
                return
        self._pmt_done = True

    def _video_payload(self, payload: bytes, start: bool) -> None:
        if start:
            if len(payload) < 9 or payload[:3] != b"\x00\x00\x01":
                return
            self._pes = bytearray(payload[9 + payload[8]:])  # after the PES header; an access unit's SPS leads it
        elif not self._pes:
            return  # wait for the start of a PES packet
        else:
            self._pes += payload
        self._pes_seen += len(payload)
        # parsed only when a start code follows it, so an SPS split across TS packets is complete
        sps = sps_from_annexb(bytes(self._pes), complete_only=True)
        if sps is not None:
            self._sps, self._video = sps, "h264"
        elif self._pes_seen > _SPS_SEARCH_BYTES:
            self.failed = "no SPS in the first video PES packets"


def head_reader(input_format: str) -> SourceHeadReader:
    """A reader for the transcoder's input format (``flv`` or ``mpegts``)."""
    return FlvHeadReader() if input_format == "flv" else TsHeadReader()
