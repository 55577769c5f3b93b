"""Read snapshots (onair/store/snapshots.py) never outlive a write, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from onair.store.db import make_engine, make_sessionmaker, migrate
from onair.store.models import Stream
from onair.store.snapshots import Snapshots, WriteGeneration
from onair.timeutil import utcnow
from tests.conftest import _pg_database


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'x.db'}" if request.param == "sqlite" else _pg_database()


async def test_a_snapshot_lasts_until_the_next_write(database_url: str) -> None:
    engine = make_engine(database_url)
    await migrate(engine)
    sessions = make_sessionmaker(engine)
    snapshots = Snapshots[str](WriteGeneration(engine))
    async with sessions() as db:
        now = utcnow()
        db.add(Stream(name="before", token="t" * 32, created_at=now, updated_at=now))
        await db.commit()
        stream_id = (await db.execute(select(Stream.id))).scalar_one()
    loads = 0

    async def load() -> str:
        nonlocal loads
        loads += 1
        async with sessions() as db:
            return (await db.execute(select(Stream.name).where(Stream.id == stream_id))).scalar_one()

    try:
        assert await snapshots.get(stream_id, load) == "before"
        assert await snapshots.get(stream_id, load) == "before"
        assert loads == 1, "a second read with no write in between is served from the snapshot"

        # a transaction that has written but not committed: readers still see the old row, and what they read
        # now must not survive the commit
        async with sessions() as writer:
            await writer.execute(update(Stream).where(Stream.id == stream_id).values(name="after"))
            assert await snapshots.get(stream_id, load) == "before"
            await writer.commit()
        assert await snapshots.get(stream_id, load) == "after"
        assert loads == 3

        # read-only sessions that open, read and close leave snapshots valid
        async with sessions() as reader:
            await reader.execute(select(Stream.id))
        assert await snapshots.get(stream_id, load) == "after"
        assert loads == 3

        async with sessions() as writer:  # an ORM write through the unit of work
            row = await writer.get(Stream, stream_id)
            assert row is not None
            row.name = "orm"
            await writer.commit()
        assert await snapshots.get(stream_id, load) == "orm"
    finally:
        await engine.dispose()


async def test_disabled_snapshots_always_load(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'y.db'}")
    snapshots = Snapshots[int](WriteGeneration(engine), enabled=False)
    calls = 0

    async def load() -> int:
        nonlocal calls
        calls += 1
        return calls

    assert [await snapshots.get("k", load) for _ in range(3)] == [1, 2, 3]
    await engine.dispose()
