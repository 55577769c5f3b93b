"""Statistics (ffprobe, stream series) computed from the source samples the node records while streams transcode."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse
from sqlalchemy import select

from onair.api.deps import DbDep, NodeDep
from onair.store.models import StreamSample, ViewerSample

router = APIRouter(prefix="/streaming/statistics", tags=["statistics"])
UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800, "month": 2592000}
GRANULARITY = {"1m": 60, "5m": 300, "15m": 900, "1h": 3600, "1d": 86400, "1mo": 2592000}
MAX_BUCKETS = 100_000


class StatsError(Exception):
    pass


def _bad(text: str) -> JSONResponse:
    return JSONResponse({"data": [], "errors": [text]}, status_code=400)


def _parse_time(name: str, value: str | None) -> datetime:
    if not value:
        raise StatsError(f"{name}: query param is not set")
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
        # normalise to UTC now: a far-out year with an offset must fail here, not in the database driver
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).astimezone(UTC)
    except (ValueError, OverflowError):
        raise StatsError(f"{name}: must be an ISO 8601 date or time") from None


async def _samples(db: DbDep, start: datetime, end: datetime, stream_id: int | None) -> list[StreamSample]:
    q = select(StreamSample).where(StreamSample.at >= start, StreamSample.at < end)
    if stream_id is not None:
        q = q.where(StreamSample.stream_id == stream_id)
    return list((await db.execute(q.order_by(StreamSample.at))).scalars())


def _ts(s: StreamSample) -> float:
    at = s.at if s.at.tzinfo else s.at.replace(tzinfo=UTC)
    return at.timestamp()


@router.get("/ffprobe")
async def ffprobe(db: DbDep, date_from: str | None = None, date_to: str | None = None,
                  stream_id: str | None = None, interval: int = Query(10, ge=1, le=10**6),
                  units: str = "second") -> Any:
    try:
        start, end = _parse_time("date_from", date_from), _parse_time("date_to", date_to)
        if not stream_id or not stream_id.strip().isdigit() or int(stream_id) >= 2**31:
            raise StatsError("stream_id: query param must be a stream id")
        if units not in UNITS:
            raise StatsError(f"units: must be one of {', '.join(UNITS)}")
    except StatsError as exc:
        return _bad(str(exc))
    step = interval * UNITS[units]
    buckets: dict[int, list[StreamSample]] = defaultdict(list)
    for s in await _samples(db, start, end, int(stream_id)):
        buckets[int(_ts(s) // step * step)].append(s)
    data = [{
        "time": datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "avg_bitrate": round(sum(x.bitrate_kbps for x in xs) / len(xs), 1),
        "max_fps": max(x.fps for x in xs), "max_height": max(x.height for x in xs),
        "max_keyframe_interval": max(x.keyframe_interval for x in xs),
        "sum_frames": sum(x.frames for x in xs),
    } for t, xs in sorted(buckets.items())]
    return {"data": data}


def _series_args(from_: str | None, to: str | None, granularity: str,
                 require_to: bool = True) -> tuple[datetime, datetime, int]:
    start = _parse_time("from", from_)
    end = _parse_time("to", to) if (to or require_to) else datetime.now(UTC)
    if granularity not in GRANULARITY:
        raise StatsError(f"granularity: must be one of {', '.join(GRANULARITY)}")
    step = GRANULARITY[granularity]
    if end <= start:
        raise StatsError("to: must be after from")
    if (end - start).total_seconds() / step > MAX_BUCKETS:
        raise StatsError("granularity: too many buckets for this range")
    return start, end, step


@router.get("/stream")
async def stream_series(node: NodeDep, db: DbDep, from_: str | None = Query(None, alias="from"),
                        to: str | None = None, granularity: str = "1h") -> Any:
    """Transcoding minutes per bucket: each sample stands for the sampling period of one stream."""
    try:
        start, end, step = _series_args(from_, to, granularity)
    except StatsError as exc:
        return _bad(str(exc))
    minutes: dict[int, float] = defaultdict(float)
    for s in await _samples(db, start, end, None):
        minutes[int(_ts(s) // step * step)] += node.sample_period / 60
    return [{"client": node.settings.client_id,
             "metrics": {"streams": [[t, round(v, 2)] for t, v in sorted(minutes.items())]}}]


@router.get("/max_stream")
async def max_stream_series(node: NodeDep, db: DbDep, from_: str | None = Query(None, alias="from"),
                            to: str | None = None, granularity: str = "1h") -> Any:
    try:
        start, end, step = _series_args(from_, to, granularity)
    except StatsError as exc:
        return _bad(str(exc))
    per_sample_time: dict[int, set[int]] = defaultdict(set)
    bucket_of: dict[int, int] = {}
    for s in await _samples(db, start, end, None):
        slot = int(_ts(s) // node.sample_period)
        per_sample_time[slot].add(s.stream_id)
        bucket_of[slot] = int(_ts(s) // step * step)
    peak: dict[int, int] = defaultdict(int)
    for slot, ids in per_sample_time.items():
        peak[bucket_of[slot]] = max(peak[bucket_of[slot]], len(ids))
    return [{"client": node.settings.client_id,
             "metrics": {"streams": [[t, v] for t, v in sorted(peak.items())]}}]


async def _viewer_samples(db: DbDep, start: datetime, end: datetime, stream_id: int | None,
                          client_user_id: int | None) -> list[ViewerSample]:
    q = select(ViewerSample).where(ViewerSample.at >= start, ViewerSample.at < end)
    if stream_id is not None:
        q = q.where(ViewerSample.stream_id == stream_id)
    if client_user_id is not None:
        q = q.where(ViewerSample.client_user_id == client_user_id)
    return list((await db.execute(q.order_by(ViewerSample.at))).scalars())


def _at(s: ViewerSample) -> float:
    at = s.at if s.at.tzinfo else s.at.replace(tzinfo=UTC)
    return at.timestamp()


@router.get("/stream/viewers")
async def live_unique_viewers(
    node: NodeDep, db: DbDep, from_: str | None = Query(None, alias="from"), to: str | None = None,
    granularity: str = "1h", stream_id: int | None = Query(None, ge=1, le=2**31 - 1),
    client_user_id: int | None = Query(None, ge=-(2**31), le=2**31 - 1),
) -> Any:
    """Unique viewers per bucket, counted from the playback requests the node served."""
    try:
        start, end, step = _series_args(from_, to, granularity)
    except StatsError as exc:
        return _bad(str(exc))
    seen: dict[int, set[str]] = defaultdict(set)
    for s in await _viewer_samples(db, start, end, stream_id, client_user_id):
        seen[int(_at(s) // step * step)].update(s.viewers)
    return [{"client": node.settings.client_id,
             "metrics": {"streams": [[t, len(v)] for t, v in sorted(seen.items())]}}]


@router.get("/stream/watching_duration")
async def watching_duration(
    node: NodeDep, db: DbDep, from_: str | None = Query(None, alias="from"), to: str | None = None,
    granularity: str = "1h", stream_id: int | None = Query(None, ge=1, le=2**31 - 1),
    client_user_id: int | None = Query(None, ge=-(2**31), le=2**31 - 1),
) -> Any:
    """Watch minutes per bucket, each bucket rounded up (the spec's rule: do not sum them for a total)."""
    try:
        start, end, step = _series_args(from_, to, granularity, require_to=False)
    except StatsError as exc:
        return _bad(str(exc))
    seconds: dict[int, float] = defaultdict(float)
    for s in await _viewer_samples(db, start, end, stream_id, client_user_id):
        seconds[int(_at(s) // step * step)] += s.watch_seconds
    return [{"client": node.settings.client_id,
             "metrics": {"streams": [[t, math.ceil(v / 60)] for t, v in sorted(seconds.items())]}}]


@router.get("/stream/watching_duration/total")
async def watching_duration_total(
    node: NodeDep, db: DbDep, from_: str | None = Query(None, alias="from"), to: str | None = None,
    stream_id: int | None = Query(None, ge=1, le=2**31 - 1),
    client_user_id: int | None = Query(None, ge=-(2**31), le=2**31 - 1),
) -> Any:
    try:
        start = _parse_time("from", from_) if from_ else datetime(1970, 1, 1, tzinfo=UTC)
        end = _parse_time("to", to) if to else datetime.now(UTC) + timedelta(minutes=1)
    except StatsError as exc:
        return _bad(str(exc))
    total = sum(s.watch_seconds for s in await _viewer_samples(db, start, end, stream_id, client_user_id))
    row: dict[str, Any] = {"client": node.settings.client_id, "duration": math.ceil(total / 60)}
    if client_user_id is not None:
        row["client_user_id"] = client_user_id
    if stream_id is not None:
        row["stream_id"] = str(stream_id)
    return [row]
