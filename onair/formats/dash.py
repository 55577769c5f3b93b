"""LL-DASH MPD text for the CMAF packager: one SegmentTimeline per Representation.

URL layout, relative to the MPD: {track}/init.mp4 (init-{n}.mp4 after an encoder restart) and
{track}/seg{msn}.m4s, the same files the LL-HLS playlists list.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime

from onair.formats.manifest import TrackView, fmt_ms, iso_ms, ready, videos_best_first

__all__ = ["render_dash_mpd"]


def _xs_duration(seconds: float) -> str:
    return f"PT{max(seconds, 0.0):.3f}S"


def render_dash_mpd(
    video_tracks: Sequence[TrackView],
    audio_track: TrackView | None,
    *,
    availability_start: datetime,
    now: datetime,
    ended: bool = False,
    latency_target: float = 3.0,
    include_in_progress: bool = False,
    utc_timing_url: str = "/time",
    time_shift_depth: float = 0.0,
) -> str:
    """LL-DASH MPD (dynamic while live, static once ended) with one SegmentTimeline per Representation.

    `availability_start` must be the wall-clock time of decode time 0 (see
    the packager's wallclock_anchor) so that AST + t/timescale matches segment arrival.
    `include_in_progress` also lists the in-progress segment with its nominal duration, which
    SegmentTimeline clients need to request it before it completes. `utc_timing_url` should be absolute:
    GStreamer's dashdemux (and DASH-IF IOP) resolve no relative UTCTiming value. `time_shift_depth`: the
    seconds the stream keeps listed once it has run that long; timeShiftBufferDepth is never less. dash.js
    caps its live delay at timeShiftBufferDepth, once, from the first MPD it reads: the 0.2-0.3 s listed
    just after the start made it chase the live edge for good, running dry at every segment.
    """
    videos = videos_best_first(video_tracks)
    audio = ready(audio_track)
    tracks = videos + ([audio] if audio is not None else [])
    max_seg = max((t.max_segment_duration for t in tracks), default=2.0)
    max_part = max((t.part_target for t in tracks), default=0.5)
    starts = [t.segments[0].start for t in tracks if t.segments]
    ends = [t.segments[-1].start + t.segments[-1].duration for t in tracks if t.segments]

    mpd = ET.Element(
        "MPD",
        {
            "xmlns": "urn:mpeg:dash:schema:mpd:2011",
            "profiles": "urn:mpeg:dash:profile:isoff-live:2011",
            "type": "static" if ended else "dynamic",
            "availabilityStartTime": iso_ms(availability_start),
            "publishTime": iso_ms(now),
            "maxSegmentDuration": _xs_duration(max_seg),
            "minBufferTime": _xs_duration(max(max_part, 0.5)),
        },
    )
    pto_seconds = 0.0
    if ended:
        pto_seconds = min(starts, default=0.0)
        mpd.set("mediaPresentationDuration", _xs_duration(max(ends, default=0.0) - pto_seconds))
    else:
        listed = min((sum(s.duration for s in t.segments) for t in tracks if t.segments), default=max_seg)
        window = max(listed, time_shift_depth)
        # a part: with a SegmentTimeline the next segment is known only from a newer MPD, and at 2 s
        # dash.js learned of it up to 2 s after it began, its buffer running dry meanwhile
        mpd.set("minimumUpdatePeriod", _xs_duration(max_part))
        mpd.set("timeShiftBufferDepth", _xs_duration(window))
        mpd.set("suggestedPresentationDelay", _xs_duration(latency_target))
        sd = ET.SubElement(mpd, "ServiceDescription", {"id": "0"})
        ET.SubElement(
            sd,
            "Latency",
            {
                "target": str(int(latency_target * 1000)),
                "min": str(int(latency_target * 750)),
                "max": str(int(latency_target * 2000)),
            },
        )
        ET.SubElement(sd, "PlaybackRate", {"min": "0.96", "max": "1.04"})

    period = ET.SubElement(mpd, "Period", {"id": "0", "start": "PT0S"})
    if videos:
        aset = ET.SubElement(
            period,
            "AdaptationSet",
            {
                "id": "0",
                "contentType": "video",
                "mimeType": "video/mp4",
                "segmentAlignment": "true",
                "startWithSAP": "1",
            },
        )
        for v in videos:
            t = v.track
            attrs = {
                "id": v.name,
                "bandwidth": str(max(v.bandwidth, 1)),
                "codecs": t.codec,
                "width": str(t.width),
                "height": str(t.height),
            }
            fr = v.frame_rate
            if fr:
                attrs["frameRate"] = _frame_rate_str(fr)
            rep = ET.SubElement(aset, "Representation", attrs)
            _segment_template(rep, v, ended, pto_seconds, include_in_progress)
    if audio is not None:
        a = audio.track
        aset = ET.SubElement(
            period,
            "AdaptationSet",
            {
                "id": "1",
                "contentType": "audio",
                "mimeType": "audio/mp4",
                "segmentAlignment": "true",
                "startWithSAP": "1",
            },
        )
        rep = ET.SubElement(
            aset,
            "Representation",
            {
                "id": audio.name,
                "bandwidth": str(max(audio.bandwidth, 1)),
                "codecs": a.codec,
                "audioSamplingRate": str(a.sample_rate),
            },
        )
        ET.SubElement(
            rep,
            "AudioChannelConfiguration",
            {"schemeIdUri": "urn:mpeg:mpegB:cicp:ChannelConfiguration", "value": str(a.channels or 2)},
        )
        _segment_template(rep, audio, ended, pto_seconds, include_in_progress)
    ET.SubElement(mpd, "UTCTiming", {"schemeIdUri": "urn:mpeg:dash:utc:http-iso:2014", "value": utc_timing_url})
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(mpd, encoding="unicode") + "\n"


def _frame_rate_str(fr: float) -> str:
    if abs(fr - round(fr)) < 1e-3:
        return str(round(fr))
    for den in (1001, 1000):
        num = fr * den
        if abs(num - round(num)) < 0.5:
            return f"{round(num)}/{den}"
    return f"{fr:.3f}"


def _segment_template(
    rep: ET.Element, tp: TrackView, ended: bool, pto_seconds: float, include_in_progress: bool
) -> None:
    ts = tp.track.timescale
    segs = list(tp.segments)
    attrs = {
        "timescale": str(ts),
        "initialization": f"{tp.name}/{tp.init_uri(tp.init_version)}",
        "media": f"{tp.name}/seg$Number$.m4s",
        "startNumber": str(segs[0].msn if segs else tp.first_msn or 0),
    }
    if ended:
        attrs["presentationTimeOffset"] = str(round(pto_seconds * ts))
    else:
        ato = max(tp.target_segment - tp.part_target, 0.0)
        attrs["availabilityTimeOffset"] = fmt_ms(ato)
        attrs["availabilityTimeComplete"] = "false"
    tmpl = ET.SubElement(rep, "SegmentTemplate", attrs)
    timeline = ET.SubElement(tmpl, "SegmentTimeline")
    entries = [(s.start_ticks, s.duration_ticks) for s in segs]
    cur = tp.current
    if include_in_progress and not ended and cur is not None and cur.parts:
        entries.append((cur.start_ticks, max(cur.duration_ticks, round(tp.segment_target(cur.msn) * ts))))
        if not segs:
            tmpl.set("startNumber", str(cur.msn))
    # Run-length encode equal, contiguous durations with @r.
    runs: list[list[int]] = []  # [t, d, r]
    for t, d in entries:
        if runs:
            last = runs[-1]
            if last[1] == d and last[0] + d * (last[2] + 1) == t:
                last[2] += 1
                continue
        runs.append([t, d, 0])
    for t, d, r in runs:
        s = {"t": str(t), "d": str(d)}
        if r:
            s["r"] = str(r)
        ET.SubElement(timeline, "S", s)
