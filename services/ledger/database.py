"""The ledger's database: the async engine for ledger.database_url, the schema brought to Alembic's
head, and the idempotent inserts (a row delivered twice is written once, in either dialect)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.ledger import schema
from services.ledger.migrate import upgrade_head

CONNECT_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 30.0
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Held during a PostgreSQL migration, so ledger replicas starting together migrate one at a time.
MIGRATION_LOCK_ID = 0x6C656467  # "ledg"

# A row the database refuses for what it holds (not for being unreachable): written alone, then dropped.
ROW_ERRORS = (DataError, IntegrityError)


def create_engine(url: str) -> AsyncEngine:
    """SQLite (aiosqlite) in WAL mode, so analytics read while the writer writes; PostgreSQL
    (asyncpg) with bounded connect and statement times, its pooled connections checked before use
    (a database restarted behind the pool is noticed at once, not at the first failed write)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4,
                               connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": STATEMENT_TIMEOUT_S})


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


async def migrate(engine: AsyncEngine) -> None:
    """Bring the schema to Alembic's head (a no-op when it is there)."""
    async with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        await conn.run_sync(_upgrade)


def _upgrade(connection: Connection) -> None:
    upgrade_head(connection)


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    return (postgresql.insert(table) if conn.dialect.name == "postgresql" else sqlite.insert(table))


async def insert_records(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """Insert ledger rows, skipping request ids already there; returns how many were new."""
    if not rows:
        return 0
    statement = (_insert(conn, schema.records).on_conflict_do_nothing(index_elements=["request_id"])
                 .returning(schema.records.c.request_id))
    result = await conn.execute(statement, rows)
    return len(result.all())


async def insert_feedback(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    statement = (_insert(conn, schema.feedback)
                 .on_conflict_do_nothing(index_elements=["request_id", "key_id", "time", "verdict"])
                 .returning(schema.feedback.c.id))
    result = await conn.execute(statement, rows)
    return len(result.all())


async def ping(engine: AsyncEngine, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:  # any failure to reach the database means: not ready
        return False
    return True
