"""Which upstream failures `collect` (and the judge) try again, and how long they wait first.

A calibration run makes hundreds of calls to a rate-limited API, so 429s and passing 5xx are expected,
not fatal: each is retried with exponential backoff and jitter (so concurrent workers do not retry in
lockstep), and a server that says how long to wait (Retry-After, read by the provider into the
error's `retry_after_s`) is obeyed. Failures that no retry can
fix (a refused parameter, a wrong key or model) stop the run at once with the server's own words,
instead of recording the same error for every prompt.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.router.upstreams.errors import UpstreamError, UpstreamStatusError, retryable_status

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
    """Rate limits, timeouts, 5xx, dropped connections and broken streams; not the client's mistakes.

    Wider than the error's own `retryable`, which is the router's: a stream that broke after its
    first byte cannot be restarted under a client that has seen it, but collect shows nobody
    anything, so it calls again from the start."""
    if isinstance(exc, UpstreamStatusError) and exc.status is not None:
        return retryable_status(exc.status)
    return isinstance(exc, UpstreamError)


def refusal(exc: BaseException, top_k: int | None) -> str | None:
    """Why the whole run cannot go on (wrong key, unknown model, log-probs refused), or None.

    A 400 that names log-probs is the server refusing `top_logprobs=k` (OpenAI allows 20, some
    servers fewer, some none): every drafter call would fail alike, so say which k and what to do.
    """
    if not isinstance(exc, UpstreamStatusError):
        return None
    message = error_message(exc)
    if exc.status == 400 and "logprob" in message.lower() and top_k is not None:
        return (f"the upstream refused top_logprobs={top_k} (400: {message}); "
                f"try a smaller --top-k, the largest this upstream allows")
    if exc.status in FATAL_STATUSES:
        return f"the upstream refused the request ({exc.status}: {message})"
    return None


def error_message(exc: BaseException) -> str:
    """The upstream's own words: its error object's message, else the error's, else its type."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str) and inner["message"]:
            return inner["message"]
    message = getattr(exc, "message", None)
    return message if isinstance(message, str) and message else str(exc) or type(exc).__name__


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
        except UpstreamError as exc:
            reason = refusal(exc, top_k)
            if reason is not None:
                raise Refused(reason) from exc
            if not retryable(exc) or attempt > retries:
                status = exc.status if isinstance(exc, UpstreamStatusError) else None
                raise GaveUp(f"{status if status is not None else type(exc).__name__}: {error_message(exc)}",
                             attempt) from exc
            await sleep(backoff_s(attempt, base_s, rng, exc.retry_after_s))
