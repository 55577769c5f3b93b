"""Playback of the video library: recordings and instant clips.

    /videos/{cid}_{slug}/master.m3u8 (MPEG-TS HLS), master-cmaf.m3u8 (fMP4 HLS), master.mpd (DASH), poster.jpg,
        {hls,cmaf}/..., any `*.mp4` name the API hands out (origin_*/converted_videos), + /download[={name}]
    /rec/{cid}_{sid}/rec_{clip}_qsid{n}_{master|rendition}.{m3u8|mp4}, rec_{clip}/{track}/...
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import PurePosixPath

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse, StreamingResponse

from onair.delivery.playback import Playback, playback_of
from onair.store.models import Clip

router = APIRouter(tags=["vod"])
log = logging.getLogger("onair.delivery.vod")

HLS_TYPE = "application/vnd.apple.mpegurl"
CACHE = {"Cache-Control": "public, max-age=60"}
_VID = re.compile(r"^([0-9]{1,10})_([A-Za-z0-9]{1,32})$")
_VOD_FILE = re.compile(r"^(master\.m3u8|master-cmaf\.m3u8|master\.mpd|poster\.jpg|hls/(index\.m3u8|seg[0-9]{1,6}\.ts)"
                       r"|cmaf/(index\.m3u8|init\.mp4|seg[0-9]{1,6}\.m4s)"
                       r"|dash/(init-[0-9]{1,2}\.m4s|chunk-[0-9]{1,2}-[0-9]{5,6}\.m4s))$")
_MP4 = re.compile(r"^[A-Za-z0-9_]{1,64}\.mp4$")
_DOWNLOAD = re.compile(r"^download(=([A-Za-z0-9_-][A-Za-z0-9_.-]{0,254}))?$")
_CLIP_TOP = re.compile(r"^rec_([a-z0-9]{1,32})_qsid[0-9]{1,10}_(master|media_[0-9]{1,2}_[0-9]{1,5})\.(m3u8|mp4)$")
_CLIP_MEDIA = re.compile(r"^rec_([a-z0-9]{1,32})/([A-Za-z0-9]{1,16})/(index\.m3u8|init\.mp4|seg[0-9]{1,6}\.m4s)$")
_TYPES = {".m3u8": HLS_TYPE, ".ts": "video/mp2t", ".m4s": "video/iso.segment", ".mp4": "video/mp4",
          ".jpg": "image/jpeg", ".mpd": "application/dash+xml"}


def _node(request: Request) -> Playback:
    return playback_of(request)


def _missing(text: str = "not found", status: int = 404) -> Response:
    return PlainTextResponse(text + "\n", status_code=status, headers={"Cache-Control": "no-cache"})


async def _file(request: Request, name: str, headers: dict[str, str] | None = None,
                missing: Response | None = None) -> Response:
    """The library file `name` (`videos/{slug}/...`, `clips/{id}/...`): from this node's disk, else from the
    object storage, where another node put what it finished; `missing` (default 404) when neither has it."""
    library = _node(request).library
    path = library.local(name)
    media_type = _TYPES.get(PurePosixPath(name).suffix, "application/octet-stream")
    if path.is_file():
        return FileResponse(path, media_type=media_type, headers={**CACHE, **(headers or {})})
    if library.storage is None:
        return missing or _missing()
    try:
        stored = await library.storage.get(name, request.headers.get("range"))
    except library.storage.errors as exc:
        log.warning("object storage unavailable", extra={"object": name, "error": type(exc).__name__})
        return _missing("storage unavailable, try again", 503)
    if stored is None:
        return missing or _missing()
    if stored.status == 416:
        return _missing("range not satisfiable", 416)
    return StreamingResponse(stored.chunks(), status_code=stored.status, media_type=media_type,
                             headers={**CACHE, **stored.headers, **(headers or {})})


@router.get("/videos/{vid}/{file:path}")
async def video_file(request: Request, vid: str, file: str) -> Response:
    node = _node(request)
    m = _VID.match(vid)
    if m is None or int(m[1]) != node.urls.client_id:
        return _missing()
    vdir = node.library.video_name(m[2])
    if _VOD_FILE.match(file):
        return await _file(request, f"{vdir}/{file}")
    name, _, rest = file.partition("/")
    if not _MP4.match(name):
        return _missing()
    # every MP4 name the API hands out for a recording is its one MP4 (origin = the only rendition)
    if not rest:
        return await _file(request, f"{vdir}/video.mp4")
    d = _DOWNLOAD.match(rest)
    if d is None:
        return _missing()
    filename = (d[2] + ".mp4") if d[2] else name
    return await _file(request, f"{vdir}/video.mp4", {"Content-Disposition": f'attachment; filename="{filename}"'})


@router.get("/rec/{pid}/{file:path}")
async def clip_file(request: Request, pid: str, file: str) -> Response:
    node = _node(request)
    stream_id = node.urls.parse_public_id(pid)
    if stream_id is None:
        return _missing()
    top, media = _CLIP_TOP.match(file), _CLIP_MEDIA.match(file)
    found = top or media
    if found is None:
        return _missing()
    clip_id = found[1]
    async with node.sessionmaker() as db:
        clip = await db.get(Clip, clip_id)
    now = time.time()
    if clip is None or clip.stream_id != stream_id or now >= clip.expiration:
        return _missing("clip not found or expired")
    d = node.library.clip_name(clip_id)
    if top is not None:
        # before its end has been recorded and cut, the clip is not there yet
        pending = _missing("clip is not ready yet", 425) if now < clip.start + clip.duration + 60 else None
        return await _file(request, f"{d}/{top[2]}.{top[3]}", missing=pending)
    assert media is not None
    return await _file(request, f"{d}/{media[2]}/{media[3]}")
