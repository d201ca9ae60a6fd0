"""tpm settlements sent together (services/router/upstreams/settlement.py) on a real Redis, 7.x and
6.2: a hundred calls' small corrections are one script run that leaves the bucket where settling
them call by call does; a correction that matters (1% of the tpm) goes at once, a small one within
the window; deployments without tpm are never settled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from services.router.upstreams.ratelimit import RateLimiter
from services.router.upstreams.settlement import Settlements
from shared.keys import ratelimit
from tests.integration.test_ratelimit import FrozenClock, limited, script_calls

pytestmark = pytest.mark.redis_flavours


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


async def bucket(redis: Redis, name: str) -> dict[bytes, bytes]:
    return await redis.hgetall(ratelimit(name))  # type: ignore[no-any-return]


async def until_changed(redis: Redis, name: str, before: dict[bytes, bytes], timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while await bucket(redis, name) == before:
        assert time.monotonic() < deadline, f"{name}'s bucket unchanged after {timeout_s} s"
        await asyncio.sleep(0.005)


async def test_a_hundred_small_corrections_are_one_round_trip_and_leave_the_bucket_as_call_by_call(
        redis: Redis) -> None:
    limiter = RateLimiter(redis, FrozenClock())
    await limiter.prepare()
    together, one_by_one = limited("together", tpm=1_000_000), limited("one-by-one", tpm=1_000_000)
    settlements = Settlements(limiter, window_s=60)
    for deployment in (together, one_by_one):
        for _ in range(100):
            assert (await limiter.acquire(deployment, 600)).reserved_tokens == 600
    await redis.config_resetstat()
    for _ in range(100):
        settlements.add(together, 30 - 600)  # used 30 of the 600 reserved
    # sent each time the sum reaches 1% of the bucket (10,000 tokens: 18 calls), 5 times; 10 calls wait
    assert settlements.pending(together) == -5_700
    for _ in range(100):
        await limiter.settle(one_by_one, 600, 30)
    await settlements.drain()
    assert await script_calls(redis) == 100 + 6
    assert await bucket(redis, "together") == await bucket(redis, "one-by-one")


async def test_corrections_below_the_share_wait_for_the_window_and_go_as_one(redis: Redis) -> None:
    limiter = RateLimiter(redis, FrozenClock())
    await limiter.prepare()
    deployment = limited(tpm=1_000_000)
    for _ in range(50):
        await limiter.acquire(deployment, 100)
    before = await bucket(redis, deployment.name)
    await redis.config_resetstat()
    settlements = Settlements(limiter, window_s=0.05)
    for _ in range(50):
        settlements.add(deployment, -90)  # 4,500 tokens in all: below 1% of the bucket
    assert settlements.pending(deployment) == -4500
    assert await bucket(redis, deployment.name) == before
    await until_changed(redis, deployment.name, before)
    assert settlements.pending(deployment) == 0
    assert await script_calls(redis) == 1


async def test_a_refund_the_next_call_needs_is_sent_at_once(redis: Redis, redis_url: str) -> None:
    other_router = Redis.from_url(redis_url)
    clock = FrozenClock()
    first, second = RateLimiter(redis, clock), RateLimiter(other_router, clock)
    deployment = limited(tpm=1000)
    try:
        reserved = (await first.acquire(deployment, 900)).reserved_tokens
        assert not (await second.acquire(deployment, 900)).allowed
        before = await bucket(redis, deployment.name)
        settlements = Settlements(first, window_s=600)
        settlements.add(deployment, 100 - reserved)  # 800 back: far above 1% of 1000, so not held
        assert settlements.pending(deployment) == 0
        await until_changed(redis, deployment.name, before)
        assert (await second.acquire(deployment, 900)).allowed
    finally:
        await other_router.aclose()


async def test_nothing_is_settled_without_tpm_or_when_corrections_cancel_out(redis: Redis) -> None:
    limiter = RateLimiter(redis, FrozenClock())
    await limiter.prepare()
    await redis.config_resetstat()
    settlements = Settlements(limiter, window_s=0.01)
    rpm_only, even = limited("rpm-only", rpm=100), limited("even", tpm=1_000_000)
    settlements.add(rpm_only, -500)
    settlements.add(even, -50)
    settlements.add(even, 50)
    assert settlements.pending(rpm_only) == 0
    await settlements.drain()
    assert await script_calls(redis) == 0
