"""Database rows → API JSON objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from onair.store.models import Overlay, Stream, Video
from onair.timeutil import iso

if TYPE_CHECKING:
    from onair.node import Node


def overlay_out(o: Overlay) -> dict[str, Any]:
    return {
        "id": o.id, "stream_id": o.stream_id, "url": o.url, "width": o.width, "height": o.height,
        "x": o.x, "y": o.y, "stretch": bool(o.stretch),
        "created_at": iso(o.created_at), "updated_at": iso(o.updated_at),
    }


def _ingest_node(node: Node, owner: str | None) -> str:
    """In a cluster the name of the node receiving the feed (CONTRACT.md); one node reports its region."""
    return (owner or node.region) if node.settings.clustered else node.region


def stream_out(node: Node, s: Stream, overlays: list[dict[str, Any]]) -> dict[str, Any]:
    rt = node.control.status(s.id)
    recording = node.control.recording_duration(s.id)
    out: dict[str, Any] = {
        "id": s.id, "name": s.name, "active": s.active, "pull": s.pull, "uri": s.uri, "token": s.token,
        "auto_record": s.auto_record, "record_type": s.record_type, "dvr_enabled": s.dvr_enabled,
        "dvr_duration": s.dvr_duration, "hls_mpegts_endlist_tag": s.hls_mpegts_endlist_tag,
        "reconnect_window": s.reconnect_window or 0, "playback_signed": bool(s.playback_signed),
        "html_overlay": s.html_overlay, "html_overlays": overlays, "projection": s.projection,
        "quality_set_id": s.quality_set_id, "cdn_id": s.cdn_id, "broadcast_ids": list(s.broadcast_ids or []),
        "client_user_id": s.client_user_id, "client_entity_data": s.client_entity_data,
        "srt_passphrase": s.srt_passphrase,
        "live": s.live, "backup_live": s.backup_live,
        "active_ingest_region_primary": _ingest_node(node, s.ingest_node_primary) if s.live else None,
        "active_ingest_region_backup": _ingest_node(node, s.ingest_node_backup) if s.backup_live else None,
        "stream_source_type": s.stream_source_type if (s.live or s.backup_live) else None,
        "created_at": iso(s.created_at),
        "started_at_primary": iso(s.started_at_primary), "started_at_backup": iso(s.started_at_backup),
        "finished_at_primary": iso(s.finished_at_primary),
        "recording_duration": recording if rt else None,
        "transcoded_qualities": rt.transcoded_qualities if rt else None,
        "transcoding_speed": rt.transcoding_speed if rt else None,
        "frame_rate": rt.frame_rate if rt else None,
        "video_width": rt.video_width if rt else None,
        "video_height": rt.video_height if rt else None,
        "viewers": node.control.viewers(s.id),
    }
    out.update(node.urls.stream_urls(s.id, s.token))
    return out


def video_out(node: Node, v: Video, *, list_item: bool = False) -> dict[str, Any]:
    urls = node.urls.video_urls(v.slug)
    files = node.library.video_files(v)
    out: dict[str, Any] = {
        "id": v.id, "name": v.name, "description": v.description, "client_id": node.settings.client_id,
        "slug": v.slug, "status": v.status, "error": v.error, "stream_id": v.stream_id,
        "recording_started_at": iso(v.recording_started_at), "record_type": v.record_type,
        "duration": v.duration_ms, "origin_video_duration": v.duration_ms, "origin_size": v.size,
        "origin_url": files.get("origin_url"),
        "hls_url": urls["hls_url"], "hls_cmaf_url": urls["hls_cmaf_url"], "dash_url": urls["dash_url"],
        "converted_videos": files.get("converted_videos", []),
        "screenshot": files.get("screenshot"), "screenshot_id": 0 if files.get("screenshot") else None,
        "screenshots": files.get("screenshots", []), "poster": None, "poster_thumb": None,
        "views": 0, "cdn_views": 0, "priority": 0, "projection": v.projection,
        "quality_set_id": v.quality_set_id, "client_user_id": v.client_user_id, "directory_id": None,
        "ad_id": None, "share_url": None, "custom_iframe_url": None,
        "created_at": iso(v.created_at), "updated_at": iso(v.updated_at),
    }
    if not list_item:
        out["iframe_url"] = urls["iframe_url"]
        out["sprite"] = None
        out["sprite_vtt"] = None
    return out
