"""Settings: environment variables ONAIR_* and the matching `onair serve --flags` (see CONTRACT.md)."""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ONAIR_", extra="ignore")

    data_dir: Path = Field(Path("./data"), description="database file, segments, recordings, screenshots")
    bind: str = Field("0.0.0.0", description="address all listeners bind to")
    public_host: str = Field("127.0.0.1", description="host name put into every URL the API returns")
    http_port: int = Field(8080, ge=0, le=65535, description="API, WHIP, playback, player, /healthz, /metrics")
    rtmp_port: int = Field(1935, ge=0, le=65535, description="RTMP ingest")
    rtmps_port: int = Field(1936, ge=-1, le=65535, description="RTMPS ingest (TLS); 0 turns it off")
    srt_port: int = Field(5001, ge=0, le=65535, description="SRT ingest (UDP), routed by streamid")
    api_key: str | None = Field(None, description="operator API key; generated into DATA_DIR/api_key when unset")
    database_url: str | None = Field(None, description="SQLAlchemy URL; SQLite file in the data dir by default")
    client_id: int = Field(1, ge=1, description="account id used in public URLs ({client_id}_{stream_id})")
    rtmps_cert: Path | None = Field(None, description="PEM certificate for RTMPS; self-signed when unset")
    rtmps_key: Path | None = Field(None, description="PEM private key for RTMPS")
    log_level: str = Field("info", description="debug, info, warning, error")
    ffmpeg: str = Field("ffmpeg", description="ffmpeg binary used for transcoding")
    ingest_idle_timeout: float = Field(10.0, gt=0, description="seconds of silence before a publisher is dropped")
    rtmp_setup_timeout: float = Field(10.0, gt=0, le=10,
                                      description="seconds from accept to an accepted RTMP publish (TLS included)")
    rtmp_max_connections: int = Field(1000, ge=1, description="open connections per RTMP or RTMPS listener")
    rtmp_max_connections_per_ip: int = Field(50, ge=1, description="open RTMP connections from one address")
    http_max_connections: int = Field(1000, ge=1,
                                      description="HTTP connections + requests in progress; more get 503")
    http_header_timeout: float = Field(10.0, gt=0, le=15,
                                       description="seconds a client has to send a request's headers")
    http_max_header_bytes: int = Field(64 * 1024, ge=4096, le=1024 * 1024,
                                       description="request line + headers larger than this get 431")
    # 20 x 2 s: GStreamer's adaptivedemux2 buffers 30 s before it plays DASH and then plays that far behind
    # live, inside timeShiftBufferDepth; VLC starts 15 s behind. LL players start at the edge regardless.
    live_window_segments: int = Field(20, ge=3, description="segments kept in a live playlist without DVR")
    srt_latency_ms: int = Field(120, ge=20, le=60000, description="SRT receiver latency (ms); senders may ask for more")
    failover_timeout: float = Field(3.0, gt=0, description="seconds without data before the backup ingest takes over")
    failback_delay: float = Field(60.0, ge=0, description="seconds the primary must deliver again before it takes back")
    pull_stall_timeout: float = Field(5.0, gt=0, description="seconds without data before a PULL moves to the next uri")
    stats_period: float = Field(10.0, ge=1, le=3600, description="seconds between statistics samples")
    recording_max_seconds: float = Field(14400.0, ge=1, description="long recordings split into Videos this long")
    min_free_mb: int = Field(256, ge=0, description="free disk (MB) below which recordings refuse to start or stop")
    pull_inactivity_timeout: float = Field(7200.0, gt=0,
                                           description="seconds a PULL may deliver nothing before active=false")
    whip_loopback_candidates: bool | None = Field(
        None, description="offer 127.0.0.1 as a WHIP ICE candidate; unset: only when BIND is loopback")

    # outbound connections: PULL sources, restream targets, webhooks
    allow_private_targets: bool = Field(
        False, description="allow outbound connections (PULL sources, restream targets, webhooks) to loopback, "
                           "private, link-local and metadata addresses (off: only public ones)")

    # cluster (all unset: one node with embedded state); CONTRACT.md "Cluster settings"
    redis_url: str | None = Field(None, description="redis://host:port/db: join the cluster sharing this Redis "
                                                    "(and the same PostgreSQL DATABASE_URL); unset: one node")
    node_name: str | None = Field(None, description="this node's name in the cluster, unique per node; "
                                                    "unset: host name + HTTP port")
    internal_url: str | None = Field(None, description="base URL at which other nodes reach this node's HTTP port; "
                                                       "unset: http://PUBLIC_HOST:HTTP_PORT")
    storage_url: str | None = Field(None, description="s3://bucket/prefix for finished recordings and clips; "
                                                      "unset: the data dir")
    s3_endpoint_url: str | None = Field(None, description="endpoint of the S3-compatible service; unset: AWS")

    @field_validator("redis_url", "node_name", "internal_url", "storage_url", "s3_endpoint_url", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss", "unix") or not (parts.hostname or parts.path):
            raise ValueError("must be redis://host:port/db (or rediss://, unix://)")
        db = parts.path.strip("/") if parts.scheme != "unix" else "0"
        if db and not db.isdigit():
            raise ValueError("the path must be a database number: redis://host:port/db")
        return value

    @field_validator("node_name")
    @classmethod
    def _node_name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 64 or not value.isprintable() or " " in value):
            raise ValueError("at most 64 printable characters without spaces")
        return value

    @field_validator("internal_url", "s3_endpoint_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("must be an http:// or https:// URL")
            return value.rstrip("/")
        return value

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme != "s3" or not parts.hostname:
                raise ValueError("must be s3://bucket/prefix")
        return value

    @property
    def clustered(self) -> bool:
        return self.redis_url is not None

    def resolved_node_name(self, http_port: int) -> str:
        """The configured name, else host name + the bound HTTP port (known once the socket is bound)."""
        return self.node_name or f"{socket.gethostname()}:{http_port}"

    def resolved_internal_url(self, http_port: int) -> str:
        return self.internal_url or f"http://{self.public_host}:{http_port}"

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'onair.db').resolve()}"
