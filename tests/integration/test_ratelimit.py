"""Upstream rate limits shared by routers through a real Redis, 7.x and 6.2: two clients stand for two
routers. rpm and tpm admit exactly their limit however the calls interleave, a refusal charges nothing
and says when the call would fit, tpm reservations are settled to the actual usage, a check is at most one
round trip (none while the router's share holds the call: test_ratelimit_shares.py), and admit() moves on to
the next deployment when one is at its limit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from redis.asyncio import Redis

from services.router.upstreams.balance import Balancer, NoneAvailable, RateLimited, strategy
from services.router.upstreams.deployment import Deployment, Limits, Unavailable
from services.router.upstreams.ratelimit import Admitted, RateLimiter, Verdict, admit, estimate_tokens
from shared.keys import ratelimit
from shared.pricing import Price
from tests.redis_servers import RedisServer

pytestmark = pytest.mark.redis_flavours


@dataclass
class FrozenClock:
    """Stands in for Redis's clock, so that counts do not depend on how fast the machine is."""

    now: float = 1_764_000_000.0  # a Unix time: the script must keep sub-ms precision at this size

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


def limited(name: str = "gpt", rpm: int | None = None, tpm: int | None = None, **options: object) -> Deployment:
    return Deployment(name, limits=Limits(rpm=rpm, tpm=tpm), **options)  # type: ignore[arg-type]


async def script_calls(redis: Redis) -> int:
    """Scripts run on the server since the last CONFIG RESETSTAT."""
    stats = await redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{command}", {}).get("calls", 0)) for command in ("evalsha", "eval"))


async def test_50_concurrent_acquisitions_against_rpm_20_admit_exactly_20(
    routers: tuple[Redis, Redis], clock: FrozenClock
) -> None:
    limiters = [RateLimiter(redis, clock) for redis in routers]
    deployment = limited(rpm=20)
    verdicts = await asyncio.gather(*(limiters[i % 2].acquire(deployment, 0) for i in range(50)))
    assert sum(verdict.allowed for verdict in verdicts) == 20
    refused = [verdict for verdict in verdicts if not verdict.allowed]
    assert {(verdict.limit, verdict.retry_after_s) for verdict in refused} == {("rpm", 3.0)}, "one every 3 s"


async def test_with_the_servers_clock_a_limit_is_shared_and_a_refusal_says_when_it_fits(
    routers: tuple[Redis, Redis],
) -> None:
    first, second = (RateLimiter(redis) for redis in routers)
    deployment = limited(rpm=1)
    verdicts = await asyncio.gather(*(limiter.acquire(deployment, 0) for limiter in [first, second] * 25))
    assert sum(verdict.allowed for verdict in verdicts) == 1
    assert all(0 < verdict.retry_after_s <= 60 for verdict in verdicts if not verdict.allowed)
    ttl_ms = await routers[0].pttl(ratelimit("gpt"))
    assert 0 < ttl_ms <= 61_000, "kept until the bucket has drained"


async def test_the_bucket_drains_at_the_limits_rate(routers: tuple[Redis, Redis], clock: FrozenClock) -> None:
    first, second = (RateLimiter(redis, clock) for redis in routers)
    deployment = limited(rpm=20)
    for _ in range(20):
        assert (await first.acquire(deployment, 0)).allowed
    refused = await second.acquire(deployment, 0)
    assert refused == Verdict(False, retry_after_s=3.0, limit="rpm")
    clock.now += 1.0
    assert (await second.acquire(deployment, 0)).retry_after_s == 2.0
    clock.now += 2.0
    assert (await second.acquire(deployment, 0)).allowed
    assert not (await first.acquire(deployment, 0)).allowed, "exactly one more, not two"
    clock.now += 60
    admitted = await asyncio.gather(*(first.acquire(deployment, 0) for _ in range(25)))
    assert sum(verdict.allowed for verdict in admitted) == 20, "a drained bucket takes a whole minute's worth"


async def test_limits_that_do_not_divide_a_minute_still_admit_exactly_the_limit(
    routers: tuple[Redis, Redis], clock: FrozenClock
) -> None:
    limiter = RateLimiter(routers[0], clock)
    deployment = limited(rpm=7, tpm=70_001)
    verdicts = [await limiter.acquire(deployment, 10_000) for _ in range(8)]
    assert [verdict.allowed for verdict in verdicts] == [True] * 7 + [False]
    clock.now += 60 / 7
    assert (await limiter.acquire(deployment, 10_000)).allowed


async def test_tpm_charges_the_estimate_and_a_refusal_by_tpm_charges_no_request(
    routers: tuple[Redis, Redis], clock: FrozenClock
) -> None:
    limiter = RateLimiter(routers[0], clock)
    deployment = limited(rpm=3, tpm=1000)
    assert await limiter.acquire(deployment, 600) == Verdict(True, reserved_tokens=600)
    refused = await limiter.acquire(deployment, 500)
    assert refused == Verdict(False, retry_after_s=6.0, limit="tpm")  # 100 tokens over at 1000 a minute
    assert (await limiter.acquire(deployment, 400)).allowed
    assert (await limiter.acquire(deployment, 0)).allowed, "the refused call took none of the 3 requests"
    assert (await limiter.acquire(deployment, 0)).limit == "rpm"


async def test_settling_gives_back_an_overestimate_at_once(routers: tuple[Redis, Redis], clock: FrozenClock) -> None:
    first, second = (RateLimiter(redis, clock) for redis in routers)
    deployment = limited(tpm=1000)
    reserved = (await first.acquire(deployment, 900)).reserved_tokens
    assert not (await second.acquire(deployment, 900)).allowed
    await first.settle(deployment, reserved, actual=100)
    assert (await second.acquire(deployment, 900)).allowed


async def test_settling_an_overrun_is_a_debt_later_calls_wait_for(
    routers: tuple[Redis, Redis], clock: FrozenClock
) -> None:
    limiter = RateLimiter(routers[0], clock)
    deployment = limited(tpm=1000)
    reserved = (await limiter.acquire(deployment, 100)).reserved_tokens
    await limiter.settle(deployment, reserved, actual=1500)
    refused = await limiter.acquire(deployment, 100)
    assert refused.limit == "tpm"
    assert refused.retry_after_s == 36.0  # 1500 + 100 - 1000 tokens to drain at 1000 a minute
    clock.now += 36
    assert (await limiter.acquire(deployment, 100)).allowed


async def test_a_request_larger_than_the_whole_tpm_waits_for_an_empty_bucket_not_forever(
    routers: tuple[Redis, Redis], clock: FrozenClock
) -> None:
    limiter = RateLimiter(routers[0], clock)
    deployment = limited(tpm=1000)
    assert (await limiter.acquire(deployment, 1)).allowed
    assert (await limiter.acquire(deployment, 5000)).retry_after_s == pytest.approx(0.06)
    clock.now += 0.06
    huge = await limiter.acquire(deployment, 5000)
    assert huge == Verdict(True, reserved_tokens=1000)


async def test_a_share_holds_the_next_checks_and_unlimited_deployments_cost_no_round_trip(
    routers: tuple[Redis, Redis], clock: FrozenClock
) -> None:
    redis = routers[0]
    limiter = RateLimiter(redis, clock)
    await limiter.prepare()
    await redis.config_resetstat()
    for _ in range(10):  # the first call takes a 16th of the room left: 62 requests and 6,249 tokens
        assert (await limiter.acquire(limited(rpm=1000, tpm=100_000), 10)).allowed
    for _ in range(10):
        assert (await limiter.acquire(limited("free"), 10)).allowed
    await limiter.settle(limited(rpm=1000), 10, 20)  # no tpm: nothing to settle
    assert await script_calls(redis) == 1
    # Commands a script runs are counted too: besides the script's own (once per run), only the test's.
    stats = await redis.info("commandstats")
    assert {name for name in stats if not name.startswith(("cmdstat_config", "cmdstat_info"))} == {
        "cmdstat_evalsha", "cmdstat_hmget", "cmdstat_hset", "cmdstat_pexpire"
    }
    assert int(stats["cmdstat_hmget"]["calls"]) == 1
    assert await routers[0].hget(ratelimit("gpt"), "r") == b"63", "the call and its share, charged in Redis"


async def test_without_shares_every_check_is_one_round_trip(routers: tuple[Redis, Redis], clock: FrozenClock) -> None:
    redis = routers[0]
    limiter = RateLimiter(redis, clock, share_divisor=0)
    await limiter.prepare()
    await redis.config_resetstat()
    for _ in range(10):
        assert (await limiter.acquire(limited(rpm=1000, tpm=100_000), 10)).allowed
    assert await script_calls(redis) == 10
    assert await routers[0].hget(ratelimit("gpt"), "r") == b"10"


async def test_a_server_that_lost_its_scripts_gets_the_script_again(
    routers: tuple[Redis, Redis], clock: FrozenClock
) -> None:
    limiter = RateLimiter(routers[0], clock)
    await limiter.prepare()
    await routers[1].script_flush()  # as after a restart
    deployment = limited(rpm=1)
    assert (await limiter.acquire(deployment, 0)).allowed
    assert not (await limiter.acquire(deployment, 0)).allowed


async def test_a_refused_deployment_is_skipped_for_the_next_one_then_all_limited_is_a_429(
    routers: tuple[Redis, Redis], clock: FrozenClock
) -> None:
    def tier() -> Balancer:
        return Balancer(
            [
                limited("cheap", rpm=1, price=Price(0.1, 0.4), clock=clock),
                limited("dear", rpm=1, price=Price(2.0, 8.0), clock=clock),
            ],
            strategy("cost"),
        )

    one, two = tier(), tier()
    first, second = (RateLimiter(redis, clock) for redis in routers)
    await first.prepare()
    await routers[0].config_resetstat()

    admitted = await admit(one, first, tokens=10)
    assert isinstance(admitted, Admitted) and admitted.call.deployment.name == "cheap"
    assert admitted.call.deployment.in_flight == 1

    # The second router does not know the cheap one is used up: Redis tells it, and it moves on.
    admitted = await admit(two, second, tokens=10)
    assert isinstance(admitted, Admitted) and admitted.call.deployment.name == "dear"
    cheap, dear = two.deployments
    assert cheap.in_flight == 0, "the refused call was never in flight"
    assert cheap.unavailable() is Unavailable.RATE_LIMITED and cheap.rate_limited_for() == 60.0
    assert await script_calls(routers[0]) == 3

    admitted.call.succeeded()
    refusal = await admit(two, second, tokens=10)
    assert refusal == RateLimited(60.0, {"cheap": Unavailable.RATE_LIMITED, "dear": Unavailable.RATE_LIMITED})
    assert await script_calls(routers[0]) == 4, "the cheap one was skipped without asking Redis again"
    assert dear.in_flight == 0


async def test_admission_with_nothing_to_choose_from_is_none_available(
    routers: tuple[Redis, Redis], clock: FrozenClock
) -> None:
    balancer = Balancer([limited("only", rpm=5, max_concurrent=1)], strategy("round_robin"))
    limiter = RateLimiter(routers[0], clock)
    admitted = await admit(balancer, limiter, tokens=1)
    assert isinstance(admitted, Admitted)
    assert await admit(balancer, limiter, tokens=1) == NoneAvailable({"only": Unavailable.BUSY})
    assert await admit(balancer, limiter, tokens=1, exclude={"only"}) == NoneAvailable(
        {"only": Unavailable.EXCLUDED}
    )


async def test_concurrent_admissions_never_overshoot_max_concurrent_while_waiting_for_redis(
    routers: tuple[Redis, Redis], clock: FrozenClock
) -> None:
    balancer = Balancer([limited("a", rpm=100, max_concurrent=3), limited("b", rpm=100)], strategy("least_busy"))
    limiter = RateLimiter(routers[0], clock)
    results = await asyncio.gather(*(admit(balancer, limiter, tokens=1) for _ in range(10)))
    names = [result.call.deployment.name for result in results if isinstance(result, Admitted)]
    assert len(names) == 10
    assert names.count("a") == 3


async def test_when_redis_fails_calls_are_let_through(redis_flavour: str) -> None:
    server = RedisServer(redis_flavour).start()
    redis = Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    try:
        limiter = RateLimiter(redis)
        deployment = limited(rpm=1, tpm=10)
        assert (await limiter.acquire(deployment, 5)).allowed
        server.kill()
        assert await limiter.acquire(deployment, 5) == Verdict(True)
        await limiter.settle(deployment, 5, 50)  # logged, not raised
    finally:
        await redis.aclose()
        server.close()


def test_the_estimate_is_the_prompts_characters_over_four_plus_the_completion_limit() -> None:
    params = {
        "messages": [
            {"role": "system", "content": "x" * 40},
            {"role": "user", "content": [{"type": "text", "text": "y" * 20}, {"type": "image_url", "image_url": {}}]},
            {"role": "assistant", "content": None, "tool_calls": [{"function": {"name": "f", "arguments": "{}" * 10}}]},
        ],
        "max_tokens": 100,
    }
    assert estimate_tokens(params) == 20 + 100
    assert estimate_tokens({**params, "max_completion_tokens": 7}) == 20 + 7
    assert estimate_tokens({"messages": [{"role": "user", "content": "hi"}]}) == 1 + 512
