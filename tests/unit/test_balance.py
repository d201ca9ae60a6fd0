"""Balancing a tier's deployments, on a hand-driven clock: each strategy's order, what every strategy
skips (open breaker, max_concurrent, rate limit, excluded), "all rate-limited" told apart from "none
available", and the per-deployment state the strategies read (calls in flight, TTFT EWMA, errors)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from services.router.upstreams.balance import (
    Balancer,
    Cost,
    Latency,
    NoneAvailable,
    Picked,
    RateLimited,
    Strategy,
    strategy,
)
from services.router.upstreams.breaker import BreakerPolicy, BreakerState
from services.router.upstreams.deployment import Deployment, Unavailable
from shared.pricing import Price


@dataclass
class FakeClock:
    now: float = 500.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


BREAKER = BreakerPolicy(failures=2, window_s=10.0, cooldown_s=30.0)


def deployments(clock: FakeClock, *names: str, **options: Any) -> list[Deployment]:
    options.setdefault("breaker_policy", BREAKER)
    return [Deployment(name, clock=clock, **options) for name in names]


def picks(balancer: Balancer, count: int) -> list[str]:
    """Names chosen by `count` calls in a row, each ended before the next is chosen."""
    names = []
    for _ in range(count):
        choice = balancer.choose()
        assert isinstance(choice, Picked), choice
        with choice.deployment.start() as call:
            call.succeeded()
        names.append(choice.deployment.name)
    return names


def picked(balancer: Balancer, exclude: tuple[str, ...] = ()) -> Deployment:
    choice = balancer.choose(exclude)
    assert isinstance(choice, Picked), choice
    return choice.deployment


def open_breaker(deployment: Deployment) -> None:
    for _ in range(BREAKER.failures):
        deployment.start().failed()
    assert deployment.breaker.state is BreakerState.OPEN


# --- round robin -----------------------------------------------------------------------------------


def test_round_robin_takes_each_in_turn(clock: FakeClock) -> None:
    balancer = Balancer(deployments(clock, "a", "b", "c"), strategy("round_robin"))
    assert picks(balancer, 7) == ["a", "b", "c", "a", "b", "c", "a"]


def test_round_robin_skips_an_unavailable_deployment_and_keeps_its_turn_order(clock: FakeClock) -> None:
    tier = deployments(clock, "a", "b", "c")
    balancer = Balancer(tier, strategy("round_robin"))
    assert picks(balancer, 1) == ["a"]
    open_breaker(tier[1])
    assert picks(balancer, 4) == ["c", "a", "c", "a"]


# --- weighted --------------------------------------------------------------------------------------


def test_weighted_is_smooth_weighted_round_robin(clock: FakeClock) -> None:
    tier = [Deployment("a", weight=5, clock=clock), Deployment("b", clock=clock), Deployment("c", clock=clock)]
    balancer = Balancer(tier, strategy("weighted"))
    assert picks(balancer, 7) == ["a", "a", "b", "a", "c", "a", "a"]  # nginx's own example


def test_weighted_shares_follow_the_weights_exactly_over_whole_cycles(clock: FakeClock) -> None:
    tier = [Deployment("a", weight=3, clock=clock), Deployment("b", weight=2, clock=clock)]
    balancer = Balancer(tier, strategy("weighted"))
    assert Counter(picks(balancer, 500)) == {"a": 300, "b": 200}


def test_weighted_gives_a_missing_deployments_share_to_the_others(clock: FakeClock) -> None:
    tier = [Deployment("a", weight=2, clock=clock, max_concurrent=1), Deployment("b", clock=clock)]
    balancer = Balancer(tier, strategy("weighted"))
    busy = tier[0].start()
    assert picks(balancer, 3) == ["b", "b", "b"]
    busy.succeeded()
    assert Counter(picks(balancer, 30)) == {"a": 20, "b": 10}


# --- least busy ------------------------------------------------------------------------------------


def test_least_busy_takes_the_fewest_in_flight_ties_by_order(clock: FakeClock) -> None:
    a, b, c = tier = deployments(clock, "a", "b", "c")
    balancer = Balancer(tier, strategy("least_busy"))
    assert picked(balancer) is a
    calls = [a.start(), a.start(), b.start(), c.start()]
    assert picked(balancer) is b  # b and c have one each; b comes first
    calls[2].succeeded()
    assert b.in_flight == 0
    assert picked(balancer) is b
    calls.append(b.start())
    calls.append(b.start())
    assert picked(balancer) is c


# --- latency ---------------------------------------------------------------------------------------


def measure(deployment: Deployment, clock: FakeClock, ttft_s: float) -> None:
    with deployment.start() as call:
        clock.now += ttft_s
        call.first_token()
        call.succeeded()


def test_latency_tries_unmeasured_deployments_first_then_the_fastest(clock: FakeClock) -> None:
    a, b = tier = deployments(clock, "a", "b")
    balancer = Balancer(tier, strategy("latency"))
    assert picked(balancer) is a
    measure(a, clock, 0.5)
    assert picked(balancer) is b, "b has not been measured yet"
    measure(b, clock, 0.2)
    assert picked(balancer) is b
    measure(a, clock, 0.01)  # 0.3 x 0.01 + 0.7 x 0.5 = 0.353: a is still slower on average
    assert a.ewma_ttft_s == pytest.approx(0.353)
    assert picked(balancer) is b


def test_latency_penalises_recent_errors_until_they_age_out(clock: FakeClock) -> None:
    fast, slow = tier = deployments(clock, "fast", "slow", breaker_policy=BreakerPolicy(failures=100))
    balancer = Balancer(tier, Latency(error_penalty_s=1.0))
    measure(fast, clock, 0.1)
    measure(slow, clock, 0.8)
    assert picked(balancer) is fast
    fast.start().failed()  # 0.1 + 1.0 > 0.8
    assert fast.recent_errors() == 1
    assert picked(balancer) is slow
    clock.now += fast.error_window_s
    assert fast.recent_errors() == 0
    assert picked(balancer) is fast


def test_latency_ewma_alpha_is_the_weight_of_the_newest_call(clock: FakeClock) -> None:
    deployment = Deployment("a", clock=clock, ewma_alpha=0.5)
    measure(deployment, clock, 1.0)
    assert deployment.ewma_ttft_s == 1.0  # the first measurement is taken as it is
    measure(deployment, clock, 0.0)
    measure(deployment, clock, 0.0)
    assert deployment.ewma_ttft_s == pytest.approx(0.25)


# --- cost ------------------------------------------------------------------------------------------


def test_cost_takes_the_cheapest_at_three_input_tokens_per_output_token(clock: FakeClock) -> None:
    # Blended USD / Mtok at 3:1: input-heavy pricing wins although its output is dearer.
    cheap_in = Deployment("cheap-in", price=Price(1.0, 9.0), clock=clock)  # 0.75 + 2.25 = 3.0
    cheap_out = Deployment("cheap-out", price=Price(3.0, 1.0), clock=clock)  # 2.25 + 0.25 = 2.5
    cost = Cost()
    assert cost.blended_usd_per_mtok(cheap_in) == pytest.approx(3.0)
    assert cost.blended_usd_per_mtok(cheap_out) == pytest.approx(2.5)
    assert picked(Balancer([cheap_in, cheap_out], cost)) is cheap_out


def test_cost_falls_back_to_the_next_cheapest_when_the_cheapest_is_unhealthy(clock: FakeClock) -> None:
    nano = Deployment("nano", price=Price(0.10, 0.40), clock=clock, breaker_policy=BREAKER)
    mini = Deployment("mini", price=Price(0.40, 1.60), clock=clock)
    unpriced = Deployment("local", clock=clock)
    balancer = Balancer([unpriced, mini, nano], strategy("cost"))
    assert picked(balancer) is nano
    open_breaker(nano)
    assert picked(balancer) is mini
    assert picked(balancer, exclude=("mini",)) is unpriced, "unpriced comes last, but it comes"


def test_cost_ties_go_to_the_least_busy(clock: FakeClock) -> None:
    a, b = tier = deployments(clock, "a", "b", price=Price(2.0, 8.0))
    balancer = Balancer(tier, strategy("cost"))
    assert picked(balancer) is a
    a.start()
    assert picked(balancer) is b


# --- what every strategy skips, and the two refusals -------------------------------------------------

STRATEGY_NAMES = ["round_robin", "weighted", "least_busy", "latency", "cost"]


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_every_strategy_skips_open_breakers_full_deployments_rate_limits_and_exclusions(
    clock: FakeClock, name: str
) -> None:
    broken, full, limited, tried, good = tier = deployments(
        clock, "broken", "full", "limited", "tried", "good", max_concurrent=1, price=Price(1.0, 1.0)
    )
    open_breaker(broken)
    full.start()
    limited.rate_limited(5.0)
    balancer = Balancer(tier, strategy(name))
    for _ in range(5):
        assert picked(balancer, exclude=("tried",)) is good
    good.start()
    refusal = balancer.choose(exclude=("tried",))
    assert isinstance(refusal, RateLimited)
    assert refusal.reasons == {
        "broken": Unavailable.BREAKER_OPEN,
        "full": Unavailable.BUSY,
        "limited": Unavailable.RATE_LIMITED,
        "tried": Unavailable.EXCLUDED,
        "good": Unavailable.BUSY,
    }
    assert tried.unavailable() is None


@pytest.mark.parametrize("name", STRATEGY_NAMES)
def test_all_rate_limited_says_when_the_first_one_frees_up(clock: FakeClock, name: str) -> None:
    a, b = tier = deployments(clock, "a", "b")
    a.rate_limited(7.0)
    b.rate_limited(2.5)
    balancer = Balancer(tier, strategy(name))
    refusal = balancer.choose()
    assert isinstance(refusal, RateLimited)
    assert refusal.retry_after_s == 2.5
    clock.now += 2.5
    assert picked(balancer) is b


def test_none_available_is_not_rate_limited_and_says_when_a_breaker_probes(clock: FakeClock) -> None:
    a, b, c = tier = deployments(clock, "a", "b", "c", max_concurrent=1)
    open_breaker(a)
    clock.now += 10
    open_breaker(b)
    c.start()
    refusal = Balancer(tier, strategy("least_busy")).choose()
    assert isinstance(refusal, NoneAvailable)
    assert refusal.reasons == {"a": Unavailable.BREAKER_OPEN, "b": Unavailable.BREAKER_OPEN, "c": Unavailable.BUSY}
    assert refusal.retry_after_s == BREAKER.cooldown_s - 10


def test_a_half_open_deployment_takes_one_probe_then_is_skipped_until_it_answers(clock: FakeClock) -> None:
    a, b = tier = deployments(clock, "a", "b")
    balancer = Balancer(tier, strategy("round_robin"))
    open_breaker(a)
    clock.now += BREAKER.cooldown_s
    probe = picked(balancer).start()
    assert probe.deployment is a
    assert [picked(balancer) for _ in range(3)] == [b, b, b]
    probe.succeeded()
    assert a.breaker.state is BreakerState.CLOSED
    assert picked(balancer) is a


def test_everything_excluded_is_none_available(clock: FakeClock) -> None:
    refusal = Balancer(deployments(clock, "a"), strategy("round_robin")).choose(exclude=("a",))
    assert refusal == NoneAvailable({"a": Unavailable.EXCLUDED}, None)


# --- calls: in flight, one verdict each ------------------------------------------------------------


def test_a_call_ends_once_and_leaving_its_block_without_a_verdict_abandons_it(clock: FakeClock) -> None:
    deployment = Deployment("a", clock=clock, breaker_policy=BREAKER)
    with deployment.start() as call:
        assert deployment.in_flight == 1
        call.failed()
        call.failed()
        call.succeeded()
    assert deployment.in_flight == 0
    assert call.outcome == "failed"
    assert deployment.breaker.recent_failures() == 1
    with pytest.raises(RuntimeError), deployment.start() as left:
        raise RuntimeError("the client went away")
    assert left.outcome == "abandoned"
    assert deployment.in_flight == 0
    assert deployment.breaker.recent_failures() == 1


def test_an_upstream_429_skips_the_deployment_for_its_retry_after_without_tripping_the_breaker(
    clock: FakeClock,
) -> None:
    deployment = Deployment("a", clock=clock, breaker_policy=BREAKER)
    for _ in range(BREAKER.failures):
        deployment.start().throttled(4.0)
    assert deployment.breaker.state is BreakerState.CLOSED
    assert deployment.unavailable() is Unavailable.RATE_LIMITED
    assert deployment.rate_limited_for() == 4.0
    clock.now += 4.0
    assert deployment.unavailable() is None


def test_the_first_token_is_timed_once_from_the_start_of_the_call(clock: FakeClock) -> None:
    deployment = Deployment("a", clock=clock)
    call = deployment.start()
    clock.now += 0.25
    call.first_token()
    clock.now += 1.0
    call.first_token()
    call.succeeded()
    assert call.ttft_s == 0.25
    assert deployment.ewma_ttft_s == 0.25


def test_status_is_what_this_router_knows(clock: FakeClock) -> None:
    deployment = Deployment("a", clock=clock, breaker_policy=BREAKER)
    measure(deployment, clock, 0.1234)
    deployment.start().failed()
    deployment.start()
    deployment.rate_limited(1.5)
    assert deployment.status() == {
        "name": "a",
        "breaker": "closed",
        "in_flight": 1,
        "ewma_ttft_ms": 123.4,
        "recent_errors": 1,
        "rate_limited_for_s": 1.5,
    }


# --- construction ----------------------------------------------------------------------------------


def test_unknown_strategies_duplicate_names_and_empty_tiers_are_refused(clock: FakeClock) -> None:
    with pytest.raises(ValueError, match="unknown balancing strategy 'fastest'"):
        strategy("fastest")
    chooser: Strategy = strategy("round_robin")
    with pytest.raises(ValueError, match="unique"):
        Balancer(deployments(clock, "a", "a"), chooser)
    with pytest.raises(ValueError, match="at least one"):
        Balancer([], chooser)
    with pytest.raises(ValueError, match="weight"):
        Deployment("a", weight=0)
