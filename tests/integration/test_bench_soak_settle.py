"""The soak's settling between its ramp and its measured window, on a real Redis: the ramp's
queued cache writes are worked off before the soak's counters start."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from bench.soak import settle
from shared.keys import CACHE_WRITE_GROUP, CACHE_WRITE_STREAM


async def queue_writes(redis: Redis, count: int) -> None:
    await redis.xgroup_create(CACHE_WRITE_STREAM, CACHE_WRITE_GROUP, id="0", mkstream=True)
    for n in range(count):
        await redis.xadd(CACHE_WRITE_STREAM, {"n": n})


async def test_settle_waits_until_the_writers_have_read_and_acked_everything(redis_client: Redis) -> None:
    await queue_writes(redis_client, 3)
    waiting = asyncio.create_task(settle(redis_client, timeout_s=30, poll_s=0.05))
    [[_, read]] = await redis_client.xreadgroup(CACHE_WRITE_GROUP, "writer", {CACHE_WRITE_STREAM: ">"}, count=10)
    assert not waiting.done()  # read but not acked: still pending
    await redis_client.xack(CACHE_WRITE_STREAM, CACHE_WRITE_GROUP, *(entry_id for entry_id, _ in read))
    settled = await asyncio.wait_for(waiting, 10)
    assert (settled["settled"], settled["group_backlog"]) == (True, 0)


async def test_settle_gives_up_after_its_timeout_and_says_what_was_left(redis_client: Redis) -> None:
    await queue_writes(redis_client, 2)
    settled = await settle(redis_client, timeout_s=0.2, poll_s=0.05)
    assert (settled["settled"], settled["group_backlog"]) == (False, 2)
