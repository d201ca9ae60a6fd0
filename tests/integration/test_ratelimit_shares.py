"""A router's shares of a deployment's rate limits (services/router/upstreams/ratelimit.py) on a real
Redis, 7.x and 6.2: a share admits the router's next calls without a round trip, yet the buckets
never admit more than the limit across routers; tpm corrections wait in the share (one that matters
goes at once); what a share did not use goes back when it expires and when the router stops."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from redis.asyncio import Redis

from services.router.upstreams.ratelimit import RateLimiter
from shared.keys import ratelimit
from tests.integration.test_ratelimit import FrozenClock, limited, script_calls

pytestmark = pytest.mark.redis_flavours


async def bucket(redis: Redis, name: str) -> dict[bytes, bytes]:
    return await redis.hgetall(ratelimit(name))  # type: ignore[no-any-return]


async def until_level(redis: Redis, name: str, field: str, level: float, timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while float((await bucket(redis, name)).get(field.encode(), b"0")) != level:
        assert time.monotonic() < deadline, f"{name}'s {field} not {level} after {timeout_s} s"
        await asyncio.sleep(0.005)


async def test_shares_never_admit_more_than_the_rpm_across_routers(routers: tuple[Redis, Redis]) -> None:
    clock = FrozenClock()
    limiters = [RateLimiter(redis, clock) for redis in routers]
    deployment = limited(rpm=100)
    order = [i % 2 for i in range(300)]
    random.Random(7).shuffle(order)
    verdicts = await asyncio.gather(*(limiters[i].acquire(deployment, 0) for i in order))
    assert sum(verdict.allowed for verdict in verdicts) == 100, "exactly the limit: near it shares are empty"
    assert {verdict.limit for verdict in verdicts if not verdict.allowed} == {"rpm"}


async def test_shares_never_admit_more_than_the_tpm_across_routers(routers: tuple[Redis, Redis]) -> None:
    clock = FrozenClock()
    limiters = [RateLimiter(redis, clock) for redis in routers]
    deployment = limited(tpm=10_000)
    verdicts = await asyncio.gather(*(limiters[i % 2].acquire(deployment, 37) for i in range(400)))
    admitted = sum(verdict.reserved_tokens for verdict in verdicts if verdict.allowed)
    assert all(verdict.reserved_tokens == 37 for verdict in verdicts if verdict.allowed)
    # 270 calls of 37 fit in 10,000; a share another router holds may keep the last few out
    assert 10_000 - 4 * 37 <= admitted <= 10_000


async def test_a_hundred_calls_from_a_share_cost_one_round_trip_and_leave_the_bucket_as_call_by_call(
        routers: tuple[Redis, Redis]) -> None:
    redis = routers[0]
    clock = FrozenClock()
    shared, exact = RateLimiter(redis, clock), RateLimiter(redis, clock, share_divisor=0)
    await shared.prepare()
    together, one_by_one = limited("together", rpm=10_000, tpm=1_000_000), limited("one-by-one", rpm=10_000,
                                                                                       tpm=1_000_000)
    await redis.config_resetstat()
    for limiter, deployment in ((shared, together), (exact, one_by_one)):
        for _ in range(100):
            verdict = await limiter.acquire(deployment, 600)
            assert verdict.reserved_tokens == 600
            limiter.correct(deployment, verdict.reserved_tokens, 30)  # used 30 of the 600 reserved
    await exact.close()
    # the share (624 requests, 62,462 tokens, refilled by the refunds) held every call after the first;
    # without shares each call asked, taking the last one's correction along, and the last went alone
    assert await script_calls(redis) == 1 + 100 + 1
    assert float((await bucket(redis, "together"))[b"r"]) == 1 + 624
    await shared.close()  # the router stops: its share goes back
    assert await script_calls(redis) == 1 + 100 + 1 + 1
    assert await bucket(redis, "together") == await bucket(redis, "one-by-one")
    assert float((await bucket(redis, "together"))[b"k"]) == 100 * 30


async def test_a_share_unused_goes_back_by_itself_when_it_expires(routers: tuple[Redis, Redis]) -> None:
    clock = FrozenClock()
    first = RateLimiter(routers[0], clock, share_s=0.05)
    second = RateLimiter(routers[1], clock, share_divisor=0)
    deployment = limited(rpm=160)
    assert (await first.acquire(deployment, 0)).allowed
    assert float((await bucket(routers[0], deployment.name))[b"r"]) == 1 + 9, "a 16th of the 159 left"
    await until_level(routers[0], deployment.name, "r", 1)
    verdicts = [await second.acquire(deployment, 0) for _ in range(160)]
    assert sum(verdict.allowed for verdict in verdicts) == 159, "the other router gets the rest of the minute"


async def test_a_share_is_asked_for_again_once_it_has_expired(routers: tuple[Redis, Redis]) -> None:
    redis = routers[0]
    clock = FrozenClock()
    limiter = RateLimiter(redis, clock, share_s=0.05)
    await limiter.prepare()
    deployment = limited(rpm=1000)
    await redis.config_resetstat()
    assert (await limiter.acquire(deployment, 0)).allowed
    assert (await limiter.acquire(deployment, 0)).allowed
    assert await script_calls(redis) == 1
    await until_level(redis, deployment.name, "r", 2)  # expired: the 60 unused went back
    assert (await limiter.acquire(deployment, 0)).allowed
    assert await script_calls(redis) == 3, "the expiry's give-back, then a new share"


async def test_small_corrections_wait_in_the_share_and_a_refund_that_matters_goes_at_once(
        routers: tuple[Redis, Redis]) -> None:
    clock = FrozenClock()
    first, second = RateLimiter(routers[0], clock, share_s=600), RateLimiter(routers[1], clock)
    deployment = limited(tpm=1_000_000)  # 1%: 10,000 tokens
    reserved = (await first.acquire(deployment, 50_000)).reserved_tokens  # and a share of 59,375
    before = await bucket(routers[0], deployment.name)
    first.correct(deployment, reserved, reserved - 900)  # 900 back: below 1% of the tpm, kept in the share
    await first.drain()
    assert await bucket(routers[0], deployment.name) == before
    assert not (await second.acquire(deployment, 900_000)).allowed
    again = (await first.acquire(deployment, 50_000)).reserved_tokens  # from the share
    first.correct(deployment, again, 0)  # 50,000 back: the share goes back at once
    await first.drain()
    assert float((await bucket(routers[0], deployment.name))[b"k"]) == 50_000 - 900, "what was used, no more"
    assert (await second.acquire(deployment, 900_000)).allowed


async def test_nothing_is_sent_without_tpm_or_when_corrections_cancel_out(routers: tuple[Redis, Redis]) -> None:
    redis = routers[0]
    limiter = RateLimiter(redis, FrozenClock())
    await limiter.prepare()
    await redis.config_resetstat()
    rpm_only, even = limited("rpm-only", rpm=100), limited("even", tpm=1_000_000)
    limiter.correct(rpm_only, 600, 100)
    limiter.correct(even, 100, 50)
    limiter.correct(even, 100, 150)
    await limiter.drain()
    await limiter.close()
    assert await script_calls(redis) == 0


async def test_a_small_correction_without_a_share_goes_on_its_own_within_the_share_time(
        routers: tuple[Redis, Redis]) -> None:
    limiter = RateLimiter(routers[0], FrozenClock(), share_s=0.05)
    deployment = limited(tpm=1000)
    reserved = (await limiter.acquire(deployment, 900)).reserved_tokens  # too near the limit for a share
    limiter.correct(deployment, reserved, 895)  # 5 back: below 1% of the tpm, so it waits
    await until_level(routers[0], deployment.name, "k", 895)
