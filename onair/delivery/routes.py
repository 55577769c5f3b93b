"""Playback over HTTP: LL-HLS (CMAF), LL-DASH, legacy HLS with MPEG-TS, and the stream screenshot.

Public paths follow the stream object's URLs (`/cmaf/{cid}_{sid}/master.m3u8` and so on); the
rendition paths beneath them are internal and may change. Each path also exists with `/t/{token}` after
the part naming the stream (`/cmaf/{cid}_{sid}/t/{token}/master.m3u8`): a playback token (signing.py),
required when the stream has `playback_signed`, checked whenever present.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse

from onair.delivery.metrics import PLAYBACK_REQUESTS
from onair.delivery.playback import Playback, playback_of
from onair.formats.hls import TsVariant, render_ts_master, rewrite_ts_playlist
from onair.hub.live_stream import LiveStream
from onair.package.live import LiveRendition, LiveStreamPackage

router = APIRouter(tags=["playback"])

HLS_TYPE = "application/vnd.apple.mpegurl"
# Lifetimes that keep a shared cache (the nginx edge of `onair edge-config`) correct:
NO_CACHE = {"Cache-Control": "no-cache, no-store"}  # errors, in-progress segments: never stored
SHORT_CACHE = {"Cache-Control": "public, max-age=1"}  # master playlists
# live media playlists and MPDs change with every part: a shared cache keeps one for a second, players
# revalidate (max-age=0); a blocking reload's answer contains the part it waited for and stays right
LIVE_PLAYLIST_CACHE = {"Cache-Control": "public, max-age=0, s-maxage=1"}
BLOCKING_RELOAD_CACHE = {"Cache-Control": "public, max-age=2"}
# parts, segments, init sections never change under their name; 30 s outlives the live window they are asked
# for in, yet not the session: a new session numbers its media from 0 again
MEDIA_CACHE = {"Cache-Control": "public, max-age=30, immutable"}
_NAME = re.compile(r"^[A-Za-z0-9]{1,16}$")
_SEG = re.compile(r"^seg([0-9]{1,9})\.m4s$")
_PART = re.compile(r"^part([0-9]{1,9})\.([0-9]{1,4})\.m4s$")
_INIT = re.compile(r"^init-([0-9]{1,9})\.mp4$")
_TS = re.compile(r"^seg([0-9]{1,9})\.ts$")
_HLS_INT = re.compile(r"[0-9]{1,10}")
READY_WAIT = 4.0


class PlaybackError(Exception):
    def __init__(self, status: int, text: str, err_code: str | None = None) -> None:
        self.status, self.text, self.err_code = status, text, err_code


def _error(exc: PlaybackError, kind: str) -> Response:
    PLAYBACK_REQUESTS.labels(kind, str(exc.status)).inc()
    headers = {"X-Err-Code": exc.err_code, **NO_CACHE} if exc.err_code else dict(NO_CACHE)
    return PlainTextResponse(exc.text + "\n", status_code=exc.status, headers=headers)


def _ok(kind: str, response: Response) -> Response:
    PLAYBACK_REQUESTS.labels(kind, str(response.status_code)).inc()
    return response


def _node(request: Request) -> Playback:
    return playback_of(request)


def _stream_id(node: Playback, pid: str) -> int:
    sid = node.urls.parse_public_id(pid)
    if sid is None:
        raise PlaybackError(404, "no such stream", "2000")
    return sid


def _saw_viewer(request: Request, stream: LiveStream) -> None:
    # a viewer is a client address and player: several players behind one address count apart
    address = request.client.host if request.client else "?"
    stream.saw_viewer(f"{address} {request.headers.get('user-agent', '')[:200]}")


def _output(node: Playback, pid: str) -> LiveStream:
    output = node.hub.get(_stream_id(node, pid))
    if output is None:
        raise PlaybackError(404, "stream is not live", "1000")
    return output


async def _live(request: Request, pid: str) -> LiveStream:
    """The live stream of `pid` once the request may play it (the `{token}` of a `/t/{token}/` path)."""
    node = _node(request)
    token = request.path_params.get("token")
    if not await node.guard.allows(_stream_id(node, pid), token):
        raise PlaybackError(403, "a valid playback token is required" if token is None else "invalid playback token")
    return _output(node, pid)


async def _package(request: Request, pid: str) -> LiveStreamPackage:
    output = await _live(request, pid)
    _saw_viewer(request, output)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + READY_WAIT
    # the first segment needs ffmpeg to start and produce a GOP: wait a little instead of failing at once
    while output.package is None and not output.ended and loop.time() < deadline:
        try:
            await asyncio.wait_for(output.package_ready.wait(), min(0.2, deadline - loop.time()))
        except TimeoutError:
            pass  # looked at again: the stream may have ended meanwhile
    if output.package is None or not await output.package.wait_ready(deadline - loop.time()):
        raise PlaybackError(404, "stream not ready yet", "3000")
    return output.package


def _rendition(pkg: LiveStreamPackage, name: str) -> LiveRendition:
    if not _NAME.match(name):
        raise PlaybackError(404, "no such rendition")
    try:
        return pkg.rendition(name)
    except KeyError:
        raise PlaybackError(404, "no such rendition") from None


@router.get("/time", include_in_schema=False)
async def utc_time() -> PlainTextResponse:
    # UTCTiming source for DASH players (urn:mpeg:dash:utc:http-iso:2014)
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    return PlainTextResponse(now, headers=NO_CACHE)


@router.get("/cmaf/{pid}/master.m3u8")
@router.get("/cmaf/{pid}/t/{token}/master.m3u8", include_in_schema=False)
async def cmaf_master(request: Request, pid: str) -> Response:
    try:
        pkg = await _package(request, pid)
    except PlaybackError as exc:
        return _error(exc, "hls_master")
    return _ok("hls_master", Response(pkg.render_master(), media_type=HLS_TYPE, headers=SHORT_CACHE))


@router.get("/cmaf/{pid}/index.mpd")
@router.get("/cmaf/{pid}/t/{token}/index.mpd", include_in_schema=False)
async def dash_manifest(request: Request, pid: str) -> Response:
    try:
        pkg = await _package(request, pid)
    except PlaybackError as exc:
        return _error(exc, "dash_mpd")
    mpd = pkg.render_mpd(include_in_progress=True, utc_timing_url=_node(request).urls.http_base + "/time")
    return _ok("dash_mpd", Response(mpd, media_type="application/dash+xml", headers=LIVE_PLAYLIST_CACHE))


def parse_hls_query(
    msn_s: str | None, part_s: str | None, skip_s: str | None
) -> tuple[tuple[int, int] | None, bool]:
    """LL-HLS `_HLS_msn`/`_HLS_part`/`_HLS_skip`: ((msn, part) of a blocking reload or None, skip).

    Raises PlaybackError(400) for malformed values (pure: fuzzed by `fuzz/targets.py` hls_query).
    """
    if part_s is not None and msn_s is None:
        raise PlaybackError(400, "_HLS_part requires _HLS_msn")
    skip = (skip_s or "").upper() in ("YES", "V2")
    if msn_s is None:
        return None, skip
    # ASCII digits only: str.isdigit() accepts "²" (int() then fails) and int() refuses > 4300 digits
    if not _HLS_INT.fullmatch(msn_s) or (part_s is not None and not _HLS_INT.fullmatch(part_s)):
        raise PlaybackError(400, "_HLS_msn and _HLS_part must be non-negative integers")
    return (int(msn_s), int(part_s) if part_s is not None else 0), skip


@router.get("/cmaf/{pid}/{name}/index.m3u8")
@router.get("/cmaf/{pid}/t/{token}/{name}/index.m3u8", include_in_schema=False)
async def cmaf_media(request: Request, pid: str, name: str) -> Response:
    q = request.query_params
    try:
        pkg = await _package(request, pid)
        rendition = _rendition(pkg, name)
        msn_s = q.get("_HLS_msn")
        blocking, skip = parse_hls_query(msn_s, q.get("_HLS_part"), q.get("_HLS_skip"))
        headers = LIVE_PLAYLIST_CACHE
        if blocking is not None:
            msn, part = blocking
            if rendition.is_too_far_ahead(msn):
                raise PlaybackError(400, "_HLS_msn is too far ahead of the live edge")
            target = rendition.packager.target_duration or 2
            # timed out: the answer lacks the awaited part, a cache must not hand it to the next asker
            arrived = await rendition.wait_for_part(msn, part, timeout=3 * target)
            headers = BLOCKING_RELOAD_CACHE if arrived else NO_CACHE
        elif not await rendition.wait_past_first_segment(timeout=rendition.packager.target_duration or 2):
            headers = NO_CACHE
        body = pkg.media_playlist(name, skip=skip)
    except PlaybackError as exc:
        return _error(exc, "hls_media")
    return _ok("hls_media", Response(body, media_type=HLS_TYPE, headers=headers))


@router.get("/cmaf/{pid}/{name}/{file}")
@router.get("/cmaf/{pid}/t/{token}/{name}/{file}", include_in_schema=False)
async def cmaf_media_file(request: Request, pid: str, name: str, file: str) -> Response:
    part, seg = _PART.match(file), _SEG.match(file)
    kind = ("cmaf_init" if file == "init.mp4" or _INIT.match(file) else "cmaf_part" if part
            else "cmaf_segment" if seg else "cmaf_media")
    try:
        rendition = _rendition(await _package(request, pid), name)
        if kind == "cmaf_init":
            return _ok(kind, await _init_file(rendition, file))
        if part:
            return _ok(kind, await _part_file(rendition, int(part[1]), int(part[2])))
        if seg:
            return _ok(kind, await _segment_file(request, pid, rendition, int(seg[1])))
        raise PlaybackError(404, "no such file")
    except PlaybackError as exc:
        return _error(exc, kind)


async def _init_file(rendition: LiveRendition, file: str) -> Response:
    packager = rendition.packager
    if file == "init.mp4":
        if not await rendition.wait_for_init(timeout=5) or packager.init is None:
            raise PlaybackError(404, "no init segment")
        return Response(packager.inits.get(0, packager.init), media_type="video/mp4", headers=MEDIA_CACHE)
    # init-{n}.mp4: init segment of a later encoder byte stream (after a failover or transcoder restart)
    m = _INIT.match(file)
    init = packager.inits.get(int(m[1])) if m else None
    if init is None:
        raise PlaybackError(404, "no such file")
    return Response(init, media_type="video/mp4", headers=MEDIA_CACHE)


async def _part_file(rendition: LiveRendition, msn: int, idx: int) -> Response:
    if rendition.is_too_far_ahead(msn):
        raise PlaybackError(404, "part not available")
    packager = rendition.packager
    # a preload-hinted part is requested before it exists: hold the request until it does
    await rendition.wait_for_part(msn, idx, timeout=3 * (packager.target_duration or 2))
    got = packager.get_part(msn, idx)
    if got is None:
        raise PlaybackError(404, "part not available")
    return Response(got.data, media_type="video/mp4", headers=MEDIA_CACHE)


async def _segment_file(request: Request, pid: str, rendition: LiveRendition, msn: int) -> Response:
    packager = rendition.packager
    if (old := packager.get_segment(msn)) is not None and old.evicted:
        # older than the in-memory window: a DVR segment on disk
        archive = _output(_node(request), pid).archive
        data = await asyncio.to_thread(archive.read, rendition.name, old.msn) if archive is not None else None
        if data is None:
            raise PlaybackError(404, "segment not available")
        return Response(data, media_type="video/mp4", headers=MEDIA_CACHE)
    chunks = await rendition.wait_for_segment_bytes(msn, timeout=3 * (packager.target_duration or 2))
    if chunks is None:
        raise PlaybackError(404, "segment not available")
    seg = packager.get_segment(msn)
    if seg is not None and seg.complete:
        return Response(seg.data, media_type="video/mp4", headers=MEDIA_CACHE)
    # the segment being written goes out with chunked transfer, part by part (LL-DASH)
    return StreamingResponse(chunks, media_type="video/mp4", headers=NO_CACHE)


# --- legacy HLS with MPEG-TS -----------------------------------------------------------------------

def _ts_master(output: LiveStream, query: str) -> str:
    audio_codec = "mp4a.40.2" if output.transcoder.stats.audio_codec else None
    variants = []
    for r in output.transcoder.plan:
        codec = _packaged_codec(output.package, r.name)
        if codec is None:
            codec = "avc1.64001f"  # no init segment to read it from: assume H.264 High
        variants.append(TsVariant(
            name=r.name, width=r.width, height=r.height,
            bandwidth=(r.video_kbps + (128 if audio_codec else 0)) * 1000,
            codecs=codec + (f",{audio_codec}" if audio_codec else ""),
        ))
    return render_ts_master(variants, query)


def _packaged_codec(pkg: LiveStreamPackage | None, name: str) -> str | None:
    """The rendition's actual video codec string once its CMAF init segment is known."""
    if pkg is None:
        return None
    try:
        return pkg.rendition(name).packager.track.codec
    except (KeyError, AttributeError, ValueError):
        return None


@router.get("/mpegts/{pid}/master_mpegts.m3u8")
@router.get("/mpegts/{pid}/t/{token}/master_mpegts.m3u8", include_in_schema=False)
async def ts_master(request: Request, pid: str) -> Response:
    try:
        await _package(request, pid)
        output = _output(_node(request), pid)  # playable: _package checked
    except PlaybackError as exc:
        return _error(exc, "ts_master")
    query = "get_duration_sec=true" if request.query_params.get("get_duration_sec") == "true" else ""
    return _ok("ts_master", Response(_ts_master(output, query), media_type=HLS_TYPE, headers=SHORT_CACHE))


@router.get("/mpegts/{pid}/{name}/index.m3u8")
@router.get("/mpegts/{pid}/t/{token}/{name}/index.m3u8", include_in_schema=False)
async def ts_media(request: Request, pid: str, name: str) -> Response:
    try:
        output = await _live(request, pid)
        _saw_viewer(request, output)
        if not _NAME.match(name) or name not in {r.name for r in output.transcoder.plan}:
            raise PlaybackError(404, "no such rendition")
        path = output.ts_dir / name / "index.m3u8"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_WAIT
        while not path.exists():
            if output.ended or loop.time() > deadline:
                raise PlaybackError(404, "stream not ready yet", "3000")
            await asyncio.sleep(0.25)
        text = path.read_text(errors="replace")
        if output.archive is not None:
            text = output.archive.filter_ts(name, text)  # hides what dvr_cleanup removed
    except PlaybackError as exc:
        return _error(exc, "ts_media")
    body = rewrite_ts_playlist(text, with_duration=request.query_params.get("get_duration_sec") == "true",
                               ended=output.ended, endlist=output.endlist)
    return _ok("ts_media", Response(body, media_type=HLS_TYPE, headers=LIVE_PLAYLIST_CACHE))


@router.get("/mpegts/{pid}/{name}/{file}")
@router.get("/mpegts/{pid}/t/{token}/{name}/{file}", include_in_schema=False)
async def ts_segment(request: Request, pid: str, name: str, file: str) -> Response:
    try:
        output = await _live(request, pid)
        if not _NAME.match(name) or not _TS.match(file):
            raise PlaybackError(404, "no such segment")
        path: Path = output.ts_dir / name / file
        if not path.is_file():
            raise PlaybackError(404, "no such segment")
    except PlaybackError as exc:
        return _error(exc, "ts_segment")
    return _ok("ts_segment", FileResponse(path, media_type="video/mp2t", headers=MEDIA_CACHE))


@router.get("/videoplatform/streams/{cid}/{sid}/screenshots/last.jpg")
@router.get("/videoplatform/streams/{cid}/{sid}/t/{token}/screenshots/last.jpg",
            include_in_schema=False)
async def screenshot(request: Request, cid: str, sid: str) -> Response:
    try:
        output = await _live(request, f"{cid}_{sid}")
        path = output.screenshot_path
        if not path.is_file():
            raise PlaybackError(404, "no screenshot yet", "3000")
        data = path.read_bytes()  # read whole: ffmpeg replaces it atomically every 10 s
    except PlaybackError as exc:
        return _error(exc, "screenshot")
    return _ok("screenshot", Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=5"}))
