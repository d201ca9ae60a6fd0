"""Which upstream failures `collect` (and the judge) try again, and how long they wait first.

A calibration run makes hundreds of calls to a rate-limited API, so 429s and passing 5xx are expected,
not fatal: each is retried with exponential backoff and jitter (so concurrent workers do not retry in
lockstep), and a server that says how long to wait (Retry-After) is obeyed. Failures that no retry can
fix (a refused parameter, a wrong key or model) stop the run at once with the server's own words,
instead of recording the same error for every prompt.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from openai import APIStatusError

from services.router.failures import UPSTREAM_ERRORS

RETRY_STATUSES = frozenset({408, 409, 429})
FATAL_STATUSES = frozenset({401, 403, 404})
MAX_WAIT_S = 120.0  # the longest single wait, whatever a server asks for


T = TypeVar("T")


class Refused(Exception):
    """The upstream refused the request in a way every other prompt would meet too."""


class GaveUp(Exception):
    """A call that failed for good: not retryable, or still failing after every retry."""

    def __init__(self, message: str, attempts: int) -> None:
        super().__init__(message)
        self.attempts = attempts


def retryable(exc: BaseException) -> bool:
    """Rate limits, timeouts, 5xx, dropped connections and broken streams; not the client's mistakes."""
    if isinstance(exc, APIStatusError):
        return exc.status_code in RETRY_STATUSES or exc.status_code >= 500
    return isinstance(exc, UPSTREAM_ERRORS)


def refusal(exc: BaseException, top_k: int | None) -> str | None:
    """Why the whole run cannot go on (wrong key, unknown model, log-probs refused), or None.

    A 400 that names log-probs is the server refusing `top_logprobs=k` (OpenAI allows 20, some
    servers fewer, some none): every drafter call would fail alike, so say which k and what to do.
    """
    if not isinstance(exc, APIStatusError):
        return None
    message = error_message(exc)
    if exc.status_code == 400 and "logprob" in message.lower() and top_k is not None:
        return (f"the upstream refused top_logprobs={top_k} (400: {message}); "
                f"try a smaller --top-k, the largest this upstream allows")
    if exc.status_code in FATAL_STATUSES:
        return f"the upstream refused the request ({exc.status_code}: {message})"
    return None


def error_message(exc: BaseException) -> str:
    """The upstream's own message when it sent one (the OpenAI error body), else the exception's."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
    return str(exc) or type(exc).__name__


def retry_after_s(exc: BaseException, now: float | None = None) -> float | None:
    """What the server asked us to wait, from Retry-After-Ms or Retry-After (seconds or an HTTP date)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - (time.time() if now is None else now), 0.0)


def backoff_s(attempt: int, base_s: float, rng: random.Random, retry_after: float | None = None,
              cap_s: float = MAX_WAIT_S) -> float:
    """The wait before retry number `attempt` (1 = the first retry): base x 2^(attempt-1), jittered to
    between half and all of it, and never shorter than what the server asked for (capped)."""
    exponential = min(cap_s, base_s * 2 ** (attempt - 1))
    jittered = exponential * rng.uniform(0.5, 1.0)
    return min(cap_s, max(jittered, retry_after or 0.0))


async def with_retries(call: Callable[[], Awaitable[T]], retries: int, base_s: float, rng: random.Random,
                       top_k: int | None = None,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> tuple[T, int]:
    """`call()`'s result and how many attempts it took. Retryable failures are tried again up to
    `retries` times; a refusal that every call would meet is Refused; anything else is GaveUp."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call(), attempt
        except UPSTREAM_ERRORS as exc:
            reason = refusal(exc, top_k)
            if reason is not None:
                raise Refused(reason) from exc
            if not retryable(exc) or attempt > retries:
                status = f"{exc.status_code}: " if isinstance(exc, APIStatusError) else f"{type(exc).__name__}: "
                raise GaveUp(status + error_message(exc), attempt) from exc
            await sleep(backoff_s(attempt, base_s, rng, retry_after_s(exc)))
