"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from onair.store.catalog import SYSTEM_QUALITY_SETS, seed_quality_sets
from onair.store.db import make_engine, migrate
from onair.store.models import Base, QualitySet
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



def test_a_node_losing_the_seeding_race_reads_the_winners_rows() -> None:
    """Two nodes seed a new database at once: one has inserted the system quality sets, not yet committed, when
    the other reads none and inserts them too. The loser must read the winner's rows, not exit on the duplicate
    key (a cluster's second node did)."""
    url = _pg_database()

    async def run() -> list[int]:
        winner_engine, loser_engine = make_engine(url), make_engine(url)
        try:
            await migrate(winner_engine)
            async with async_sessionmaker(winner_engine)() as winner, async_sessionmaker(loser_engine)() as loser:
                winner.add_all([QualitySet(id=qs["id"], kind=qs["kind"], name=qs["name"], is_default=qs["default"],
                                           qualities=qs["qualities"]) for qs in SYSTEM_QUALITY_SETS])
                await winner.flush()  # the rows exist, uncommitted: the loser's insert waits on them
                losing = asyncio.create_task(seed_quality_sets(loser))
                async with winner_engine.connect() as watch:  # until the loser's insert waits on those rows
                    deadline = asyncio.get_running_loop().time() + 10
                    while not (await watch.execute(text("SELECT count(*) FROM pg_locks WHERE NOT granted"))).scalar():
                        assert asyncio.get_running_loop().time() < deadline, "the loser never waited on the rows"
                        await asyncio.sleep(0.02)
                await winner.commit()
                await asyncio.wait_for(losing, 10)
            async with winner_engine.connect() as conn:
                return sorted((await conn.execute(text("SELECT id FROM quality_sets"))).scalars())
        finally:
            await winner_engine.dispose()
            await loser_engine.dispose()

    assert asyncio.run(run()) == sorted(qs["id"] for qs in SYSTEM_QUALITY_SETS)
