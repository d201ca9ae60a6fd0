"""deploy/'s ledger database, against the machine's PostgreSQL: the initdb script's read-only role, and
every SQL query of the dashboard run on the schema the ledger's own migrations create.

Each test creates its database (and roles) under a random name and drops them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from services.ledger.migrate import upgrade_head
from services.ledger.schema import records

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
INITDB = DEPLOY / "postgres" / "initdb" / "10-ledger-reader.sh"
PG_HOST, PG_PORT, PG_ADMIN = "127.0.0.1", 5432, "postgres"
LEDGER_SOURCE = {"type": "grafana-postgresql-datasource", "uid": "${ledger}"}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def admin(*statements: str) -> None:
    connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=PG_ADMIN, database="postgres")
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


@dataclass(frozen=True)
class Database:
    name: str
    owner: str

    def url(self, user: str | None = None) -> str:
        return f"postgresql+asyncpg://{user or self.owner}@{PG_HOST}:{PG_PORT}/{self.name}"


@pytest.fixture
def database() -> Iterator[Database]:
    """A database of its own, owned by a role of its own (as the image's POSTGRES_USER owns POSTGRES_DB)."""
    suffix = uuid.uuid4().hex[:10]
    db = Database(f"dg_deploy_{suffix}", f"dg_owner_{suffix}")
    # The image's POSTGRES_USER is a superuser; CREATEROLE is all the script needs of it.
    run(admin(f'CREATE ROLE "{db.owner}" LOGIN CREATEROLE', f'CREATE DATABASE "{db.name}" OWNER "{db.owner}"'))
    try:
        yield db
    finally:
        run(admin(f'DROP DATABASE IF EXISTS "{db.name}" WITH (FORCE)'))
        run(admin(f'DROP ROLE IF EXISTS "{db.owner}"'))


async def migrate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(upgrade_head)
    finally:
        await engine.dispose()


@pytest.fixture
def reader(database: Database) -> Iterator[str]:
    """The initdb script run as the image runs it (psql as POSTGRES_USER); yields the reader's name."""
    psql = shutil.which("psql")
    if psql is None:
        pytest.skip("no psql on this machine: the initdb script needs it (the postgres image has it)")
    name = f"dg_reader_{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "PGHOST": PG_HOST, "PGPORT": str(PG_PORT), "POSTGRES_USER": database.owner,
           "POSTGRES_DB": database.name, "LEDGER_READER_USER": name, "LEDGER_READER_PASSWORD": "it's a secret"}
    try:
        done = subprocess.run(["sh", str(INITDB)], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        yield name
    finally:
        run(admin(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)', f'DROP ROLE IF EXISTS "{name}"'))


def test_the_initdb_script_refuses_to_run_without_the_reader_password(database: Database):
    env = {**os.environ, "PGHOST": PG_HOST, "POSTGRES_USER": database.owner, "POSTGRES_DB": database.name}
    env.pop("LEDGER_READER_PASSWORD", None)
    done = subprocess.run(["sh", str(INITDB)], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "LEDGER_READER_PASSWORD" in done.stderr


def test_the_reader_selects_what_the_ledger_creates_later_and_writes_nothing(database: Database, reader: str):
    async def scenario() -> None:
        await migrate(database.url())  # the ledger starts after initdb and migrates as the owner
        owner = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=database.owner, database=database.name)
        try:
            await owner.execute("INSERT INTO ledger_records (request_id, time, day, status, calls) "
                                "VALUES ('r1', now(), '2026-12-03', 200, '[]')")
        finally:
            await owner.close()
        connection = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user=reader, database=database.name)
        try:
            assert await connection.fetchval("SELECT count(*) FROM ledger_records") == 1
            assert await connection.fetchval("SELECT count(*) FROM ledger_feedback") == 0
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await connection.execute("DELETE FROM ledger_records")
            await connection.execute("SET default_transaction_read_only = off")  # any role may; privileges hold
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute("DELETE FROM ledger_records")
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute("CREATE TABLE t (a int)")
        finally:
            await connection.close()

    run(scenario())


# The dashboard's SQL, with Grafana's macros expanded as its PostgreSQL data source expands them.

FROM = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TO = FROM + timedelta(hours=1)
INTERVAL_S = 60


def dashboard() -> dict[str, Any]:
    return json.loads((DEPLOY / "grafana" / "dashboards" / "draftgate.json").read_text())


def ledger_queries() -> list[tuple[str, str, str]]:
    """(title, format, SQL) of every ledger query: panel targets and template variables."""
    board = dashboard()
    panels = [*board["panels"], *(inner for p in board["panels"] for inner in p.get("panels", []))]
    found = [(p["title"], t["format"], t["rawSql"]) for p in panels for t in p.get("targets", [])
             if t["datasource"] == LEDGER_SOURCE]
    found += [(f"variable {v['name']}", "table", v["query"]) for v in board["templating"]["list"]
              if v.get("datasource") == LEDGER_SOURCE]
    return found


def expand(sql: str, tenants: list[str]) -> str:
    """Grafana's PostgreSQL macros for the range FROM..TO at a 1-minute interval, all tenants selected."""
    def time_filter(match: re.Match[str]) -> str:
        return f"{match[1]} BETWEEN '{FROM.isoformat()}' AND '{TO.isoformat()}'"

    def time_group_alias(match: re.Match[str]) -> str:
        return f'floor(extract(epoch from {match[1]})/{INTERVAL_S})*{INTERVAL_S} AS "time"'

    sql = re.sub(r"\$__timeFilter\(([^)]+)\)", time_filter, sql)
    sql = re.sub(r"\$__timeGroupAlias\(([^,]+), \$__interval(?:, [^)]*)?\)", time_group_alias, sql)
    sql = sql.replace("$tenant", ", ".join("'" + t.replace("'", "''") + "'" for t in tenants))
    assert "$" not in sql, sql
    return sql


# tenant, key, minutes after FROM, cost, baseline, status
ROWS = [("acme", "k1", 1, 0.010, 0.050, 200), ("acme", "k1", 1, 0.020, 0.050, 200),
        ("acme", "k2", 30, 0.030, 0.030, 200), ("globex", "k3", 2, 0.001, 0.004, 200),
        ("globex", "k3", 59, 0.0, 0.0, 429), ("", "", 5, 0.002, 0.010, 200),
        ("acme", "k1", -10, 5.0, 5.0, 200)]  # before the range: never counted


async def insert_rows(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(sa.insert(records), [
                {"request_id": f"r{i}", "time": FROM + timedelta(minutes=minutes), "day": FROM.date().isoformat(),
                 "tenant": tenant, "key_id": key, "status": status, "cost_usd": cost, "baseline_usd": baseline,
                 "saved_usd": baseline - cost, "prompt_tokens": 10, "completion_tokens": 5, "calls": [],
                 "degraded": i == 0}
                for i, (tenant, key, minutes, cost, baseline, status) in enumerate(ROWS)])
    finally:
        await engine.dispose()


async def fetch_all(url: str, queries: list[tuple[str, str, str]]) -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for title, _, sql in queries:
            yield title, [dict(row) for row in await connection.fetch(sql)]
    finally:
        await connection.close()


def in_range(tenant: str) -> list[tuple[str, str, int, float, float, int]]:
    return [row for row in ROWS if row[0] == tenant and 0 <= row[2] <= 60]


def test_every_dashboard_sql_query_runs_on_the_migrated_schema_and_adds_up(database: Database):
    queries = ledger_queries()
    assert len(queries) >= 5
    tenants = ["acme", "globex", ""]

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        await migrate(database.url())
        await insert_rows(database.url())
        expanded = [(title, fmt, expand(sql, tenants)) for title, fmt, sql in queries]
        return {title: rows async for title, rows in fetch_all(database.url(), expanded)}

    results = run(scenario())
    assert sorted(row["tenant"] for row in results["variable tenant"]) == sorted(tenants)
    spend = results["Spend per tenant (USD per interval)"]
    saving = results["Saving per tenant (USD per interval)"]
    for tenant, label in (("acme", "acme"), ("globex", "globex"), ("", "(no tenant)")):
        rows = in_range(tenant)
        assert sum(r["value"] for r in spend if r["metric"] == label) == pytest.approx(sum(r[3] for r in rows))
        assert sum(r["value"] for r in saving if r["metric"] == label) == pytest.approx(sum(r[4] - r[3] for r in rows))
    assert all(float(r["time"]) % INTERVAL_S == 0 for r in spend)
    by_tenant = {r["tenant"]: r for r in results["Spend and saving by tenant (time range)"]}
    acme = by_tenant["acme"]
    assert (acme["requests"], acme["failed"], acme["degraded"], acme["tokens"]) == (3, 0, 1, 45)
    assert acme["spent"] == pytest.approx(0.06) and acme["heavyweight_alone"] == pytest.approx(0.13)
    assert acme["saved_share"] == pytest.approx(0.07 / 0.13)
    assert by_tenant["globex"]["failed"] == 1 and "(no tenant)" in by_tenant
    keys = results["Top keys by spend (time range)"]
    assert [r["key"] for r in keys][:2] == ["k1", "k2"] and keys[0]["spent"] == pytest.approx(0.03)


def test_a_tenant_filter_narrows_every_panel(database: Database):
    queries = [q for q in ledger_queries() if not q[0].startswith("variable")]

    async def scenario() -> dict[str, list[dict[str, Any]]]:
        await migrate(database.url())
        await insert_rows(database.url())
        expanded = [(title, fmt, expand(sql, ["globex"])) for title, fmt, sql in queries]
        return {title: rows async for title, rows in fetch_all(database.url(), expanded)}

    for title, rows in run(scenario()).items():
        names = {row.get("metric", row.get("tenant")) for row in rows}
        assert names == {"globex"}, title
