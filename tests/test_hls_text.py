"""Playlist text that needs no packager: MPEG-TS master and rewrite, instant-clip playlists (pinned byte for byte),
and the listed durations of an LL-HLS media playlist."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import cast

import pytest

from onair.formats.hls import (
    TsVariant,
    render_clip_master,
    render_clip_media,
    render_clip_variant,
    render_hls_media,
    render_ts_master,
    rewrite_ts_playlist,
)
from onair.formats.manifest import TrackView

AUDIO_MEDIA = '#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,URI="c/audio/index.m3u8"'


def test_ts_master() -> None:
    variants = [
        TsVariant("360p", 640, 360, 928000, "avc1.64001e,mp4a.40.2"),
        TsVariant("720p", 1280, 720, 2500000, "avc1.64001f"),
    ]
    assert render_ts_master(variants, "get_duration_sec=true") == (
        "#EXTM3U\n#EXT-X-VERSION:6\n#EXT-X-INDEPENDENT-SEGMENTS\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=928000,RESOLUTION=640x360,CODECS="avc1.64001e,mp4a.40.2"\n'
        "360p/index.m3u8?get_duration_sec=true\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=2500000,RESOLUTION=1280x720,CODECS="avc1.64001f"\n'
        "720p/index.m3u8?get_duration_sec=true\n"
    )
    assert render_ts_master(variants[:1]).endswith("\n360p/index.m3u8\n")


def test_rewrite_ts_playlist() -> None:
    text = "#EXTM3U\n#EXTINF:2.000000,\n/x/y/seg1.ts\n#EXTINF:1.5,\nseg2.ts\n#EXTINF:nan,\nseg3.ts\n#EXT-X-ENDLIST\n"
    assert rewrite_ts_playlist(text, with_duration=True, ended=True, endlist=True) == (
        "#EXTM3U\n#EXTINF:2.000000,\nseg1.ts?duration_sec=2\n#EXTINF:1.5,\nseg2.ts?duration_sec=1.5\n"
        "#EXTINF:nan,\nseg3.ts\n#EXT-X-ENDLIST\n"
    )
    assert rewrite_ts_playlist(text, with_duration=False, ended=True, endlist=False) == (
        "#EXTM3U\n#EXTINF:2.000000,\nseg1.ts\n#EXTINF:1.5,\nseg2.ts\n#EXTINF:nan,\nseg3.ts\n"
    )


def test_clip_media() -> None:
    assert render_clip_media([2.0, 1.96]) == (
        "#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-TARGETDURATION:2\n#EXT-X-PLAYLIST-TYPE:VOD\n#EXT-X-MEDIA-SEQUENCE:0\n"
        '#EXT-X-MAP:URI="init.mp4"\n#EXTINF:2.000,\nseg0.m4s\n#EXTINF:1.960,\nseg1.m4s\n#EXT-X-ENDLIST\n'
    )


def test_clip_master_and_variant() -> None:
    head = "#EXTM3U\n#EXT-X-VERSION:7\n"
    variants = [("c/180p/index.m3u8", 243460), ("c/360p/index.m3u8", 0)]
    assert render_clip_master(variants, "c/audio/index.m3u8") == (
        head + "#EXT-X-INDEPENDENT-SEGMENTS\n" + AUDIO_MEDIA + "\n"
        '#EXT-X-STREAM-INF:BANDWIDTH=243460,AUDIO="aud"\nc/180p/index.m3u8\n'
        '#EXT-X-STREAM-INF:BANDWIDTH=1,AUDIO="aud"\nc/360p/index.m3u8\n'
    )
    assert render_clip_master([], "c/audio/index.m3u8") == (
        head + "#EXT-X-INDEPENDENT-SEGMENTS\n" + AUDIO_MEDIA + "\n"
        "#EXT-X-STREAM-INF:BANDWIDTH=128000\nc/audio/index.m3u8\n"
    )
    assert render_clip_master(variants[:1], None) == (
        head + "#EXT-X-INDEPENDENT-SEGMENTS\n#EXT-X-STREAM-INF:BANDWIDTH=243460\nc/180p/index.m3u8\n"
    )
    assert render_clip_variant("c/180p/index.m3u8", 243460, "c/audio/index.m3u8") == (
        head + AUDIO_MEDIA + '\n#EXT-X-STREAM-INF:BANDWIDTH=243460,AUDIO="aud"\nc/180p/index.m3u8\n'
    )


@dataclass
class _Part:
    duration: float
    independent: bool


@dataclass
class _Seg:
    msn: int
    start: float
    parts: list[_Part]
    program_date_time: datetime = datetime(2026, 1, 1, tzinfo=UTC)
    discontinuity: bool = False
    init_version: int = 0

    @property
    def duration(self) -> float:
        return sum(p.duration for p in self.parts)


@dataclass
class _Track:
    segments: list[_Seg]
    current: _Seg | None = None
    ended: bool = True
    target_duration: int = 2
    part_target: float = 0.201
    discontinuity_sequence: int = 0
    init_version: int = 0

    def init_uri(self, version: int) -> str:
        return "init.mp4"


def test_listed_durations_add_up_to_the_media_timeline() -> None:
    """0.2005 s parts (6 frames at a timescale of 11488 ticks/s): rounded one by one they would all read 0.201 and
    run 5 ms ahead a segment; Shaka re-derived its timestampOffset as they drifted and dropped the rest of each GOP."""
    part = 2304 / 11488
    segs = [_Seg(n, n * 10 * part, [_Part(part, i == 0) for i in range(10)]) for n in range(3)]
    text = render_hls_media(cast(TrackView, _Track(segs)))
    parts = [float(m) for m in re.findall(r"#EXT-X-PART:DURATION=([0-9.]+)", text)]
    extinf = [float(m) for m in re.findall(r"#EXTINF:([0-9.]+),", text)]
    assert len(parts) == 30 and len(extinf) == 3
    for k in range(1, 31):  # every part boundary within half a millisecond of the media's
        assert abs(sum(parts[:k]) - k * part) <= 0.0005 + 1e-9
    for n in range(3):
        assert sum(parts[10 * n:10 * n + 10]) == pytest.approx(extinf[n], abs=1e-9)
    assert abs(sum(extinf) - 30 * part) <= 0.0005 + 1e-9
