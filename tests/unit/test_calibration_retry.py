"""What collect retries and how long it waits: 429, 5xx, dropped connections and broken streams are
retried with jittered exponential backoff that never undercuts Retry-After; a refused top_logprobs or
a wrong key stops the run with the server's words; other client errors fail the one call."""

from __future__ import annotations

import random

import pytest

from services.router.calibration.retry import GaveUp, Refused, backoff_s, refusal, retryable, with_retries
from services.router.upstreams.errors import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamStreamError,
    UpstreamTimeout,
    retryable_status,
)


def status_error(status: int, message: str = "nope", retry_after_s: float | None = None) -> UpstreamStatusError:
    """As the providers raise it: the upstream's error object in OpenAI's shape."""
    return UpstreamStatusError(message, status=status, retryable=retryable_status(status), retry_after_s=retry_after_s,
                               body={"message": message, "type": "x", "param": None, "code": None},
                               tier="drafter", model="m")


def connection_error() -> UpstreamConnectError:
    return UpstreamConnectError("connection refused", retryable=True)


@pytest.mark.parametrize(("exc", "expected"), [
    (status_error(429), True), (status_error(500), True), (status_error(503), True), (status_error(408), True),
    (connection_error(), True), (UpstreamTimeout("no answer"), True),
    (UpstreamStreamError("overloaded", retryable=False), True),  # mid-stream: collect just calls again
    (UpstreamProtocolError("a stream cut short"), True),
    (status_error(400), False), (status_error(422), False), (ValueError("bug"), False),
])
def test_rate_limits_server_errors_and_broken_streams_are_retried(exc: BaseException, expected: bool) -> None:
    assert retryable(exc) is expected


def test_a_refused_top_logprobs_stops_the_run_and_says_what_to_do() -> None:
    reason = refusal(status_error(400, "'top_logprobs' must be an integer between 0 and 5."), top_k=20)
    assert reason is not None
    assert "top_logprobs=20" in reason and "between 0 and 5" in reason and "--top-k" in reason
    assert refusal(status_error(401, "Incorrect API key"), top_k=20) == \
        "the upstream refused the request (401: Incorrect API key)"
    assert refusal(status_error(400, "context too long"), top_k=20) is None  # one prompt's problem
    assert refusal(status_error(400, "logprobs are not supported"), top_k=None) is None  # not a drafter call
    assert refusal(status_error(429), top_k=20) is None
    assert refusal(connection_error(), top_k=20) is None


def test_backoff_doubles_per_retry_jittered_to_between_half_and_all_of_it() -> None:
    rng = random.Random(1)
    for attempt, full in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0)):
        waits = [backoff_s(attempt, 1.0, rng) for _ in range(200)]
        assert all(full / 2 <= w <= full for w in waits)
        assert max(waits) - min(waits) > full / 4  # really jittered
    assert backoff_s(20, 1.0, rng) <= 120  # capped


def test_backoff_never_undercuts_what_the_server_asked_for_but_is_capped() -> None:
    rng = random.Random(1)
    assert backoff_s(1, 0.5, rng, retry_after=10.0) == 10.0
    assert backoff_s(1, 0.5, rng, retry_after=1e6) == 120.0


async def test_with_retries_waits_as_told_and_counts_attempts() -> None:
    failures = [status_error(429, retry_after_s=3.0), status_error(502), connection_error()]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "answer"

    result, attempts = await with_retries(call, retries=4, base_s=0.5, rng=random.Random(0), sleep=sleep)
    assert (result, attempts) == ("answer", 4)
    assert waits[0] == 3  # what the upstream asked for
    assert 0.5 <= waits[1] <= 1.0 and 1.0 <= waits[2] <= 2.0


async def test_with_retries_gives_up_after_the_last_retry_or_at_once_on_a_client_error() -> None:
    calls = 0

    async def sleep(seconds: float) -> None:
        pass

    async def always(exc: BaseException) -> str:
        nonlocal calls
        calls += 1
        raise exc

    with pytest.raises(GaveUp, match=r"^503: busy$") as info:
        await with_retries(lambda: always(status_error(503, "busy")), retries=2, base_s=0, rng=random.Random(0),
                           sleep=sleep)
    assert info.value.attempts == 3 and calls == 3
    calls = 0
    with pytest.raises(GaveUp, match=r"^400: context too long$") as info:
        await with_retries(lambda: always(status_error(400, "context too long")), retries=2, base_s=0,
                           rng=random.Random(0), sleep=sleep)
    assert info.value.attempts == 1 and calls == 1
    with pytest.raises(Refused, match="top_logprobs=20"):
        await with_retries(lambda: always(status_error(400, "top_logprobs too large")), retries=2, base_s=0,
                           rng=random.Random(0), top_k=20, sleep=sleep)
