"""When a call is hedged (services/router/upstreams/hedge.py): the sliding TTFT sample and its
percentiles, the policy (a fixed delay, or a percentile once enough delays are known), a cancelled
primary's lower bound, the pool's delay per deployment and what GET /status shows, and the config
keys that choose it (hedge_after, exclusive with hedge_after_ms, errors naming the key)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.router.upstream import create_tier
from services.router.upstreams.balance import Balancer, strategy
from services.router.upstreams.base import Target
from services.router.upstreams.deployment import Deployment
from services.router.upstreams.hedge import MIN_SAMPLES, SAMPLE_SIZE, HedgePolicy, TtftSample
from services.router.upstreams.openai import PROVIDER
from services.router.upstreams.pool import Member, Pool
from shared.config import ConfigError, load_config


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def sample_of(values: list[float], size: int = SAMPLE_SIZE) -> TtftSample:
    sample = TtftSample(size)
    for value in values:
        sample.add(value)
    return sample


def reference_percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks, written out the slow way."""
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = int(rank), min(int(rank) + 1, len(ordered) - 1)
    return ordered[low] * (1 - (rank - low)) + ordered[high] * (rank - low)


# The sample.

def test_an_empty_sample_has_no_percentile() -> None:
    assert TtftSample().percentile(95) is None
    assert len(TtftSample()) == 0


def test_percentiles_interpolate_between_ranks() -> None:
    sample = sample_of([0.4, 0.1, 0.3, 0.2, 0.5])
    assert sample.percentile(0) == 0.1
    assert sample.percentile(50) == 0.3
    assert sample.percentile(100) == 0.5
    assert sample.percentile(95) == pytest.approx(0.48)
    assert sample_of([0.7]).percentile(95) == 0.7


def test_the_sample_keeps_only_the_newest_delays() -> None:
    sample = sample_of([9.0, 9.0, 9.0, 0.1, 0.2, 0.3], size=3)
    assert len(sample) == 3
    assert sample.percentile(100) == 0.3  # the three slow ones fell out
    sample.add(0.05)
    assert (sample.percentile(0), sample.percentile(100)) == (0.05, 0.3)


def test_the_sorted_sample_matches_a_sort_of_the_window_over_a_long_random_run() -> None:
    rng = random.Random(12)
    values = [round(rng.lognormvariate(-2, 1), 4) for _ in range(1000)]
    values[10:20] = [values[9]] * 10  # duplicates leave by value, one at a time
    sample = TtftSample(50)
    for index, value in enumerate(values):
        sample.add(value)
        window = values[max(0, index - 49):index + 1]
        for q in (50, 95, 99.9):
            assert sample.percentile(q) == pytest.approx(reference_percentile(window, q))


def test_a_sample_needs_room_for_one() -> None:
    with pytest.raises(ValueError, match="size >= 1"):
        TtftSample(0)


# The policy.

def test_a_fixed_delay_hedges_from_the_first_call() -> None:
    policy = HedgePolicy.from_config(hedge_after_ms=200, percentile=None)
    assert policy is not None and policy.delay_s(TtftSample()) == 0.2
    assert policy.describe() == "200 ms"


def test_a_percentile_hedges_only_once_enough_delays_are_known() -> None:
    policy = HedgePolicy.from_config(hedge_after_ms=None, percentile=95)
    assert policy is not None and policy.describe() == "p95"
    delays = [0.010 * (i + 1) for i in range(MIN_SAMPLES)]
    assert policy.delay_s(sample_of(delays[:-1])) is None
    assert policy.delay_s(sample_of(delays)) == pytest.approx(reference_percentile(delays, 95))


def test_no_hedge_key_is_no_policy_and_a_policy_is_one_of_the_two() -> None:
    assert HedgePolicy.from_config(None, None) is None
    with pytest.raises(ValueError, match="exactly one"):
        HedgePolicy(after_s=0.1, percentile=95)
    with pytest.raises(ValueError, match="exactly one"):
        HedgePolicy()
    with pytest.raises(ValueError, match=r"\(0, 100\)"):
        HedgePolicy(percentile=100)


# The deployment's sample and a primary that lost its race.

def test_first_tokens_feed_the_deployment_s_sample_and_a_primary_outrun_leaves_a_lower_bound() -> None:
    clock = FakeClock()
    deployment = Deployment("a", clock=clock)
    with deployment.start() as call:
        clock.now += 0.05
        call.first_token()
        call.succeeded()
    with deployment.start() as lost:
        clock.now += 0.8
        lost.outrun()  # the hedge answered first; this call is cancelled
    assert lost.outcome == "abandoned"
    assert (len(deployment.ttft), deployment.ttft.percentile(0), deployment.ttft.percentile(100)) == pytest.approx(
        (2, 0.05, 0.8))
    assert deployment.ewma_ttft_s == pytest.approx(0.05)  # the average keeps measured delays only


def test_a_call_that_had_its_first_token_or_ended_leaves_no_lower_bound() -> None:
    clock = FakeClock()
    deployment = Deployment("a", clock=clock)
    with deployment.start() as answered:
        clock.now += 0.1
        answered.first_token()
        answered.outrun()
    with deployment.start() as failed:
        failed.failed()
        clock.now += 5
        failed.outrun()
    assert len(deployment.ttft) == 1


def test_a_deployment_that_became_slow_for_good_stops_being_hedged() -> None:
    """Every slow call is cancelled by its hedge, yet the lower bounds it leaves raise the p95 past
    the new speed within about a sample's worth of calls, and the hedging stops."""
    clock = FakeClock()
    deployment = Deployment("a", clock=clock)
    policy = HedgePolicy(percentile=95)
    for _ in range(SAMPLE_SIZE):
        with deployment.start() as call:
            clock.now += 0.05
            call.first_token()
            call.succeeded()
    slow_ttft_s, hedge_ttft_s, hedged = 1.0, 0.05, 0
    for _ in range(2 * SAMPLE_SIZE):
        delay = policy.delay_s(deployment.ttft)
        assert delay is not None
        with deployment.start() as call:
            if delay + hedge_ttft_s < slow_ttft_s:  # the hedge wins: the primary is cancelled then
                hedged += 1
                clock.now += delay + hedge_ttft_s
                call.outrun()
            else:
                clock.now += slow_ttft_s
                call.first_token()
                call.succeeded()
    assert policy.delay_s(deployment.ttft) == pytest.approx(slow_ttft_s)
    assert hedged < 2 * SAMPLE_SIZE


# The pool and GET /status.

def pool_of(names: list[str], hedge: HedgePolicy | None) -> Pool:
    members = [Member(Deployment(name), Target(name=name, provider="openai", base_url="http://127.0.0.1:9/v1",
                                               model=name), PROVIDER) for name in names]
    return Pool("heavyweight", members, Balancer([m.state for m in members], strategy("round_robin")), hedge=hedge)


def test_the_pool_s_delay_is_per_deployment_and_none_without_a_second_deployment() -> None:
    pool = pool_of(["a", "b"], HedgePolicy(percentile=95))
    a, b = pool.members
    for index in range(MIN_SAMPLES):
        a.state.ttft.add(0.1 + index / 1000)
    assert pool.hedge_delay_s(a) == pytest.approx(reference_percentile([0.1 + i / 1000 for i in range(20)], 95))
    assert pool.hedge_delay_s(b) is None  # b has no delays yet: its calls are not hedged
    assert pool_of(["a"], HedgePolicy(after_s=0.2)).hedge_delay_s(a) is None
    assert pool_of(["a", "b"], None).hedge_delay_s(a) is None


def test_status_shows_each_deployment_s_current_hedge_delay_and_sample() -> None:
    pool = pool_of(["a", "b"], HedgePolicy(percentile=50))
    for _ in range(MIN_SAMPLES):
        pool.members[0].state.ttft.add(0.25)
    shown = pool.status()
    assert shown["hedge_after"] == "p50"
    assert [(d["name"], d["hedge_after_ms"], d["ttft_samples"]) for d in shown["deployments"]] == [
        ("a", 250.0, MIN_SAMPLES), ("b", None, 0)]
    fixed = pool_of(["a", "b"], HedgePolicy(after_s=0.2)).status()
    assert fixed["hedge_after"] == "200 ms"
    assert [d["hedge_after_ms"] for d in fixed["deployments"]] == [200.0, 200.0]
    assert pool_of(["a", "b"], None).status()["hedge_after"] is None


# The config.

def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


TWO = "deployments: [{name: a, base_url: 'http://h:1/v1', model: m}, {name: b, base_url: 'http://h:1/v1', model: m}]"


def test_hedge_after_a_percentile_reaches_the_tier_s_pool(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, f"heavyweight: {{hedge_after: p99.5, {TWO}}}\n"), {})
    assert config.heavyweight.hedge_percentile == 99.5
    tier = create_tier("heavyweight", config.heavyweight, {})
    assert tier.pool is not None and tier.pool.hedge == HedgePolicy(percentile=99.5)
    from_env = load_config(write(tmp_path, f"heavyweight: {{{TWO}}}\n"), {"DRAFTGATE_HEAVYWEIGHT_HEDGE_AFTER": "p95"})
    assert from_env.heavyweight.hedge_percentile == 95.0
    fixed = create_tier("heavyweight", load_config(write(tmp_path, f"heavyweight: {{hedge_after_ms: 150, {TWO}}}\n"),
                                                   {}).heavyweight, {})
    assert fixed.pool is not None and fixed.pool.hedge == HedgePolicy(after_s=0.15)


@pytest.mark.parametrize(("value", "message"), [
    ("p40", "heavyweight.hedge_after: must be a percentile .* from p50 to p99.9, such as p95 .*not 'p40'"),
    ("p100", "heavyweight.hedge_after: must be a percentile"),
    ("'95'", "heavyweight.hedge_after: must be a percentile .*not '95'"),
    ("fast", "heavyweight.hedge_after: must be a percentile .*not 'fast'"),
    ("p95, hedge_after_ms: 200", "heavyweight.hedge_after: and heavyweight.hedge_after_ms are both set"),
])
def test_a_bad_hedge_after_is_named(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, f"heavyweight: {{hedge_after: {value}}}\n"), {})


def test_the_drafter_s_hedge_after_is_checked_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"drafter\.hedge_after: must be a percentile"):
        load_config(write(tmp_path, "drafter: {hedge_after: p9}\n"), {})
