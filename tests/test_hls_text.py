"""Playlist text that needs no packager: MPEG-TS master and rewrite, instant-clip playlists (pinned byte for byte)."""

from __future__ import annotations

from onair.formats.hls import (
    TsVariant,
    render_clip_master,
    render_clip_media,
    render_clip_variant,
    render_ts_master,
    rewrite_ts_playlist,
)

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
