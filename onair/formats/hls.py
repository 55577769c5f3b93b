"""HLS playlist text: LL-HLS for the CMAF packager, legacy MPEG-TS playlists, and VOD playlists of clips.

URL layout of the CMAF playlists, relative to the master playlist::

    master.m3u8
    {track}/index.m3u8  {track}/init.mp4  {track}/seg{msn}.m4s  {track}/part{msn}.{i}.m4s
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

from onair.formats.manifest import SegmentView, TrackView, fmt_ms, fmt_ms_ceil, iso_ms, ready, videos_best_first

__all__ = [
    "PART_SEGMENTS",
    "TsVariant",
    "hold_back_for_parts",
    "render_clip_master",
    "render_clip_media",
    "render_clip_variant",
    "render_hls_master",
    "render_hls_media",
    "render_ts_master",
    "rewrite_ts_playlist",
]

# Segments whose parts are still listed in media playlists (RFC 8216bis: ~3 target durations).
PART_SEGMENTS = 3


# ---------------------------------------------------------------------------
# LL-HLS (CMAF)


def render_hls_master(video_tracks: Sequence[TrackView], audio_track: TrackView | None) -> str:
    """Multivariant playlist; variants sorted by resolution then bandwidth, highest first."""
    audio = ready(audio_track)
    lines = ["#EXTM3U", "#EXT-X-VERSION:9", "#EXT-X-INDEPENDENT-SEGMENTS"]
    a_bw = a_avg = 0
    if audio is not None:
        a = audio.track
        a_bw, a_avg = audio.bandwidth, audio.average_bandwidth
        lines.append(
            f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="{audio.name}",DEFAULT=YES,AUTOSELECT=YES,'
            f'CHANNELS="{a.channels or 2}",URI="{audio.name}/index.m3u8"'
        )
    videos = videos_best_first(video_tracks)
    for v in videos:
        t = v.track
        codecs = t.codec + (f",{audio.track.codec}" if audio is not None else "")
        attrs = [
            f"BANDWIDTH={max(v.bandwidth + a_bw, 1)}",
            f"AVERAGE-BANDWIDTH={max(v.average_bandwidth + a_avg, 1)}",
            f"RESOLUTION={t.width}x{t.height}",
            f'CODECS="{codecs}"',
        ]
        fr = v.frame_rate
        if fr:
            attrs.append(f"FRAME-RATE={fr:.3f}")
        if audio is not None:
            attrs.append('AUDIO="aud"')
        # the transcoder writes no CEA-608/708 (-a53cc 0): saying so spares players a probe for them (Shaka's
        # probe fetches the in-progress segment of a young live playlist by its absent URI, and fails)
        attrs.append("CLOSED-CAPTIONS=NONE")
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attrs))
        lines.append(f"{v.name}/index.m3u8")
    if not videos and audio is not None:
        # Audio-only stream: expose the audio playlist as the single variant.
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={max(a_bw, 1)},CODECS="{audio.track.codec}"')
        lines.append(f"{audio.name}/index.m3u8")
    return "\n".join(lines) + "\n"


def hold_back_for_parts(part_target: float, requested: float | None = None) -> float:
    """PART-HOLD-BACK: how far behind the live edge a low-latency player starts (3 parts unless asked
    otherwise, never under the RFC 8216bis minimum of 2)."""
    return max(requested if requested is not None else 3 * part_target, 2 * part_target)


def render_hls_media(
    track: TrackView,
    *,
    other_tracks_for_reports: Sequence[TrackView] = (),
    part_hold_back: float | None = None,
    skip: bool = False,
    ended: bool | None = None,
) -> str:
    """LL-HLS media playlist for one track. `skip=True` renders a delta update (_HLS_skip=YES)."""
    if ended is None:
        ended = track.ended
    td = track.target_duration
    part_target = track.part_target
    phb = hold_back_for_parts(part_target, part_hold_back)
    skip_until = 6 * td
    segs = list(track.segments)
    cur = track.current if track.current is not None and track.current.parts else None
    first = segs[0] if segs else cur
    map_version = first.init_version if first is not None else track.init_version

    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:9",
        f"#EXT-X-TARGETDURATION:{td}",
        # HOLD-BACK for players that ignore parts: the RFC minimum, said out loud so they need not guess
        "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,"
        f"CAN-SKIP-UNTIL={fmt_ms(skip_until)},HOLD-BACK={fmt_ms(3 * td)},PART-HOLD-BACK={fmt_ms_ceil(phb)}",
        f"#EXT-X-PART-INF:PART-TARGET={fmt_ms(part_target)}",
        f"#EXT-X-MEDIA-SEQUENCE:{first.msn if first is not None else 0}",
    ]
    if track.discontinuity_sequence:
        lines.append(f"#EXT-X-DISCONTINUITY-SEQUENCE:{track.discontinuity_sequence}")
    lines.append(f'#EXT-X-MAP:URI="{track.init_uri(map_version)}"')
    skipped = _skippable(segs, cur, skip_until) if skip else 0
    if skipped:
        lines.append(f"#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}")
    with_parts = {s.msn for s in segs[-PART_SEGMENTS:]}
    lines.extend(_segment_lines(track, segs[skipped:], cur, map_version, with_parts))
    if ended:
        lines.append("#EXT-X-ENDLIST")
    else:
        msn, idx = track.next_part_ref()
        lines.append(f'#EXT-X-PRELOAD-HINT:TYPE=PART,URI="part{msn}.{idx}.m4s"')
    lines.extend(_rendition_reports(track, other_tracks_for_reports))
    return "\n".join(lines) + "\n"


def _skippable(segs: Sequence[SegmentView], cur: SegmentView | None, skip_until: float) -> int:
    """Leading complete segments that end more than CAN-SKIP-UNTIL before the playlist end."""
    if not segs:
        return 0
    total_end = (cur.start + cur.duration) if cur is not None else segs[-1].start + segs[-1].duration
    skipped = 0
    while skipped < len(segs) and segs[skipped].start + segs[skipped].duration < total_end - skip_until:
        skipped += 1
    return skipped


def _segment_lines(
    track: TrackView, listed: Sequence[SegmentView], cur: SegmentView | None, map_version: int, with_parts: set[int]
) -> list[str]:
    """Tags and URIs of the listed complete segments, then the in-progress one (its parts only).

    Parts are listed for the in-progress segment and the complete ones in `with_parts`."""
    lines: list[str] = []
    for seg in [*listed, *([cur] if cur is not None else [])]:
        # A new encoder byte stream: timestamps jump, and the init segment may differ.
        if seg.discontinuity:
            lines.append("#EXT-X-DISCONTINUITY")
        if seg.init_version != map_version:
            map_version = seg.init_version
            lines.append(f'#EXT-X-MAP:URI="{track.init_uri(map_version)}"')
        lines.append(f"#EXT-X-PROGRAM-DATE-TIME:{iso_ms(seg.program_date_time)}")
        if seg is cur or seg.msn in with_parts:
            lines.extend(_part_lines(seg))
        if seg is not cur:
            lines.append(f"#EXTINF:{_listed_duration(seg.start, seg.duration)},")
            lines.append(f"seg{seg.msn}.m4s")
    return lines


def _listed_duration(start: float, duration: float) -> str:
    """A duration as listed: the difference of its rounded ends on the track timeline, so listed durations add
    up to the media's times. Rounded one by one, 0.2005 s parts listed as 0.201 ran ahead 4-5 ms a segment; Shaka
    re-derived its timestampOffset as they drifted, and every change aborted its SourceBuffer, which then dropped
    the rest of the GOP (a hole in the video buffer at every segment)."""
    return fmt_ms(round(start + duration, 3) - round(start, 3))


def _part_lines(seg: SegmentView) -> list[str]:
    out = []
    start = seg.start
    for i, p in enumerate(seg.parts):
        line = f'#EXT-X-PART:DURATION={_listed_duration(start, p.duration)},URI="part{seg.msn}.{i}.m4s"'
        start += p.duration
        if p.independent:
            line += ",INDEPENDENT=YES"
        out.append(line)
    return out


def _rendition_reports(track: TrackView, others: Sequence[TrackView]) -> list[str]:
    out = []
    for other in others:
        if other is track:
            continue
        ref = other.last_part_ref()
        if ref is None:
            continue
        out.append(f'#EXT-X-RENDITION-REPORT:URI="../{other.name}/index.m3u8",LAST-MSN={ref[0]},LAST-PART={ref[1]}')
    return out


# ---------------------------------------------------------------------------
# Legacy HLS with MPEG-TS (ffmpeg writes the media playlists; they are rewritten on the way out)


class TsVariant(NamedTuple):
    name: str  # rendition name, also its directory
    width: int
    height: int
    bandwidth: int  # bits/s
    codecs: str  # RFC 6381 list, e.g. "avc1.64001f,mp4a.40.2"


def render_ts_master(variants: Sequence[TsVariant], query: str = "") -> str:
    """Master playlist of the MPEG-TS renditions; `query` (if any) is appended to each media URI."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:6", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for v in variants:
        lines.append(f'#EXT-X-STREAM-INF:BANDWIDTH={v.bandwidth},RESOLUTION={v.width}x{v.height},CODECS="{v.codecs}"')
        lines.append(f"{v.name}/index.m3u8" + (f"?{query}" if query else ""))
    return "\n".join(lines) + "\n"


def _duration_text(value: float) -> str:
    return str(int(value)) if abs(value - round(value)) < 1e-6 else f"{value:.3f}".rstrip("0")


def rewrite_ts_playlist(text: str, *, with_duration: bool, ended: bool, endlist: bool) -> str:
    """ffmpeg's rolling playlist: `?duration_sec=` per segment if `with_duration`, ENDLIST once `ended` if `endlist`."""
    out: list[str] = []
    duration: float | None = None
    for line in text.splitlines():
        if line.startswith("#EXT-X-ENDLIST"):
            continue
        if line.startswith("#EXTINF:"):
            try:
                duration = float(line[8:].split(",")[0])
            except ValueError:
                duration = None
            if duration is not None and not 0 <= duration < 1e9:  # nan/inf cannot be rounded
                duration = None
        elif line and not line.startswith("#"):
            name = line.rsplit("/", 1)[-1]
            if with_duration and duration is not None:
                name += f"?duration_sec={_duration_text(duration)}"
            line = name
        out.append(line)
    if ended and endlist:
        out.append("#EXT-X-ENDLIST")
    return "\n".join(out) + "\n"


# ---------------------------------------------------------------------------
# Instant clips (fMP4 VOD: {track}/index.m3u8 with init.mp4 + seg{i}.m4s, and master/variant playlists)


def render_clip_media(durations: Sequence[float]) -> str:
    """VOD media playlist of one clip track: init.mp4 then seg0.m4s, seg1.m4s, ... (at least one)."""
    td = max(1, math.ceil(max(durations)))
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", f"#EXT-X-TARGETDURATION:{td}", "#EXT-X-PLAYLIST-TYPE:VOD",
             "#EXT-X-MEDIA-SEQUENCE:0", '#EXT-X-MAP:URI="init.mp4"']
    for i, d in enumerate(durations):
        lines += [f"#EXTINF:{d:.3f},", f"seg{i}.m4s"]
    return "\n".join(lines + ["#EXT-X-ENDLIST"]) + "\n"


def _clip_audio_lines(audio_uri: str | None) -> list[str]:
    if audio_uri is None:
        return []
    return [f'#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID="aud",NAME="audio",DEFAULT=YES,AUTOSELECT=YES,URI="{audio_uri}"']


def _clip_stream_inf(bandwidth: int, with_audio: bool) -> str:
    return f"#EXT-X-STREAM-INF:BANDWIDTH={max(bandwidth, 1)}" + (',AUDIO="aud"' if with_audio else "")


def render_clip_master(variants: Sequence[tuple[str, int]], audio_uri: str | None) -> str:
    """Clip master playlist: (media playlist URI, bandwidth) per video variant, lowest first, plus the
    audio group; an audio-only clip lists its audio playlist as the single variant."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", "#EXT-X-INDEPENDENT-SEGMENTS", *_clip_audio_lines(audio_uri)]
    for uri, bandwidth in variants:
        lines += [_clip_stream_inf(bandwidth, audio_uri is not None), uri]
    if not variants and audio_uri is not None:
        lines += ["#EXT-X-STREAM-INF:BANDWIDTH=128000", audio_uri]
    return "\n".join(lines) + "\n"


def render_clip_variant(uri: str, bandwidth: int, audio_uri: str | None) -> str:
    """Playlist of one clip rendition alone (its video variant and the audio group)."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:7", *_clip_audio_lines(audio_uri),
             _clip_stream_inf(bandwidth, audio_uri is not None), uri]
    return "\n".join(lines) + "\n"


def vod_master_playlist(bandwidth: int, resolution: str | None, codecs: str, uri: str) -> str:
    """The one-variant master playlist of a VOD HLS; ``resolution`` is "WxH" or None if unknown."""
    res = f",RESOLUTION={resolution}" if resolution else ""
    return (f"#EXTM3U\n#EXT-X-VERSION:7\n#EXT-X-INDEPENDENT-SEGMENTS\n"
            f'#EXT-X-STREAM-INF:BANDWIDTH={bandwidth}{res},CODECS="{codecs}"\n'
            f"{uri}\n")
