"""The video library on disk: files behind each Video (recordings and clips)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from onair.store.models import Clip, Video
from onair.urls import UrlBuilder


class VideoLibrary:
    def __init__(self, root: Path, urls: UrlBuilder) -> None:
        self.root = root
        self.urls = urls

    def video_dir(self, slug: str) -> Path:
        return self.root / slug

    def video_files(self, v: Video) -> dict[str, Any]:
        d = self.video_dir(v.slug)
        base = f"{self.urls.http_base}/videos/{self.urls.client_id}_{v.slug}"
        out: dict[str, Any] = {"converted_videos": [], "screenshots": []}
        if (d / "video.mp4").exists():
            height = v.height or 0
            kbps = int((v.size or 0) * 8 / max(1, (v.duration_ms or 1)))
            name = f"origin_{kbps}_{height}.mp4"
            out["origin_url"] = f"{base}/{name}"
            out["converted_videos"] = [{
                "id": v.id, "name": f"{height}p", "width": v.width, "height": v.height, "progress": 100,
                "size": v.size, "status": "complete", "error": None, "mp4_url": f"{base}/{name}"}]
        if (d / "poster.jpg").exists():
            out["screenshot"] = f"{base}/poster.jpg"
            out["screenshots"] = [f"{base}/poster.jpg"]
        return out

    def delete_files(self, v: Video) -> None:
        shutil.rmtree(self.video_dir(v.slug), ignore_errors=True)

    @property
    def clips_root(self) -> Path:
        return self.root.parent / "clips"

    def clip_dir(self, clip_id: str) -> Path:
        return self.clips_root / clip_id

    def clip_renditions(self, c: Clip) -> list[str]:
        try:
            meta = json.loads((self.clip_dir(c.id) / "meta.json").read_text())
        except (OSError, ValueError):
            return []
        return [str(r) for r in meta.get("renditions", [])]
