"""The circuit breaker's transitions, on a hand-driven clock: closed -> open after N failures in a
window -> half-open after the cooldown, one probe at a time -> closed on its success, open again on its
failure; verdicts of calls begun before a transition change nothing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from services.router.upstreams.breaker import Breaker, BreakerPolicy, BreakerState


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


POLICY = BreakerPolicy(failures=3, window_s=10.0, cooldown_s=30.0)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> Breaker:
    return Breaker(POLICY, clock)


def fail(breaker: Breaker, times: int = 1) -> None:
    for _ in range(times):
        breaker.failure(breaker.begin())


def open_it(breaker: Breaker) -> None:
    fail(breaker, POLICY.failures)
    assert breaker.state is BreakerState.OPEN


def test_a_new_breaker_is_closed_and_lets_calls_through(breaker: Breaker) -> None:
    assert breaker.state is BreakerState.CLOSED
    assert breaker.available()
    assert not breaker.begin().probe


def test_fewer_failures_than_the_limit_keep_it_closed(breaker: Breaker) -> None:
    fail(breaker, POLICY.failures - 1)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.recent_failures() == POLICY.failures - 1
    assert breaker.available()


def test_the_limit_of_failures_within_the_window_opens_it(breaker: Breaker, clock: FakeClock) -> None:
    fail(breaker)
    clock.now += POLICY.window_s - 1
    fail(breaker, 2)
    assert breaker.state is BreakerState.OPEN
    assert not breaker.available()
    assert breaker.opened_total == 1
    assert breaker.reopens_in() == POLICY.cooldown_s


def test_failures_older_than_the_window_are_forgotten(breaker: Breaker, clock: FakeClock) -> None:
    fail(breaker, 2)
    clock.now += POLICY.window_s
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.recent_failures() == 1


def test_successes_do_not_wipe_recent_failures(breaker: Breaker) -> None:
    fail(breaker, 2)
    breaker.success(breaker.begin())
    fail(breaker)
    assert breaker.state is BreakerState.OPEN


def test_open_refuses_until_the_cooldown_then_lets_one_probe_through(breaker: Breaker, clock: FakeClock) -> None:
    open_it(breaker)
    clock.now += POLICY.cooldown_s - 0.001
    assert breaker.state is BreakerState.OPEN and not breaker.available()
    assert breaker.reopens_in() == pytest.approx(0.001)
    clock.now += 0.001
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.reopens_in() == 0
    assert breaker.available()
    probe = breaker.begin()
    assert probe.probe
    assert not breaker.available(), "a second call while the probe is out"


def half_open(breaker: Breaker, clock: FakeClock) -> None:
    open_it(breaker)
    clock.now += POLICY.cooldown_s
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_successful_probe_closes_it_with_a_clean_count(breaker: Breaker, clock: FakeClock) -> None:
    half_open(breaker, clock)
    breaker.success(breaker.begin())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.recent_failures() == 0
    fail(breaker, POLICY.failures - 1)
    assert breaker.state is BreakerState.CLOSED


def test_a_failed_probe_opens_it_again_for_a_whole_cooldown(breaker: Breaker, clock: FakeClock) -> None:
    half_open(breaker, clock)
    clock.now += 5
    breaker.failure(breaker.begin())
    assert breaker.state is BreakerState.OPEN
    assert breaker.opened_total == 2
    assert breaker.reopens_in() == POLICY.cooldown_s


def test_an_abandoned_probe_frees_the_slot_for_another(breaker: Breaker, clock: FakeClock) -> None:
    half_open(breaker, clock)
    breaker.abandon(breaker.begin())
    assert breaker.state is BreakerState.HALF_OPEN
    assert breaker.available()
    assert breaker.begin().probe


def test_abandoned_calls_count_nothing(breaker: Breaker) -> None:
    for _ in range(POLICY.failures * 2):
        breaker.abandon(breaker.begin())
    assert breaker.state is BreakerState.CLOSED
    assert breaker.recent_failures() == 0


def test_a_call_from_before_opening_that_succeeds_later_does_not_close_it(breaker: Breaker, clock: FakeClock) -> None:
    slow = breaker.begin()
    open_it(breaker)
    breaker.success(slow)
    assert breaker.state is BreakerState.OPEN
    clock.now += POLICY.cooldown_s
    breaker.success(slow)  # while half-open, still not the probe
    assert breaker.state is BreakerState.HALF_OPEN


def test_a_call_from_before_opening_that_fails_later_does_not_extend_the_cooldown(
    breaker: Breaker, clock: FakeClock
) -> None:
    slow = [breaker.begin() for _ in range(POLICY.failures)]
    open_it(breaker)
    clock.now += 10
    for ticket in slow:
        breaker.failure(ticket)
    assert breaker.opened_total == 1
    assert breaker.reopens_in() == POLICY.cooldown_s - 10


def test_a_stale_failure_while_half_open_does_not_reopen_it(breaker: Breaker, clock: FakeClock) -> None:
    slow = [breaker.begin() for _ in range(POLICY.failures)]
    half_open(breaker, clock)
    probe = breaker.begin()
    for ticket in slow:
        breaker.failure(ticket)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.success(probe)
    assert breaker.state is BreakerState.CLOSED


def test_a_second_verdict_on_the_probe_changes_nothing(breaker: Breaker, clock: FakeClock) -> None:
    half_open(breaker, clock)
    probe = breaker.begin()
    breaker.success(probe)
    breaker.failure(probe)
    assert breaker.state is BreakerState.CLOSED
    assert breaker.recent_failures() == 0


@pytest.mark.parametrize(
    "policy", [{"failures": 0}, {"window_s": 0}, {"cooldown_s": -1}], ids=["failures", "window", "cooldown"]
)
def test_a_policy_that_could_never_work_is_refused(policy: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="breaker policy"):
        BreakerPolicy(**policy)  # type: ignore[arg-type]
