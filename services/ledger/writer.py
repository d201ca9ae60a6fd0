"""Ledger records and feedback from their Redis streams into SQL, through the shared consumer loop.

A batch read from the stream is written in one transaction and acknowledged only after the commit.
If the write fails (the database is down), the batch is held, still pending in the group, and
retried before anything new is read; the loop reports itself down meanwhile (/ready: 503). A batch
written but not acknowledged (Redis lost after the commit) is written again on retry, and skipped
by the database: rows are keyed by request id. A row the database refuses for its content is
written alone and dropped (counted); an undecodable entry is acked and dropped (counted).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.ledger import database
from services.ledger.metrics import LedgerMetrics
from services.ledger.rows import feedback_row, record_row
from shared import bus
from shared.config import BusConfig
from shared.keys import FEEDBACK_STREAM, LEDGER_GROUP, LEDGER_STREAM
from shared.messages import Feedback, LedgerRecord, WireError, decode

log = structlog.get_logger(__name__)

Insert = Callable[[AsyncConnection, list[dict[str, Any]]], Awaitable[None]]
# What a malformed entry can raise while it becomes a row (a field of the wrong type, a time out of range).
ROW_BUILD_ERRORS = (WireError, TypeError, ValueError, OverflowError, AttributeError, KeyError)


@dataclass(frozen=True)
class Sink:
    """One stream into one table."""

    stream: str
    table: str
    to_row: Callable[[bytes], dict[str, Any]]
    insert: Insert


RECORDS = Sink(LEDGER_STREAM, "ledger_records", lambda raw: record_row(decode(LedgerRecord, raw)),
               database.insert_records)
FEEDBACK = Sink(FEEDBACK_STREAM, "ledger_feedback", lambda raw: feedback_row(decode(Feedback, raw)),
                database.insert_feedback)


@dataclass
class Schema:
    """Alembic's upgrade, run once per process before the first write (retried while the database is down)."""

    engine: AsyncEngine
    ready: bool = False
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # the process's write loops migrate once

    async def ensure(self) -> None:
        if self.ready:
            return
        async with self._lock:
            if not self.ready:
                await database.migrate(self.engine)
                self.ready = True
                log.info("ledger schema at head")


@dataclass
class Writer:
    redis: Redis
    engine: AsyncEngine
    schema: Schema
    sink: Sink
    metrics: LedgerMetrics
    held: list[bus.Entry] = field(default_factory=list)  # read, not yet committed: retried first
    consumer: bus.Consumer | None = None
    linger_s: float = 0.0  # a batch smaller than the consumer's: let more gather this long (ledger.linger_ms)
    _read: int = 0  # entries the last read handed over

    async def step(self) -> None:
        """One turn of the supervised loop: the schema, then a held batch, else a read from the stream."""
        await self.schema.ensure()
        if self.held:
            await self.flush()
            return
        assert self.consumer is not None
        self._read = 0
        await self.consumer.step()
        if self.linger_s and 0 < self._read < self.consumer.batch:
            # The entries wait in the stream, durable; one transaction per interval instead of per record.
            await asyncio.sleep(self.linger_s)

    async def hand_back(self) -> None:
        """At shutdown: entries read but not committed go back to the group for any live writer."""
        held, self.held = [entry_id for entry_id, _ in self.held], []
        await bus.hand_back(self.redis, self.sink.stream, LEDGER_GROUP, self.consumer_name, held)

    @property
    def consumer_name(self) -> str:
        assert self.consumer is not None
        return self.consumer.name

    async def handle(self, entries: list[bus.Entry], reclaimed: bool) -> None:
        self._read += len(entries)
        self.held.extend(entries)
        await self.flush()

    async def flush(self) -> None:
        rows, undecodable = self._rows()
        refused = 0
        try:
            await self._write(rows)
        except DBAPIError as exc:
            if not database.refused_for_content(exc):
                raise  # the database is unreachable or failing: hold the batch and retry it
            log.warning("the database refused a batch; writing its rows one by one", table=self.sink.table,
                        error=repr(exc))
            refused = await self._write_alone(rows)
        await bus.ack(self.redis, self.sink.stream, LEDGER_GROUP, *(entry_id for entry_id, _ in self.held))
        self.held.clear()
        self.metrics.rows.labels(self.sink.table, "stored").inc(len(rows) - refused)
        self.metrics.rows.labels(self.sink.table, "invalid").inc(undecodable + refused)

    def _rows(self) -> tuple[list[dict[str, Any]], int]:
        rows, invalid = [], 0
        for entry_id, payload in self.held:
            try:
                rows.append(self.sink.to_row(payload))
            except ROW_BUILD_ERRORS as exc:
                log.warning("dropping an undecodable ledger entry", stream=self.sink.stream, entry_id=entry_id,
                            error=repr(exc))
                invalid += 1
        return rows, invalid

    async def _write(self, rows: list[dict[str, Any]]) -> None:
        if rows:
            async with self.engine.begin() as conn:
                await self.sink.insert(conn, rows)

    async def _write_alone(self, rows: list[dict[str, Any]]) -> int:
        """Each row in its own transaction; returns how many were refused (and dropped)."""
        refused = 0
        for row in rows:
            try:
                await self._write([row])
            except DBAPIError as exc:
                if not database.refused_for_content(exc):
                    raise
                log.warning("dropping a row the database refuses", table=self.sink.table, error=repr(exc))
                refused += 1
        return refused


def writer(redis: Redis, engine: AsyncEngine, schema: Schema, sink: Sink, name: str, config: BusConfig,
           metrics: LedgerMetrics, batch: int, linger_s: float = 0.0) -> Writer:
    """A member of the ledger writers' group on the sink's stream, writing what it reads."""
    member = Writer(redis, engine, schema, sink, metrics, linger_s=linger_s)
    member.consumer = bus.Consumer(redis, sink.stream, LEDGER_GROUP, name, member.handle,
                                   reclaim_idle_ms=config.reclaim_idle_ms,
                                   reclaim_interval_s=config.reclaim_interval_ms / 1000,
                                   owned=lambda: [entry_id for entry_id, _ in member.held], batch=batch)
    return member
