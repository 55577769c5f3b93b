"""Request and response models of the /streaming API."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator, model_validator

from onair.delivery.signing import MAX_EXPIRES_IN
from onair.outbound import PULL_SCHEMES, RESTREAM_SCHEMES, TargetRefused
from onair.outbound.policy import parse_target

Projection = Literal["regular", "vr360", "vr180", "vr360tb"]
RecordType = Literal["origin", "transcoded"]
_PASSPHRASE = re.compile(r"^[!-~]{10,80}$")
# integers stored in 32-bit database columns: anything larger is a validation error, not a DB crash
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Id32 = Annotated[int, Field(ge=1, le=2**31 - 1)]


def check_text(v: Any) -> Any:
    """Strings the databases cannot store (NUL on PostgreSQL, lone surrogates anywhere) are invalid."""
    if isinstance(v, str):
        if "\x00" in v:
            raise ValueError("must not contain NUL characters")
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("must be valid UTF-8 text") from None
    elif isinstance(v, list):
        for item in v:
            check_text(item)
    return v


class ApiInput(BaseModel):
    """Base of every request body model: unknown keys are ignored, text must be storable."""

    model_config = ConfigDict(extra="ignore")

    @field_validator("*", mode="before")
    @classmethod
    def _storable_text(cls, v: Any) -> Any:
        return check_text(v)


def validate_pull_uri(uri: str) -> str:
    """Space-separated PULL sources, each a well-formed outbound URL (onair.outbound.policy); whether a
    literal address is allowed depends on the node's settings and is checked by the router."""
    parts = uri.split()
    if not parts:
        raise ValueError("can't be blank")
    for part in parts:
        try:
            parse_target(part, PULL_SCHEMES)
        except TargetRefused as exc:
            raise ValueError(str(exc)) from None
    return " ".join(parts)


class StreamFields(ApiInput):
    """StreamInput: every key optional here; create-time rules are checked by the router."""

    # unknown and read-only keys (active_ingest_region_*, id, ...) are ignored: a client cannot change them
    name: str | None = Field(None, max_length=4096)
    active: bool | None = None
    pull: bool | None = None
    uri: str | None = Field(None, max_length=2048)
    auto_record: bool | None = None
    record_type: RecordType | None = None
    dvr_enabled: bool | None = None
    dvr_duration: int | None = Field(None, ge=30, le=14400)
    hls_mpegts_endlist_tag: bool | None = None
    reconnect_window: int | None = Field(None, ge=0, le=1800)
    playback_signed: bool | None = None
    html_overlay: bool | None = None
    projection: Projection | None = None
    quality_set_id: Id32 | None = None
    cdn_id: Int32 | None = None
    broadcast_ids: list[Id32] | None = Field(None, max_length=1000)
    client_user_id: Int32 | None = None
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


class StreamUpdate(ApiInput):
    stream: StreamFields = Field(default_factory=lambda: StreamFields.model_validate({}))

    @model_validator(mode="before")
    @classmethod
    def _accept_flat(cls, data: Any) -> Any:
        # one doc example sends the fields unwrapped; accepting both is harmless
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
    reconnect_window: int = 0
    playback_signed: bool = False
    viewers: int = 0
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
    whep_url: str
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


class PlaybackTokenCreate(ApiInput):
    # strict: "60" or true are not a number of seconds
    expires_in: int = Field(3600, ge=1, le=MAX_EXPIRES_IN, strict=True,
                            description=f"seconds the token's URLs play (1 to {MAX_EXPIRES_IN})")


class PlaybackTokenOut(BaseModel):
    token: str
    expires_at: str
    hls_cmaf_url: str
    hls_mpegts_url: str
    dash_url: str
    iframe_url: str
    whep_url: str
    screenshot: str


class OverlayFields(ApiInput):
    id: Id32 | None = None
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

    # stretch together with x/y/width/height is checked by the router against the merged overlay,
    # so a partial update is judged on its result and the error names the "stretch" field


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


class DefaultRef(ApiInput):
    id: Int32 | None = None


class QualitySetsDefault(ApiInput):
    live: DefaultRef | None = None
    vod: DefaultRef | None = None


class BroadcastFields(ApiInput):
    name: str | None = Field(None, max_length=4096)
    status: Literal["Pending", "Live", "Paused", "Finished",
                    "pending", "live", "paused", "finished"] | None = None
    pending_message: str | None = Field(None, max_length=4096)
    stream_ids: list[Id32] | None = Field(None, max_length=1000)
    player_id: Int32 | None = None
    ad_id: Int32 | None = None
    poster: str | None = Field(None, max_length=2048)
    share_url: str | None = Field(None, max_length=2048)
    custom_iframe_url: str | None = Field(None, max_length=2048)
    show_dvr_after_finish: bool | None = None


class BroadcastBody(ApiInput):
    broadcast: BroadcastFields = Field(default_factory=lambda: BroadcastFields.model_validate({}))


class RestreamFields(ApiInput):
    name: str | None = Field(None, max_length=4096)
    stream_id: Int32 | None = None
    uri: str | None = Field(None, max_length=2048)
    active: StrictBool | None = None
    live: StrictBool | None = None
    source: Literal["original", "transcoded"] | None = None
    no_audio: StrictBool | None = None
    no_audio_mode: Literal["drop", "silence"] | None = None
    client_user_id: Int32 | None = None

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            parse_target(v, RESTREAM_SCHEMES)  # scheme, host, port, SRT mode=caller
        except TargetRefused as exc:
            raise ValueError(str(exc)) from None
        return v


class RestreamBody(ApiInput):
    restream: RestreamFields = Field(default_factory=lambda: RestreamFields.model_validate({}))


class PlayerFields(ApiInput):
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


class PlayerBody(ApiInput):
    player: PlayerFields = Field(default_factory=lambda: PlayerFields.model_validate({}))


class ClipCreate(ApiInput):
    duration: int = Field(..., gt=0, le=14400)
    start: int | None = Field(None, ge=0, le=2**31 - 1)
    expiration: int | None = Field(None, ge=0, le=2**31 - 1)
    vod_required: bool | None = None
