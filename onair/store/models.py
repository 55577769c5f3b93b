"""Database schema. Alembic migrations in ./migrations are generated from and must match these models."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


def new_playback_secret() -> str:
    """The key of a stream's playback tokens (onair.delivery.signing); replaced to revoke them all."""
    return secrets.token_hex(32)


class ApiKey(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # sha256 of the key: the key itself is never stored
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Stream(Base):
    __tablename__ = "streams"
    # AUTOINCREMENT on SQLite so a deleted stream's id is never reused
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(Boolean, default=False)
    pull: Mapped[bool] = mapped_column(Boolean, default=False)
    uri: Mapped[str | None] = mapped_column(Text, nullable=True)
    token: Mapped[str] = mapped_column(String(64))
    auto_record: Mapped[bool] = mapped_column(Boolean, default=False)
    record_type: Mapped[str] = mapped_column(String(16), default="origin")
    dvr_enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    dvr_duration: Mapped[int] = mapped_column(Integer, default=3600)
    hls_mpegts_endlist_tag: Mapped[bool] = mapped_column(Boolean, default=True)
    # beyond the spec (CONTRACT.md): seconds a dropped publisher may come back and continue the session
    reconnect_window: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # beyond the spec (CONTRACT.md): playback only with a token (onair.delivery.signing) MACed with the secret
    playback_signed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    playback_secret: Mapped[str] = mapped_column(String(64), default=new_playback_secret)
    html_overlay: Mapped[bool] = mapped_column(Boolean, default=False)
    projection: Mapped[str] = mapped_column(String(16), default="regular")
    quality_set_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    cdn_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    broadcast_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    client_user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    client_entity_data: Mapped[str | None] = mapped_column(Text, nullable=True)
    srt_passphrase: Mapped[str | None] = mapped_column(String(80), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # ingest state that must survive restarts (finished_at_* keeps the last end time)
    live: Mapped[bool] = mapped_column(Boolean, default=False)
    backup_live: Mapped[bool] = mapped_column(Boolean, default=False)
    stream_source_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    started_at_primary: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at_primary: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    started_at_backup: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # ONAIR_NODE_NAME of the node receiving each feed: in a cluster a node clears only the rows it owns
    ingest_node_primary: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ingest_node_backup: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Overlay(Base):
    __tablename__ = "overlays"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(Text)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    x: Mapped[int | None] = mapped_column(Integer, nullable=True)
    y: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stretch: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class QualitySet(Base):
    __tablename__ = "quality_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(8))  # "live" or "vod"
    name: Mapped[str] = mapped_column(Text)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    # [{"id": int, "name": str, "width": int, "height": int, "video_kbps": int}]
    qualities: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)


class Document(Base):
    """Resources the platform stores but does not query by field: broadcasts, restreams, players."""

    __tablename__ = "documents"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), index=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Video(Base):
    __tablename__ = "videos"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="empty")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    # no FK: deleting a stream keeps its recordings
    stream_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    client_user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    record_type: Mapped[str | None] = mapped_column(String(16), nullable=True)
    recording_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    size: Mapped[int | None] = mapped_column(Integer, nullable=True)
    width: Mapped[int | None] = mapped_column(Integer, nullable=True)
    height: Mapped[int | None] = mapped_column(Integer, nullable=True)
    projection: Mapped[str] = mapped_column(String(16), default="regular")
    quality_set_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Clip(Base):
    __tablename__ = "clips"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    stream_id: Mapped[int] = mapped_column(ForeignKey("streams.id", ondelete="CASCADE"), index=True)
    start: Mapped[int] = mapped_column(Integer)
    duration: Mapped[int] = mapped_column(Integer)
    expiration: Mapped[int] = mapped_column(Integer)
    vod_required: Mapped[bool] = mapped_column(Boolean, default=True)
    video_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StreamSample(Base):
    """Source parameters sampled while a stream transcodes: feeds the ffprobe statistics endpoint."""

    __tablename__ = "stream_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream_id: Mapped[int] = mapped_column(Integer, index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    bitrate_kbps: Mapped[float] = mapped_column(Float)
    fps: Mapped[float] = mapped_column(Float)
    height: Mapped[int] = mapped_column(Integer)
    keyframe_interval: Mapped[int] = mapped_column(Integer)
    frames: Mapped[int] = mapped_column(Integer)


class ViewerSample(Base):
    """Who watched a stream during one sampling period: feeds the viewer/watch-time statistics."""

    __tablename__ = "viewer_samples"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stream_id: Mapped[int] = mapped_column(Integer, index=True)
    client_user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    # hashed viewer keys (never addresses) seen in the period, for unique counts over any bucket
    viewers: Mapped[list[str]] = mapped_column(JSON, default=list)
    watch_seconds: Mapped[float] = mapped_column(Float)


class Webhook(Base):
    """A receiver of event notifications (CONTRACT.md "Webhook deliveries"); `events` lists the types it gets."""

    __tablename__ = "webhooks"
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # the HMAC key of the signatures: shown in the API, never logged
    secret: Mapped[str] = mapped_column(String(64))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WebhookDelivery(Base):
    """The outbox: one event for one webhook, written in the transaction of the change it reports."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(36))
    type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # the body POSTed: {"id", "type", "created_at", "data"}
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending, delivered, failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
