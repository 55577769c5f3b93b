"""Playback of the video library: recordings (§14.4) and instant clips (§14.3).

    /videos/{cid}_{slug}/master.m3u8 (MPEG-TS HLS), master-cmaf.m3u8 (fMP4 HLS), master.mpd (DASH), poster.jpg,
        {hls,cmaf}/..., any `*.mp4` name the API hands out (origin_*/converted_videos), + /download[={name}]
    /rec/{cid}_{sid}/rec_{clip}_qsid{n}_{master|rendition}.{m3u8|mp4}, rec_{clip}/{track}/...
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse

from onair.delivery.playback import Playback, playback_of
from onair.store.models import Clip

router = APIRouter(tags=["vod"])

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


def _file(path: Path, headers: dict[str, str] | None = None) -> Response:
    if not path.is_file():
        return _missing()
    return FileResponse(path, media_type=_TYPES.get(path.suffix, "application/octet-stream"),
                        headers={**CACHE, **(headers or {})})


@router.get("/videos/{vid}/{file:path}")
async def video_file(request: Request, vid: str, file: str) -> Response:
    node = _node(request)
    m = _VID.match(vid)
    if m is None or int(m[1]) != node.urls.client_id:
        return _missing()
    vdir = node.library.video_dir(m[2])
    if _VOD_FILE.match(file):
        return _file(vdir / file)
    name, _, rest = file.partition("/")
    if not _MP4.match(name):
        return _missing()
    # every MP4 name the API hands out for a recording is its one MP4 (origin = the only rendition)
    if not rest:
        return _file(vdir / "video.mp4")
    d = _DOWNLOAD.match(rest)
    if d is None:
        return _missing()
    filename = (d[2] + ".mp4") if d[2] else name
    return _file(vdir / "video.mp4", {"Content-Disposition": f'attachment; filename="{filename}"'})


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
    d = node.library.clip_dir(clip_id)
    if top is not None:
        path = d / f"{top[2]}.{top[3]}"
        if not path.is_file() and now < clip.start + clip.duration + 60:
            # R41: the clip is not complete yet (its end has not been recorded and cut)
            return _missing("clip is not ready yet", 425)
        return _file(path)
    assert media is not None
    return _file(d / media[2] / media[3])
