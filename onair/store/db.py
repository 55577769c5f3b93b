"""Engine, sessions and schema migration at start-up."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, event, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*=\s*['\"]?(\w+)", re.MULTILINE)


def disk_full(exc: BaseException) -> bool:
    """Whether a database write failed because its disk is full (SQLite: "database or disk is full",
    PostgreSQL: SQLSTATE 53100 disk_full)."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).lower()
    return ("disk is full" in text or "no space left" in text or getattr(orig, "sqlstate", None) == "53100"
            or getattr(orig, "pgcode", None) == "53100")


def make_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets readers (playback, API reads) proceed while ingest writes state
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=5000")
            cur.close()

    return engine


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str | None:
    """The newest migration, read from the version files' `revision`/`down_revision` lines."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        for name, value in _REVISION_LINE.findall(path.read_text(encoding="utf-8")):
            (revisions if name == "revision" else parents).add(value)
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _current_revision(connection: Connection) -> str | None:
    if not inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(text("SELECT version_num FROM alembic_version")).scalar_one_or_none()


def _upgrade(connection: Connection) -> None:
    from alembic import command

    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to the newest migration.

    Alembic stays resident once imported (about 10 MB), so when there is work for it a child process does it.
    """
    async with engine.connect() as conn:
        current = await conn.run_sync(_current_revision)
    head = head_revision()
    if head is not None and current == head:
        return
    env = {**os.environ, MIGRATE_URL_ENV: engine.url.render_as_string(hide_password=False)}  # not argv: ps shows it
    child = await asyncio.create_subprocess_exec(sys.executable, "-m", "onair.store.db", env=env,
                                                 stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    _, err = await child.communicate()
    if child.returncode != 0:
        raise RuntimeError("database migration failed: " + err.decode(errors="replace")[-2000:])


MIGRATE_URL_ENV = "ONAIR_MIGRATE_DATABASE_URL"
MIGRATION_LOCK_KEY = 0x6F6E6169  # "onai": the advisory lock held while the schema is migrated


async def _migrate_here(url: str) -> None:
    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # nodes starting together on one database: one migrates, the others wait and find it at head
                await conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            await conn.run_sync(_upgrade)
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(_migrate_here(os.environ[MIGRATE_URL_ENV]))


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
