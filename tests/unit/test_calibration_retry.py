"""What collect retries and how long it waits: 429, 5xx and dropped connections are retried with
jittered exponential backoff that never undercuts Retry-After; a refused top_logprobs or a wrong key
stops the run with the server's words; other client errors fail the one call."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import httpx2
import openai
import pytest

from services.router.calibration.retry import (
    GaveUp,
    Refused,
    backoff_s,
    refusal,
    retry_after_s,
    retryable,
    with_retries,
)

URL = "http://upstream.test/v1/chat/completions"


def status_error(status: int, message: str = "nope", headers: dict[str, str] | None = None) -> openai.APIStatusError:
    response = httpx2.Response(status, headers=headers or {}, request=httpx2.Request("POST", URL))
    body = {"error": {"message": message, "type": "x", "param": None, "code": None}}
    return openai.APIStatusError(message, response=response, body=body)


def connection_error() -> openai.APIConnectionError:
    return openai.APIConnectionError(request=httpx2.Request("POST", URL))


@pytest.mark.parametrize(("exc", "expected"), [
    (status_error(429), True), (status_error(500), True), (status_error(503), True), (status_error(408), True),
    (connection_error(), True), (status_error(400), False), (status_error(422), False), (ValueError("bug"), False),
])
def test_rate_limits_server_errors_and_dropped_connections_are_retried(exc: BaseException, expected: bool) -> None:
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


def test_retry_after_is_read_in_seconds_milliseconds_or_as_a_date() -> None:
    assert retry_after_s(status_error(429, headers={"retry-after": "7"})) == 7
    assert retry_after_s(status_error(429, headers={"retry-after-ms": "250"})) == 0.25
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(datetime(2025, 1, 1, 12, 0, 30, tzinfo=UTC), usegmt=True)
    assert retry_after_s(status_error(503, headers={"retry-after": later}), now=now.timestamp()) == 30
    assert retry_after_s(status_error(429, headers={"retry-after": "soon"})) is None
    assert retry_after_s(status_error(429)) is None
    assert retry_after_s(connection_error()) is None


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
    failures = [status_error(429, headers={"retry-after": "3"}), status_error(502), connection_error()]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "answer"

    result, attempts = await with_retries(call, retries=4, base_s=0.5, rng=random.Random(0), sleep=sleep)
    assert (result, attempts) == ("answer", 4)
    assert waits[0] == 3  # Retry-After
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
