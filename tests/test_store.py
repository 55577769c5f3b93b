"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from onair.store.db import make_engine, migrate
from onair.store.models import Base
from tests.conftest import _pg_database


def _diff(url: str) -> list[object]:
    async def run() -> list[object]:
        engine = make_engine(url)
        await migrate(engine)
        await migrate(engine)  # idempotent: a second start changes nothing
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c, opts={"compare_type": True}), Base.metadata))
        await engine.dispose()
        return list(diff)

    return asyncio.run(run())


def test_sqlite_schema_matches_models(tmp_path: Path) -> None:
    assert _diff(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}") == []


def test_postgresql_schema_matches_models() -> None:
    assert _diff(_pg_database()) == []


def test_nodes_starting_together_on_a_new_postgresql_database_all_migrate() -> None:
    """Three nodes' migrations at once: without the advisory lock two of them collide creating the tables."""
    url = _pg_database()

    async def run() -> list[str]:
        engines = [make_engine(url) for _ in range(3)]
        try:
            await asyncio.gather(*(migrate(e) for e in engines))
            async with engines[0].connect() as conn:
                return list((await conn.execute(text("SELECT version_num FROM alembic_version"))).scalars())
        finally:
            for e in engines:
                await e.dispose()

    assert len(asyncio.run(run())) == 1
    assert _diff(url) == []
