"""The ledger service as a real process: records published on the Redis stream end up in SQL once
each (SQLite and PostgreSQL), acknowledged only after the commit; the database unreachable for a
while (a TCP proxy this test cuts) or the service killed mid-batch loses nothing and doubles nothing."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import httpx
import pytest
import redis

from shared.keys import FEEDBACK_STREAM, LEDGER_GROUP, LEDGER_STREAM
from shared.messages import Feedback, LedgerRecord
from tests.integration.ledger_support import (
    PG_HOST,
    PG_PORT,
    TcpProxy,
    analytics,
    pending,
    pg_database,
    pg_rows,
    pg_url,
    publish,
    record,
    requests_counted,
    start_ledger,
    wait_for,
)
from tests.support import Service

NOW = time.time()


def metric(ledger: Service, table: str, result: str) -> float:
    text = httpx.get(f"{ledger.url}/metrics", timeout=10).text
    line = f'draftgate_ledger_rows_total{{result="{result}",table="{table}"}} '
    return next((float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line)), 0.0)


def ready(ledger: Service) -> tuple[int, dict]:
    response = httpx.get(f"{ledger.url}/ready", timeout=10)
    return response.status_code, response.json()


def unready(ledger: Service) -> dict | None:
    """/ready's body while it is a 503."""
    status, body = ready(ledger)
    return body if status == 503 else None


@pytest.mark.redis_flavours
def test_records_reach_sqlite_once_each_and_analytics_count_them(redis_url: str, tmp_path: Path) -> None:
    database = tmp_path / "ledger.db"
    ledger = start_ledger(redis_url, f"sqlite+aiosqlite:///{database}", tmp_path)
    try:
        records = [record(i, at=NOW - i, tenant="acme" if i % 2 else "globex") for i in range(40)]
        verdict = Feedback(request_id="req-3", verdict="bad", comment="wrong year", key_id="k", tenant="acme",
                           time=NOW)
        publish(redis_url, *records, records[3], b"not a ledger record", verdict, verdict)
        wait_for(requests_counted(ledger, 40), what="40 requests counted")
        wait_for(lambda: pending(redis_url) == 0 and pending(redis_url, FEEDBACK_STREAM) == 0, what="all acked")
        totals = analytics(ledger)["totals"]
        assert totals["succeeded"] == sum(1 for r in records if r.status < 400)
        assert totals["decisions"] == {"accept": 20, "escalate": 20}
        assert totals["cost_usd"] == pytest.approx(sum(r.account["cost_usd"] for r in records))
        by_tenant = {g["key"]: g["requests"] for g in analytics(ledger, group_by="tenant")["groups"]}
        assert by_tenant == {"acme": 20, "globex": 20}
        assert metric(ledger, "ledger_records", "stored") == 41  # the duplicate stored once: the count says 40
        assert metric(ledger, "ledger_records", "invalid") == 1
        with sqlite3.connect(database) as conn:
            counts = conn.execute("SELECT count(*), count(DISTINCT request_id) FROM ledger_records").fetchone()
            assert counts == (40, 40)
            assert conn.execute("SELECT request_id, verdict, comment FROM ledger_feedback").fetchall() == [
                ("req-3", "bad", "wrong year")]
        assert ready(ledger)[0] == 200
    finally:
        ledger.stop()


def test_postgres_down_for_a_while_and_back_loses_and_doubles_nothing(redis_url: str, tmp_path: Path) -> None:
    with pg_database() as name:
        proxy = TcpProxy((PG_HOST, PG_PORT)).restore()
        ledger = start_ledger(redis_url, pg_url(name, proxy.port), tmp_path)
        try:
            poison = [LedgerRecord(request_id="poison-1", time=NOW, status="500"),  # type: ignore[arg-type]
                      LedgerRecord(request_id="poison-2", time=NOW, tenant=["acme"])]  # type: ignore[arg-type]
            publish(redis_url, *(record(i, at=NOW) for i in range(25)), *poison, *(record(i, at=NOW)
                                                                                    for i in range(25, 50)))
            wait_for(requests_counted(ledger, 50), what="the first 50 records, past two that PostgreSQL would refuse")
            assert metric(ledger, "ledger_records", "invalid") == 2

            proxy.cut()  # the database unreachable: connections refused, open ones closed
            publish(redis_url, *(record(i, at=NOW) for i in range(50, 150)))
            body = wait_for(lambda: unready(ledger), what="/ready to say the database is down")
            assert body["database"] is False and body["redis"] is True
            wait_for(lambda: pending(redis_url) > 0, what="records waiting in the stream, read but not acked")
            assert httpx.get(f"{ledger.url}/health", timeout=10).status_code == 200  # still up
            down = httpx.get(f"{ledger.url}/analytics", timeout=30)
            assert down.status_code == 503 and down.json()["error"]["code"] == "ledger_database_unavailable"
            publish(redis_url, record(7, at=NOW), record(120, at=NOW))  # delivered twice, one of them while down

            proxy.restore()
            wait_for(requests_counted(ledger, 150), timeout_s=60, what="all 150 records after the outage")
            wait_for(lambda: pending(redis_url) == 0, what="every entry acked")
            wait_for(lambda: ready(ledger)[0] == 200, what="/ready again")
            rows = asyncio.run(pg_rows(name, "SELECT count(*) AS n, count(DISTINCT request_id) AS d "
                                             "FROM ledger_records"))
            assert (rows[0]["n"], rows[0]["d"]) == (150, 150)
            assert metric(ledger, "ledger_records", "stored") == 152  # two of them twice
        finally:
            ledger.stop()
            proxy.cut()


def test_a_ledger_killed_holding_a_batch_leaves_it_to_the_next(redis_url: str, tmp_path: Path) -> None:
    with pg_database() as name:
        proxy = TcpProxy((PG_HOST, PG_PORT)).restore()
        first = start_ledger(redis_url, pg_url(name, proxy.port), tmp_path)
        second = None
        try:
            wait_for(lambda: ready(first)[0] == 200, what="the first ledger ready (schema migrated)")
            proxy.cut()
            publish(redis_url, *(record(i, at=NOW) for i in range(30)))
            held = wait_for(lambda: pending(redis_url), what="a batch read and held by the first ledger")
            time.sleep(0.5)  # let it fail its retries for a while: still nothing acked
            first.kill()  # SIGKILL: nothing handed back
            assert pending(redis_url) == held  # none acked: the batch was never committed
            proxy.restore()
            second = start_ledger(redis_url, pg_url(name, proxy.port), tmp_path)
            wait_for(requests_counted(second, 30), timeout_s=60, what="the second ledger to write the held batch")
            wait_for(lambda: pending(redis_url) == 0, what="every entry acked")
            rows = asyncio.run(pg_rows(name, "SELECT count(*) AS n FROM ledger_records"))
            assert rows[0]["n"] == 30
        finally:
            first.stop()
            if second is not None:
                second.stop()
            proxy.cut()


def test_the_service_starts_without_its_database_and_says_so(redis_url: str, tmp_path: Path) -> None:
    proxy = TcpProxy((PG_HOST, PG_PORT))  # never listening: nothing answers on its port
    with pg_database() as name:
        ledger = start_ledger(redis_url, pg_url(name, proxy.port), tmp_path)
        try:
            body = wait_for(lambda: unready(ledger), what="/ready 503")
            assert body["database"] is False
            publish(redis_url, *(record(i, at=NOW) for i in range(5)))
            proxy.restore()
            wait_for(requests_counted(ledger, 5), timeout_s=60, what="records written once the database is up")
        finally:
            ledger.stop()
            proxy.cut()


def test_a_ledger_stopped_holding_a_batch_hands_it_back(redis_url: str, tmp_path: Path) -> None:
    """SIGTERM while the database is away: the held entries are marked for any live ledger to take at once."""
    with pg_database() as name:
        proxy = TcpProxy((PG_HOST, PG_PORT)).restore()
        ledger = start_ledger(redis_url, pg_url(name, proxy.port), tmp_path,
                              DRAFTGATE_BUS_RECLAIM_IDLE_MS="600000")  # a silent consumer's entries: 10 minutes
        try:
            wait_for(lambda: ready(ledger)[0] == 200, what="the ledger ready")
            proxy.cut()
            publish(redis_url, *(record(i, at=NOW) for i in range(10)))
            held = wait_for(lambda: pending(redis_url), what="a batch read and held")
            assert ledger.stop() == 0
            entries = redis.Redis.from_url(redis_url).xpending_range(LEDGER_STREAM, LEDGER_GROUP, "-", "+", 100)
            assert len(entries) == held
            assert all(entry["time_since_delivered"] > 600_000 for entry in entries)  # handed back, not abandoned
            proxy.restore()
            successor = start_ledger(redis_url, pg_url(name, proxy.port), tmp_path,
                                     DRAFTGATE_BUS_RECLAIM_IDLE_MS="600000")
            try:
                wait_for(requests_counted(successor, 10), what="the successor to write all 10 at once")
            finally:
                successor.stop()
        finally:
            ledger.stop()
            proxy.cut()
