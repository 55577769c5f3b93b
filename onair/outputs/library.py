"""The video library on disk: files behind each Video (recordings and clips), and in object storage when the
node has one (a finished recording or clip is uploaded there, so that every node can serve it)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from onair.store.models import Clip, Video
from onair.store.objects import ObjectStore
from onair.urls import UrlBuilder

log = logging.getLogger("onair.outputs.library")


class VideoLibrary:
    def __init__(self, root: Path, urls: UrlBuilder, storage: ObjectStore | None = None) -> None:
        self.root = root
        self.urls = urls
        self.storage = storage

    def video_dir(self, slug: str) -> Path:
        return self.root / slug

    @staticmethod
    def video_name(slug: str) -> str:
        """Where a video's files are, relative to the library's parent (and as object keys)."""
        return f"videos/{slug}"

    def local(self, name: str) -> Path:
        return self.root.parent / name

    def video_files(self, v: Video) -> dict[str, Any]:
        d = self.video_dir(v.slug)
        base = f"{self.urls.http_base}/videos/{self.urls.client_id}_{v.slug}"
        out: dict[str, Any] = {"converted_videos": [], "screenshots": []}
        # a ready video another node finished is in the object storage (a poster when it has pictures)
        stored = self.storage is not None and v.status == "ready"
        if (d / "video.mp4").exists() or stored:
            height = v.height or 0
            kbps = int((v.size or 0) * 8 / max(1, (v.duration_ms or 1)))
            name = f"origin_{kbps}_{height}.mp4"
            out["origin_url"] = f"{base}/{name}"
            out["converted_videos"] = [{
                "id": v.id, "name": f"{height}p", "width": v.width, "height": v.height, "progress": 100,
                "size": v.size, "status": "complete", "error": None, "mp4_url": f"{base}/{name}"}]
        if (d / "poster.jpg").exists() or (stored and v.height):
            out["screenshot"] = f"{base}/poster.jpg"
            out["screenshots"] = [f"{base}/poster.jpg"]
        return out

    async def delete_files(self, v: Video) -> None:
        shutil.rmtree(self.video_dir(v.slug), ignore_errors=True)
        if self.storage is not None:
            try:
                await self.storage.delete_dir(self.video_name(v.slug))
            except self.storage.errors as exc:  # the Video is gone; its objects are only unreachable now
                log.warning("stored files not deleted", extra={"video_id": v.id, "error": type(exc).__name__})

    @property
    def clips_root(self) -> Path:
        return self.root.parent / "clips"

    def clip_dir(self, clip_id: str) -> Path:
        return self.clips_root / clip_id

    @staticmethod
    def clip_name(clip_id: str) -> str:
        return f"clips/{clip_id}"

    def clip_renditions(self, c: Clip) -> list[str]:
        try:
            meta = json.loads((self.clip_dir(c.id) / "meta.json").read_text())
        except (OSError, ValueError):
            return []
        return [str(r) for r in meta.get("renditions", [])]
