"""Virtual keys' admission and settlement (services/gateway/limits.lua) on a real Redis, 7.x and 6.2: two
clients stand for two gateways. The key's record, its models, budget, rpm and tpm are judged in one
round trip; rpm admits exactly its limit however two gateways interleave; tpm and spend are charged
after the answer and refuse the next request; revoked, expired and unknown keys are refused; open mode
serves an unknown token only while no key exists."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from services.gateway.auth import KeyLimits, KeyLookup, Principal, key_digest, virtual_key_id
from services.gateway.keys import store
from services.gateway.keys.model import KeySpec, periods
from services.gateway.limits import Charge, KeyLimiter, Settlements
from services.gateway.limits_reply import Refused
from shared.errors import AuthenticationFailed, PermissionDenied, QuotaExceeded, RateLimited, TokensRateLimited
from shared.keys import key_usage, virtual_key

pytestmark = pytest.mark.redis_flavours

NOW = 1_764_000_000.0  # a Unix time (2025-11-24 16:00 UTC): the script keeps sub-ms precision at this size
TARGETS = ("auto",)


@dataclass
class FrozenClock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


Gateways = tuple[KeyLimiter, KeyLimiter, Redis]


@pytest.fixture
async def gateways(redis_url: str, clock: FrozenClock) -> AsyncIterator[Gateways]:
    """Two limiters on two connections, as two gateway processes have, and a third connection to look."""
    first, second, admin = Redis.from_url(redis_url), Redis.from_url(redis_url), Redis.from_url(redis_url)
    yield KeyLimiter(first, clock), KeyLimiter(second, clock), admin
    for client in (first, second, admin):
        await client.aclose()


async def make(redis: Redis, **spec: object) -> tuple[KeyLookup, str]:
    key, secret = await store.create(redis, KeySpec(**spec), NOW)  # type: ignore[arg-type]
    return lookup(secret), key.id


def lookup(token: str, open_mode: bool = False) -> KeyLookup:
    digest = key_digest(token)
    return KeyLookup(digest=digest, key_id=virtual_key_id(digest), sub_tenant="", open=open_mode,
                     anonymous_tenant="anon")


def refused(result: Principal | Refused) -> Refused:
    assert isinstance(result, Refused), result
    return result


def admitted(result: Principal | Refused) -> Principal:
    assert isinstance(result, Principal), result
    return result


async def test_rpm_admits_exactly_its_limit_across_two_gateways(gateways: Gateways) -> None:
    first, second, redis = gateways
    key, _ = await make(redis, tenant="acme", limits=KeyLimits(rpm=20))
    results = await asyncio.gather(*(limiter.admit(key, TARGETS, True) for _ in range(25)
                                     for limiter in (first, second)))
    allowed = [result for result in results if isinstance(result, Principal)]
    assert len(allowed) == 20
    refusals = [refused(result) for result in results if not isinstance(result, Principal)]
    assert all(isinstance(refusal.error, RateLimited) and refusal.reason == "rate_limit" for refusal in refusals)
    error = refusals[0].error
    assert error.status == 429 and error.code == "rate_limit_exceeded" and error.type == "requests"
    # 20 per minute: the next request fits in 3 s, and the headers say none is left.
    assert error.headers["Retry-After"] == "3" and error.headers["retry-after-ms"] == "3000"
    assert error.headers["x-ratelimit-limit-requests"] == "20"
    assert error.headers["x-ratelimit-remaining-requests"] == "0"
    assert error.headers["x-ratelimit-reset-requests"] == "1m0s"


async def test_the_buckets_drain_and_the_headers_count_down(gateways: Gateways, clock: FrozenClock) -> None:
    first, second, redis = gateways
    key, _ = await make(redis, limits=KeyLimits(rpm=3))
    seen = [admitted(await limiter.admit(key, TARGETS, True)) for limiter in (first, second, first)]
    assert [principal.used_requests for principal in seen] == [1, 2, 3]
    assert isinstance(refused(await second.admit(key, TARGETS, True)).error, RateLimited)
    clock.now += 20  # one request's worth drains (3 per minute)
    assert admitted(await second.admit(key, TARGETS, True)).used_requests == pytest.approx(3)
    assert isinstance(await first.admit(key, TARGETS, True), Refused)


async def test_tpm_is_charged_after_the_answer_and_refuses_the_next_request(gateways: Gateways,
                                                                            clock: FrozenClock) -> None:
    first, second, redis = gateways
    key, key_id = await make(redis, limits=KeyLimits(tpm=600))
    principal = admitted(await first.admit(key, TARGETS, True))
    await first.settle(principal, 900, 0.0, NOW)  # the answer used more than a minute's worth
    refusal = refused(await second.admit(key, TARGETS, True))
    assert isinstance(refusal.error, TokensRateLimited) and refusal.error.type == "tokens"
    # 900 in a bucket of 600 draining 10/s: one token fits once it is down to 599, in 30.1 s.
    assert refusal.error.headers["retry-after-ms"] == "30100" and refusal.error.headers["Retry-After"] == "31"
    assert refusal.error.headers["x-ratelimit-remaining-tokens"] == "0"
    clock.now += 30.1
    assert admitted(await second.admit(key, TARGETS, True)).used_tokens == pytest.approx(599)
    assert await redis.exists(key_usage(key_id))


async def test_a_spent_budget_refuses_the_next_request_until_the_next_day(gateways: Gateways,
                                                                          clock: FrozenClock) -> None:
    first, second, redis = gateways
    key, _ = await make(redis, limits=KeyLimits(budget_usd_day=0.01, budget_usd_month=0.02))
    principal = admitted(await first.admit(key, TARGETS, True))
    await first.settle(principal, 100, 0.006, NOW)
    principal = admitted(await second.admit(key, TARGETS, True))  # 0.006 of 0.01 spent: still admitted
    await second.settle(principal, 100, 0.006, NOW)  # this answer goes over; it was served whole
    refusal = refused(await first.admit(key, TARGETS, True))
    assert isinstance(refusal.error, QuotaExceeded) and refusal.reason == "budget"
    assert (refusal.error.status, refusal.error.type, refusal.error.code) == (429, "insufficient_quota",
                                                                             "insufficient_quota")
    assert refusal.error.headers["x-should-retry"] == "false"
    clock.now += 86_400  # a new UTC day of the same month: its 0.012 of 0.02 leaves room
    principal = admitted(await first.admit(key, TARGETS, True))
    await first.settle(principal, 0, 0.009, clock.now)  # today's 0.009 is within 0.01, the month's 0.021 is not
    assert "this month" in refused(await second.admit(key, TARGETS, True)).error.message


async def test_a_new_month_starts_the_keys_usage_afresh_and_keeps_it_until_that_month_ends(
        gateways: Gateways, clock: FrozenClock) -> None:
    """One usage hash per key: a spend of a past day or month reads as 0, and the month's first write sets
    the hash's expiry to the month's end (the admin's view reads the same)."""
    first, _, redis = gateways
    key, key_id = await make(redis, limits=KeyLimits(rpm=60, budget_usd_month=0.01))
    principal = admitted(await first.admit(key, TARGETS, True))
    await first.settle(principal, 0, 0.02, NOW)  # November's budget spent
    assert isinstance(refused(await first.admit(key, TARGETS, True)).error, QuotaExceeded)
    clock.now = NOW + 7 * 86_400  # 2025-12-01 16:00 UTC
    again = admitted(await first.admit(key, TARGETS, True))
    assert await redis.hmget(key_usage(key_id), "d", "m", "ms") == [b"2025-12-01", b"2025-12", b"0"]
    # Kept until December ends (30 days and 8 hours from now) and the grace after it, not November's end.
    assert 30 * 86_400 < await redis.ttl(key_usage(key_id)) <= 30 * 86_400 + 8 * 3600 + 3600
    await first.settle(again, 0, 0.004, clock.now)
    shown = await store.show(redis, key_id, clock.now)
    assert shown is not None and (shown["spend_usd_day"], shown["spend_usd_month"]) == (0.004, 0.004)


async def test_unknown_revoked_and_expired_keys_are_401s(gateways: Gateways, clock: FrozenClock) -> None:
    first, _, redis = gateways
    key, key_id = await make(redis, expires_at=NOW + 60)
    assert isinstance(await first.admit(key, TARGETS, True), Principal)
    unknown = refused(await first.admit(lookup("sk-dg-not-a-key"), TARGETS, True))
    assert isinstance(unknown.error, AuthenticationFailed) and unknown.error.code == "invalid_api_key"
    clock.now += 61
    expired = refused(await first.admit(key, TARGETS, True))
    assert isinstance(expired.error, AuthenticationFailed) and "expired" in expired.error.message
    other, other_id = await make(redis)
    assert (await store.revoke(redis, other_id, clock.now)) is not None
    revoked = refused(await first.admit(other, None, True))  # authenticating alone refuses it too
    assert isinstance(revoked.error, AuthenticationFailed) and "revoked" in revoked.error.message
    assert revoked.principal is not None and revoked.principal.key_id == other_id
    assert await store.revoke(redis, "vk_nothing", clock.now) is None
    statuses = {shown["id"]: shown["status"] for shown in await store.list_keys(redis, clock.now)}
    assert statuses == {key_id: "expired", other_id: "revoked"}


async def test_a_model_the_key_may_not_use_is_a_403_that_charges_nothing(gateways: Gateways) -> None:
    first, _, redis = gateways
    key, _ = await make(redis, models=("drafter", "big-deployment"), limits=KeyLimits(rpm=1))
    for targets in (("heavyweight", "gpt-4.1"), ("auto",)):
        refusal = refused(await first.admit(key, targets, True))
        assert isinstance(refusal.error, PermissionDenied) and refusal.error.code == "model_not_allowed"
    assert admitted(await first.admit(key, ("drafter", "gpt-4.1-nano", "small-a"), True)).used_requests == 1
    assert isinstance(refused(await first.admit(key, ("heavyweight", "gpt-4.1", "big-deployment"), True)).error,
                      RateLimited)  # allowed (the deployment is named), but its one request is used


async def test_open_mode_serves_unknown_tokens_only_while_no_key_exists(gateways: Gateways) -> None:
    first, _, redis = gateways
    anonymous = admitted(await first.admit(lookup("whatever", open_mode=True), TARGETS, True))
    assert (anonymous.key_id, anonymous.tenant, anonymous.virtual) == ("", "anon", False)
    key, _ = await make(redis, tenant="acme", limits=KeyLimits(rpm=1))
    assert isinstance(refused(await first.admit(lookup("whatever", open_mode=True), TARGETS, True)).error,
                      AuthenticationFailed)
    keyed = admitted(await first.admit(KeyLookup(key.digest, key.key_id, "team-a", True, "anon"), TARGETS, True))
    assert (keyed.tenant, keyed.limits.rpm) == ("acme:team-a", 1)  # its limits hold in open mode too
    assert isinstance(refused(await first.admit(key, TARGETS, True)).error, RateLimited)


async def test_open_mode_remembers_for_a_second_whether_keys_exist(gateways: Gateways) -> None:
    """A token that is no virtual key costs a round trip at most once a second per gateway."""
    first, _, redis = gateways
    plain = KeyLookup(key_digest("whatever"), virtual_key_id(key_digest("whatever")), "", True, "anon", virtual=False)
    assert admitted(await first.admit(plain, TARGETS, True)).tenant == "anon"  # asked Redis: no key
    await make(redis)
    await redis.config_resetstat()
    assert admitted(await first.admit(plain, TARGETS, True)).tenant == "anon"  # remembered: no round trip
    assert "evalsha" not in await script_calls(redis)
    deadline = asyncio.get_running_loop().time() + 10
    while isinstance(await first.admit(plain, TARGETS, True), Principal):
        assert asyncio.get_running_loop().time() < deadline, "open mode never closed"
        await asyncio.sleep(0.05)
    assert isinstance(refused(await first.admit(plain, TARGETS, True)).error, AuthenticationFailed)


async def test_answers_charges_go_in_batches_in_the_background_and_all_arrive(gateways: Gateways) -> None:
    first, _, redis = gateways
    keys = [await make(redis, limits=KeyLimits(tpm=10_000, budget_usd_day=1.0)) for _ in range(2)]
    principals = [admitted(await first.admit(key, TARGETS, True)) for key, _ in keys]
    settlements = Settlements(first, bound=3)
    settlements.start()
    for i in range(10):  # past the bound: add() waits for a batch to go, nothing is dropped
        await settlements.add(Charge(principals[i % 2], 100, 0.001))
    await settlements.drain(10)
    for _, key_id in keys:
        assert float(await redis.hget(key_usage(key_id), "k")) == pytest.approx(500)
        assert await redis.hmget(key_usage(key_id), "d", "m") == [period.encode() for period in periods(NOW)]
        assert float(await redis.hget(key_usage(key_id), "ds")) == pytest.approx(0.005)
    await redis.script_flush()  # as after a Redis restart: the batch loads the script and goes again
    await first.settle(principals[0], 100, 0.0)
    assert float(await redis.hget(key_usage(keys[0][1]), "k")) == pytest.approx(600)


async def script_calls(redis: Redis) -> dict[str, int]:
    stats = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def test_admission_is_one_round_trip_and_the_keys_expire(gateways: Gateways) -> None:
    first, _, redis = gateways
    key, key_id = await make(redis, limits=KeyLimits(rpm=60, tpm=1000, budget_usd_day=1.0))
    await first.admit(key, TARGETS, True)  # loads the script (NOSCRIPT once, on this new server connection)
    await redis.config_resetstat()
    principal = admitted(await first.admit(key, TARGETS, True))
    calls = await script_calls(redis)
    assert calls.get("evalsha") == 1 and "eval" not in calls, calls  # nothing else but the INFO reading it
    await first.settle(principal, 10, 0.001, NOW)
    for name in await redis.keys("draftgate:*"):
        name = name.decode()
        if name.startswith("draftgate:keyusage:"):
            assert await redis.ttl(name) > 0, name  # state that would otherwise pile up expires
    assert key_id in (await redis.keys("draftgate:keyusage:*"))[0].decode()


async def test_the_charges_waiting_and_the_session_ride_in_the_admissions_round_trip(gateways: Gateways) -> None:
    """A request's admission takes the answers' charges waiting in its gateway along (made before it, so a
    budget they exhaust refuses it) and reads the session's turns: one command, no round trip of their own."""
    first, _, redis = gateways
    key, key_id = await make(redis, limits=KeyLimits(tpm=10_000, budget_usd_day=0.01))
    principal = admitted(await first.admit(key, TARGETS, True))
    await redis.rpush("draftgate:session:test", b"turn-1", b"turn-2")
    settlements = Settlements(first, linger_s=600)  # its own task would wait ten minutes: only the admission sends
    settlements.start()
    try:
        await settlements.add(Charge(principal, 300, 0.004))
        await redis.config_resetstat()
        admission = await first.admit_along(key, TARGETS, True, charges=settlements.take(),
                                            session_key="draftgate:session:test")
        assert admission.session_turns == [b"turn-1", b"turn-2"]
        assert isinstance(admission.verdict, Principal)
        calls = await script_calls(redis)
        assert calls.get("evalsha") == 1 and calls.get("lrange") == 1, calls  # one command: charge, admit, read
        assert float(await redis.hget(key_usage(key_id), "k")) == pytest.approx(300)
        assert settlements.take() == []

        await settlements.add(Charge(principal, 10, 0.007))  # the budget is spent: the next request sees it
        refusal = refused((await first.admit_along(key, TARGETS, True, charges=settlements.take())).verdict)
        assert isinstance(refusal.error, QuotaExceeded)
    finally:
        await settlements.drain(5)


async def key_state(redis: Redis, key_id: str) -> dict[bytes, bytes]:
    return await redis.hgetall(key_usage(key_id))


async def test_a_charge_riding_with_its_keys_admission_leaves_what_two_commands_would(gateways: Gateways,
                                                                                      clock: FrozenClock) -> None:
    """The script reads and writes a key's buckets and spend once per call, however many charges and the
    admission touch them: the state and the answer are those of the same steps as separate commands."""
    first, _, redis = gateways
    limits = KeyLimits(rpm=600, tpm=100_000, budget_usd_day=5.0, budget_usd_month=50.0)
    (alone, alone_id), (riding, riding_id) = [await make(redis, limits=limits) for _ in range(2)]
    principals = [admitted(await first.admit(key, TARGETS, True)) for key in (alone, riding)]
    clock.now += 0.25  # the buckets have drained a little since

    for _ in range(3):
        await first.settle(principals[0], 120, 0.0125)
    separately = admitted(await first.admit(alone, TARGETS, True))
    await redis.config_resetstat()
    together = admitted((await first.admit_along(riding, TARGETS, True,
                                                 charges=[Charge(principals[1], 120, 0.0125)] * 3)).verdict)
    calls = await script_calls(redis)

    assert (together.used_requests, together.used_tokens) == (separately.used_requests, separately.used_tokens)
    assert await key_state(redis, riding_id) == await key_state(redis, alone_id)
    assert abs(await redis.pttl(key_usage(riding_id)) - await redis.pttl(key_usage(alone_id))) < 1000
    # The usage read once and written once (the record's HMGET is the other); its expiry was set by the month's
    # first write, long before; nothing else touches Redis.
    assert (calls.get("hmget"), calls.get("hset"), calls.get("expire"), calls.get("pexpire"), calls.get("get"),
            calls.get("set")) == (2, 1, None, None, None, None), calls


def outcome(result: Principal | Refused) -> tuple[object, ...]:
    if isinstance(result, Refused):
        return ("refused", result.reason, type(result.error).__name__, result.error.code)
    return ("admitted", result.tenant, result.used_requests, result.used_tokens, result.limits)


async def test_a_turns_calls_go_in_one_command_and_leave_what_they_would_one_after_another(
        gateways: Gateways, clock: FrozenClock) -> None:
    """The calls a gateway makes in one turn of its event loop (concurrent requests) are one `batch` of the
    script, run in order: every answer and every key's state are those of the same calls sent one by one;
    each key's record and usage are read once and its usage written once."""
    first, _, redis = gateways

    async def keys() -> dict[str, tuple[KeyLookup, str]]:
        made = {"budget": await make(redis, tenant="acme", limits=KeyLimits(rpm=600, tpm=10_000, budget_usd_day=0.01)),
                "tight": await make(redis, tenant="acme", limits=KeyLimits(rpm=2)),
                "models": await make(redis, tenant="acme", models=("drafter",)),
                "revoked": await make(redis, tenant="acme")}
        assert await store.revoke(redis, made["revoked"][1], clock.now) is not None
        return made

    def calls(made: dict[str, tuple[KeyLookup, str]], principal: Principal) -> list[Any]:
        budget, tight = made["budget"][0], made["tight"][0]
        return [first.admit(budget, TARGETS, True), first.admit(tight, TARGETS, True),
                first.admit_along(budget, TARGETS, True, charges=[Charge(principal, 400, 0.004)] * 3),
                first.admit(tight, TARGETS, True), first.admit(tight, TARGETS, True),  # over its rpm
                first.admit(made["models"][0], TARGETS, True), first.admit(made["revoked"][0], TARGETS, True),
                first.admit(lookup("sk-dg-no-such-key"), TARGETS, True), first.admit(budget, TARGETS, True)]

    def verdict(result: object) -> Principal | Refused:
        return result.verdict if hasattr(result, "verdict") else result  # type: ignore[return-value]

    results = {}
    states = {}
    for way in ("one by one", "one turn"):
        made = await keys()
        principal = admitted(await first.admit(made["budget"][0], None, True))  # to be charged (the script loaded)
        await redis.config_resetstat()
        if way == "one by one":
            results[way] = [verdict(await call) for call in calls(made, principal)]
        else:
            results[way] = [verdict(result) for result in await asyncio.gather(*calls(made, principal))]
            stats = await script_calls(redis)
            assert stats.get("evalsha") == 1, stats  # one command for the nine calls
            # each record (the unknown key's too) and each usage read once, each usage written once
            assert stats.get("hmget") == 5 + 2 and stats.get("hset") == 2, stats
        states[way] = [await key_state(redis, key_id) for _, key_id in made.values()]
    assert [outcome(result) for result in results["one turn"]] == [outcome(result) for result in results["one by one"]]
    assert [outcome(result)[:2] for result in results["one turn"]] == [
        ("admitted", "acme"), ("admitted", "acme"), ("refused", "budget"),  # the charges it carries spend the budget
        ("admitted", "acme"), ("refused", "rate_limit"), ("refused", "forbidden"), ("refused", "auth"),
        ("refused", "auth"), ("refused", "budget")]
    assert states["one turn"] == states["one by one"]


async def test_a_turns_calls_after_a_redis_restart_load_the_script_and_run_once(gateways: Gateways) -> None:
    first, _, redis = gateways
    key, key_id = await make(redis, limits=KeyLimits(rpm=600))
    admitted(await first.admit(key, TARGETS, True))
    await redis.script_flush()  # as after a Redis restart: the turn's batch is refused unrun, loaded, sent again
    results = await asyncio.gather(*(first.admit(key, TARGETS, True) for _ in range(5)))
    assert [admitted(result).used_requests for result in results] == pytest.approx([2, 3, 4, 5, 6], abs=0.01)
    assert float(await redis.hget(key_usage(key_id), "r")) == pytest.approx(6, abs=0.01)  # each charged once


async def test_a_call_that_fails_in_a_turn_fails_alone(gateways: Gateways) -> None:
    """A key whose record Redis holds malformed (its models not JSON) makes the script raise: alone, that call
    is refused with the error, and the others of its turn are answered."""
    first, _, redis = gateways
    broken, _ = await make(redis, tenant="acme", models=("drafter",))
    fine, fine_id = await make(redis, tenant="acme", limits=KeyLimits(rpm=600))
    await redis.hset(virtual_key(broken.digest), "models", "not json")
    await first.prepare()
    await redis.config_resetstat()
    results = await asyncio.gather(first.admit(fine, TARGETS, True), first.admit(broken, TARGETS, True),
                                   first.admit(fine, TARGETS, True), return_exceptions=True)
    assert (await script_calls(redis)).get("evalsha") == 1  # one command for the three
    assert isinstance(results[1], ResponseError) and "invalid token" in str(results[1]), results[1]
    assert [admitted(results[index]).used_requests for index in (0, 2)] == pytest.approx([1, 2], abs=0.01)
    with pytest.raises(ResponseError):  # alone, as before: the script's error
        await first.admit(broken, TARGETS, True)
    assert float(await redis.hget(key_usage(fine_id), "r")) == pytest.approx(2, abs=0.01)
