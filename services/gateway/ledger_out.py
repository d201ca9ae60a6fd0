"""Ledger records leave the gateway off the request path: a request only appends its record to a
bounded in-process buffer; one supervised loop writes what is buffered to LEDGER_STREAM in batches,
one pipelined round trip (XADD per record, approximate MAXLEN) per batch.

Redis down: the loop's step fails, the records stay buffered, and the loop retries with backoff
(shared/supervise.py). Beyond the buffer's bound new records are dropped and counted
(draftgate_ledger_records_total{result="dropped"}). At shutdown what is buffered is flushed once.
A record sent twice (the connection dropped after Redis applied part of a batch) is written once by
the ledger service, which keys records by request id.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import structlog
from prometheus_client import Counter
from redis.asyncio import Redis

from shared.keys import LEDGER_STREAM, MESSAGE_FIELD
from shared.messages import LedgerRecord, encode
from shared.redis_client import pipelined

log = structlog.get_logger(__name__)

LOOP = "ledger_out"
IDLE_WAKE_S = 1.0  # the loop looks at the buffer at least this often even when nothing signalled it


@dataclass
class LedgerOut:
    redis: Redis
    records: Counter  # labels: result = emitted | dropped
    maxlen: int = 1_000_000  # the stream's approximate MAXLEN (ledger.stream_maxlen)
    batch: int = 500  # records per round trip at most
    bound: int = 100_000  # records held while Redis is unreachable; beyond it new ones are dropped
    linger_s: float = 0.0  # fewer than `batch` buffered: let more gather this long first (ledger.linger_ms)
    buffer: deque[LedgerRecord] = field(default_factory=deque)  # encoded in the loop, not on the request path
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def emit(self, record: LedgerRecord) -> None:
        """Called at the end of a request: never waits, never raises for Redis."""
        if len(self.buffer) >= self.bound:
            self.records.labels("dropped").inc()
            return
        self.buffer.append(record)
        self._ready.set()

    async def step(self) -> None:
        """One turn of the supervised loop: wait for records, write a batch (raises on RedisError;
        the records stay buffered for the next try)."""
        if not self.buffer:
            self._ready.clear()
            try:
                async with asyncio.timeout(IDLE_WAKE_S):
                    await self._ready.wait()
            except TimeoutError:
                return
        if self.linger_s and len(self.buffer) < self.batch:
            await asyncio.sleep(self.linger_s)  # cancelled at shutdown: drain() writes what is buffered
        await self.flush_batch()

    async def flush_batch(self) -> int:
        """Write up to `batch` of the oldest buffered records; they leave the buffer only once Redis took them."""
        count = min(len(self.buffer), self.batch)
        if not count:
            return 0
        appends = [("XADD", LEDGER_STREAM, "MAXLEN", "~", self.maxlen, "*", MESSAGE_FIELD, encode(self.buffer[index]))
                   for index in range(count)]
        await pipelined(self.redis, appends, raise_on_error=True)
        for _ in range(count):
            self.buffer.popleft()
        self.records.labels("emitted").inc(count)
        return count

    async def drain(self, timeout_s: float) -> None:
        """At shutdown: write what is buffered, for at most timeout_s; what is left is logged as lost."""
        try:
            async with asyncio.timeout(timeout_s):
                while await self.flush_batch():
                    pass
        except Exception as exc:  # shutting down: report, never raise
            log.warning("ledger records not written at shutdown", count=len(self.buffer), error=repr(exc))
            self.records.labels("dropped").inc(len(self.buffer))
