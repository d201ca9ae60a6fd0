"""The ledger's SQL layer on SQLite and on the machine's PostgreSQL (a database made and dropped per
test): Alembic's schema, idempotent inserts, and analytics computed by the database, checked
against the same figures worked out here from the records themselves."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncEngine

from services.ledger import analytics, database, schema
from services.ledger.migrate import VERSION_TABLE, current_revision
from services.ledger.params import Window, parse_window
from services.ledger.rows import record_row
from shared.messages import LedgerRecord
from tests.integration.ledger_support import pg_database, pg_url, record
from tests.support import REPO

DAY = 86400.0
T0 = datetime(2026, 11, 30, tzinfo=UTC).timestamp()  # a Monday, 00:00 UTC


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
        return
    with pg_database() as name:
        yield pg_url(name)


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = database.create_engine(database_url)
    await database.migrate(engine)
    yield engine
    await engine.dispose()


def records_for_week() -> list[LedgerRecord]:
    """60 records over three days, two tenants (one with a sub-tenant), three keys, two templates."""
    found = []
    for i in range(60):
        tenant = ["acme", "acme:eu", "globex"][i % 3]
        found.append(record(i, at=T0 + (i % 3) * DAY + i * 60, tenant=tenant, key_id=f"key-{i % 4}",
                            template_id="faq" if i % 2 == 0 else ""))
    return found


async def insert(engine: AsyncEngine, records: list[LedgerRecord]) -> None:
    async with engine.begin() as conn:
        await database.insert_records(conn, [record_row(r) for r in records])


async def request_ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list(await conn.scalars(sa.select(schema.records.c.request_id).order_by(schema.records.c.request_id)))


def percentile(values: list[float], p: float) -> float:
    """percentile_cont: linear between the values around rank 1 + p * (n - 1)."""
    ordered = sorted(values)
    rank = p * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


def expected(records: list[LedgerRecord]) -> dict[str, Any]:
    rows = [record_row(r) for r in records]
    latencies = [r.latency_ms for r in records]
    return {
        "requests": len(records), "succeeded": sum(1 for r in records if r.status < 400),
        "accept": sum(1 for r in records if r.decision == "accept"),
        "cost": sum(row["cost_usd"] for row in rows), "baseline": sum(row["baseline_usd"] for row in rows),
        "prompt": sum(row["prompt_tokens"] for row in rows),
        "aborted_completion": sum(row["aborted_draft_completion_tokens"] for row in rows),
        "p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95), "p99": percentile(latencies, 0.99),
    }


def assert_figures(got: dict[str, Any], records: list[LedgerRecord]) -> None:
    want = expected(records)
    assert got["requests"] == want["requests"]
    assert got["succeeded"] == want["succeeded"]
    assert got["success_rate"] == pytest.approx(want["succeeded"] / want["requests"])
    assert got["decisions"].get("accept", 0) == want["accept"]
    assert sum(got["decisions"].values()) == want["requests"]
    assert got["cost_usd"] == pytest.approx(want["cost"])
    assert got["baseline_usd"] == pytest.approx(want["baseline"])
    assert got["saved_usd"] == pytest.approx(want["baseline"] - want["cost"])
    assert got["tokens"]["prompt"] == want["prompt"]
    assert got["tokens"]["aborted_draft_completion"] == want["aborted_completion"]
    for label in ("p50", "p95", "p99"):
        assert got["latency_ms"][label] == pytest.approx(want[label]), label


async def test_migrations_build_the_schema_the_code_declares_and_run_twice_harmlessly(engine: AsyncEngine) -> None:
    await database.migrate(engine)  # again: already at head

    def differences(conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE, "compare_type": True})
        return compare_metadata(context, schema.metadata)

    async with engine.connect() as conn:
        assert await conn.run_sync(current_revision) == "0001"
        assert await conn.run_sync(differences) == []


async def test_a_record_delivered_twice_is_one_row(engine: AsyncEngine) -> None:
    await insert(engine, [record(i, at=T0) for i in range(5)])
    assert await request_ids(engine) == [f"req-{i}" for i in range(5)]
    await insert(engine, [record(2, at=T0, tenant="changed"), record(7, at=T0), record(7, at=T0)])
    assert await request_ids(engine) == [*(f"req-{i}" for i in range(5)), "req-7"]
    async with engine.connect() as conn:  # the first delivery stays as it was
        tenant = await conn.scalar(sa.select(schema.records.c.tenant).where(schema.records.c.request_id == "req-2"))
    assert tenant == "t"


async def test_totals_and_every_grouping_match_the_records(engine: AsyncEngine) -> None:
    records = records_for_week()
    await insert(engine, records)
    async with engine.connect() as conn:
        body = await analytics.analytics(conn, Window(group_by="tenant"))
        assert_figures(body["totals"], records)
        by_tenant = {group["key"]: group for group in body["groups"]}
        assert sorted(by_tenant) == ["acme", "acme:eu", "globex"]
        for tenant, figures in by_tenant.items():
            assert_figures(figures, [r for r in records if r.tenant == tenant])
        for group_by, field, name in (("key", "key_id", None), ("template", "template_id", None),
                                      ("model", None, "served"), ("day", None, "day")):
            groups = (await analytics.analytics(conn, Window(group_by=group_by)))["groups"]
            assert sum(g["requests"] for g in groups) == len(records)
            for group in groups:
                if field:
                    members = [r for r in records if getattr(r, field) == group["key"]]
                elif name == "served":
                    members = [r for r in records if record_row(r)["served_model"] == group["key"]]
                else:
                    members = [r for r in records if record_row(r)["day"] == group["key"]]
                assert_figures(group, members)
        days = [g["key"] for g in (await analytics.analytics(conn, Window(group_by="day")))["groups"]]
        assert days == ["2026-11-30", "2026-12-01", "2026-12-02"]


async def test_window_and_tenant_filters(engine: AsyncEngine) -> None:
    records = records_for_week()
    await insert(engine, records)
    window = parse_window({"from": "2026-12-01", "to": str(T0 + 2 * DAY)})
    async with engine.connect() as conn:
        got = (await analytics.analytics(conn, window))["totals"]
        assert_figures(got, [r for r in records if T0 + DAY <= r.time < T0 + 2 * DAY])
        acme = (await analytics.analytics(conn, Window(tenant="acme")))["totals"]  # with its sub-tenant acme:eu
        assert_figures(acme, [r for r in records if r.tenant.startswith("acme")])
        eu = (await analytics.analytics(conn, Window(tenant="acme:eu")))["totals"]
        assert_figures(eu, [r for r in records if r.tenant == "acme:eu"])
        assert (await analytics.analytics(conn, Window(tenant="acm")))["totals"]["requests"] == 0
        assert (await analytics.analytics(conn, Window(tenant="ac%")))["totals"]["requests"] == 0  # no LIKE wildcard
        nothing = await analytics.analytics(conn, Window(start=datetime(2030, 1, 1, tzinfo=UTC), group_by="key"))
        assert nothing["totals"]["requests"] == 0 and nothing["totals"]["latency_ms"]["p50"] is None
        assert nothing["groups"] == []


async def test_template_stats_and_spend(engine: AsyncEngine) -> None:
    records = records_for_week()
    await insert(engine, records)
    async with engine.connect() as conn:
        faq = await analytics.analytics(conn, Window(), template_id="faq")
        assert faq["template_id"] == "faq"
        assert_figures(faq["totals"], [r for r in records if r.template_id == "faq"])
        spend = await analytics.spend(conn, Window())
    rows = [record_row(r) for r in records]
    assert spend["total"]["requests"] == 60
    assert spend["total"]["cost_usd"] == pytest.approx(sum(row["cost_usd"] for row in rows))
    for entry in spend["keys"]:
        mine = [row for row in rows if (row["key_id"], row["tenant"]) == (entry["key_id"], entry["tenant"])]
        assert entry["requests"] == len(mine)
        assert entry["cost_usd"] == pytest.approx(sum(row["cost_usd"] for row in mine))
        assert entry["prompt_tokens"] == sum(row["prompt_tokens"] for row in mine)
    assert sum(entry["requests"] for entry in spend["keys"]) == 60
    tenants = {entry["tenant"]: entry for entry in spend["tenants"]}
    assert set(tenants) == {"acme", "acme:eu", "globex"}
    assert tenants["globex"]["saved_usd"] == pytest.approx(sum(row["saved_usd"] for row in rows
                                                               if row["tenant"] == "globex"))
    costs = [entry["cost_usd"] for entry in spend["tenants"]]
    assert costs == sorted(costs, reverse=True)


async def test_unpriced_answers_and_missing_latencies_are_left_out_not_zeroed(engine: AsyncEngine) -> None:
    await insert(engine, [
        record(0, at=T0),
        LedgerRecord(request_id="cached", time=T0, status=200, decision="cache_hit", cache="exact", latency_ms=None,
                     account=None),
        LedgerRecord(request_id="unpriced", time=T0, status=200, decision="accept", latency_ms=float("nan"),
                     account={"calls": [{"tier": "drafter", "deployment": "d", "model": "m", "prompt_tokens": 3,
                                         "completion_tokens": 4, "role": "draft", "cost_usd": None}],
                              "cost_usd": None, "baseline_usd": None}),
    ])
    async with engine.connect() as conn:
        totals = (await analytics.analytics(conn, Window()))["totals"]
    assert totals["requests"] == 3 and totals["unpriced"] == 2
    assert totals["cost_usd"] == pytest.approx(0.0001)
    assert totals["latency_ms"]["p50"] == 0.0  # the one latency known
    assert totals["cache"] == {"lookups": 2, "hits": 1, "hit_rate": 0.5}
    assert totals["tokens"]["prompt"] == 13


def run_export(database_url: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "DRAFTGATE_LEDGER_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-m", "services.ledger", "export", *args], cwd=REPO, env=env,
                          capture_output=True, timeout=120, check=False)


async def test_export_csv_and_parquet_hold_the_window(engine: AsyncEngine, database_url: str,
                                                      tmp_path: Path) -> None:
    records = records_for_week()
    await insert(engine, records)
    inside = sorted(r.request_id for r in records if T0 + DAY <= r.time < T0 + 3 * DAY)
    done = run_export(database_url, "--format", "csv", "--from", "2026-12-01T00:00:00Z", "--to", "2026-12-03")
    assert done.returncode == 0, done.stderr.decode()
    rows = list(csv.DictReader(io.StringIO(done.stdout.decode())))
    assert sorted(row["request_id"] for row in rows) == inside
    first = next(row for row in rows if row["request_id"] == "req-1")
    assert first["decision"] == "escalate" and first["tenant"] == "acme:eu"
    assert datetime.fromisoformat(first["time"]) == datetime.fromtimestamp(records[1].time, UTC)
    assert [call["role"] for call in json.loads(first["calls"])] == ["aborted_draft", "answer"]
    assert first["aborted_draft_completion_tokens"] == "2" and first["stream"] == "false"

    out = tmp_path / "ledger.parquet"
    done = run_export(database_url, "--format", "parquet", "--out", str(out), "--tenant", "globex")
    assert done.returncode == 0, done.stderr.decode()
    table = pq.read_table(out)
    assert sorted(table.column("request_id").to_pylist()) == sorted(r.request_id for r in records
                                                                     if r.tenant == "globex")
    assert str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert sum(table.column("cost_usd").to_pylist()) == pytest.approx(
        sum(record_row(r)["cost_usd"] for r in records if r.tenant == "globex"))


def test_export_refuses_a_time_it_cannot_read(tmp_path: Path) -> None:
    bad = run_export(f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}", "--format", "csv", "--from", "last tuesday")
    assert bad.returncode != 0 and b"`from` must be" in bad.stderr
    assert not (tmp_path / "ledger.db").exists()  # refused before touching the database


async def test_a_row_refused_for_its_content_is_told_from_an_unreachable_database(
        engine: AsyncEngine, database_url: str, tmp_path: Path) -> None:
    """The writer drops the first kind (written alone, counted) and holds its batch for the second."""
    good = record_row(record(0, at=T0))
    # Past the row checks on purpose: a value each database refuses (SQLite: NOT NULL; PostgreSQL: NUL in text).
    bad = {**good, "request_id": "bad", "status": None} if engine.dialect.name == "sqlite" else \
        {**good, "request_id": "bad", "tenant": "a\x00b"}
    with pytest.raises(sa.exc.DBAPIError) as refused:
        async with engine.begin() as conn:
            await database.insert_records(conn, [good, bad])
    assert database.refused_for_content(refused.value)
    assert await request_ids(engine) == []  # the batch's transaction rolled back whole

    # PostgreSQL on a port nothing listens on; SQLite "opening" a directory.
    unreachable = database.create_engine(database_url.replace(":5432/", ":1/") if ":5432/" in database_url
                                         else f"sqlite+aiosqlite:///{tmp_path}")
    try:
        with pytest.raises((sa.exc.DBAPIError, OSError)) as down:
            async with unreachable.begin() as conn:
                await database.insert_records(conn, [good])
        assert not database.refused_for_content(down.value)
    finally:
        await unreachable.dispose()
