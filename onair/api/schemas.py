"""Request and response models of the /streaming API (spec §4–§12)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

Projection = Literal["regular", "vr360", "vr180", "vr360tb"]
RecordType = Literal["origin", "transcoded"]
PULL_SCHEMES = ("rtmp", "rtmps", "srt", "http", "https")
_PASSPHRASE = re.compile(r"^[!-~]{10,80}$")


def validate_pull_uri(uri: str) -> str:
    parts = uri.split()
    if not parts:
        raise ValueError("can't be blank")
    for part in parts:
        scheme, sep, rest = part.partition("://")
        if not sep or scheme.lower() not in PULL_SCHEMES or not rest:
            raise ValueError("invalid uri, supported protocols are rtmp, rtmps, srt, http, https")
    return " ".join(parts)


class StreamFields(BaseModel):
    """StreamInput: every key optional here; create-time rules are checked by the router."""

    # unknown and read-only keys (active_ingest_region_*, id, ...) are ignored, as the spec says (R9)
    model_config = ConfigDict(extra="ignore")

    name: str | None = Field(None, max_length=4096)
    active: bool | None = None
    pull: bool | None = None
    uri: str | None = Field(None, max_length=2048)
    auto_record: bool | None = None
    record_type: RecordType | None = None
    dvr_enabled: bool | None = None
    dvr_duration: int | None = Field(None, ge=30, le=14400)
    hls_mpegts_endlist_tag: bool | None = None
    html_overlay: bool | None = None
    projection: Projection | None = None
    quality_set_id: int | None = None
    cdn_id: int | None = None
    broadcast_ids: list[int] | None = None
    client_user_id: int | None = None
    client_entity_data: str | None = Field(None, max_length=4096)
    srt_passphrase: str | None = None

    @field_validator("srt_passphrase")
    @classmethod
    def _passphrase(cls, v: str | None) -> str | None:
        if v is not None and not _PASSPHRASE.match(v):
            raise ValueError("must be 10 to 80 printable ASCII characters without spaces")
        return v

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        return None if v is None or not v.strip() else validate_pull_uri(v)


class StreamCreate(StreamFields):
    name: str = Field(..., max_length=4096)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("can't be blank")
        return v


class StreamUpdate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    stream: StreamFields = Field(default_factory=StreamFields)

    @model_validator(mode="before")
    @classmethod
    def _accept_flat(cls, data: Any) -> Any:
        # one doc example sends the fields unwrapped (spec C12); accepting both is harmless
        if isinstance(data, dict) and "stream" not in data:
            return {"stream": data}
        return data


class OverlayOut(BaseModel):
    id: int
    stream_id: int
    url: str
    width: int | None = None
    height: int | None = None
    x: int | None = None
    y: int | None = None
    stretch: bool = False
    created_at: str
    updated_at: str


class StreamOut(BaseModel):
    id: int
    name: str
    active: bool
    pull: bool
    uri: str | None
    token: str
    auto_record: bool
    record_type: RecordType
    dvr_enabled: bool
    dvr_duration: int
    hls_mpegts_endlist_tag: bool
    html_overlay: bool
    html_overlays: list[OverlayOut]
    projection: Projection
    quality_set_id: int | None
    cdn_id: int | None
    broadcast_ids: list[int]
    client_user_id: int | None
    client_entity_data: str | None
    srt_passphrase: str | None
    live: bool
    backup_live: bool
    active_ingest_region_primary: str | None
    active_ingest_region_backup: str | None
    stream_source_type: Literal["rtmp", "srt", "webrtc", "https"] | None
    push_url: str
    backup_push_url: str
    push_url_srt: str
    backup_push_url_srt: str
    push_url_whip: str
    hls_cmaf_url: str
    hls_mpegts_url: str
    dash_url: str
    iframe_url: str
    screenshot: str
    created_at: str
    started_at_primary: str | None
    started_at_backup: str | None
    finished_at_primary: str | None
    recording_duration: float | None
    transcoded_qualities: list[str] | None
    transcoding_speed: float | None
    frame_rate: float | None
    video_width: float | None
    video_height: float | None
    broadcasts: list[dict[str, Any]] | None = None


class OverlayFields(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: int | None = None
    url: str | None = Field(None, max_length=2048)
    width: int | None = Field(None, gt=0, le=1920)
    height: int | None = Field(None, gt=0, le=1080)
    x: int | None = Field(None, ge=0, lt=1920)
    y: int | None = Field(None, ge=0, lt=1080)
    stretch: bool | None = None

    @field_validator("url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @model_validator(mode="after")
    def _stretch(self) -> OverlayFields:
        if self.stretch and any(v is not None for v in (self.x, self.y, self.width, self.height)):
            raise ValueError("stretch cannot be combined with x, y, width or height")
        return self


class QualityOut(BaseModel):
    id: int
    name: str


class QualitySetOut(BaseModel):
    id: int
    name: str
    default: bool
    qualities: list[QualityOut]


class QualitySetsOut(BaseModel):
    live: list[QualitySetOut]
    vod: list[QualitySetOut]


class DefaultRef(BaseModel):
    id: int | None = None


class QualitySetsDefault(BaseModel):
    live: DefaultRef | None = None
    vod: DefaultRef | None = None


class BroadcastFields(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(None, max_length=4096)
    status: Literal["Pending", "Live", "Paused", "Finished", "pending", "live", "paused", "finished"] | None = None
    pending_message: str | None = Field(None, max_length=4096)
    stream_ids: list[int] | None = None
    player_id: int | None = None
    ad_id: int | None = None
    poster: str | None = Field(None, max_length=2048)
    share_url: str | None = Field(None, max_length=2048)
    custom_iframe_url: str | None = Field(None, max_length=2048)
    show_dvr_after_finish: bool | None = None


class BroadcastBody(BaseModel):
    broadcast: BroadcastFields = Field(default_factory=BroadcastFields)


class RestreamFields(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(None, max_length=4096)
    stream_id: int | None = None
    uri: str | None = Field(None, max_length=2048)
    active: StrictBool | None = None
    live: StrictBool | None = None
    source: Literal["original", "transcoded"] | None = None
    no_audio: StrictBool | None = None
    no_audio_mode: Literal["drop", "silence"] | None = None
    client_user_id: int | None = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        if v is None:
            return v
        scheme, sep, rest = v.partition("://")
        if not sep or scheme.lower() not in ("rtmp", "rtmps", "srt") or not rest or " " in v:
            raise ValueError("invalid uri, supported protocols are rtmp, rtmps, srt")
        if scheme.lower() == "srt" and "mode=" in v and "mode=caller" not in v:
            raise ValueError("SRT targets must use mode=caller")
        return v


class RestreamBody(BaseModel):
    restream: RestreamFields = Field(default_factory=RestreamFields)


class PlayerFields(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str | None = Field(None, max_length=4096)
    framework: str | None = Field(None, max_length=256)
    design: str | None = Field(None, max_length=65536)
    custom_css: str | None = Field(None, max_length=65536)
    js_url: str | None = Field(None, max_length=2048)
    skin_is_url: str | None = Field(None, max_length=2048)
    bg_color: str | None = Field(None, pattern=r"^#[0-9A-Fa-f]{6}$")
    fg_color: str | None = Field(None, pattern=r"^#[0-9A-Fa-f]{6}$")
    text_color: str | None = Field(None, pattern=r"^#[0-9A-Fa-f]{6}$")
    hover_color: str | None = Field(None, pattern=r"^#[0-9A-Fa-f]{6}$")
    logo: str | None = Field(None, max_length=2048)
    logo_position: Literal["tl", "tr", "bl", "br"] | None = None
    autoplay: bool | None = None
    mute: bool | None = None
    disable_skin: bool | None = None
    save_options_to_cookies: bool | None = None
    show_sharing: bool | None = None
    speed_control: bool | None = None


class PlayerBody(BaseModel):
    player: PlayerFields = Field(default_factory=PlayerFields)


class ClipCreate(BaseModel):
    model_config = ConfigDict(extra="ignore")
    duration: int = Field(..., gt=0, le=14400)
    start: int | None = Field(None, ge=0)
    expiration: int | None = Field(None, ge=0)
    vod_required: bool | None = None
