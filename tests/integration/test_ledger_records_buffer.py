"""The gateway's ledger buffer against a real Redis: records go out in batches, stay buffered while
Redis is down and are written when it is back, beyond the bound they are dropped and counted, and
shutdown drains what is left."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis
from redis.exceptions import RedisError

from services.gateway.ledger_out import LedgerOut
from services.gateway.metrics import create_metrics
from shared.keys import LEDGER_STREAM, MESSAGE_FIELD
from shared.messages import LedgerRecord, decode
from shared.supervise import Loops
from tests.redis_servers import RedisServer


def record(i: int) -> LedgerRecord:
    return LedgerRecord(request_id=f"r{i}", time=1.0 + i, status=200, decision="accept")


def ledger(redis: Redis, **options: int) -> tuple[LedgerOut, CollectorRegistry]:
    registry = CollectorRegistry()
    return LedgerOut(redis, create_metrics(registry).ledger_records, **options), registry


def counted(registry: CollectorRegistry, result: str) -> float:
    return registry.get_sample_value("draftgate_ledger_records_total", {"result": result}) or 0.0


async def stored(redis: Redis) -> list[str]:
    return [decode(LedgerRecord, fields[MESSAGE_FIELD]).request_id for _, fields in await redis.xrange(LEDGER_STREAM)]


async def test_buffered_records_go_out_in_batches_in_order(redis_client: Redis) -> None:
    out, registry = ledger(redis_client, batch=4)
    for i in range(10):
        out.emit(record(i))
    assert await out.flush_batch() == 4
    assert await stored(redis_client) == ["r0", "r1", "r2", "r3"]
    while await out.flush_batch():
        pass
    assert await stored(redis_client) == [f"r{i}" for i in range(10)]
    assert counted(registry, "emitted") == 10
    assert not out.buffer


async def test_the_supervised_loop_writes_what_requests_emit(redis_client: Redis) -> None:
    out, _ = ledger(redis_client)
    loops = Loops()
    loops.start("ledger_out", out.step, essential=False)
    try:
        for i in range(3):
            out.emit(record(i))
        async with asyncio.timeout(10):
            while len(await stored(redis_client)) < 3:  # noqa: ASYNC110 (polling Redis, not a local flag)
                await asyncio.sleep(0.01)
    finally:
        await loops.cancel()
    assert await stored(redis_client) == ["r0", "r1", "r2"]


async def test_beyond_the_bound_records_are_dropped_and_counted(redis_client: Redis) -> None:
    out, registry = ledger(redis_client, bound=3)
    for i in range(5):
        out.emit(record(i))
    assert counted(registry, "dropped") == 2
    await out.drain(5)
    assert await stored(redis_client) == ["r0", "r1", "r2"]


@pytest.fixture
def private_redis(redis_flavour: str) -> Iterator[RedisServer]:
    server = RedisServer(redis_flavour).start()
    yield server
    server.close()


async def test_records_stay_buffered_while_redis_is_down(private_redis: RedisServer) -> None:
    redis = Redis.from_url(private_redis.url, socket_timeout=2)
    try:
        out, registry = ledger(redis)
        private_redis.kill()
        for i in range(3):
            out.emit(record(i))
        with pytest.raises(RedisError):
            await out.flush_batch()
        assert len(out.buffer) == 3
        private_redis.start()
        while await out.flush_batch():
            pass
        assert await stored(redis) == ["r0", "r1", "r2"]
        assert counted(registry, "emitted") == 3 and counted(registry, "dropped") == 0
    finally:
        await redis.aclose()


async def test_a_drain_with_redis_down_counts_what_is_lost(private_redis: RedisServer) -> None:
    redis = Redis.from_url(private_redis.url, socket_timeout=1)
    try:
        out, registry = ledger(redis)
        private_redis.kill()
        out.emit(record(0))
        await out.drain(2)
        assert counted(registry, "dropped") == 1
    finally:
        await redis.aclose()
