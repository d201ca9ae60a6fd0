"""The ledger's database: the async engine for ledger.database_url, the schema brought to Alembic's
head, and the idempotent inserts (a row delivered twice is written once, in either dialect: INSERT
... ON CONFLICT DO NOTHING, which SQLite and PostgreSQL both speak)."""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect, make_url
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.ledger import schema
from services.ledger.migrate import upgrade_head

CONNECT_TIMEOUT_S = 5.0
STATEMENT_TIMEOUT_S = 30.0
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Held during a PostgreSQL migration, so ledger replicas starting together migrate one at a time.
MIGRATION_LOCK_ID = 0x6C656467  # "ledg"

# SQLSTATE classes of a refusal for what a row holds: data exception, integrity constraint violation.
CONTENT_SQLSTATE_CLASSES = ("22", "23")


def refused_for_content(exc: BaseException) -> bool:
    """The database refused a row for what it holds, not for being unreachable: such a row is written
    alone, then dropped. asyncpg's refusals reach SQLAlchemy as a plain DBAPIError, so the SQLSTATE decides."""
    if isinstance(exc, DataError | IntegrityError):
        return True
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None) or getattr(getattr(orig, "__cause__", None), "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in CONTENT_SQLSTATE_CLASSES


def create_engine(url: str) -> AsyncEngine:
    """SQLite (aiosqlite) in WAL mode, so analytics read while the writer writes; PostgreSQL
    (asyncpg) with bounded connect and statement times, its pooled connections checked before use
    (a database restarted behind the pool is noticed at once, not at the first failed write)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, json_serializer=json_text)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        return engine
    return create_async_engine(url, pool_pre_ping=True, pool_size=4, max_overflow=4, json_serializer=json_text,
                               connect_args={"timeout": CONNECT_TIMEOUT_S, "command_timeout": STATEMENT_TIMEOUT_S})


def json_text(value: Any) -> str:
    """JSON columns (a record's calls) as orjson writes them: the stdlib's encoder was a twentieth of the
    ledger's CPU per row. rows.py has made every value JSON can hold (no NaN, integers within 64 bits)."""
    return orjson.dumps(value).decode()


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


@dataclass(frozen=True)
class Insert:
    """An INSERT ... ON CONFLICT DO NOTHING built from the Core statement and compiled once per dialect,
    with SQLAlchemy's own bind processors per parameter. Rows then go to the driver's executemany
    as tuples: per row, no statement compilation or parameter bookkeeping, which cost more CPU
    than the database's own work (measured in bench/ledger.py)."""

    sql: str
    names: tuple[str, ...]  # the parameters, in the statement's positional order
    processors: tuple[Callable[[Any], Any] | None, ...]

    def parameters(self, rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        values = operator.itemgetter(*self.names)
        converted = [(index, process) for index, process in enumerate(self.processors) if process is not None]
        found = []
        for row in rows:
            params = list(values(row))
            for index, process in converted:
                params[index] = process(params[index])
            found.append(tuple(params))
        return found


_INSERTS: dict[tuple[str, str], Insert] = {}


def prepared_insert(dialect: Dialect, table: sa.Table, conflict: list[str], columns: list[str]) -> Insert:
    key = (dialect.name, table.name)
    if key not in _INSERTS:
        builder = postgresql.insert if dialect.name == "postgresql" else sqlite.insert
        statement = builder(table).on_conflict_do_nothing(index_elements=conflict)
        compiled = statement.compile(dialect=dialect, column_keys=columns)
        names = tuple(compiled.positiontup or ())
        if not names:
            raise RuntimeError(f"the {dialect.name} dialect does not bind parameters by position")
        processors = tuple(table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in names)
        _INSERTS[key] = Insert(compiled.string, names, processors)
    return _INSERTS[key]


RECORD_COLUMNS = [column.name for column in schema.records.columns]
FEEDBACK_COLUMNS = [column.name for column in schema.feedback.columns if column.name != "id"]


async def insert_records(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert ledger rows; a request id already there is skipped by the database (delivered twice)."""
    if rows:
        insert = prepared_insert(conn.dialect, schema.records, ["request_id"], RECORD_COLUMNS)
        await conn.exec_driver_sql(insert.sql, insert.parameters(rows))


async def insert_feedback(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if rows:
        insert = prepared_insert(conn.dialect, schema.feedback, ["request_id", "key_id", "time", "verdict"],
                                 FEEDBACK_COLUMNS)
        await conn.exec_driver_sql(insert.sql, insert.parameters(rows))


async def ping(engine: AsyncEngine, timeout_s: float) -> bool:
    try:
        async with asyncio.timeout(timeout_s), engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except Exception:  # any failure to reach the database means: not ready
        return False
    return True
