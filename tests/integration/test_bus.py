"""The Redis-stream bus against a real Redis: capping, expiry, groups, reclaiming."""

from __future__ import annotations

import asyncio

import redis as sync_redis
from redis.asyncio import Redis

from shared import bus
from shared.keys import MESSAGE_FIELD, REPLY_STREAM_PREFIX
from tests.integration.stack import Stack

STREAM, GROUP = "test:requests", "workers"


async def test_streams_are_capped(redis_client: Redis) -> None:
    for i in range(1000):
        await bus.publish(redis_client, STREAM, str(i).encode(), maxlen=100)
    # Approximate trimming works in whole radix-tree nodes (100 entries by default).
    assert 100 <= await redis_client.xlen(STREAM) <= 200


async def test_replies_push_back_the_streams_expiry(redis_client: Redis) -> None:
    await bus.reply(redis_client, "test:replies", [b"a", b"b"], maxlen=100, ttl_s=30)
    assert await redis_client.xlen("test:replies") == 2
    assert 0 < await redis_client.ttl("test:replies") <= 30


async def test_the_last_reply_acks_its_request_and_carries_side_writes(redis_client: Redis) -> None:
    await bus.ensure_group(redis_client, STREAM, GROUP)
    await bus.publish(redis_client, STREAM, b"request", maxlen=100)
    ((entry_id, _),) = await bus.read_group(redis_client, STREAM, GROUP, "a", count=10, block_ms=100)
    failures = await bus.reply(redis_client, "test:replies", [b"answer"], maxlen=100, ttl_s=30,
                               ack=bus.Ack(STREAM, GROUP, entry_id),
                               also=[bus.Publication("test:side", b"remember", maxlen=100)])
    assert failures == []
    assert (await redis_client.xpending(STREAM, GROUP))["pending"] == 0
    assert [fields[MESSAGE_FIELD] for _, fields in await redis_client.xrange("test:side")] == [b"remember"]


async def test_a_failed_side_write_does_not_cost_the_reply(redis_client: Redis) -> None:
    await redis_client.set("test:not-a-stream", "x")
    failures = await bus.reply(redis_client, "test:replies", [b"answer"], maxlen=100, ttl_s=30,
                               also=[bus.Publication("test:not-a-stream", b"lost", maxlen=100)])
    assert len(failures) == 1 and "WRONGTYPE" in str(failures[0])
    assert await redis_client.xlen("test:replies") == 1


async def test_a_silent_consumers_entries_are_reclaimed_but_kept_ones_are_not(redis_client: Redis) -> None:
    await bus.ensure_group(redis_client, STREAM, GROUP)
    await bus.ensure_group(redis_client, STREAM, GROUP)  # idempotent
    for payload in (b"kept", b"abandoned"):
        await bus.publish(redis_client, STREAM, payload, maxlen=100)
    entries = await bus.read_group(redis_client, STREAM, GROUP, "a", count=10, block_ms=100)
    assert [payload for _, payload in entries] == [b"kept", b"abandoned"]
    await asyncio.sleep(0.3)
    await bus.keep_claimed(redis_client, STREAM, GROUP, "a", [entries[0][0]])
    reclaimed = await bus.reclaim(redis_client, STREAM, GROUP, "b", min_idle_ms=200, count=10)
    assert [payload for _, payload in reclaimed] == [b"abandoned"]
    await bus.ack(redis_client, STREAM, GROUP, *(entry_id for entry_id, _ in entries))
    assert (await redis_client.xpending(STREAM, GROUP))["pending"] == 0


def test_a_gateways_reply_stream_expires(stack: Stack) -> None:
    stack.client().chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
    client = sync_redis.Redis.from_url(stack.redis_url)
    (stream,) = client.keys(f"{REPLY_STREAM_PREFIX}*")
    assert 0 < client.ttl(stream) <= 300
