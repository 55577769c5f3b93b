"""Fuzz targets: one harness per parser of outside bytes, with the invariant it checks.

A harness gets raw bytes and raises only when an invariant breaks: any exception other than the
parser's documented ones escaping, an inconsistent result, or (via libFuzzer's ``-timeout``) a hang.
The parsers are imported inside each target's ``build`` so the worker can instrument them for coverage
and this module stays cheap to import.

Adding a target (SRT, WHIP/SDP and future parsers): write a ``build`` function that imports the parser
and returns ``harness(data: bytes) -> None``, decorate it with ``@target("name", requires="module")``
and add seeds in :mod:`fuzz.seeds` (``SEEDS["name"]``). ``requires`` names a module that may not exist
yet: the runner reports such targets as skipped instead of failing. Inputs that once broke a
target go to ``tests/regressions/<name>/`` and are replayed by ``tests/test_fuzz.py``.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Harness = Callable[[bytes], None]


@dataclass(frozen=True)
class Target:
    name: str
    build: Callable[[], Harness]
    requires: str | None = None
    doc: str = ""

    def available(self) -> bool:
        if self.requires is None:
            return True
        try:
            return importlib.util.find_spec(self.requires) is not None
        except ImportError:
            return False


TARGETS: dict[str, Target] = {}


def target(name: str, requires: str | None = None) -> Callable[[Callable[[], Harness]], Callable[[], Harness]]:
    def register(build: Callable[[], Harness]) -> Callable[[], Harness]:
        TARGETS[name] = Target(name, build, requires, (build.__doc__ or "").strip().splitlines()[0])
        return build

    return register


class InvariantError(AssertionError):
    """A harness found the parser misbehaving (not an exception the parser documents)."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise InvariantError(what)


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def _pieces(data: bytes, seed: int) -> list[bytes]:
    """``data`` cut at up to 16 pseudo-random places (a single byte sometimes: header boundaries matter)."""
    rng = random.Random(seed)
    cuts = sorted({rng.randint(1, max(1, len(data) - 1)) for _ in range(seed % 17)} | {0, len(data)})
    if seed & 0x80 and len(data) > 2:  # a run of one-byte pieces somewhere
        at = rng.randint(0, len(data) - 2)
        cuts = sorted(set(cuts) | set(range(at, min(at + 24, len(data)))))
    return [data[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


# --------------------------------------------------------------------------- ingest


@target("amf0")
def build_amf0() -> Harness:
    """AMF0 decoding (RTMP commands, metadata): only AMF0Error; decoded values re-encode and re-decode."""
    from onair.formats import amf0

    def harness(data: bytes) -> None:
        try:
            amf0.decode(data)
        except amf0.AMF0Error:
            pass
        try:
            values = amf0.decode_all(data)
        except amf0.AMF0Error:
            return
        again = amf0.decode_all(amf0.encode(*values))
        check(len(again) == len(values), "re-encoded AMF0 decodes to a different number of values")

    return harness


@target("flv")
def build_flv() -> Harness:
    """FLV audio/video tag headers (first byte selects): only ValueError; flv_tag() frames what it is given."""
    from onair.formats import flv

    def harness(data: bytes) -> None:
        if not data:
            return
        sel, payload = data[0], data[1:]
        try:
            if sel & 1:
                flv.parse_audio_tag_header(payload)
            else:
                flv.parse_video_tag_header(payload)
        except ValueError:
            pass
        tag = flv.flv_tag(sel & 0x1F, int.from_bytes(payload[:4].ljust(4, b"\0"), "big"), payload)
        check(len(tag) == 15 + len(payload), "FLV tag framing has the wrong length")
        check(int.from_bytes(tag[1:4], "big") == len(payload), "FLV tag DataSize is wrong")

    return harness


def _rtmp_harness(prefix: bytes) -> Harness:
    from onair.protocols.rtmp import protocol as p

    def run(chunks: list[bytes], answer: int | None) -> list[str]:
        """Feed chunks; with ``answer`` set, react to publish requests as the server does."""
        conn = p.RTMPServerConnection()
        seen: list[str] = []
        pending = list(chunks)
        while pending:
            events = conn.receive_data(pending.pop(0))
            check(isinstance(events, list), "receive_data must return a list")
            # within the budget (small until a publish is accepted), give or take a header or handshake part
            budget = p.Limits().publishing if conn.accepted else p.Limits().setup
            check(conn.buffered <= budget.max_buffered + p.HANDSHAKE_SIZE, "the connection holds more than its budget")
            for i, ev in enumerate(events):
                check(isinstance(ev, p.PublishRequested | p.PublishEnded | p.MetaData | p.MediaMessage
                                 | p.ProtocolError), f"unknown event {ev!r}")
                if isinstance(ev, p.ProtocolError):
                    check(i == len(events) - 1, "events after a ProtocolError")
                    check(conn.failed, "ProtocolError but the connection is not failed")
                if isinstance(ev, p.MediaMessage | p.MetaData):
                    check(0 <= ev.timestamp_ms <= 0xFFFFFFFF, "timestamp out of 32-bit range")
                if isinstance(ev, p.PublishRequested) and answer is not None:
                    if answer & 1:
                        conn.accept_publish()
                    else:
                        conn.reject_publish("refused")
                    pending.insert(0, b"")  # parsing paused at the request: resume it, as the server does
                seen.append(repr(ev))
            out = conn.data_to_send()
            check(isinstance(out, bytes), "data_to_send must return bytes")
            if conn.failed:
                check(conn.receive_data(b"\x03" * 8) == [], "a failed connection must ignore further data")
        return seen

    def harness(data: bytes) -> None:
        if not data:
            return
        ctl, body = data[0], data[1:]
        # the handshake prefix goes in whole (it is not what is being fuzzed here); the body in pieces
        whole = run([prefix + body], None)
        split = run([prefix, *_pieces(body, ctl)] if prefix else _pieces(body, ctl), None)
        # the parser is incremental: how bytes arrive must not change what it reports
        check(whole == split, "events depend on how the data was split")
        if any(e.startswith("PublishRequested") for e in whole):
            # answer publish requests as the server does, after each receive_data() batch
            batches = [prefix + body] if ctl & 0x40 else [prefix, *_pieces(body, ctl + 1)] if prefix else _pieces(
                body, ctl + 1)
            run(batches, ctl >> 7)

    return harness


@target("rtmp_handshake")
def build_rtmp_handshake() -> Harness:
    """RTMPServerConnection from the first byte (C0/C1/C2, then chunks): errors are ProtocolError events."""
    return _rtmp_harness(b"")


@target("rtmp_chunks")
def build_rtmp_chunks() -> Harness:
    """RTMPServerConnection after a valid handshake (chunks, AMF0 commands, media, aggregates)."""
    from fuzz.seeds import HANDSHAKE

    return _rtmp_harness(HANDSHAKE)


@target("stream_key")
def build_stream_key() -> Harness:
    """Stream keys from RTMP publish names: None or a well-formed StreamKey, never an exception."""
    from onair.hub.keys import StreamKey, parse_stream_key

    def harness(data: bytes) -> None:
        key = parse_stream_key(_text(data))
        if key is not None:
            check(isinstance(key, StreamKey), "not a StreamKey")
            check(0 < key.stream_id < 2**31, "stream id out of range")
            check(key.token.isascii() and key.token.isalnum() and len(key.token) <= 128, "bad token")

    return harness


@target("srt_streamid", requires="onair.ingest.srt.streamid")
def build_srt_streamid() -> Harness:
    """SRT streamid values (plain and #!:: access-control syntax): None or a StreamKey, never an exception."""
    from onair.hub.keys import StreamKey
    from onair.ingest.srt import streamid  # type: ignore[import-not-found,unused-ignore]

    def harness(data: bytes) -> None:
        key = streamid.parse_streamid(_text(data))
        check(key is None or isinstance(key, StreamKey), "not a StreamKey")

    return harness


# Hook for WHIP: register an "sdp" target here once the SDP offer parser exists, e.g.
#   @target("sdp", requires="onair.ingest.whip.sdp")  with only its documented error type allowed.


# --------------------------------------------------------------------------- fMP4 (transcoder output)


@target("fmp4_reader")
def build_fmp4_reader() -> Harness:
    """BoxReader fed in random pieces: only FMP4Error; the boxes it returns are exactly the input."""
    from onair.formats.fmp4 import BoxReader, FMP4Error

    def harness(data: bytes) -> None:
        if not data:
            return
        ctl, body = data[0], data[1:]
        reader = BoxReader(max_box_size=64 + (ctl % 16) * 4096)
        boxes = []
        try:
            for piece in _pieces(body, ctl):
                boxes += reader.feed(piece)
            boxes += reader.close()
        except FMP4Error:
            return
        check(b"".join(b.data for b in boxes) == body, "boxes do not add up to the input")
        for b in boxes:
            check(len(b.type) == 4 and b.header_size in (8, 16, 24, 32), "bad box header")

    return harness


@target("fmp4_init")
def build_fmp4_init() -> Harness:
    """parse_init (ftyp+moov): only FMP4Error."""
    from onair.formats.fmp4 import FMP4Error, TrackInfo, parse_init

    def harness(data: bytes) -> None:
        try:
            info = parse_init(data)
        except FMP4Error:
            return
        check(isinstance(info, TrackInfo) and info.timescale > 0, "bad TrackInfo")

    return harness


@target("fmp4_fragment")
def build_fmp4_fragment() -> Harness:
    """parse_fragment (moof[+mdat]) with no, a video or an audio track description: only FMP4Error."""
    from onair.formats.fmp4 import FMP4Error, FragmentInfo, TrackInfo, parse_fragment

    tracks: list[TrackInfo | None] = [
        None,
        TrackInfo(1, "vide", 15360, "avc1.64000a", "avc1", 64, 48, default_sample_duration=512,
                  default_sample_size=100, default_sample_flags=0x01010000),
        TrackInfo(1, "soun", 48000, "mp4a.40.2", "mp4a", sample_rate=48000, channels=1,
                  default_sample_duration=1024),
    ]

    def harness(data: bytes) -> None:
        if not data:
            return
        try:
            info = parse_fragment(data[1:], tracks[data[0] % 3])
        except FMP4Error:
            return
        check(isinstance(info, FragmentInfo) and info.sample_count >= 0 and info.duration >= 0, "bad FragmentInfo")

    return harness


# --------------------------------------------------------------------------- delivery / media helpers


@target("hls_query")
def build_hls_query() -> Harness:
    """LL-HLS query parameters (_HLS_msn, _HLS_part, _HLS_skip) of a raw query string: 400 or valid values."""
    from starlette.datastructures import QueryParams

    from onair.delivery.routes import PlaybackError, parse_hls_query

    def harness(data: bytes) -> None:
        q = QueryParams(_text(data))
        try:
            blocking, skip = parse_hls_query(q.get("_HLS_msn"), q.get("_HLS_part"), q.get("_HLS_skip"))
        except PlaybackError as exc:
            check(exc.status == 400, "query errors must be 400")
            return
        check(isinstance(skip, bool), "skip must be a bool")
        if blocking is not None:
            msn, part = blocking
            check(0 <= msn < 10**10 and 0 <= part < 10**10, "msn/part out of range")  # at most 10 digits

    return harness


@target("ts_playlist")
def build_ts_playlist() -> Harness:
    """rewrite_ts_playlist on arbitrary playlist text: never an exception, one line per input line."""
    from onair.formats.hls import rewrite_ts_playlist

    def harness(data: bytes) -> None:
        if not data:
            return
        ctl, text = data[0], _text(data[1:])
        out = rewrite_ts_playlist(text, with_duration=bool(ctl & 1), ended=bool(ctl & 2), endlist=bool(ctl & 4))
        check(out.endswith("\n"), "playlist must end with a newline")

    return harness


@target("probe")
def build_probe() -> Harness:
    """ffmpeg stderr / ffprobe JSON parsing: never an exception, sane values."""
    from onair.formats.probe import SourceInfo, parse_ffmpeg_input_info, parse_ffprobe_json

    def harness(data: bytes) -> None:
        if not data:
            return
        text = _text(data[1:])
        info: Any = parse_ffprobe_json(text) if data[0] & 1 else parse_ffmpeg_input_info(text)
        check(isinstance(info, SourceInfo), "not a SourceInfo")
        check(info.fps is None or 0 < info.fps < 1000, "fps out of range")

    return harness


@target("source_head")
def build_source_head() -> Harness:
    """What a source head (FLV or MPEG-TS, in pieces) says of the source: never an exception, sane values."""
    from onair.formats.h264 import MAX_FPS
    from onair.formats.source_header import head_reader

    def harness(data: bytes) -> None:
        if not data:
            return
        reader = head_reader("mpegts" if data[0] & 1 else "flv")
        for piece in _pieces(data[1:], data[0]):
            reader.feed(piece)
        check(reader.info is None or reader.failed is None, "described and failed at once")
        info = reader.info
        if info is not None:
            check(info.has_video or info.has_audio, "described as nothing")
            check((info.width is None) == (info.height is None), "half a picture size")
            check(info.width is None or (info.width > 0 and info.height is not None and info.height > 0), "size")
            check(info.fps is None or 0 < info.fps <= MAX_FPS, "fps out of range")

    return harness


def replay(name: str, data: bytes) -> None:
    """Run one input through a target without atheris (regression tests, ``python -m fuzz --replay``)."""
    TARGETS[name].build()(data)
