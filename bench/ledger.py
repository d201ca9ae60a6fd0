"""Ledger write throughput: records/s from the Redis stream into SQL, through the real path
(LEDGER_STREAM -> the ledger service's consumer group -> SQLAlchemy -> SQLite / PostgreSQL).

For each database: the ledger service runs (schema migrated, idle); the benchmark then appends N
real LedgerRecords to the stream in pipelined batches, as fast as Redis takes them, and times until
the ledger has committed them all (its draftgate_ledger_rows_total{result="stored"}), checking the
table's row count after. PostgreSQL gets a database made for the run and dropped after it.

The target (issue #13): at least 5x the gateway's measured maximum request rate, read from
bench/results/overhead.json (32 clients through draftgate). `python -m bench.ledger [--records N]`;
results in bench/results/ledger.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import redis

from bench.harness import RESULTS_DIR, redis_server, usage, write_result
from shared.keys import LEDGER_STREAM, MESSAGE_FIELD
from shared.messages import LedgerRecord, encode
from tests.support import Service, free_port

RECORDS = 50_000
PUBLISH_BATCH = 1000
TARGET_RATIO = 5.0
PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
TIMEOUT_S = 600.0


def records(count: int, run: str) -> list[bytes]:
    """Realistic records: accepted drafts, escalations with an aborted draft, speculation wasted."""
    now = time.time()
    found = []
    for i in range(count):
        draft = {"tier": "drafter", "deployment": "small-a", "model": "gpt-4.1-nano", "prompt_tokens": 120 + i % 50,
                 "completion_tokens": 80, "role": "draft", "cost_usd": 0.00004}
        calls = [draft]
        if i % 4 == 1:
            calls = [{**draft, "role": "aborted_draft", "completion_tokens": 6},
                     {"tier": "heavyweight", "deployment": "big-a", "model": "gpt-4.1", "prompt_tokens": 120,
                      "completion_tokens": 90, "role": "answer", "cost_usd": 0.00096}]
        elif i % 4 == 2:
            calls = [draft, {"tier": "heavyweight", "deployment": "big-a", "model": "gpt-4.1", "prompt_tokens": 120,
                             "completion_tokens": 12, "role": "wasted_speculation", "cost_usd": 0.00034}]
        cost = sum(call["cost_usd"] for call in calls)
        found.append(encode(LedgerRecord(
            request_id=f"{run}-{i}", time=now - i * 0.01, key_id=f"vk_{i % 37:04d}", tenant=f"tenant-{i % 7}",
            template_id="support" if i % 3 == 0 else "", session_id="", model="auto", stream=i % 2 == 0,
            status=200 if i % 50 else 429, decision="escalate" if i % 4 == 1 else "accept",
            tier="heavyweight" if i % 4 == 1 else "drafter", deployment="big-a" if i % 4 == 1 else "small-a",
            account={"calls": calls, "cost_usd": cost, "baseline_usd": 0.0012}, latency_ms=100.0 + i % 900,
            ttft_ms=40.0 + i % 300, draft_entropy=0.8, cache="miss")))
    return found


def stored(ledger: Service) -> float:
    text = httpx.get(f"{ledger.url}/metrics", timeout=10).text
    prefix = 'draftgate_ledger_rows_total{result="stored",table="ledger_records"} '
    return next((float(line.removeprefix(prefix)) for line in text.splitlines() if line.startswith(prefix)), 0.0)


def measure(redis_url: str, database_url: str, count: int, logs: Path) -> dict[str, Any]:
    port = free_port()
    ledger = Service("services.ledger", {"DRAFTGATE_REDIS_URL": redis_url, "DRAFTGATE_LEDGER_PORT": str(port),
                                         "DRAFTGATE_LEDGER_DATABASE_URL": database_url,
                                         "DRAFTGATE_LOGGING_LEVEL": "warning"},
                     port, logs / f"ledger-{port}.log").start(wait_path="/ready", timeout_s=120)
    try:
        payloads = records(count, uuid.uuid4().hex[:8])
        assert ledger.proc is not None
        process = psutil.Process(ledger.proc.pid)
        before = usage(process)
        client = redis.Redis.from_url(redis_url)
        started = time.perf_counter()
        for index in range(0, count, PUBLISH_BATCH):
            with client.pipeline(transaction=False) as pipe:
                for payload in payloads[index:index + PUBLISH_BATCH]:
                    pipe.xadd(LEDGER_STREAM, {MESSAGE_FIELD: payload})
                pipe.execute()
        published_s = time.perf_counter() - started
        deadline = time.monotonic() + TIMEOUT_S
        while stored(ledger) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the ledger wrote {stored(ledger)} of {count} records in {TIMEOUT_S} s")
            time.sleep(0.02)
        elapsed = time.perf_counter() - started
        cpu_s = usage(process).cpu_s - before.cpu_s
        return {"records": count, "seconds": round(elapsed, 3), "records_per_s": round(count / elapsed, 1),
                "publish_seconds": round(published_s, 3),
                "ledger_cpu_ms_per_1000_records": round(cpu_s / count * 1e6, 1),
                # What one core running the ledger alone would write: the rate a loaded machine hides.
                "records_per_ledger_cpu_s": round(count / cpu_s, 1),
                "load_average_1m_after": round(os.getloadavg()[0], 2)}
    finally:
        ledger.stop()


def sqlite_rows(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("SELECT count(*) FROM ledger_records").fetchone()[0])


async def _pg(database: str, sql: str) -> Any:
    conn = await asyncpg.connect(**PG, database=database)
    try:
        return await conn.fetchval(sql) if sql.lstrip().upper().startswith("SELECT") else await conn.execute(sql)
    finally:
        await conn.close()


@contextlib.contextmanager
def pg_database() -> Iterator[str]:
    name = f"draftgate_bench_ledger_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg("postgres", f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        asyncio.run(_pg("postgres", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def gateway_max_rate() -> tuple[float | None, str]:
    """The gateway's measured maximum request rate (bench/overhead's 32-client run), if recorded."""
    path = RESULTS_DIR / "overhead.json"
    if not path.exists():
        return None, "no bench/results/overhead.json: run `python -m bench overhead` first"
    result = json.loads(path.read_text())
    rate = result.get("32_clients", {}).get("draftgate", {}).get("requests_per_s")
    return rate, f"bench/results/overhead.json ({result.get('recorded_at')}, 32 clients)"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__)
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one database (default: both)")
    args = parser.parse_args(argv or [])  # `python -m bench` calls main() bare
    gateway_rate, source = gateway_max_rate()
    result: dict[str, Any] = {"gateway_max_requests_per_s": gateway_rate, "gateway_rate_source": source,
                              "target_ratio": TARGET_RATIO, "batch": "ledger.batch (500)"}
    with tempfile.TemporaryDirectory(prefix="draftgate-bench-ledger-") as tmp:
        workdir = Path(tmp)
        with redis_server(workdir) as redis_url:
            if args.only in (None, "sqlite"):
                database = workdir / "ledger.db"
                run = measure(redis_url, f"sqlite+aiosqlite:///{database}", args.records, workdir)
                run["rows_in_table"] = sqlite_rows(database)
                result["sqlite"] = run
            if args.only in (None, "postgresql"):
                redis.Redis.from_url(redis_url).flushdb()
                with pg_database() as name:
                    run = measure(redis_url, f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{name}",
                                  args.records, workdir)
                    run["rows_in_table"] = asyncio.run(_pg(name, "SELECT count(*) FROM ledger_records"))
                    result["postgresql"] = run
    for backend in ("sqlite", "postgresql"):
        run = result.get(backend)
        if run is None:
            continue
        if run["rows_in_table"] != args.records:
            raise RuntimeError(f"{backend}: {run['rows_in_table']} rows in the table, {args.records} published")
        if gateway_rate:
            run["ratio_to_gateway_max"] = round(run["records_per_s"] / gateway_rate, 2)
            run["pass"] = run["ratio_to_gateway_max"] >= TARGET_RATIO
            run["cpu_bound_ratio_to_gateway_max"] = round(run["records_per_ledger_cpu_s"] / gateway_rate, 2)
    path = write_result("ledger", result)
    lines = [f"{backend}: {run['records_per_s']} records/s ({run.get('ratio_to_gateway_max', '?')}x the gateway's "
             f"{gateway_rate} req/s; {'PASS' if run.get('pass') else 'FAIL'} >= {TARGET_RATIO}x; load average "
             f"{run['load_average_1m_after']}), {run['ledger_cpu_ms_per_1000_records']} ms of ledger CPU per 1000 "
             f"records = {run['records_per_ledger_cpu_s']}/s per core ({run.get('cpu_bound_ratio_to_gateway_max')}x)"
             for backend, run in ((b, result[b]) for b in ("sqlite", "postgresql") if b in result)]
    print("ledger: " + "; ".join(lines) + f" -> {path}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
